//! Tenancy: pages are keyed by credential (bearer token or session cookie), so one tenant
//! never sees another's page, not even when both ask for it at the same moment.

use crate::common::*;
use http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn tenants_never_see_each_others_pages() {
    let h = Harness::start(|_| {}).await;
    let p = items_path(JOB_A, "limit=10");

    let a = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.cache_status(), "pollgate; fwd=miss; stored");

    let b = h.get(&p, Some(TOKEN_B)).await;
    assert_eq!(b.status, StatusCode::NOT_FOUND, "{}", b.text());
    assert_eq!(b.json(), json!({"detail": "Job not found"}));
    assert_ne!(b.body, a.body);
    assert!(
        !b.cache_status().contains("hit"),
        "B must not be served from A's entry: {}",
        b.cache_status()
    );
    let seen = upstream_item_requests(&h.sim, JOB_A);
    assert_eq!(seen.len(), 2, "B's request went upstream");
    assert_eq!(seen[1].token.as_deref(), Some(TOKEN_B));
    assert_eq!(
        seen[1]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some(bearer(TOKEN_B).as_str())
    );

    // A 404 is not stored: B asks again, upstream answers again.
    let b2 = h.get(&p, Some(TOKEN_B)).await;
    assert_eq!(b2.status, StatusCode::NOT_FOUND);
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 3);

    // A's entry is intact.
    let a2 = h.get(&p, Some(TOKEN_A)).await;
    assert!(a2.cache_status().starts_with("pollgate; hit"));
    assert_eq!(a2.body, a.body);
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 3);
}

#[tokio::test]
async fn session_cookie_is_a_credential_keyed_apart_from_bearer() {
    let h = Harness::start(|_| {}).await;
    let p = items_path(JOB_A, "limit=5");
    let cookie = format!("theme=dark; session={TOKEN_A}");

    let bearer_a = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(bearer_a.cache_status(), "pollgate; fwd=miss; stored");

    let c1 = h.get_with(&p, &[("cookie", cookie.as_str())]).await;
    assert_eq!(c1.status, StatusCode::OK, "{}", c1.text());
    assert_eq!(
        c1.cache_status(),
        "pollgate; fwd=miss; stored",
        "the cookie credential has its own key"
    );
    let seen = upstream_item_requests(&h.sim, JOB_A);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].token.as_deref(), Some(TOKEN_A));
    assert!(seen[1].headers.get("authorization").is_none());

    let c2 = h.get_with(&p, &[("cookie", cookie.as_str())]).await;
    assert!(
        c2.cache_status().starts_with("pollgate; hit"),
        "{}",
        c2.cache_status()
    );
    assert_eq!(c2.body, c1.body);

    // Tenant B's cookie is another tenant again.
    let b_cookie = format!("session={TOKEN_B}");
    let b = h.get_with(&p, &[("cookie", b_cookie.as_str())]).await;
    assert_eq!(b.status, StatusCode::NOT_FOUND, "{}", b.text());
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 3);

    // No credential at all: passed through, not cached, upstream says 401.
    let anon = h.get(&p, None).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anon.cache_status(), "pollgate; fwd=bypass");
    let anon2 = h.get(&p, None).await;
    assert_eq!(anon2.status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 5);
}

#[tokio::test]
async fn concurrent_fetches_are_never_shared_across_credentials() {
    let (h, gate) = Harness::start_gated(|_| {}).await;
    // The fetches are held at the gate until every request has joined one.
    gate.close();
    let path = items_path(JOB_A, "limit=4");
    // Interleaved: tenant A and tenant B ask for the same page at the same moment.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let token = if i % 2 == 0 { TOKEN_A } else { TOKEN_B };
            (token, spawn_get(&h, &path, token, &[]))
        })
        .collect();
    metric_reaches(&h, "pollgate_coalesced_waiters_total", 38.0, secs(10)).await;
    gate.open();
    for (token, task) in tasks {
        let (res, _) = task.await.expect("task");
        if token == TOKEN_A {
            assert_eq!(res.status, StatusCode::OK, "{}", res.text());
            assert!(res.json()["items"].is_array());
        } else {
            assert_eq!(
                res.status,
                StatusCode::NOT_FOUND,
                "B must get the upstream's answer for B: {}",
                res.text()
            );
        }
    }
    let seen = upstream_item_requests(&h.sim, JOB_A);
    let tokens: Vec<_> = seen
        .iter()
        .map(|r| r.token.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        seen.len(),
        2,
        "one fetch per credential, not one shared: {tokens:?}"
    );
    assert!(tokens.contains(&TOKEN_A.to_owned()) && tokens.contains(&TOKEN_B.to_owned()));
}
