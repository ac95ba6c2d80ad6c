//! Long-poll (`If-None-Match` + `Prefer: wait=N`): held requests share one fetch per TTL and
//! see a change within about one TTL, get a 304 when the wait ends without one, and are
//! answered at once when the gateway shuts down.

use std::time::Duration;

use crate::common::*;
use http::Method;
use tokio::time::Instant;

#[tokio::test]
async fn long_poll_100_waiters_one_fetch_per_ttl() {
    let _heavy = HEAVY.lock().await;
    let ttl = ms(500);
    let h = Harness::start(|c| c.cache.ttl = ttl).await;
    let query = "limit=4";
    let p = items_path(JOB_A, query);
    let t_warm = Instant::now();
    let warm = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(warm.status, 200);
    let etag = warm.header("etag").expect("etag").to_owned();
    let c0 = key_requests(&h.sim, JOB_A, query);

    let t0 = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            spawn_get(
                &h,
                &p,
                TOKEN_A,
                &[("if-none-match", &etag), ("prefer", "wait=10")],
            )
        })
        .collect();
    let held = metric_reaches(&h, "pollgate_long_polls_waiting", 100.0, secs(5)).await;
    assert_eq!(held, 100.0, "all 100 long-polls held");
    // Held past one TTL, so the key is refreshed at least once while all 100 wait.
    let wake = t0 + ms(700);
    sleep_until_at_least(wake).await;
    let c_before_change = key_requests(&h.sim, JOB_A, query) - c0;
    h.sim.mutate_job(JOB_A);
    let t_mut = Instant::now();

    let results = join_all_within(secs(15), tasks).await;
    let elapsed = t_warm.elapsed();
    let mut slowest_after_change = Duration::ZERO;
    for (r, ended) in &results {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_ne!(r.body, warm.body, "new body");
        assert_ne!(r.header("etag"), Some(etag.as_str()));
        slowest_after_change = slowest_after_change.max(ended.saturating_duration_since(t_mut));
    }
    let first_new = &results[0].0.body;
    assert!(
        results.iter().all(|(r, _)| r.body == *first_new),
        "all see the same new body"
    );
    let during = key_requests(&h.sim, JOB_A, query) - c0;
    let bound = (elapsed.as_secs_f64() / ttl.as_secs_f64()) as usize + 2;
    println!("long-poll: 100 waiters held; upstream requests while they waited = {during} ({c_before_change} before the change) over {elapsed:?} with ttl {ttl:?} (bound {bound}); slowest waiter saw the change {slowest_after_change:?} after it");
    assert!(during >= 1, "the key was refreshed while they waited");
    assert!(
        during <= bound,
        "{during} upstream requests > {bound} (one per TTL)"
    );
    assert!(
        slowest_after_change < secs(3),
        "waiters must see the change within about one TTL, slowest after {slowest_after_change:?}"
    );
}

async fn sleep_until_at_least(t: Instant) {
    if Instant::now() < t {
        tokio::time::sleep_until(t).await;
    }
}

#[tokio::test]
async fn long_poll_without_change_gets_304_after_wait() {
    let h = Harness::start(|c| c.cache.ttl = ms(500)).await;
    let p = items_path(JOB_B, "limit=5");
    let warm = h.get(&p, Some(TOKEN_B)).await;
    assert_eq!(warm.status, 200);
    let etag = warm.header("etag").expect("etag").to_owned();
    let t = Instant::now();
    let r = bounded(
        "long-poll wait=1",
        secs(10),
        h.request_as(
            Method::GET,
            &p,
            TOKEN_B,
            &[("if-none-match", &etag), ("prefer", "wait=1")],
        ),
    )
    .await;
    let took = t.elapsed();
    println!(
        "long-poll wait=1 with no change: {} after {took:?}",
        r.status
    );
    assert_eq!(r.status, 304, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(took >= ms(900), "held for the wait: {took:?}");
    assert!(took < secs(5), "not much longer than the wait: {took:?}");
}

#[tokio::test]
async fn long_poll_ends_on_shutdown() {
    let mut h = Harness::start(|c| c.cache.ttl = secs(60)).await;
    let p = items_path(JOB_A, "limit=6");
    let warm = h.get(&p, Some(TOKEN_A)).await;
    let etag = warm.header("etag").expect("etag").to_owned();
    let task = spawn_get(
        &h,
        &p,
        TOKEN_A,
        &[("if-none-match", &etag), ("prefer", "wait=30")],
    );
    let held = metric_reaches(&h, "pollgate_long_polls_waiting", 1.0, secs(5)).await;
    assert_eq!(held, 1.0, "the long-poll is held");
    let t = Instant::now();
    let server = h.begin_shutdown().expect("server task");
    let (r, _) = bounded("held long-poll at shutdown", secs(5), task)
        .await
        .expect("client task");
    println!(
        "long-poll at shutdown: {} after {:?}",
        r.status,
        t.elapsed()
    );
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    bounded("server shutdown", secs(10), server)
        .await
        .expect("server task")
        .expect("server ends cleanly");
}
