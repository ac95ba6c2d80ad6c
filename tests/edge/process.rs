//! The real binary: SIGHUP reloads the certificate (new connections see it, an open
//! keep-alive connection keeps working) and the configuration (the log filter included); an
//! admin listener off loopback without a token, or an unusable certificate, stops the start
//! with one message naming the key.

use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};

use super::https::{server_cert, ClientTls, Conn};
use super::pki::{install, toml_path, Pki, TempDir};
use crate::common::*;

fn command(dir: &TempDir) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    for v in ENV_VARS {
        cmd.env_remove(v);
    }
    cmd.current_dir(&dir.0).stdin(Stdio::null());
    cmd
}

fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("child pid").to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .expect("run kill");
    assert!(sent.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_keeps_open_connections() {
    let sim = pollgate_sim::SimUpstream::new(pollgate_sim::SimOptions::default());
    let upstream = sim.clone().spawn().await;
    let pki = Pki::new("edge CA");
    let dir = TempDir::new("sighup");
    let first = pki.server("first");
    let (cert, key) = install(&dir, &first);
    let config = dir.write(
        "pollgate.toml",
        &format!(
            "[server.tls]\ncert_file = {}\nkey_file = {}\n[cache]\nttl = \"2s\"\n\
             [log]\nfilter = \"warn\"\n",
            toml_path(&cert),
            toml_path(&key)
        ),
    );
    let (listen, admin) = (free_port(), free_port());
    let mut child = command(&dir)
        .arg("--config")
        .arg(&config)
        .args(["--listen", &listen.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--upstream", &format!("http://{upstream}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pollgate");
    let client = TestClient::new();
    let health = format!("http://{admin}/healthz");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("pollgate exited early: {status}");
        }
        if tokio::net::TcpStream::connect(admin).await.is_ok()
            && client
                .send(Method::GET, &health, &[], Bytes::new())
                .await
                .status
                == StatusCode::OK
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz did not answer within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stream = ClientTls::new(&pki.ca_pem)
        .http1_only()
        .connect(listen)
        .await
        .expect("TLS");
    assert_eq!(server_cert(&stream), first.der);
    let mut kept = Conn::open(stream).await;
    assert_eq!(
        kept.get("/echo/x", &[]).await.expect("GET").status,
        StatusCode::OK
    );

    // Swap the files, then SIGHUP (the file watch may get there first; either way the
    // certificate must change, and the reload counter shows the signal's reload).
    let second = pki.server("second");
    install(&dir, &second);
    dir.write(
        "pollgate.toml",
        &format!(
            "[server.tls]\ncert_file = {}\nkey_file = {}\n[cache]\nttl = \"3s\"\n\
             [log]\nfilter = \"info\"\n",
            toml_path(&cert),
            toml_path(&key)
        ),
    );
    signal(&child, "HUP");
    let metrics_url = format!("http://{admin}/metrics");
    let reloaded = wait_for(secs(5), || async {
        let text = client
            .send(Method::GET, &metrics_url, &[], Bytes::new())
            .await
            .text();
        metric_value(&text, "pollgate_config_reloads_total{result=\"success\"}") == Some(1.0)
    })
    .await;
    assert!(reloaded, "SIGHUP did not reload the configuration");
    let fresh = ClientTls::new(&pki.ca_pem)
        .connect(listen)
        .await
        .expect("TLS");
    assert_eq!(
        server_cert(&fresh),
        second.der,
        "a new connection sees the new certificate"
    );
    let r = kept
        .get("/echo/x", &[])
        .await
        .expect("the kept-alive connection still works");
    assert_eq!(r.status, StatusCode::OK);
    drop(kept);
    drop(client);

    signal(&child, "TERM");
    let output = tokio::time::timeout(secs(10), child.wait_with_output())
        .await
        .expect("exits within 10 s of SIGTERM")
        .expect("wait");
    assert!(output.status.success(), "exit status {}", output.status);
    let logs = String::from_utf8_lossy(&output.stdout);
    // Started under `log.filter = "warn"`: no start line; the reload's own line shows under
    // the new filter, `info`.
    assert!(!logs.contains("pollgate started"), "{logs}");
    assert!(logs.contains("configuration reloaded"), "{logs}");
    assert!(logs.contains("changed=cache.ttl,log.filter"), "{logs}");
    assert!(logs.contains("access log reopened"), "{logs}");
}

#[tokio::test]
async fn an_exposed_admin_listener_without_a_token_does_not_start() {
    let dir = TempDir::new("exposed");
    let out = command(&dir)
        .args([
            "--admin-listen",
            "0.0.0.0:0",
            "--upstream",
            "http://127.0.0.1:9",
        ])
        .output()
        .await
        .expect("run pollgate");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`admin.listen` (flag --admin-listen): 0.0.0.0:0 is not a loopback"),
        "{stderr}"
    );
    assert!(stderr.contains("set admin.token_file"), "{stderr}");
    assert!(stderr.contains("allow_unauthenticated"), "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("admin.token_file"))
            .count(),
        1,
        "{stderr}"
    );

    // Said in so many words, it starts: check-config accepts it.
    dir.write("pollgate.toml", "[admin]\nallow_unauthenticated = true\n");
    let out = command(&dir)
        .args([
            "check-config",
            "--config",
            "pollgate.toml",
            "--admin-listen",
            "0.0.0.0:0",
        ])
        .output()
        .await
        .expect("run pollgate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn an_unusable_certificate_stops_the_start_with_one_line_naming_the_key() {
    let dir = TempDir::new("badcert");
    let junk = dir.write("cert.pem", "not a certificate\n");
    dir.write(
        "pollgate.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert_file = {0}\nkey_file = {0}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n",
            toml_path(&junk)
        ),
    );
    let out = command(&dir)
        .args([
            "--config",
            "pollgate.toml",
            "--upstream",
            "http://127.0.0.1:9",
        ])
        .output()
        .await
        .expect("run pollgate");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("`server.tls.cert_file`"), "{stderr}");
    assert!(
        !stdout.contains("server.tls.cert_file"),
        "printed twice: {stdout}"
    );
    assert!(!stdout.contains("pollgate started"), "{stdout}");
}
