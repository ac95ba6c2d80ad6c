//! The fleet tier end to end: three gateways, one private Redis, one simulated upstream.

use std::time::Duration;

use crate::common::fleet::{fleet_state, Fleet, SECRET};
use crate::common::*;
use http::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_burst_over_three_gateways_is_one_upstream_request() {
    let f = Fleet::start(3, |_| {}).await;
    // The one fetch is still in flight while the burst arrives everywhere.
    f.sim.set_latency(Duration::from_millis(100));
    let path = items_path(JOB_A, "limit=10");
    let tasks: Vec<_> = (0..300)
        .map(|i| spawn_get(&f.gateways[i % 3], &path, TOKEN_A, &[]))
        .collect();
    let mut bodies = std::collections::HashSet::new();
    for t in tasks {
        let (res, _) = t.await.expect("task");
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        bodies.insert(res.body);
    }
    assert_eq!(bodies.len(), 1, "everyone got the one page");
    let mut errors = 0.0;
    for g in &f.gateways {
        errors += g.metric("pollgate_fleet_l2_errors_total").await;
    }
    let sent = f.upstream_items(JOB_A);
    eprintln!("cold burst: 300 requests over 3 gateways -> {sent} upstream request(s)");
    assert_eq!(
        sent, 1,
        "one upstream request for the fleet (Redis errors: {errors})"
    );
    let waited: f64 = {
        let mut sum = 0.0;
        for g in &f.gateways {
            sum += g.metric("pollgate_fleet_leases_waited_total").await;
        }
        sum
    };
    let acquired = f.gateways[0]
        .metric("pollgate_fleet_leases_acquired_total")
        .await
        + f.gateways[1]
            .metric("pollgate_fleet_leases_acquired_total")
            .await
        + f.gateways[2]
            .metric("pollgate_fleet_leases_acquired_total")
            .await;
    assert_eq!(acquired, 1.0, "one lease");
    assert!(
        waited >= 1.0,
        "the other gateways waited on it (waited {waited})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_cached_via_one_gateway_is_a_hit_on_the_others() {
    let f = Fleet::start(3, |_| {}).await;
    let path = items_path(JOB_A, "limit=5");
    let first = f.gateways[0].get(&path, Some(TOKEN_A)).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.cache_status(), "pollgate; fwd=miss; stored");
    for g in &f.gateways[1..] {
        let res = g.get(&path, Some(TOKEN_A)).await;
        assert_eq!(res.status, StatusCode::OK);
        assert!(
            res.cache_status().starts_with("pollgate; hit"),
            "{}",
            res.cache_status()
        );
        assert_eq!(res.body, first.body);
        assert_eq!(
            res.header("etag"),
            first.header("etag"),
            "same entry, same validator"
        );
        assert!(res.header("age").is_some());
        assert_eq!(g.metric("pollgate_fleet_l2_hits_total").await, 1.0);
    }
    // The next hit is L1's: no Redis round trip.
    let again = f.gateways[1].get(&path, Some(TOKEN_A)).await;
    assert!(again.cache_status().starts_with("pollgate; hit"));
    assert_eq!(
        f.gateways[1].metric("pollgate_fleet_l2_hits_total").await,
        1.0
    );
    assert_eq!(f.upstream_items(JOB_A), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_stay_apart_across_gateways() {
    let f = Fleet::start(3, |_| {}).await;
    let path = items_path(JOB_A, "limit=5");
    let a = f.gateways[0].get(&path, Some(TOKEN_A)).await;
    assert_eq!(a.status, StatusCode::OK);
    let b = f.gateways[1].get(&path, Some(TOKEN_B)).await;
    assert_eq!(b.status, StatusCode::NOT_FOUND, "B is not served A's page");
    assert!(!b.cache_status().contains("hit"), "{}", b.cache_status());
    let seen = upstream_item_requests(&f.sim, JOB_A);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].token.as_deref(), Some(TOKEN_B));
    // B's own page on a third gateway is B's, and a hit for B afterwards.
    let pb = items_path(JOB_B, "limit=5");
    let b1 = f.gateways[2].get(&pb, Some(TOKEN_B)).await;
    assert_eq!(b1.status, StatusCode::OK);
    let a_on_b = f.gateways[0].get(&pb, Some(TOKEN_A)).await;
    assert_eq!(a_on_b.status, StatusCode::NOT_FOUND);
    let b2 = f.gateways[0].get(&pb, Some(TOKEN_B)).await;
    assert!(b2.cache_status().starts_with("pollgate; hit"));
    assert_eq!(b2.body, b1.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_with_other_secrets_never_share() {
    let f = Fleet::start(1, |_| {}).await;
    let other = Fleet::gateway(
        &f.redis,
        &f.sim,
        f.upstream,
        b"another-fleet-secret-entirely-0123456789",
        &|_| {},
    )
    .await;
    assert!(crate::common::fleet::shared(&other).await);
    let path = items_path(JOB_A, "limit=5");
    let a = f.gateways[0].get(&path, Some(TOKEN_A)).await;
    assert_eq!(a.cache_status(), "pollgate; fwd=miss; stored");
    let b = other.get(&path, Some(TOKEN_A)).await;
    assert_eq!(b.status, StatusCode::OK);
    assert_eq!(
        b.cache_status(),
        "pollgate; fwd=miss; stored",
        "not the other fleet's page"
    );
    assert_eq!(f.upstream_items(JOB_A), 2);
    assert_eq!(other.metric("pollgate_fleet_l2_hits_total").await, 0.0);
}

/// The Cache-Status of `path` for TOKEN_A on each gateway, in order.
async fn statuses(f: &Fleet, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for g in &f.gateways {
        let res = g.get(path, Some(TOKEN_A)).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        out.push(res.cache_status().to_owned());
    }
    out
}

/// Entries each gateway holds in L1.
async fn entries(f: &Fleet) -> Vec<f64> {
    let mut out = Vec::new();
    for g in &f.gateways {
        out.push(g.metric("pollgate_cache_entries").await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_and_cancels_reach_every_gateway() {
    let f = Fleet::start(3, |_| {}).await;
    let path = items_path(JOB_A, "limit=5");
    let warm = statuses(&f, &path).await;
    assert!(
        warm[0].contains("stored") && warm[1].contains("hit") && warm[2].contains("hit"),
        "{warm:?}"
    );
    assert_eq!(entries(&f).await, [1.0, 1.0, 1.0]);

    // An admin purge on one gateway: every L1 copy goes within 250 ms, and L2's too.
    let purged = f.gateways[2]
        .admin(Method::DELETE, &format!("/cache/jobs/{JOB_A}"))
        .await;
    assert_eq!(purged.status, StatusCode::OK);
    let gone = crate::common::fleet::eventually(Duration::from_millis(250), || async {
        entries(&f).await == [0.0, 0.0, 0.0]
    })
    .await;
    assert!(gone, "L1 copies left: {:?}", entries(&f).await);
    let after = statuses(&f, &path).await;
    assert!(
        after[0].contains("fwd=miss") && after[1].contains("hit") && after[2].contains("hit"),
        "{after:?}"
    );
    assert_eq!(f.upstream_items(JOB_A), 2, "one refetch for the fleet");

    // A cancel through one gateway invalidates the job everywhere.
    let auth = bearer(TOKEN_A);
    let cancel = f.gateways[1]
        .request(
            Method::POST,
            &format!("{ITEMS}/{JOB_A}/cancel"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            bytes::Bytes::from_static(b"{}"),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.text());
    let gone = crate::common::fleet::eventually(Duration::from_millis(250), || async {
        entries(&f).await == [0.0, 0.0, 0.0]
    })
    .await;
    assert!(
        gone,
        "L1 copies left after the cancel: {:?}",
        entries(&f).await
    );
    let after = statuses(&f, &path).await;
    assert!(after[0].contains("fwd=miss"), "{after:?}");
    assert_eq!(f.upstream_items(JOB_A), 3);

    // Purge everything from another gateway.
    let all = f.gateways[0].admin(Method::DELETE, "/cache").await;
    assert_eq!(all.status, StatusCode::OK);
    let gone = crate::common::fleet::eventually(Duration::from_millis(250), || async {
        entries(&f).await == [0.0, 0.0, 0.0]
    })
    .await;
    assert!(
        gone,
        "L1 copies left after purging all: {:?}",
        entries(&f).await
    );
    let miss = f.gateways[1].get(&path, Some(TOKEN_A)).await;
    assert!(
        miss.cache_status().contains("fwd=miss"),
        "{}",
        miss.cache_status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_from_before_a_purge_stores_nowhere() {
    let f = Fleet::start(3, |_| {}).await;
    f.sim.set_latency(Duration::from_millis(300));
    let path = items_path(JOB_A, "limit=7");
    let slow = spawn_get(&f.gateways[0], &path, TOKEN_A, &[]);
    assert!(wait_until(Duration::from_secs(5), || f.sim.in_flight() == 1).await);
    let purged = f.gateways[1].admin(Method::DELETE, "/cache").await;
    assert_eq!(purged.status, StatusCode::OK);
    let (res, _) = slow.await.expect("task");
    assert_eq!(res.status, StatusCode::OK, "the client still gets its page");
    f.sim.set_latency(Duration::ZERO);
    // Neither L1 (the purge reached gateway 0 mid-fetch) nor L2 (the epoch moved) kept it.
    let next = f.gateways[2].get(&path, Some(TOKEN_A)).await;
    assert!(
        next.cache_status().contains("fwd=miss"),
        "a pre-purge page was served: {}",
        next.cache_status()
    );
    let on_holder = f.gateways[0].get(&path, Some(TOKEN_A)).await;
    assert_eq!(
        on_holder.body, next.body,
        "the holder serves the new page, not its own"
    );
    assert_eq!(
        f.upstream_items(JOB_A),
        2,
        "the page fetched before the purge was not kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_on_other_gateways_get_the_holders_unstorable_answer() {
    // B may not read A's job: a 404, never stored. The gateways waiting on the
    // holder's fetch get that same 404; the upstream is asked once.
    let f = Fleet::start(3, |_| {}).await;
    f.sim.set_latency(Duration::from_millis(200));
    let path = items_path(JOB_A, "limit=3");
    let tasks: Vec<_> = (0..30)
        .map(|i| spawn_get(&f.gateways[i % 3], &path, TOKEN_B, &[]))
        .collect();
    for t in tasks {
        let (res, _) = t.await.expect("task");
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text());
        assert_eq!(res.json(), serde_json::json!({"detail": "Job not found"}));
    }
    assert_eq!(f.upstream_items(JOB_A), 1);
    // Not stored: the next request asks the upstream again.
    f.sim.set_latency(Duration::ZERO);
    let again = f.gateways[1].get(&path, Some(TOKEN_B)).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(f.upstream_items(JOB_A), 2);
    let _ = (SECRET, fleet_state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_revalidates_a_stale_page() {
    let f = Fleet::start(3, |c| c.cache.ttl = Duration::from_secs(1)).await;
    let path = items_path(JOB_A, "limit=8");
    let warm = statuses(&f, &path).await;
    assert!(warm[0].contains("stored"), "{warm:?}");
    assert_eq!(f.upstream_items(JOB_A), 1);
    // Past the TTL, within stale-while-revalidate on every gateway.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.sim.set_latency(Duration::from_millis(200));
    let tasks: Vec<_> = (0..30)
        .map(|i| spawn_get(&f.gateways[i % 3], &path, TOKEN_A, &[]))
        .collect();
    for t in tasks {
        let (res, _) = t.await.expect("task");
        assert_eq!(res.status, StatusCode::OK);
        assert!(
            res.cache_status().contains("stale-while-revalidate"),
            "{}",
            res.cache_status()
        );
    }
    // The one refresh lands; then every gateway serves the refreshed page.
    let refreshed = crate::common::fleet::eventually(Duration::from_secs(3), || async {
        f.upstream_items(JOB_A) == 2 && f.sim.in_flight() == 0
    })
    .await;
    assert!(refreshed, "upstream requests: {}", f.upstream_items(JOB_A));
    f.sim.set_latency(Duration::ZERO);
    for g in &f.gateways {
        let res = g.get(&path, Some(TOKEN_A)).await;
        assert!(
            res.cache_status().starts_with("pollgate; hit; ttl"),
            "{}",
            res.cache_status()
        );
    }
    assert_eq!(f.upstream_items(JOB_A), 2, "one revalidation for the fleet");
}
