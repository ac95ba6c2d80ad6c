//! Configuration reload: a TTL changes live and pages already cached follow it (none is
//! dropped), a listen-address change is refused with a warning naming the key while the rest
//! applies, and an invalid file changes nothing and is answered 400 with every bad key.

use http::{Method, StatusCode};
use serde_json::Value;

use super::gateway::Edge;
use super::pki::TempDir;
use crate::common::*;

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_new_ttl_applies_to_pages_already_cached() {
    let e = Edge::start(
        TempDir::new("reload-ttl"),
        "[cache]\nttl = \"1h\"\nterminal_ttl = \"1h\"\nstale_while_revalidate = \"1h\"\n",
    )
    .await;
    let path = items_path(JOB_A, "limit=5");
    let auth = bearer(TOKEN_A);
    let url = format!("http://{}{path}", e.addr);
    let headers = [("authorization", auth.as_str())];
    let get = || {
        e.client
            .send(Method::GET, &url, &headers, bytes::Bytes::new())
    };
    assert_eq!(get().await.cache_status(), "pollgate; fwd=miss; stored");
    assert!(get().await.cache_status().starts_with("pollgate; hit"));
    assert_eq!(key_requests(&e.sim, JOB_A, "limit=5"), 1);

    e.rewrite("[cache]\nttl = \"200ms\"\nterminal_ttl = \"1h\"\nstale_while_revalidate = \"1h\"\n");
    let r = e.admin(Method::POST, "/reload", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    assert_eq!(names(&body["changed"]), ["cache.ttl"], "{body}");
    assert!(names(&body["restart_required"]).is_empty(), "{body}");
    assert!(body["took_ms"].as_f64().is_some(), "{body}");

    // The page cached under the 1 h TTL goes stale 200 ms after it was fetched: it is still
    // there (served stale while one refresh runs), not dropped by the reload.
    let stale = wait_for(secs(5), || async {
        get()
            .await
            .cache_status()
            .contains("stale-while-revalidate")
    })
    .await;
    assert!(stale, "the cached page did not follow the new TTL");
    let metrics = e.admin(Method::GET, "/metrics", None).await.text();
    assert_eq!(
        metric_value(
            &metrics,
            "pollgate_config_reloads_total{result=\"success\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metric_value(
            &metrics,
            "pollgate_config_last_reload_success_timestamp_seconds"
        )
        .is_some_and(|t| t > 1.7e9),
        "{metrics}"
    );
    e.shutdown().await;
}

#[tokio::test]
async fn a_listen_change_keeps_the_running_address_and_says_so() {
    let logs = capture_logs();
    let e = Edge::start(TempDir::new("reload-listen"), "[cache]\nttl = \"2s\"\n").await;
    let before = e.gateway.config();
    e.rewrite("[server]\nlisten = \"127.0.0.1:1\"\n[cache]\nttl = \"3s\"\n");
    let r = e.admin(Method::POST, "/reload", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    assert_eq!(
        names(&body["restart_required"]),
        ["server.listen"],
        "{body}"
    );
    assert_eq!(names(&body["changed"]), ["cache.ttl"], "{body}");
    let after = e.gateway.config();
    assert_eq!(after.server.listen, before.server.listen);
    assert_eq!(after.cache.ttl, secs(3));
    assert!(
        wait_until(secs(2), || {
            logs.text().lines().any(|l| {
                l.contains("WARN") && l.contains("key=\"server.listen\"")
                    || l.contains("key=server.listen")
            })
        })
        .await,
        "no warning naming server.listen: {}",
        logs.text()
    );
    // Still serving on the listener it started with.
    let r = e
        .client
        .send(
            Method::GET,
            &format!("http://{}/echo/x", e.addr),
            &[],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    e.shutdown().await;
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_and_names_every_bad_key() {
    let e = Edge::start(TempDir::new("reload-invalid"), "[cache]\nttl = \"2s\"\n").await;
    let before = e.gateway.config();
    e.rewrite("[cache]\nttl = \"0s\"\nmax_waiters = 0\n[backoff]\ndefault_retry_after = \"0s\"\n");
    let r = e.admin(Method::POST, "/reload", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let body = r.json();
    let errors = names(&body["errors"]).join("\n");
    for key in [
        "cache.ttl",
        "cache.max_waiters",
        "backoff.default_retry_after",
    ] {
        assert!(
            errors.contains(&format!("`{key}`")),
            "{key} not named: {errors}"
        );
    }
    assert_eq!(
        *e.gateway.config(),
        *before,
        "an invalid file changed the configuration"
    );

    // Not TOML at all: refused too, with the position.
    e.rewrite("[cache\nttl = 1\n");
    let r = e.admin(Method::POST, "/reload", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("line 1"), "{}", r.text());
    assert_eq!(*e.gateway.config(), *before);
    let metrics = e.admin(Method::GET, "/metrics", None).await.text();
    assert_eq!(
        metric_value(
            &metrics,
            "pollgate_config_reloads_total{result=\"failure\"}"
        ),
        Some(2.0)
    );
    e.shutdown().await;
}
