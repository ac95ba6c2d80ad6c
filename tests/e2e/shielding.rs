//! Shielding the upstream: a 429 backs off one credential only (stale data or pollgate's own
//! 429 meanwhile) and ends with a single probe; per-credential budgets; the global bound on
//! concurrent upstream requests.

use std::time::Duration;

use crate::common::*;
use http::StatusCode;
use tokio::time::{sleep, Instant};

#[tokio::test]
async fn rate_limit_backoff_shields_one_credential_only() {
    // K1 need only be past its TTL: a short one, and a short wait past it.
    let h = Harness::start(|c| {
        c.cache.ttl = ms(200);
        c.cache.stale_while_revalidate = Duration::ZERO;
        c.cache.stale_if_error = secs(60);
    })
    .await;
    let k1 = items_path(JOB_A, "limit=1");
    let warm = h.get(&k1, Some(TOKEN_A)).await;
    assert_eq!(warm.status, 200, "{}", warm.text());
    sleep(ms(300)).await; // K1 is now past its TTL (and swr is 0)

    // A 1 s back-off: long enough for the two requests below that must fall inside it.
    h.sim.set_fault(Some(rate_limited(TOKEN_A, "1")));
    let a_before_429 = item_requests_of(&h.sim, TOKEN_A);
    let r2 = h.get(&items_path(JOB_A, "limit=2"), Some(TOKEN_A)).await;
    let t429 = Instant::now();
    assert_eq!(r2.status, 429, "{}", r2.text());
    assert_eq!(r2.header("retry-after"), Some("1"), "{:?}", r2.headers);
    let a_at_429 = item_requests_of(&h.sim, TOKEN_A);
    assert_eq!(
        a_at_429,
        a_before_429 + 1,
        "the 429 came from one upstream request"
    );

    // Warm key: stale, no upstream request.
    let s1 = h.get(&k1, Some(TOKEN_A)).await;
    assert_eq!(s1.status, 200, "{}", s1.text());
    assert_eq!(s1.body, warm.body);
    let cs = s1.cache_status();
    assert!(
        cs.contains("fwd-status=429") || cs.contains("backoff"),
        "stale under back-off: {cs}"
    );

    // Cold key: 429 from pollgate with the time left.
    let k3 = h.get(&items_path(JOB_A, "limit=3"), Some(TOKEN_A)).await;
    assert_eq!(k3.status, 429, "{}", k3.text());
    let ra: u64 = k3
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After missing: {:?}", k3.headers));
    let ra_ms: u64 = k3
        .header("retry-after-ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("retry-after-ms missing: {:?}", k3.headers));
    assert!(
        (1..=1).contains(&ra),
        "Retry-After {ra} must be the time left (<= 1)"
    );
    assert!(ra_ms <= 1000 && ra_ms > 0, "retry-after-ms {ra_ms}");
    assert_json_detail(&k3);
    assert!(
        k3.cache_status().contains("backoff"),
        "{}",
        k3.cache_status()
    );

    // Another credential is not delayed.
    let b_before = item_requests_of(&h.sim, TOKEN_B);
    for q in ["limit=1", "limit=2", "limit=3"] {
        let r = h.get(&items_path(JOB_B, q), Some(TOKEN_B)).await;
        assert_eq!(r.status, 200, "TOKEN_B during A's back-off: {}", r.text());
    }
    let b_during = item_requests_of(&h.sim, TOKEN_B) - b_before;
    let a_during = item_requests_of(&h.sim, TOKEN_A) - a_at_429;
    println!("429 back-off: TOKEN_A upstream item requests: before the 429 = {a_before_429}, the 429 itself = 1, during the back-off = {a_during}; TOKEN_B upstream requests during A's back-off = {b_during}");
    assert_eq!(
        a_during, 0,
        "no TOKEN_A upstream request during the back-off (saw {a_during})"
    );
    assert_eq!(
        b_during, 3,
        "TOKEN_B requests must still go upstream (saw {b_during})"
    );

    // Back-off end: clear the fault, poll A on fresh cold keys until pollgate stops answering 429.
    h.sim.set_fault(None);
    let end = Instant::now() + secs(5);
    let mut polls_429 = 0;
    let mut i = 0;
    let first_ok = loop {
        i += 1;
        let r = h
            .get(
                &items_path(JOB_A, &format!("limit={}", 100 + i)),
                Some(TOKEN_A),
            )
            .await;
        if r.status != StatusCode::TOO_MANY_REQUESTS {
            break r;
        }
        polls_429 += 1;
        assert_eq!(
            item_requests_of(&h.sim, TOKEN_A),
            a_at_429,
            "a 429 from pollgate during the back-off must not cost an upstream request"
        );
        assert!(Instant::now() < end, "back-off never ended");
        sleep(ms(100)).await;
    };
    let backoff_lasted = t429.elapsed();
    assert_eq!(first_ok.status, 200, "{}", first_ok.text());
    let probes = item_requests_of(&h.sim, TOKEN_A) - a_at_429;
    assert!(
        backoff_lasted >= ms(750),
        "back-off ended after {backoff_lasted:?}, before the 1 s asked"
    );
    // Then normal again.
    let after = h.get(&items_path(JOB_A, "limit=99"), Some(TOKEN_A)).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.cache_status(), "pollgate; fwd=miss; stored");
    let refreshed = h.get(&k1, Some(TOKEN_A)).await;
    assert_eq!(refreshed.status, 200);
    assert!(
        !refreshed.cache_status().contains("stale"),
        "K1 refetched after the back-off: {}",
        refreshed.cache_status()
    );
    let a_after = item_requests_of(&h.sim, TOKEN_A) - a_at_429;
    println!("429 back-off: ended after {backoff_lasted:?}; {polls_429} polls answered 429 by pollgate with 0 upstream requests; probe requests when it ended = {probes}; TOKEN_A upstream requests after the back-off (probe + 2 normal misses) = {a_after}");
    assert_eq!(
        probes, 1,
        "exactly one probe when the back-off ends (saw {probes})"
    );
    assert_eq!(a_after, 3, "probe + two normal misses (saw {a_after})");
}

