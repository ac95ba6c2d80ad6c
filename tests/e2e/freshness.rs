//! Freshness: past its TTL a page is served stale while one background refresh runs
//! (stale-while-revalidate) and stands in when the upstream fails (stale-if-error); a finished
//! job's pages keep the longer terminal TTL; a cancel through pollgate and an admin purge
//! force a miss.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use http::Method;
use tokio::time::{sleep, Instant};

#[tokio::test]
async fn stale_while_revalidate_serves_old_body_and_refreshes_once() {
    let (h, gate) = Harness::start_gated(|c| {
        c.cache.ttl = secs(1);
        c.cache.stale_while_revalidate = secs(30);
    })
    .await;
    let query = "limit=5";
    let p = items_path(JOB_A, query);
    let first = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.cache_status(), "pollgate; fwd=miss; stored");
    assert_eq!(key_requests(&h.sim, JOB_A, query), 1);

    sleep(ms(1100)).await; // past the 1 s TTL

    // The refresh is held at the gate, so the requests below happen while it is in flight.
    gate.close();
    h.sim.mutate_job(JOB_A);

    let stale = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(
        stale.body, first.body,
        "stale response must carry the OLD body"
    );
    let cs = stale.cache_status();
    assert!(
        cs.contains("ttl=-") && cs.contains("stale-while-revalidate"),
        "Cache-Status of a stale-while-revalidate hit: {cs}"
    );
    assert!(stale.header("age").is_some(), "stale hit carries Age");

    // More requests while the refresh runs: served from cache, no second refresh.
    for _ in 0..5 {
        let r = h.get(&p, Some(TOKEN_A)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(
        wait_until(secs(5), || gate.held() == 1).await,
        "the background refresh never left the gateway"
    );
    gate.open();
    assert!(
        wait_until(secs(5), || key_requests(&h.sim, JOB_A, query) >= 2).await,
        "the background refresh never reached the upstream"
    );

    // Poll until the refreshed entry is served (bounded).
    let end = Instant::now() + secs(5);
    let fresh = loop {
        let r = h.get(&p, Some(TOKEN_A)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        if r.body != first.body {
            break r;
        }
        assert!(Instant::now() < end, "the new body never appeared");
        sleep(ms(20)).await;
    };
    assert!(
        is_fresh_hit(&fresh),
        "new body served as a fresh hit: {}",
        fresh.cache_status()
    );
    for _ in 0..3 {
        let r = h.get(&p, Some(TOKEN_A)).await;
        assert_eq!(r.body, fresh.body);
    }
    let n = key_requests(&h.sim, JOB_A, query);
    println!("stale-while-revalidate: upstream requests for the key = {n} (warm + 1 refresh)");
    assert_eq!(
        n, 2,
        "exactly one background refresh must reach the upstream"
    );
}

async fn stale_if_error_case(name: &str, fault: Fault, cold_statuses: &[u16]) {
    // Nothing here needs the page fresh: a short TTL, and a short wait past it.
    let h = Harness::start(|c| {
        c.cache.ttl = ms(200);
        c.cache.stale_while_revalidate = Duration::ZERO;
        c.cache.stale_if_error = secs(60);
        c.upstream.request_timeout = ms(500);
    })
    .await;
    let p = items_path(JOB_A, "limit=7");
    let warm = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(warm.status, 200, "{name}: {}", warm.text());
    sleep(ms(300)).await; // past the TTL; swr is 0, so the next request must go upstream

    h.sim.set_fault(Some(FaultRule {
        fault,
        remaining: None,
        only_token: None,
        only_item_lists: true,
    }));
    let before = item_requests_of(&h.sim, TOKEN_A);
    let r = bounded(name, secs(10), h.get(&p, Some(TOKEN_A))).await;
    assert_eq!(r.status, 200, "{name}: stale expected: {}", r.text());
    assert_eq!(r.body, warm.body, "{name}: the last good body");
    let cs = r.cache_status();
    assert!(
        cs.contains("stale-if-error") && cs.contains("ttl=-"),
        "{name}: Cache-Status {cs}"
    );
    assert_eq!(
        item_requests_of(&h.sim, TOKEN_A),
        before + 1,
        "{name}: the failed refresh did reach the upstream once"
    );

    // Nothing to serve: pollgate's error.
    let cold = bounded(
        name,
        secs(10),
        h.get(&items_path(JOB_A, "limit=8"), Some(TOKEN_A)),
    )
    .await;
    println!(
        "{name}: cold key -> {} ({}) {}",
        cold.status,
        cold.cache_status(),
        cold.text()
    );
    assert!(
        cold_statuses.contains(&cold.status.as_u16()),
        "{name}: cold key status {} not in {cold_statuses:?}: {}",
        cold.status,
        cold.text()
    );
    assert_json_detail(&cold);
    h.sim.set_fault(None);
}

#[tokio::test]
async fn stale_if_error_on_500() {
    // An upstream 500 with nothing to serve becomes pollgate's 502 JSON error.
    stale_if_error_case(
        "500",
        Fault::Status {
            status: 500,
            retry_after: None,
            retry_after_ms: None,
        },
        &[502],
    )
    .await;
}

#[tokio::test]
async fn stale_if_error_on_timeout() {
    stale_if_error_case("timeout", Fault::Delay(secs(2)), &[504]).await;
}

#[tokio::test]
async fn stale_if_error_on_reset_before_response() {
    stale_if_error_case("reset-before-response", Fault::ResetBeforeResponse, &[502]).await;
}

#[tokio::test]
async fn stale_if_error_on_reset_mid_body() {
    stale_if_error_case("reset-mid-body", Fault::ResetMidBody, &[502]).await;
}

#[tokio::test]
async fn terminal_job_pages_keep_the_longer_ttl() {
    let h = Harness::start(|c| {
        c.cache.ttl = ms(200);
        c.cache.stale_while_revalidate = Duration::ZERO;
        c.cache.terminal_ttl = secs(60);
    })
    .await;
    let status = h.get(&format!("{ITEMS}/{JOB_A_DONE}"), Some(TOKEN_A)).await;
    assert_eq!(status.status, 200, "{}", status.text());
    assert_eq!(status.json()["job"]["status"], "completed");
    let running = h.get(&format!("{ITEMS}/{JOB_A}"), Some(TOKEN_A)).await;
    assert_eq!(running.json()["job"]["status"], "running");

    let done_p = items_path(JOB_A_DONE, "limit=5");
    let run_p = items_path(JOB_A, "limit=5");
    for p in [&done_p, &run_p] {
        let r = h.get(p, Some(TOKEN_A)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.cache_status(), "pollgate; fwd=miss; stored");
    }
    sleep(ms(300)).await; // past the normal TTL

    let done = h.get(&done_p, Some(TOKEN_A)).await;
    assert!(
        is_fresh_hit(&done),
        "terminal job: still a hit, got {}",
        done.cache_status()
    );
    assert_eq!(upstream_item_requests(&h.sim, JOB_A_DONE).len(), 1);

    let run = h.get(&run_p, Some(TOKEN_A)).await;
    assert_eq!(
        run.cache_status(),
        "pollgate; fwd=miss; stored",
        "running job refetched"
    );
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 2);
}

#[tokio::test]
async fn cancel_through_pollgate_and_admin_purge_force_a_miss() {
    let h = Harness::start(|c| c.cache.ttl = secs(60)).await;
    // The tail of the running job: pending items, which a cancel turns "cancelled".
    let p = items_path(JOB_A, "limit=20&offset=2400");
    let first = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(first.status, 200);
    assert!(
        first.text().contains("\"status\":\"pending\""),
        "{}",
        first.text()
    );
    let hit = h.get(&p, Some(TOKEN_A)).await;
    assert!(is_fresh_hit(&hit), "{}", hit.cache_status());
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 1);

    let purge = h
        .admin(Method::DELETE, &format!("/cache/jobs/{JOB_A}"))
        .await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    let after_purge = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(after_purge.cache_status(), "pollgate; fwd=miss; stored");
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 2);

    let auth = bearer(TOKEN_A);
    let cancel = h
        .request(
            Method::POST,
            &format!("{ITEMS}/{JOB_A}/cancel"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Bytes::from_static(b"{\"reason\":\"test\"}"),
        )
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.text());

    let after_cancel = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(after_cancel.status, 200);
    assert_eq!(
        after_cancel.cache_status(),
        "pollgate; fwd=miss; stored",
        "the job's pages are refetched after a cancel"
    );
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 3);
    assert_ne!(after_cancel.body, first.body, "post-cancel page differs");
    assert!(
        after_cancel.text().contains("\"status\":\"cancelled\"")
            && !after_cancel.text().contains("\"status\":\"pending\""),
        "items cancelled: {}",
        after_cancel.text()
    );
}
