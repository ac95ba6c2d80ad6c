//! A cold miss fanned in by N concurrent waiters: the cost of coalescing per waiter.
//!
//! Every iteration uses a fresh key (an unknown `bench_nonce=` parameter, kept in the
//! canonical query, so a new cache key and a new upstream request), spawns N tasks that
//! all call `Gateway::handle_items` on it, and awaits them all (bodies consumed). With
//! `waiters_1` as the baseline in the same group, the cost of one extra waiter is
//! `(t100 - t1) / 99`. Two upstream latencies: 0 (the upstream round trip is pure
//! loopback, some waiters may arrive after the fill and be plain hits) and 2 ms (every
//! waiter certainly overlaps the fill).

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::request::Parts;
use pollgate::outcome::Outcome;
use pollgate::Gateway;
use support::{item_parts, runtime, JOB_A};

static NONCE: AtomicU64 = AtomicU64::new(0);

/// Parts of a request whose key nobody has asked for yet.
fn fresh_parts() -> Arc<Parts> {
    let n = NONCE.fetch_add(1, Ordering::Relaxed);
    Arc::new(item_parts(JOB_A, &format!("limit=10&bench_nonce={n}")))
}

/// N concurrent requests on one fresh key; returns each one's status and outcome.
async fn fan_in(gateway: &Gateway, waiters: usize) -> Vec<(u16, Outcome)> {
    let parts = fresh_parts();
    let tasks: Vec<_> = (0..waiters)
        .map(|_| {
            let (gateway, parts) = (gateway.clone(), parts.clone());
            tokio::spawn(async move {
                let (res, outcome) = gateway.handle_items(&parts).await.expect("item route");
                let status = res.status().as_u16();
                support::body_bytes(res.into_body()).await;
                (status, outcome)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(waiters);
    for t in tasks {
        out.push(t.await.expect("waiter task"));
    }
    out
}

fn bench_coalescing(c: &mut Criterion) {
    let rt = runtime();
    let (sim, app) = rt.block_on(support::start(Duration::ZERO));
    let gateway = app.gateway().clone();

    let mut g = c.benchmark_group("coalescing");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (latency_name, latency) in [
        ("latency_0ms", Duration::ZERO),
        ("latency_2ms", Duration::from_millis(2)),
    ] {
        sim.set_latency(latency);
        // Once, outside the timed loop: 100 waiters cost exactly 1 upstream request.
        let before = sim.item_list_count();
        let answers = rt.block_on(fan_in(&gateway, 100));
        let upstream = sim.item_list_count() - before;
        let mut outcomes = BTreeMap::new();
        for (status, outcome) in &answers {
            assert_eq!(*status, 200);
            *outcomes.entry(outcome.result().as_str()).or_insert(0) += 1;
        }
        eprintln!(
            "coalescing/{latency_name}: 100 waiters -> {upstream} upstream request(s); outcomes {outcomes:?}"
        );
        assert_eq!(
            upstream, 1,
            "100 waiters on one cold key, one upstream request"
        );

        for waiters in [1usize, 100] {
            g.bench_with_input(
                BenchmarkId::new(latency_name, format!("waiters_{waiters}")),
                &waiters,
                |b, &waiters| b.to_async(&rt).iter(|| fan_in(&gateway, waiters)),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench_coalescing);
criterion_main!(benches);
