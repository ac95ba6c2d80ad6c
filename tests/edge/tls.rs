//! TLS on the client listener: HTTPS with ALPN choosing h2 or HTTP/1.1 on one port, TLS 1.2
//! and 1.3, `X-Forwarded-Proto: https`, mTLS, the handshake timeout, and certificate
//! reloads that keep open connections and refuse a bad pair.

use http::{StatusCode, Version};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::gateway::Edge;
use super::https::{alpn, server_cert, ClientTls, Conn};
use super::pki::{install, toml_path, Pki, TempDir};
use crate::common::*;

/// `[server.tls]` for `cert` and `key`, plus `extra` lines.
fn tls_section(dir: &TempDir, extra: &str) -> String {
    format!(
        "[server.tls]\ncert_file = {}\nkey_file = {}\n{extra}\n",
        toml_path(&dir.path("cert.pem")),
        toml_path(&dir.path("key.pem")),
    )
}

fn auth() -> String {
    bearer(TOKEN_A)
}

#[tokio::test]
async fn https_serves_h2_and_http1_on_one_port_by_alpn() {
    let pki = Pki::new("edge CA");
    let dir = TempDir::new("tls-alpn");
    install(&dir, &pki.server("first"));
    let toml = tls_section(&dir, "");
    let e = Edge::start(dir, &toml).await;
    let path = items_path(JOB_A, "limit=5");
    let auth = auth();

    let h2 = ClientTls::new(&pki.ca_pem)
        .connect(e.addr)
        .await
        .expect("TLS");
    assert_eq!(alpn(&h2).as_deref(), Some(b"h2".as_slice()));
    let mut conn = Conn::open(h2).await;
    let r = conn
        .get(&path, &[("authorization", &auth)])
        .await
        .expect("h2 GET");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.version, Version::HTTP_2);
    let again = conn
        .get(&path, &[("authorization", &auth)])
        .await
        .expect("h2 GET");
    let cs = again.headers["cache-status"].to_str().expect("ascii");
    assert!(cs.starts_with("pollgate; hit"), "{cs}");

    let h1 = ClientTls::new(&pki.ca_pem)
        .http1_only()
        .connect(e.addr)
        .await
        .expect("TLS");
    assert_eq!(alpn(&h1).as_deref(), Some(b"http/1.1".as_slice()));
    let mut conn = Conn::open(h1).await;
    let r = conn
        .get(&path, &[("authorization", &auth)])
        .await
        .expect("h1 GET");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.version, Version::HTTP_11);

    // TLS 1.2 clients are served too.
    let tls12 = ClientTls::new(&pki.ca_pem)
        .tls12()
        .connect(e.addr)
        .await
        .expect("TLS 1.2");
    assert_eq!(
        tls12.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );

    // A passthrough request tells the upstream the client came over TLS.
    let echo = conn
        .get("/echo/x", &[("authorization", &auth)])
        .await
        .expect("echo");
    let echo: serde_json::Value = serde_json::from_slice(&echo.body).expect("echo JSON");
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https", "{echo}");
    e.shutdown().await;
}

#[tokio::test]
async fn https_works_with_per_core_workers() {
    let pki = Pki::new("edge CA");
    let dir = TempDir::new("tls-workers");
    install(&dir, &pki.server("first"));
    let toml = format!("[server]\nworkers = 2\n{}", tls_section(&dir, ""));
    let e = Edge::start(dir, &toml).await;
    let path = items_path(JOB_A, "limit=5");
    // Several connections, so both workers' sockets take some.
    for _ in 0..6 {
        let r = ClientTls::new(&pki.ca_pem)
            .get_once(e.addr, &path)
            .await
            .expect("GET over TLS");
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.version, Version::HTTP_2);
    }
    e.shutdown().await;
}

