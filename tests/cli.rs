//! The `pollgate` binary: configuration errors stop it with a message naming the key, precedence
//! flag > env > file > default, the shipped `config.toml` is valid, and a real process serves
//! and exits cleanly on SIGTERM.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};

const BIN: &str = env!("CARGO_BIN_EXE_pollgate");

/// Every variable the binary reads; removed so the developer's environment cannot leak in.
const ENV_VARS: [&str; 8] = [
    "POLLGATE_REDIS_URL",
    "POLLGATE_FLEET_SECRET",
    "POLLGATE_CONFIG",
    "POLLGATE_LISTEN",
    "POLLGATE_UPSTREAM",
    "POLLGATE_ADMIN_LISTEN",
    "POLLGATE_TTL",
    "POLLGATE_LOG_FORMAT",
];

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "pollgate-cli-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A command for the binary, run in `cwd` with a clean `POLLGATE_*` environment.
fn pollgate(cwd: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.current_dir(cwd);
    for v in ENV_VARS {
        cmd.env_remove(v);
    }
    cmd
}

fn run(cmd: &mut std::process::Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run pollgate")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The `ttl: ...` line of the cache section in `check-config`'s Debug output.
fn printed_ttl(out: &str) -> Option<String> {
    out.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("ttl: "))
        .map(|v| v.trim_end_matches(',').to_owned())
}