#[tokio::test]
async fn backoff_from_retry_after_ms_ends_with_a_single_probe() {
    let (h, gate) = Harness::start_gated(|_| {}).await;
    h.sim.set_fault(Some(FaultRule {
        fault: Fault::Status {
            status: 429,
            retry_after: None,
            // Half a second: ample for the one request below that must fall inside it.
            retry_after_ms: Some("500".into()),
        },
        remaining: Some(1),
        only_token: Some(TOKEN_A.into()),
        only_item_lists: true,
    }));
    let r = h.get(&items_path(JOB_A, "limit=30"), Some(TOKEN_A)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let during = h.get(&items_path(JOB_A, "limit=31"), Some(TOKEN_A)).await;
    assert_eq!(during.status, 429, "retry-after-ms alone starts a back-off");
    let left_ms: u64 = during
        .header("retry-after-ms")
        .and_then(|v| v.parse().ok())
        .expect("retry-after-ms");
    assert!(left_ms <= 500, "time left {left_ms} ms <= the 500 ms asked");
    let a0 = item_requests_of(&h.sim, TOKEN_A);
    assert_eq!(a0, 1, "only the first request reached the upstream");

    sleep(ms(600)).await; // past the back-off

    // The probe is held at the gate until the nine others are answered: none of them may go
    // upstream while it is in flight. (Should some go upstream, they are held too, and counted
    // once the gate opens.)
    gate.close();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            spawn_get(
                &h,
                &items_path(JOB_A, &format!("limit={}", 40 + i)),
                TOKEN_A,
                &[],
            )
        })
        .collect();
    wait_until(secs(5), || {
        tasks.iter().filter(|t| t.is_finished()).count() >= 9
    })
    .await;
    gate.open();
    let results = join_all_within(secs(10), tasks).await;
    let ok = results.iter().filter(|(r, _)| r.status == 200).count();
    let limited = results.iter().filter(|(r, _)| r.status == 429).count();
    let probes = item_requests_of(&h.sim, TOKEN_A) - a0;
    println!("back-off end, 10 concurrent cold requests: {ok} x 200, {limited} x 429, upstream requests = {probes}");
    assert_eq!(probes, 1, "exactly one probe reaches the upstream");
    assert_eq!(
        (ok, limited),
        (1, 9),
        "the probe's client gets 200, the others 429"
    );
    let normal = h.get(&items_path(JOB_A, "limit=60"), Some(TOKEN_A)).await;
    assert_eq!(normal.status, 200, "normal after the probe succeeded");
    assert_eq!(item_requests_of(&h.sim, TOKEN_A) - a0, 2);
}

