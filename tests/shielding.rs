//! Shielding and freshness (issue 3): stale serving, 429 back-off, bounded coalescing,
//! concurrency bound, conditional requests, long-poll, job-aware TTL and invalidation.
//!
//! Every test runs a real simulated upstream and a real gateway on 127.0.0.1 and counts
//! the requests that reached the upstream.

mod common;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use pollgate_sim::SimUpstream;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Item-list requests that reached the upstream with this credential (any job, any query).
fn item_requests_of(sim: &SimUpstream, token: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path.ends_with("/items") && r.token.as_deref() == Some(token))
        .count()
}

/// Item-list requests that reached the upstream for exactly this job and query
/// (compared in canonical form, which is what pollgate sends).
fn key_requests(sim: &SimUpstream, job: &str, query: &str) -> usize {
    let items = &pollgate::route::ROUTES[0];
    let canonical = pollgate::route::canonicalize(items.params, Some(query)).expect("valid query");
    upstream_item_requests(sim, job)
        .iter()
        .filter(|r| r.query.as_deref() == Some(canonical.as_str()))
        .count()
}

/// Poll an admin metric until it reaches `want` (bounded); returns the last value seen.
async fn metric_reaches(h: &Harness, name: &str, want: f64, limit: Duration) -> f64 {
    let end = Instant::now() + limit;
    loop {
        let v = h.metric(name).await;
        if v >= want || Instant::now() >= end {
            return v;
        }
        sleep(ms(20)).await;
    }
}

async fn get_with(
    h: &Harness,
    method: Method,
    path: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> TestResponse {
    let auth = bearer(token);
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    h.request(method, path, &headers, Bytes::new()).await
}

/// Wait for every task, all within `limit` (a bound against hangs, not a speed claim).
async fn join_all_within<T: Send + 'static>(limit: Duration, tasks: Vec<JoinHandle<T>>) -> Vec<T> {
    let all = async {
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await.expect("client task"));
        }
        out
    };
    timeout(limit, all)
        .await
        .unwrap_or_else(|_| panic!("not every client was answered within {limit:?}"))
}

fn assert_json_detail(r: &TestResponse) {
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "error must be JSON: {:?}",
        r.headers
    );
    assert!(
        r.json()["detail"].is_string(),
        "error body must be {{\"detail\": ...}}: {}",
        r.text()
    );
}

fn is_fresh_hit(r: &TestResponse) -> bool {
    r.cache_status().starts_with("pollgate; hit; ttl=") && !r.cache_status().contains("ttl=-")
}

async fn bounded<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {limit:?}"))
}

