//! Fleet benchmark: upstream requests per key per TTL as the number of gateways grows.
//!
//! A fixed poller load (50 pollers, 10 pages, 5 per page, each poller asking every 100 ms
//! for 6 s, TTL 1 s) is spread over 1, 2, 3 and 5 in-process gateways in
//! front of the simulated upstream, once without the fleet tier (each gateway
//! alone) and once with it (one private `redis-server`). It prints a Markdown
//! table of upstream item-list requests per page per TTL. Loopback only;
//! needs `redis-server` on PATH.
//!
//! ```sh
//! cargo run --release --example fleet_bench
//! ```

#[path = "../benches/support/redis.rs"]
mod redis;

use std::time::Duration;

use http::{header, HeaderValue, Method, Request};
use pollgate::config::FleetConfig;
use pollgate::key::FingerprintKey;
use pollgate::{App, Config};
use pollgate_sim::{SimOptions, SimUpstream, JOB_A, TOKEN_A};
use tokio::time::Instant;

const POLLERS: usize = 50;
const PAGES: usize = 10;
const EVERY: Duration = Duration::from_millis(100);
const RUN: Duration = Duration::from_secs(6);
const TTL: Duration = Duration::from_secs(1);

fn config(upstream: std::net::SocketAddr, fleet: Option<FleetConfig>) -> Config {
    let mut c = Config::default();
    c.upstream.url = format!("http://{upstream}").parse().expect("uri");
    c.cache.ttl = TTL;
    c.log.access_log = false;
    c.fleet = fleet.unwrap_or_default();
    c.validate().expect("valid");
    c
}

/// Upstream item requests per page per TTL for `gateways` gateways.
async fn run(gateways: usize, redis: Option<&redis::Redis>, run_id: usize) -> f64 {
    let sim = SimUpstream::new(SimOptions::default());
    let upstream = sim.clone().spawn().await;
    let mut apps = Vec::new();
    for _ in 0..gateways {
        let fleet = redis.map(|r| FleetConfig {
            key_prefix: format!("bench{run_id}"),
            lease_ttl: Duration::from_secs(2),
            redis_timeout: Duration::from_millis(250),
            breaker_failures: 3,
            breaker_cooloff: Duration::from_secs(2),
            fallback_check: Duration::from_millis(250),
            ..FleetConfig::new(&r.url(), b"fleet-bench-secret-0123456789abcdef")
        });
        let config = config(upstream, fleet);
        let key = FingerprintKey::for_config(&config);
        apps.push(App::new(config, key).expect("gateway"));
    }
    // Let the subscribers connect.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deadline = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for p in 0..POLLERS {
        // Every page is polled through every gateway (5 pollers per page).
        let gateway = apps[(p / PAGES) % gateways].gateway().clone();
        let query = format!("limit={}", 1 + p % PAGES);
        tasks.push(tokio::spawn(async move {
            let (mut parts, ()) = Request::builder()
                .method(Method::GET)
                .uri(format!(
                    "/api/v1/beta/batch-processing/{JOB_A}/items?{query}"
                ))
                .body(())
                .expect("request")
                .into_parts();
            let auth = HeaderValue::from_str(&format!("Bearer {TOKEN_A}")).expect("header");
            parts.headers.insert(header::AUTHORIZATION, auth);
            // Staggered starts, as real pollers are.
            tokio::time::sleep(EVERY.mul_f64(p as f64 / POLLERS as f64)).await;
            while Instant::now() < deadline {
                let _ = gateway.handle_items(&parts).await;
                tokio::time::sleep(EVERY).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("poller");
    }
    let ttls = RUN.as_secs_f64() / TTL.as_secs_f64();
    sim.item_list_count() as f64 / (PAGES as f64 * ttls)
}

#[tokio::main]
async fn main() {
    let redis = redis::Redis::start();
    println!("| gateways | without the tier | with the tier |");
    println!("|---:|---:|---:|");
    for (i, n) in [1usize, 2, 3, 5].into_iter().enumerate() {
        let alone = run(n, None, i).await;
        let shared = run(n, Some(&redis), i).await;
        println!("| {n} | {alone:.2} | {shared:.2} |");
    }
}
