//! The in-process hit path: `Gateway::handle_items` on a warmed key, no socket.
//!
//! Request parts in, response out, body consumed. Measures routing, query
//! canonicalization, credential fingerprint, key building, the cache lookup and
//! building the response (headers + shared `Bytes` body) — everything a hit costs
//! except HTTP parsing/serialization and the socket (see `loopback`).

mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::header::HeaderName;
use pollgate::outcome::{Outcome, ResultLabel};
use support::{item_parts, runtime, JOB_A};

fn bench_hit_path(c: &mut Criterion) {
    let rt = runtime();
    let (sim, app) = rt.block_on(support::start(Duration::ZERO));
    let gateway = app.gateway().clone();

    let mut g = c.benchmark_group("hit_path");
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, query) in [
        ("small_10_items", "limit=10"),
        ("large_1000_items", "limit=1000"),
    ] {
        let parts = item_parts(JOB_A, query);
        // Warm the key once and check, outside the timed loop, that the next one is a hit.
        let size = rt.block_on(async {
            let (res, outcome) = gateway.handle_items(&parts).await.expect("item route");
            assert_eq!(res.status(), 200, "warm-up fill of {query}");
            assert_eq!(
                outcome.result(),
                ResultLabel::Miss,
                "first request of {query}"
            );
            support::body_bytes(res.into_body()).await;
            let (res, outcome) = gateway.handle_items(&parts).await.expect("item route");
            let cache_status = res
                .headers()
                .get(HeaderName::from_static("cache-status"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            assert!(
                cache_status.starts_with("pollgate; hit"),
                "expected a hit for {query}, Cache-Status: {cache_status:?}"
            );
            assert!(matches!(outcome, Outcome::Hit { .. }), "{outcome:?}");
            support::body_bytes(res.into_body()).await.len()
        });
        eprintln!("hit_path/{name}: body {size} bytes");
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let (res, _) = gateway.handle_items(&parts).await.expect("item route");
                support::first_frame_len(res.into_body()).await
            })
        });
    }
    g.finish();
    assert_eq!(sim.item_list_count(), 2, "every timed iteration was a hit");
}

criterion_group!(benches, bench_hit_path);
criterion_main!(benches);
