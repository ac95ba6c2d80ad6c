//! The admin listener: health and readiness, purges of one job or everything, and metrics
//! that count requests by route and result and report every shielding event.

use crate::common::*;
use http::{Method, StatusCode};
use tokio::time::sleep;

#[tokio::test]
async fn admin_health_metrics_and_purges() {
    let h = Harness::start(|_| {}).await;
    let health = h.admin(Method::GET, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = h.admin(Method::GET, "/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);

    let p = items_path(JOB_A, "limit=10");
    let other = items_path(JOB_A_DONE, "limit=10");
    assert_eq!(
        h.get(&p, Some(TOKEN_A)).await.cache_status(),
        "pollgate; fwd=miss; stored"
    );
    assert!(h
        .get(&p, Some(TOKEN_A))
        .await
        .cache_status()
        .starts_with("pollgate; hit"));
    assert_eq!(
        h.get(&other, Some(TOKEN_A)).await.cache_status(),
        "pollgate; fwd=miss; stored"
    );
    let _ = h.get("/echo/m", Some(TOKEN_A)).await;

    let metrics = h.admin(Method::GET, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text();
    assert!(
        metric_sum(
            &text,
            "pollgate_requests_total{",
            &["route=\"items\"", "result=\"miss\""]
        ) >= 2.0,
        "{text}"
    );
    assert!(
        metric_sum(
            &text,
            "pollgate_requests_total{",
            &["route=\"items\"", "result=\"hit\""]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        metric_sum(
            &text,
            "pollgate_requests_total{",
            &["route=\"passthrough\""]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        metric_sum(&text, "pollgate_upstream_requests_total{", &["2xx"]) >= 3.0,
        "{text}"
    );
    assert!(text.contains("pollgate_upstream_latency_seconds"), "{text}");
    assert!(!text.contains(TOKEN_A), "metrics never carry a credential");

    // Purge one job: its page misses, the other job's page still hits.
    let purge = h
        .admin(Method::DELETE, &format!("/cache/jobs/{JOB_A}"))
        .await;
    assert_eq!(purge.status, StatusCode::OK, "{}", purge.text());
    assert_eq!(
        h.get(&p, Some(TOKEN_A)).await.cache_status(),
        "pollgate; fwd=miss; stored"
    );
    assert!(h
        .get(&other, Some(TOKEN_A))
        .await
        .cache_status()
        .starts_with("pollgate; hit"));
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 2);

    // Purge all: both miss.
    let purge = h.admin(Method::DELETE, "/cache").await;
    assert_eq!(purge.status, StatusCode::OK, "{}", purge.text());
    assert_eq!(
        h.get(&p, Some(TOKEN_A)).await.cache_status(),
        "pollgate; fwd=miss; stored"
    );
    assert_eq!(
        h.get(&other, Some(TOKEN_A)).await.cache_status(),
        "pollgate; fwd=miss; stored"
    );
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 3);
    assert_eq!(upstream_item_requests(&h.sim, JOB_A_DONE).len(), 2);
}

#[tokio::test]
async fn metrics_report_shielding_events() {
    let mut h = Harness::start(|c| {
        c.cache.ttl = secs(1);
        c.cache.stale_while_revalidate = secs(30);
        c.cache.stale_if_error = secs(60);
    })
    .await;
    // A long-poll held until the gateway shuts down below: it is surely still held when the
    // metrics are read, however slow the machine.
    let bp = items_path(JOB_B, "limit=1");
    let bw = h.get(&bp, Some(TOKEN_B)).await;
    let betag = bw.header("etag").expect("etag").to_owned();
    let lp = spawn_get(
        &h,
        &bp,
        TOKEN_B,
        &[("if-none-match", &betag), ("prefer", "wait=30")],
    );

    let k1 = items_path(JOB_A, "limit=1");
    let warm = h.get(&k1, Some(TOKEN_A)).await;
    let etag = warm.header("etag").expect("etag").to_owned();
    let nm = h
        .request_as(Method::GET, &k1, TOKEN_A, &[("if-none-match", &etag)])
        .await;
    assert_eq!(nm.status, 304);
    sleep(ms(1100)).await; // past the 1 s TTL
    let stale = h.get(&k1, Some(TOKEN_A)).await;
    assert!(
        stale.cache_status().contains("stale-while-revalidate"),
        "{}",
        stale.cache_status()
    );

    h.sim.set_fault(Some(rate_limited(TOKEN_A, "2")));
    let r = h.get(&items_path(JOB_A, "limit=2"), Some(TOKEN_A)).await;
    assert_eq!(r.status, 429);
    let r = h.get(&items_path(JOB_A, "limit=3"), Some(TOKEN_A)).await;
    assert_eq!(r.status, 429);
    h.sim.set_fault(None);

    let held = metric_reaches(&h, "pollgate_long_polls_waiting", 1.0, secs(5)).await;

    let text = h.admin(Method::GET, "/metrics").await.text();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let stale_line = lines
        .iter()
        .find(|l| l.starts_with("pollgate_stale_served_total{reason=\"while_revalidate\"}"))
        .unwrap_or_else(|| panic!("no stale_served_total with a reason label:\n{text}"));
    let get =
        |name: &str| metric_value(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
    let backoffs = get("pollgate_backoffs_started_total");
    let u429 = get("pollgate_upstream_429_total");
    let not_modified = get("pollgate_not_modified_total");
    let without = get("pollgate_answered_without_upstream_total");
    let waiting = get("pollgate_long_polls_waiting");
    println!("metrics: {stale_line}; backoffs_started={backoffs} upstream_429={u429} not_modified={not_modified} answered_without_upstream={without} long_polls_waiting={waiting} (held={held})");
    let stale_count: f64 = stale_line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(stale_count >= 1.0, "{stale_line}");
    assert!(backoffs > 0.0);
    assert!(u429 > 0.0);
    assert!(not_modified > 0.0);
    assert!(without > 0.0);
    assert_eq!(waiting, 1.0, "one long-poll held");
    assert!(
        text.contains("pollgate_backoffs_active"),
        "backoffs_active gauge present"
    );

    let _server = h.begin_shutdown();
    let (r, _) = join_all_within(secs(10), vec![lp]).await.remove(0);
    assert_eq!(r.status, 304);
}

/// An upstream 401, 404 or 429 passed on to the client is counted as `relayed`, not `miss`.
#[tokio::test]
async fn relayed_upstream_answers_have_their_own_result() {
    let h = Harness::start(|_| {}).await;
    let p = items_path(JOB_A, "limit=10");
    assert_eq!(
        h.get(&p, Some("sk-nobody")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.get(&p, Some(TOKEN_B)).await.status, StatusCode::NOT_FOUND);
    h.sim.set_fault(Some(rate_limited(TOKEN_A, "1")));
    assert_eq!(
        h.get(&p, Some(TOKEN_A)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let text = h.admin(Method::GET, "/metrics").await.text();
    let count = |result: &str| {
        metric_sum(
            &text,
            "pollgate_requests_total{",
            &["route=\"items\"", &format!("result=\"{result}\"")],
        )
    };
    assert_eq!(count("relayed"), 3.0, "{text}");
    assert_eq!(count("miss"), 0.0, "{text}");
}
