//! A page from the fleet's Redis tier (an L1 miss) against a page from memory (an L1 hit).
//!
//! Measured at the cache facade, so the numbers are the tiers' own: one
//! loopback Redis round trip plus decoding, against a moka lookup.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use pollgate::cache::{Cache, Entry, FlightOutcome};
use pollgate::config::{Config, FleetConfig};
use pollgate::fleet::Fleet;
use pollgate::key::{CacheKey, FingerprintKey, ResourceId, ResourceKind};
use pollgate::metrics::Metrics;
use pollgate::shutdown::Shutdown;
use support::redis::Redis;

fn page(bytes: usize) -> Arc<Entry> {
    let body = Bytes::from(vec![b'x'; bytes]);
    Arc::new(Entry {
        status: http::StatusCode::OK,
        headers: Box::new([(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )]),
        etag: Entry::etag_of(&body),
        body,
        gzip: None,
        route: "items",
        resource: Some(ResourceId::new(ResourceKind::Job, "job")),
        fetched_at: tokio::time::Instant::now(),
        fetched_wall: std::time::SystemTime::now(),
        terminal: false,
    })
}

fn bench(c: &mut Criterion) {
    let redis = Redis::start();
    let rt = support::runtime();
    let mut config = Config::default();
    config.cache.ttl = Duration::from_secs(3600);
    let fleet_config = FleetConfig {
        key_prefix: "pgbench".into(),
        lease_ttl: Duration::from_secs(2),
        redis_timeout: Duration::from_millis(250),
        breaker_failures: 3,
        breaker_cooloff: Duration::from_secs(2),
        fallback_check: Duration::from_millis(250),
        ..FleetConfig::new(&redis.url(), &[7; 32])
    };
    let (cache, key) = rt.block_on(async {
        let metrics = Arc::new(Metrics::new(&["items"]));
        let fleet = Fleet::start(&fleet_config, metrics.clone(), &Shutdown::new()).expect("fleet");
        let cache = Arc::new(Cache::with_fleet(&config.cache, fleet, metrics));
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer bench"));
        let cred = FingerprintKey::from_fleet_secret(&[7; 32])
            .credential(&h)
            .expect("cred");
        let key = CacheKey::new(&cred, "items", "job", "limit=100", &[], &h);
        // Store through a fill, so the page lands in both tiers under a lease.
        let entry = page(30 * 1024);
        let (c, k, fence) = (cache.clone(), key.clone(), cache.fence());
        let ticket = cache
            .join_or_start(&key, 1, move || async move {
                let stored = c.store_if_current(k, entry.clone(), fence).await;
                Ok(FlightOutcome {
                    entry,
                    stored,
                    shared: false,
                })
            })
            .expect("fill");
        ticket
            .wait(Duration::from_secs(5))
            .await
            .expect("filled")
            .expect("ok");
        assert!(
            cache.get_shared(&key).await.is_some(),
            "the page is in Redis"
        );
        (cache, key)
    });
    let mut g = c.benchmark_group("fleet_hit");
    g.sample_size(30).measurement_time(Duration::from_secs(3));
    g.bench_function("l1_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { cache.get(&key).await.expect("L1 hit") })
    });
    g.bench_function("l2_hit_30KiB", |b| {
        b.to_async(&rt)
            .iter(|| async { cache.get_shared(&key).await.expect("L2 hit") })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