#[tokio::test]
async fn per_credential_budget_bounds_fills_and_spares_other_credentials() {
    let h = Harness::start(|c| {
        c.upstream.max_requests_per_second = Some(2.0);
        c.upstream.budget_wait = Duration::ZERO;
    })
    .await;
    // Ten distinct cold keys at once for tenant A: a burst of 2 fits the bucket, the rest do not.
    let mut statuses = Vec::new();
    for i in 0..10 {
        let r = h
            .get(
                &items_path(JOB_A, &format!("limit=1&offset={i}")),
                Some(TOKEN_A),
            )
            .await;
        statuses.push(r.status);
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.header("retry-after").is_some(), "429 carries Retry-After");
            assert!(
                r.cache_status().contains("detail=backoff"),
                "{}",
                r.cache_status()
            );
        }
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let upstream_a = h
        .sim
        .requests()
        .iter()
        .filter(|r| r.token.as_deref() == Some(TOKEN_A))
        .count();
    println!("budget 2/s: {ok} fills went upstream, {limited} answered 429 by pollgate, upstream saw {upstream_a}");
    assert!(
        (2..=3).contains(&ok),
        "about the burst of 2 (3 if a token refilled meanwhile): {statuses:?}"
    );
    assert_eq!(ok + limited, 10, "{statuses:?}");
    assert_eq!(
        upstream_a, ok,
        "every over-budget request was answered without the upstream"
    );
    // Tenant B has its own bucket.
    let b = h.get(&items_path(JOB_B, "limit=1"), Some(TOKEN_B)).await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.text());
}

#[tokio::test]
async fn concurrency_bound_holds_under_500_distinct_keys() {
    let _heavy = HEAVY.lock().await;
    let h = Harness::start(|c| {
        c.upstream.max_concurrent = 8;
        c.upstream.request_timeout = secs(30);
    })
    .await;
    // Any latency keeps requests in flight together; 20 ms x 500 keys / 8 slots is about 1.3 s.
    h.sim.set_latency(ms(20));
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            spawn_get(
                &h,
                &items_path(JOB_A, &format!("limit=2&offset={i}")),
                TOKEN_A,
                &[],
            )
        })
        .collect();
    let results = join_all_within(secs(40), tasks).await;
    let failed: Vec<_> = results
        .iter()
        .filter(|(r, _)| r.status != 200)
        .map(|(r, _)| (r.status, r.text()))
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    let peak = h.sim.max_in_flight();
    let n = h.sim.item_list_count();
    println!(
        "concurrency bound 8: 500 distinct keys, upstream requests = {n}, peak in flight = {peak}"
    );
    assert_eq!(n, 500);
    assert!(peak <= 8, "upstream saw {peak} in flight, bound is 8");
    assert!(peak > 1, "requests ran concurrently (peak {peak})");
}

/// The time left that pollgate's own 429 announces, in milliseconds.
fn left_ms(r: &TestResponse) -> u64 {
    r.header("retry-after-ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("retry-after-ms in {:?}", r.headers))
}

#[tokio::test]
async fn a_429_without_retry_after_backs_off_1s_then_doubles() {
    // The shipped default: an SDK pays about what it would pay direct (its own 0.5 s × 2ⁿ).
    let h = Harness::start(|_| {}).await;
    h.sim.set_fault(Some(FaultRule {
        fault: Fault::Status {
            status: 429,
            retry_after: None,
            retry_after_ms: None,
        },
        remaining: Some(2),
        only_token: Some(TOKEN_A.into()),
        only_item_lists: true,
    }));
    let first = h.get(&items_path(JOB_A, "limit=70"), Some(TOKEN_A)).await;
    assert_eq!(first.status, 429, "{}", first.text());
    let during = h.get(&items_path(JOB_A, "limit=71"), Some(TOKEN_A)).await;
    assert_eq!(during.status, 429);
    let left = left_ms(&during);
    assert!(
        (1..=1200).contains(&left),
        "first back-off 1 s ± 20 %: {left} ms"
    );

    // Poll (costing the upstream nothing) until the back-off ends and the probe, refused
    // again, starts the second back-off.
    assert!(
        wait_for(secs(5), || async {
            h.get(&items_path(JOB_A, "limit=72"), Some(TOKEN_A)).await;
            item_requests_of(&h.sim, TOKEN_A) == 2
        })
        .await,
        "the probe after the first back-off"
    );
    let again = h.get(&items_path(JOB_A, "limit=73"), Some(TOKEN_A)).await;
    assert_eq!(again.status, 429);
    let left = left_ms(&again);
    assert!(
        (1000..=2400).contains(&left),
        "the second back-off doubles to 2 s ± 20 %: {left} ms"
    );
    assert_eq!(
        item_requests_of(&h.sim, TOKEN_A),
        2,
        "nothing else went upstream"
    );
}