#[tokio::test]
async fn mtls_refuses_a_client_without_a_certificate_and_serves_one_with() {
    let pki = Pki::new("edge CA");
    let clients = Pki::new("client CA");
    let stranger = Pki::new("other CA");
    let dir = TempDir::new("tls-mtls");
    install(&dir, &pki.server("server"));
    let ca = dir.write("clients.pem", &clients.ca_pem);
    let toml = tls_section(&dir, &format!("client_ca_file = {}", toml_path(&ca)));
    let e = Edge::start(dir, &toml).await;
    let path = items_path(JOB_A, "limit=5");

    // No certificate: the server refuses the handshake (TLS 1.3 reports it on first use).
    let refused = ClientTls::new(&pki.ca_pem).get_once(e.addr, &path).await;
    assert!(
        refused.is_err(),
        "a client without a certificate was served"
    );

    // A certificate from another CA: refused as well.
    let foreign = ClientTls::new(&pki.ca_pem)
        .with_identity(&stranger.client("mallory"))
        .get_once(e.addr, &path)
        .await;
    assert!(foreign.is_err(), "a client of another CA was served");
    let metrics = e.admin(http::Method::GET, "/metrics", None).await.text();
    let refused = metric_value(
        &metrics,
        "pollgate_tls_handshake_failures_total{listener=\"server\",reason=\"error\"}",
    );
    assert_eq!(refused, Some(2.0), "{metrics}");

    let r = ClientTls::new(&pki.ca_pem)
        .with_identity(&clients.client("worker-1"))
        .get_once(e.addr, &path)
        .await
        .expect("GET with a client certificate");
    assert_eq!(r.status, StatusCode::OK);
    e.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_handshakes_is_cut_off() {
    let pki = Pki::new("edge CA");
    let dir = TempDir::new("tls-timeout");
    install(&dir, &pki.server("server"));
    let toml = tls_section(&dir, "handshake_timeout = \"300ms\"");
    let e = Edge::start(dir, &toml).await;
    let mut idle = TcpStream::connect(e.addr).await.expect("connect");
    // The server closes the connection: the read ends (EOF or reset) well within the bound.
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(secs(5), idle.read(&mut buf)).await;
    match closed {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("the server sent {n} bytes to a silent client"),
        Err(_) => panic!("a silent client still held its connection after 5 s"),
    }
    // The listener still serves.
    let stream = ClientTls::new(&pki.ca_pem)
        .connect(e.addr)
        .await
        .expect("TLS");
    let mut conn = Conn::open(stream).await;
    let r = conn.get("/echo/x", &[]).await.expect("GET");
    assert_eq!(r.status, StatusCode::OK);
    let metrics = e.admin(http::Method::GET, "/metrics", None).await.text();
    assert_eq!(
        metric_value(
            &metrics,
            "pollgate_tls_handshake_failures_total{listener=\"server\",reason=\"timeout\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    e.shutdown().await;
}

#[tokio::test]
async fn a_reloaded_certificate_serves_new_connections_and_keeps_open_ones() {
    let pki = Pki::new("edge CA");
    let dir = TempDir::new("tls-reload");
    let first = pki.server("first");
    install(&dir, &first);
    let toml = tls_section(&dir, "");
    let e = Edge::start(dir, &toml).await;
    let auth = auth();
    let path = items_path(JOB_A, "limit=5");

    let stream = ClientTls::new(&pki.ca_pem)
        .http1_only()
        .connect(e.addr)
        .await
        .expect("TLS");
    assert_eq!(server_cert(&stream), first.der);
    let mut kept = Conn::open(stream).await;
    assert_eq!(
        kept.get(&path, &[("authorization", &auth)])
            .await
            .expect("GET")
            .status,
        StatusCode::OK
    );

    // Swap the files and reload (the same path SIGHUP takes; `signals` sends a real one).
    let second = pki.server("second");
    install(&e.dir, &second);
    e.reloader.reload("test").expect("reload");
    let fresh = ClientTls::new(&pki.ca_pem)
        .connect(e.addr)
        .await
        .expect("TLS");
    assert_eq!(
        server_cert(&fresh),
        second.der,
        "a new connection sees the new certificate"
    );
    // The connection opened before the reload keeps working.
    let r = kept
        .get(&path, &[("authorization", &auth)])
        .await
        .expect("kept-alive GET");
    assert_eq!(r.status, StatusCode::OK);
    e.shutdown().await;
}

#[tokio::test]
async fn a_bad_certificate_on_reload_keeps_the_old_one() {
    let pki = Pki::new("edge CA");
    let dir = TempDir::new("tls-bad");
    let first = pki.server("first");
    install(&dir, &first);
    let toml = tls_section(&dir, "");
    let e = Edge::start(dir, &toml).await;

    // A key that does not go with the certificate, then a file that is not PEM at all.
    let other = pki.server("other");
    e.dir.write("key.pem", &other.key_pem);
    let err = e
        .reloader
        .reload("test")
        .expect_err("a mismatched pair is refused");
    assert!(
        err.problems()
            .iter()
            .any(|p| p.contains("server.tls.key_file")),
        "{:?}",
        err.problems()
    );
    e.dir.write("cert.pem", "not a certificate\n");
    assert!(e.reloader.reload("test").is_err());

    let stream = ClientTls::new(&pki.ca_pem)
        .connect(e.addr)
        .await
        .expect("TLS");
    assert_eq!(server_cert(&stream), first.der, "the old certificate stays");
    let metrics = e.admin(http::Method::GET, "/metrics", None).await.text();
    assert_eq!(
        metric_value(
            &metrics,
            "pollgate_config_reloads_total{result=\"failure\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    e.shutdown().await;
}

#[tokio::test]
async fn a_certificate_renewed_on_disk_is_picked_up_without_a_signal() {
    let pki = Pki::new("edge CA");
    let dir = TempDir::new("tls-watch");
    install(&dir, &pki.server("first"));
    let toml = tls_section(&dir, "");
    let e = Edge::start(dir, &toml).await;
    let second = pki.server("second");
    install(&e.dir, &second);
    let ca = pki.ca_pem.clone();
    let addr = e.addr;
    let seen = wait_for(secs(5), || {
        let ca = ca.clone();
        let want = second.der.clone();
        async move {
            match ClientTls::new(&ca).connect(addr).await {
                Ok(s) => server_cert(&s) == want,
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(seen, "the renewed certificate was not picked up within 5 s");
    e.shutdown().await;
}