// ---------------------------------------------------------------------------------------------
// stale-while-revalidate
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stale_while_revalidate_serves_old_body_and_refreshes_once() {
    let h = Harness::start(|c| {
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

    sleep(ms(1300)).await; // past the 1 s TTL
                           // The refresh takes a while, so the requests below happen while it is in flight.
    h.sim.set_latency(ms(500));
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

// ---------------------------------------------------------------------------------------------
// stale-if-error
// ---------------------------------------------------------------------------------------------

async fn stale_if_error_case(name: &str, fault: Fault, cold_statuses: &[u16]) {
    let h = Harness::start(|c| {
        c.cache.ttl = secs(1);
        c.cache.stale_while_revalidate = Duration::ZERO;
        c.cache.stale_if_error = secs(60);
        c.upstream.request_timeout = ms(500);
    })
    .await;
    let p = items_path(JOB_A, "limit=7");
    let warm = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(warm.status, 200, "{name}: {}", warm.text());
    sleep(ms(1300)).await; // past the TTL; swr is 0, so the next request must go upstream

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

// ---------------------------------------------------------------------------------------------
// 429 back-off
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rate_limit_backoff_shields_one_credential_only() {
    let h = Harness::start(|c| {
        c.cache.ttl = secs(1);
        c.cache.stale_while_revalidate = Duration::ZERO;
        c.cache.stale_if_error = secs(60);
    })
    .await;
    let k1 = items_path(JOB_A, "limit=1");
    let warm = h.get(&k1, Some(TOKEN_A)).await;
    assert_eq!(warm.status, 200, "{}", warm.text());
    sleep(ms(1300)).await; // K1 is now past its TTL (and swr is 0)

    h.sim.set_fault(Some(FaultRule {
        fault: Fault::Status {
            status: 429,
            retry_after: Some("2".into()),
            retry_after_ms: None,
        },
        remaining: None,
        only_token: Some(TOKEN_A.into()),
        only_item_lists: true,
    }));
    let a_before_429 = item_requests_of(&h.sim, TOKEN_A);
    let r2 = h.get(&items_path(JOB_A, "limit=2"), Some(TOKEN_A)).await;
    let t429 = Instant::now();
    assert_eq!(r2.status, 429, "{}", r2.text());
    assert_eq!(r2.header("retry-after"), Some("2"), "{:?}", r2.headers);
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
        (1..=2).contains(&ra),
        "Retry-After {ra} must be the time left (<= 2)"
    );
    assert!(ra_ms <= 2000 && ra_ms > 0, "retry-after-ms {ra_ms}");
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
        backoff_lasted >= ms(1500),
        "back-off ended after {backoff_lasted:?}, before the 2 s asked"
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
    let h = Harness::start(|_| {}).await;
    h.sim.set_fault(Some(FaultRule {
        fault: Fault::Status {
            status: 429,
            retry_after: None,
            retry_after_ms: Some("1000".into()),
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
    assert!(
        left_ms <= 1000,
        "time left {left_ms} ms <= the 1000 ms asked"
    );
    let a0 = item_requests_of(&h.sim, TOKEN_A);
    assert_eq!(a0, 1, "only the first request reached the upstream");

    sleep(ms(1300)).await; // past the back-off
                           // The probe takes 500 ms upstream; ten requests arriving meanwhile must not go upstream.
    h.sim.set_latency(ms(500));
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
    h.sim.set_latency(Duration::ZERO);
    let normal = h.get(&items_path(JOB_A, "limit=60"), Some(TOKEN_A)).await;
    assert_eq!(normal.status, 200, "normal after the probe succeeded");
    assert_eq!(item_requests_of(&h.sim, TOKEN_A) - a0, 2);
}

// ---------------------------------------------------------------------------------------------
// coalescing under faults, wait timeout
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn coalesced_waiters_get_the_reset_at_once_and_no_key_sticks() {
    let h = Harness::start(|c| {
        c.cache.ttl = secs(1);
        c.cache.stale_while_revalidate = Duration::ZERO;
        c.cache.stale_if_error = secs(60);
    })
    .await;
    let reset_once = || FaultRule {
        fault: Fault::ResetMidBody,
        remaining: Some(1),
        only_token: None,
        only_item_lists: true,
    };

    // Cold key: nothing to serve, every waiter gets the error.
    let cold_q = "limit=10";
    let cold = items_path(JOB_A, cold_q);
    h.sim.set_latency(ms(800));
    h.sim.set_fault(Some(reset_once()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|_| spawn_get(&h, &cold, TOKEN_A, &[]))
        .collect();
    let results = join_all_within(secs(5), tasks).await;
    let took = started.elapsed();
    for (r, _) in &results {
        assert_eq!(r.status, 502, "every waiter gets the error: {}", r.text());
        assert_json_detail(r);
    }
    let n = key_requests(&h.sim, JOB_A, cold_q);
    println!("reset mid-body, cold key: 100 clients answered in {took:?}, upstream requests = {n}");
    assert_eq!(n, 1, "100 waiters, one upstream request");

    h.sim.set_latency(Duration::ZERO);
    let next = h.get(&cold, Some(TOKEN_A)).await;
    assert_eq!(next.status, 200, "key not stuck: {}", next.text());
    assert_eq!(next.cache_status(), "pollgate; fwd=miss; stored");
    assert_eq!(
        key_requests(&h.sim, JOB_A, cold_q),
        2,
        "exactly one new fetch"
    );

    // Expired key with a good entry: every waiter gets it, stale-if-error.
    let warm_q = "limit=11";
    let warm_p = items_path(JOB_A, warm_q);
    let warm = h.get(&warm_p, Some(TOKEN_A)).await;
    assert_eq!(warm.status, 200);
    sleep(ms(1300)).await;
    h.sim.set_latency(ms(800));
    h.sim.set_fault(Some(reset_once()));
    let tasks: Vec<_> = (0..100)
        .map(|_| spawn_get(&h, &warm_p, TOKEN_A, &[]))
        .collect();
    let results = join_all_within(secs(5), tasks).await;
    for (r, _) in &results {
        assert_eq!(r.status, 200, "stale for every waiter: {}", r.text());
        assert_eq!(r.body, warm.body);
        assert!(
            r.cache_status().contains("stale-if-error"),
            "{}",
            r.cache_status()
        );
    }
    assert_eq!(
        key_requests(&h.sim, JOB_A, warm_q),
        2,
        "warm + one failed refresh"
    );
    h.sim.set_latency(Duration::ZERO);
    let next = h.get(&warm_p, Some(TOKEN_A)).await;
    assert_eq!(next.status, 200);
    assert_eq!(next.cache_status(), "pollgate; fwd=miss; stored");
    assert_eq!(
        key_requests(&h.sim, JOB_A, warm_q),
        3,
        "exactly one new fetch"
    );
}

#[tokio::test]
async fn waiter_past_wait_timeout_gets_stale_or_504() {
    let h = Harness::start(|c| {
        c.cache.ttl = secs(1);
        c.cache.stale_while_revalidate = Duration::ZERO;
        c.cache.stale_if_error = secs(60);
        c.cache.wait_timeout = ms(300);
    })
    .await;
    let p = items_path(JOB_A, "limit=12");
    let warm = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(warm.status, 200);
    sleep(ms(1300)).await;
    h.sim.set_latency(secs(3));

    let t = Instant::now();
    let stale = h.get(&p, Some(TOKEN_A)).await;
    let took = t.elapsed();
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.body, warm.body);
    assert!(
        stale.cache_status().contains("wait-timeout"),
        "{}",
        stale.cache_status()
    );
    assert!(
        took < secs(2),
        "served stale after {took:?}, not after the 3 s upstream"
    );

    let t = Instant::now();
    let cold = h.get(&items_path(JOB_A, "limit=13"), Some(TOKEN_A)).await;
    let took = t.elapsed();
    assert_eq!(cold.status, 504, "{}", cold.text());
    assert_json_detail(&cold);
    assert!(cold.header("retry-after").is_some(), "{:?}", cold.headers);
    assert!(
        took < secs(2),
        "504 after {took:?}, not after the 3 s upstream"
    );
}

// ---------------------------------------------------------------------------------------------
// global concurrency bound
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn concurrency_bound_holds_under_500_distinct_keys() {
    let h = Harness::start(|c| {
        c.upstream.max_concurrent = 8;
        c.upstream.request_timeout = secs(30);
    })
    .await;
    h.sim.set_latency(ms(100));
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

// ---------------------------------------------------------------------------------------------
// ETag / 304
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn etag_and_if_none_match_including_head() {
    let h = Harness::start(|c| c.cache.ttl = secs(60)).await;
    let p = items_path(JOB_A, "limit=3");
    let r = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(r.status, 200);
    let etag = r.header("etag").expect("200 carries an ETag").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "strong ETag expected, got {etag}"
    );

    let nm = get_with(&h, Method::GET, &p, TOKEN_A, &[("if-none-match", &etag)]).await;
    assert_eq!(nm.status, 304, "{}", nm.text());
    assert!(nm.body.is_empty(), "304 has no body");
    assert_eq!(nm.header("etag"), Some(etag.as_str()));

    let head = get_with(&h, Method::HEAD, &p, TOKEN_A, &[("if-none-match", &etag)]).await;
    assert_eq!(head.status, 304);
    assert!(head.body.is_empty());
    assert_eq!(head.header("etag"), Some(etag.as_str()));

    let list = format!("\"nope\", {etag}");
    let in_list = get_with(&h, Method::GET, &p, TOKEN_A, &[("if-none-match", &list)]).await;
    assert_eq!(in_list.status, 304, "a matching tag inside a list");

    let other = get_with(
        &h,
        Method::GET,
        &p,
        TOKEN_A,
        &[("if-none-match", "\"other\"")],
    )
    .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.body, r.body);
    assert_eq!(other.header("etag"), Some(etag.as_str()));
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// long-poll
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn long_poll_100_waiters_one_fetch_per_ttl() {
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
    let wake = t0 + ms(1200);
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
        get_with(
            &h,
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

// ---------------------------------------------------------------------------------------------
// job-aware freshness and invalidation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn terminal_job_pages_keep_the_longer_ttl() {
    let h = Harness::start(|c| {
        c.cache.ttl = secs(1);
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
    sleep(ms(1300)).await; // past the normal TTL

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

// ---------------------------------------------------------------------------------------------
// metrics
// ---------------------------------------------------------------------------------------------

fn metric_value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_report_shielding_events() {
    let h = Harness::start(|c| {
        c.cache.ttl = secs(1);
        c.cache.stale_while_revalidate = secs(30);
        c.cache.stale_if_error = secs(60);
    })
    .await;
    let k1 = items_path(JOB_A, "limit=1");
    let warm = h.get(&k1, Some(TOKEN_A)).await;
    let etag = warm.header("etag").expect("etag").to_owned();
    let nm = get_with(&h, Method::GET, &k1, TOKEN_A, &[("if-none-match", &etag)]).await;
    assert_eq!(nm.status, 304);
    sleep(ms(1300)).await;
    let stale = h.get(&k1, Some(TOKEN_A)).await;
    assert!(
        stale.cache_status().contains("stale-while-revalidate"),
        "{}",
        stale.cache_status()
    );

    h.sim.set_fault(Some(FaultRule {
        fault: Fault::Status {
            status: 429,
            retry_after: Some("2".into()),
            retry_after_ms: None,
        },
        remaining: None,
        only_token: Some(TOKEN_A.into()),
        only_item_lists: true,
    }));
    let r = h.get(&items_path(JOB_A, "limit=2"), Some(TOKEN_A)).await;
    assert_eq!(r.status, 429);
    let r = h.get(&items_path(JOB_A, "limit=3"), Some(TOKEN_A)).await;
    assert_eq!(r.status, 429);
    h.sim.set_fault(None);

    let bp = items_path(JOB_B, "limit=1");
    let bw = h.get(&bp, Some(TOKEN_B)).await;
    let betag = bw.header("etag").expect("etag").to_owned();
    let lp = spawn_get(
        &h,
        &bp,
        TOKEN_B,
        &[("if-none-match", &betag), ("prefer", "wait=3")],
    );
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

    let (r, _) = join_all_within(secs(10), vec![lp]).await.remove(0);
    assert_eq!(r.status, 304);
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
