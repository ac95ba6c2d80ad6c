//! A fleet for tests: one private Redis, one simulated upstream, N gateways sharing both.

use std::net::SocketAddr;
use std::time::Duration;

use http::Method;
use pollgate::config::FleetConfig;
use pollgate::Config;
use pollgate_sim::{SimOptions, SimUpstream};

use super::redis::RedisServer;
use super::Harness;

/// The fleet secret of the tests' fleets (at least 32 bytes).
pub const SECRET: &[u8] = b"pollgate-test-fleet-secret-0123456789";

/// Fleet settings for tests: short lease, quick breaker, prefix per test run.
pub fn fleet_config(redis_url: &str, secret: &[u8]) -> FleetConfig {
    FleetConfig {
        key_prefix: "pgtest".into(),
        lease_ttl: Duration::from_secs(1),
        // Generous for a 2-core machine shared with other builds; production's default is 250 ms.
        redis_timeout: Duration::from_millis(500),
        breaker_failures: 3,
        breaker_cooloff: Duration::from_millis(500),
        fallback_check: Duration::from_millis(200),
        ..FleetConfig::new(redis_url, secret)
    }
}

pub struct Fleet {
    pub redis: RedisServer,
    pub sim: SimUpstream,
    pub upstream: SocketAddr,
    pub gateways: Vec<Harness>,
}

impl Fleet {
    /// `n` gateways on one Redis and one upstream; `tweak` adjusts each gateway's config.
    pub async fn start(n: usize, tweak: impl Fn(&mut Config)) -> Fleet {
        let redis = RedisServer::start();
        let sim = SimUpstream::new(SimOptions::default());
        let upstream = sim.clone().spawn().await;
        let mut gateways = Vec::with_capacity(n);
        for _ in 0..n {
            gateways.push(Self::gateway(&redis, &sim, upstream, SECRET, &tweak).await);
        }
        let fleet = Fleet {
            redis,
            sim,
            upstream,
            gateways,
        };
        for g in &fleet.gateways {
            assert!(shared(g).await, "gateway joins the fleet within 5 s");
        }
        fleet
    }

    /// One more gateway on this fleet's Redis and upstream, with `secret`.
    pub async fn gateway(
        redis: &RedisServer,
        sim: &SimUpstream,
        upstream: SocketAddr,
        secret: &[u8],
        tweak: &impl Fn(&mut Config),
    ) -> Harness {
        let url = redis.url();
        Harness::start_with(sim.clone(), upstream, |c| {
            c.fleet = fleet_config(&url, secret);
            tweak(c);
        })
        .await
    }

    pub fn upstream_items(&self, job: &str) -> usize {
        super::upstream_item_requests(&self.sim, job).len()
    }
}

/// The fleet state `/readyz` reports.
pub async fn fleet_state(h: &Harness) -> String {
    let res = h.admin(Method::GET, "/readyz").await;
    res.json()["fleet"]["state"]
        .as_str()
        .unwrap_or("none")
        .to_owned()
}

/// Wait (up to 5 s) until the gateway reports it shares with the fleet.
pub async fn shared(h: &Harness) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if fleet_state(h).await == "shared" {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Wait until `cond` holds, checking every 10 ms, for at most `limit` (async conditions).
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
