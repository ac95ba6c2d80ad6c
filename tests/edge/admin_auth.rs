//! The admin token: purges, `POST /reload` and `/metrics` need it, health stays open, the
//! token is re-read on reload; an admin listener off loopback without one does not start;
//! the admin listener speaks TLS when configured.

use http::{Method, StatusCode};

use super::gateway::Edge;
use super::https::{ClientTls, Conn};
use super::pki::{toml_path, Pki, TempDir};
use crate::common::*;

const TOKEN: &str = "admin-token-0123456789";

fn with_token(dir: &TempDir, token: &str, extra: &str) -> String {
    let file = dir.write("admin.token", &format!("{token}\n"));
    format!("[admin]\ntoken_file = {}\n{extra}\n", toml_path(&file))
}

#[tokio::test]
async fn guarded_endpoints_need_the_token_and_health_stays_open() {
    let dir = TempDir::new("admin-token");
    let toml = with_token(&dir, TOKEN, "");
    let e = Edge::start(dir, &toml).await;

    for (method, path) in [
        (Method::DELETE, "/cache"),
        (
            Method::DELETE,
            format!("/cache/jobs/{JOB_A}").leak() as &str,
        ),
        (Method::POST, "/reload"),
        (Method::GET, "/metrics"),
    ] {
        let none = e.admin(method.clone(), path, None).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(
            none.header("www-authenticate"),
            Some("Bearer realm=\"pollgate-admin\"")
        );
        let wrong = e
            .admin(method.clone(), path, Some("admin-token-0123456788"))
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let short = e.admin(method.clone(), path, Some("a")).await;
        assert_eq!(short.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let ok = e.admin(method.clone(), path, Some(TOKEN)).await;
        assert_eq!(ok.status, StatusCode::OK, "{method} {path}: {}", ok.text());
    }
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            e.admin(Method::GET, path, None).await.status,
            StatusCode::OK
        );
    }
    e.shutdown().await;
}

#[tokio::test]
async fn metrics_can_stay_open_and_a_new_token_applies_on_reload() {
    let dir = TempDir::new("admin-rotate");
    let toml = with_token(&dir, TOKEN, "protect_metrics = false");
    let e = Edge::start(dir, &toml).await;
    assert_eq!(
        e.admin(Method::GET, "/metrics", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        e.admin(Method::DELETE, "/cache", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    let rotated = "rotated-token-9876543210";
    let toml = with_token(&e.dir, rotated, "protect_metrics = false");
    e.rewrite(&toml);
    let r = e.admin(Method::POST, "/reload", Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        e.admin(Method::DELETE, "/cache", Some(TOKEN)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        e.admin(Method::DELETE, "/cache", Some(rotated))
            .await
            .status,
        StatusCode::OK
    );
    e.shutdown().await;
}

#[tokio::test]
async fn the_admin_listener_speaks_tls_when_configured() {
    let pki = Pki::new("admin CA");
    let dir = TempDir::new("admin-tls");
    let leaf = pki.server("admin");
    let cert = dir.write("admin-cert.pem", &leaf.cert_pem);
    let key = dir.write("admin-key.pem", &leaf.key_pem);
    let toml = format!(
        "{}[admin.tls]\ncert_file = {}\nkey_file = {}\n",
        with_token(&dir, TOKEN, ""),
        toml_path(&cert),
        toml_path(&key)
    );
    let e = Edge::start(dir, &toml).await;
    let stream = ClientTls::new(&pki.ca_pem)
        .connect(e.admin)
        .await
        .expect("TLS");
    let mut conn = Conn::open(stream).await;
    assert_eq!(
        conn.get("/healthz", &[]).await.expect("GET").status,
        StatusCode::OK
    );
    let auth = format!("Bearer {TOKEN}");
    let r = conn
        .get("/metrics", &[("authorization", &auth)])
        .await
        .expect("GET");
    assert_eq!(r.status, StatusCode::OK);
    e.shutdown().await;
}
