//! An HTTPS upstream signed by a test CA (rcgen): pollgate trusts it only when the CA is
//! configured as `upstream.extra_ca_file`, and negotiates HTTP/2 by ALPN when offered.
//!
//! The upstream is a TLS-terminating relay (tokio-rustls) in front of the simulated upstream,
//! which speaks HTTP/1.1 and h2c, so whatever protocol the TLS session carries reaches it intact.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::StatusCode;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

struct TestPki {
    ca_pem: String,
    leaf_der: CertificateDer<'static>,
    leaf_key: PrivateKeyDer<'static>,
}

/// A CA and a leaf for `localhost` and 127.0.0.1 signed by it.
fn make_pki() -> TestPki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "pollgate test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("self-signed CA");

    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .expect("leaf signed by CA");
    TestPki {
        ca_pem: ca_cert.pem(),
        leaf_der: leaf_cert.der().clone(),
        leaf_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// A temp file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(stem: &str, contents: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "pollgate-{stem}-{}-{}.pem",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What the relay saw: completed handshakes and the ALPN protocol of each.
#[derive(Default)]
struct RelayLog {
    handshakes: AtomicUsize,
    alpn: Mutex<Vec<Option<Vec<u8>>>>,
}

/// Start a TLS relay on 127.0.0.1 in front of `backend`, offering `alpn`.
async fn tls_relay(
    pki: &TestPki,
    backend: SocketAddr,
    alpn: Vec<Vec<u8>>,
) -> (SocketAddr, Arc<RelayLog>) {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![pki.leaf_der.clone()], pki.leaf_key.clone_key())
    .expect("server cert");
    config.alpn_protocols = alpn;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let addr = listener.local_addr().expect("addr");
    let log = Arc::new(RelayLog::default());
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let log = log2.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                log.handshakes.fetch_add(1, Ordering::Relaxed);
                log.alpn
                    .lock()
                    .expect("lock")
                    .push(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec));
                let Ok(mut back) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
            });
        }
    });
    (addr, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_trusted_through_the_extra_ca() {
    let pki = make_pki();
    let ca = TempFile::new("test-ca", &pki.ca_pem);
    let sim = pollgate_sim::SimUpstream::new(pollgate_sim::SimOptions::default());
    let backend = sim.clone().spawn().await;
    let (relay, log) = tls_relay(&pki, backend, vec![b"http/1.1".to_vec()]).await;

    let ca_path = ca.0.clone();
    let h = Harness::start_with(sim, backend, move |c| {
        c.upstream.url = format!("https://127.0.0.1:{}", relay.port())
            .parse()
            .expect("uri");
        c.upstream.extra_ca_file = Some(ca_path);
    })
    .await;
    let p = items_path(JOB_A, "limit=10");
    let r = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.cache_status(), "pollgate; fwd=miss; stored");
    assert_eq!(r.json()["items"].as_array().map(Vec::len), Some(10));
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 1);
    assert!(log.handshakes.load(Ordering::Relaxed) >= 1);

    // A passthrough request over the same TLS upstream, and the upstream's Host.
    let echo = h.get("/echo/tls", Some(TOKEN_A)).await;
    assert_eq!(echo.status, StatusCode::OK, "{}", echo.text());
    assert_eq!(
        echo.json()["headers"]["host"],
        serde_json::json!([format!("127.0.0.1:{}", relay.port())])
    );
    drop(ca);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_h2_alpn_and_localhost_name() {
    let pki = make_pki();
    let ca = TempFile::new("test-ca-h2", &pki.ca_pem);
    let sim = pollgate_sim::SimUpstream::new(pollgate_sim::SimOptions::default());
    let backend = sim.clone().spawn().await;
    let (relay, log) = tls_relay(&pki, backend, vec![b"h2".to_vec(), b"http/1.1".to_vec()]).await;

    let ca_path = ca.0.clone();
    let h = Harness::start_with(sim, backend, move |c| {
        c.upstream.url = format!("https://localhost:{}", relay.port())
            .parse()
            .expect("uri");
        c.upstream.extra_ca_file = Some(ca_path);
    })
    .await;
    let r = h.get(&items_path(JOB_A, "limit=3"), Some(TOKEN_A)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 1);
    let alpn = log.alpn.lock().expect("lock").clone();
    assert!(
        alpn.iter().any(|p| p.as_deref() == Some(b"h2".as_slice())),
        "HTTP/2 negotiated by ALPN when offered: {alpn:?}"
    );
    drop(ca);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_without_the_ca_is_a_502() {
    let pki = make_pki();
    let sim = pollgate_sim::SimUpstream::new(pollgate_sim::SimOptions::default());
    let backend = sim.clone().spawn().await;
    let (relay, _log) = tls_relay(&pki, backend, vec![b"http/1.1".to_vec()]).await;

    let h = Harness::start_with(sim, backend, move |c| {
        c.upstream.url = format!("https://127.0.0.1:{}", relay.port())
            .parse()
            .expect("uri");
        c.upstream.connect_timeout = Duration::from_secs(2);
    })
    .await;
    let logs = capture_logs();
    for path in [items_path(JOB_A, "limit=10"), "/echo/untrusted".to_owned()] {
        let r = h.get(&path, Some(TOKEN_A)).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{path}: {}", r.text());
        // The client gets a short, fixed detail, never the internal error chain.
        assert_eq!(r.json()["detail"], "upstream unreachable", "{}", r.text());
    }
    // The log has the chain: the reason is the untrusted certificate, not some other
    // failure, next to the credential's fingerprint (never the token).
    let text = logs.text();
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("fill failed") || l.contains("passthrough failed"))
        .collect();
    assert_eq!(failures.len(), 2, "one log line per failure:\n{text}");
    for line in failures {
        assert!(line.to_lowercase().contains("certificate"), "{line}");
        assert!(line.contains("credential="), "{line}");
        assert!(!line.contains(TOKEN_A), "{line}");
    }
    assert_eq!(
        h.sim.request_count(),
        0,
        "nothing reaches an untrusted upstream"
    );
}