#[test]
fn unknown_key_in_config_file_is_fatal_and_named() {
    let dir = TempDir::new();
    let cfg = dir.file("bad.toml", "[cache]\nttl = \"1s\"\ntll_typo_key = \"2s\"\n");
    let out = run(pollgate(&dir.0)
        .arg("check-config")
        .arg("--config")
        .arg(&cfg));
    assert!(!out.status.success(), "exit {:?}", out.status);
    assert!(
        stderr(&out).contains("`cache.tll_typo_key`"),
        "stderr must name the key with its table: {}",
        stderr(&out)
    );
    // The same file stops `serve` before it binds.
    let out = run(pollgate(&dir.0).arg("--config").arg(&cfg).args([
        "--listen",
        "127.0.0.1:1",
        "--admin-listen",
        "127.0.0.1:1",
    ]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("tll_typo_key"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("cannot listen"),
        "it stopped before binding: {}",
        stderr(&out)
    );
}

#[test]
fn unknown_section_is_fatal_and_named() {
    let dir = TempDir::new();
    assert_config_rejected(&dir, "bad.toml", "[cachee]\nttl = \"1s\"\n", "cachee");
}

/// `check-config` on a file with `contents` fails and its stderr names `key`.
fn assert_config_rejected(dir: &TempDir, name: &str, contents: &str, key: &str) {
    let cfg = dir.file(name, contents);
    let out = run(pollgate(&dir.0)
        .arg("check-config")
        .arg("--config")
        .arg(&cfg));
    assert!(!out.status.success());
    assert!(stderr(&out).contains(key), "{}", stderr(&out));
}

#[test]
fn bad_value_is_fatal_and_names_the_key() {
    let dir = TempDir::new();
    assert_config_rejected(&dir, "bad.toml", "[cache]\nttl = \"abc\"\n", "ttl");

    assert_config_rejected(
        &dir,
        "bad2.toml",
        "[server]\nlisten = \"not-an-address\"\n",
        "server.listen",
    );

    assert_config_rejected(
        &dir,
        "bad3.toml",
        "[upstream]\nurl = \"ftp://example.com\"\n",
        "upstream.url",
    );
}

#[test]
fn zero_ttl_flag_is_fatal_and_names_cache_ttl() {
    let dir = TempDir::new();
    let out = run(pollgate(&dir.0).args(["check-config", "--ttl", "0s"]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cache.ttl"), "{}", stderr(&out));
    // And for `serve` (the default command) too, before binding.
    let out = run(pollgate(&dir.0).args(["--ttl", "0s", "--listen", "127.0.0.1:1"]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cache.ttl"), "{}", stderr(&out));
}

#[test]
fn missing_config_file_is_fatal() {
    let dir = TempDir::new();
    let out = run(pollgate(&dir.0).args(["check-config", "--config", "does-not-exist.toml"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does-not-exist.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn shipped_config_toml_is_valid() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    assert!(shipped.is_file(), "config.toml ships at the top level");
    let dir = TempDir::new();
    let out = run(pollgate(&dir.0)
        .arg("check-config")
        .arg("--config")
        .arg(&shipped));
    assert!(
        out.status.success(),
        "shipped config.toml must pass check-config: {}",
        stderr(&out)
    );
    let printed = stdout(&out);
    assert!(
        printed.contains("api.cloud.llamaindex.ai"),
        "shipped config points at the real API: {printed}"
    );
    assert!(printed.contains("127.0.0.1:8080"), "{printed}");
    assert!(printed.contains("127.0.0.1:9090"), "{printed}");
    // It spells out the defaults: loading it gives the built-in configuration.
    let defaults = run(pollgate(&dir.0).arg("check-config"));
    assert!(defaults.status.success(), "{}", stderr(&defaults));
    assert_eq!(
        printed,
        stdout(&defaults),
        "config.toml lists every key with its default"
    );
}

#[test]
fn precedence_is_flag_then_env_then_file_then_default() {
    let dir = TempDir::new();
    let check = |env: Option<&str>, flag: Option<&str>, file: bool| -> Option<String> {
        let mut cmd = pollgate(&dir.0);
        cmd.arg("check-config");
        if file {
            let cfg = dir.file("ttl.toml", "[cache]\nttl = \"5s\"\n");
            cmd.arg("--config").arg(cfg);
        }
        if let Some(e) = env {
            cmd.env("POLLGATE_TTL", e);
        }
        if let Some(f) = flag {
            cmd.args(["--ttl", f]);
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "{}", stderr(&out));
        printed_ttl(&stdout(&out))
    };
    assert_eq!(check(None, None, false).as_deref(), Some("2s"), "default");
    assert_eq!(check(None, None, true).as_deref(), Some("5s"), "file");
    assert_eq!(check(Some("7s"), None, true).as_deref(), Some("7s"), "env");
    assert_eq!(
        check(Some("7s"), Some("3s"), true).as_deref(),
        Some("3s"),
        "flag over env"
    );
    assert_eq!(
        check(None, Some("750ms"), false).as_deref(),
        Some("750ms"),
        "humantime flag"
    );

    // Other flags and their variables.
    let mut cmd = pollgate(&dir.0);
    cmd.env("POLLGATE_LISTEN", "127.0.0.1:18081")
        .env("POLLGATE_UPSTREAM", "http://127.0.0.1:18999/prefix")
        .args(["check-config", "--admin-listen", "127.0.0.1:19091"]);
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("127.0.0.1:18081"), "{printed}");
    assert!(printed.contains("127.0.0.1:18999/prefix"), "{printed}");
    assert!(printed.contains("127.0.0.1:19091"), "{printed}");
}

/// A loopback port that was free a moment ago.
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

#[test]
fn busy_listen_address_is_fatal_and_named() {
    let dir = TempDir::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let admin = free_port().to_string();
    let out = run(pollgate(&dir.0).args([
        "--listen",
        &addr,
        "--admin-listen",
        &admin,
        "--upstream",
        "http://127.0.0.1:9",
    ]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("server.listen"), "{}", stderr(&out));
    drop(busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_and_exits_cleanly_on_sigterm() {
    let sim = pollgate_sim::SimUpstream::new(pollgate_sim::SimOptions::default());
    let upstream = sim.clone().spawn().await;
    let dir = TempDir::new();
    let listen = free_port();
    let admin = free_port();
    let mut cmd = tokio::process::Command::new(BIN);
    for v in ENV_VARS {
        cmd.env_remove(v);
    }
    let mut child = cmd
        .current_dir(&dir.0)
        .args([
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            &admin.to_string(),
            "--upstream",
            &format!("http://{upstream}"),
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "pollgate=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pollgate");

    let client = TestClient::new();
    let health = format!("http://{admin}/healthz");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut up = false;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("pollgate exited early: {status}");
        }
        if tokio::net::TcpStream::connect(admin).await.is_ok() {
            up = client
                .send(Method::GET, &health, &[], Bytes::new())
                .await
                .status
                == StatusCode::OK;
            if up {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "/healthz did not answer within 10s");

    let auth = bearer(TOKEN_A);
    let url = format!("http://{listen}{}", items_path(JOB_A, "limit=10"));
    let r = client
        .send(
            Method::GET,
            &url,
            &[("authorization", auth.as_str())],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.cache_status(), "pollgate; fwd=miss; stored");
    let r2 = client
        .send(
            Method::GET,
            &url,
            &[("authorization", auth.as_str())],
            Bytes::new(),
        )
        .await;
    assert!(r2.cache_status().starts_with("pollgate; hit"));
    assert_eq!(upstream_item_requests(&sim, JOB_A).len(), 1);
    drop(client); // close pooled connections

    let pid = child.id().expect("child pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("pollgate exits within 10s of SIGTERM")
        .expect("wait");
    assert!(output.status.success(), "exit status {}", output.status);
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        logs.contains("pollgate::access"),
        "one access line per request expected in the logs: {logs}"
    );
    assert!(
        !logs.contains(TOKEN_A),
        "a credential leaked into the logs: {logs}"
    );
}
