//! The connection to the fleet: one shared Redis, reached with deadlines, behind a breaker.
//!
//! Many gateways sharing one Redis behave like one gateway: the cache keeps a
//! second tier and fleet-wide fill leases there (`cache::fleet`), the shield
//! keeps fleet-wide back-offs and budgets there (`shield::fleet`). This module
//! owns only what they share:
//! - [`Fleet::call`]: every Redis command goes through it, with a deadline
//!   (`fleet.redis_timeout`; a hung Redis must not hang a request, redis-rs#395)
//!   and a [`breaker`] that stops calling Redis for a cool-off after failures,
//!   so the gateway runs as a single gateway meanwhile and logs the change once;
//! - the [`bus`]: one pub/sub connection, fanned out to local listeners;
//! - the [`keys`]: where everything lives in Redis.
//!
//! Nothing here knows what a page or a back-off is; messages on the control
//! channel are text that each listener parses.

pub mod breaker;
pub mod bus;
pub mod keys;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;
use tokio::time::Instant;

use crate::config::FleetConfig;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use breaker::{Breaker, Transition};
use bus::Bus;
use keys::Keys;

/// Why a Redis call gave no answer. Never shown to a client: every caller falls back to local work.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("Redis is not called for now (breaker open after failures)")]
    BreakerOpen,
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis call failed")]
    Redis(#[source] redis::RedisError),
    #[error("Redis answered something unexpected: {0}")]
    Unexpected(&'static str),
}

/// This gateway's handle on the fleet.
pub struct Fleet {
    conn: ConnectionManager,
    breaker: Breaker,
    bus: Arc<Bus>,
    keys: Keys,
    config: FleetConfig,
    metrics: Arc<Metrics>,
    /// Random per process: tells this gateway's own control messages from others'.
    origin: Arc<str>,
}

impl Fleet {
    /// Set up the connections (lazily: Redis need not be up) and start the subscriber.
    /// Must be called inside a tokio runtime.
    pub fn start(
        config: &FleetConfig,
        metrics: Arc<Metrics>,
        shutdown: &Shutdown,
    ) -> Result<Arc<Fleet>, FleetError> {
        let url = config
            .redis_url
            .as_deref()
            .ok_or(FleetError::Unexpected("no fleet.redis_url"))?;
        let client = redis::Client::open(url).map_err(FleetError::Redis)?;
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.redis_timeout))
            .set_connection_timeout(Some(config.redis_timeout * 4))
            // Reconnection is retried on the next call anyway; don't queue calls behind long retries.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(FleetError::Redis)?;
        let keys = Keys::new(&config.key_prefix);
        let bus = Bus::new(
            client,
            keys.control_channel(),
            config.redis_timeout,
            metrics.clone(),
        );
        tokio::spawn(bus.clone().run(shutdown.clone()));
        let origin: String = (0..8)
            .map(|_| char::from(b"0123456789abcdef"[rand::random::<usize>() % 16]))
            .collect();
        Ok(Arc::new(Fleet {
            conn,
            breaker: Breaker::new(
                config.breaker_failures,
                config.breaker_cooloff,
                config.redis_timeout * 2,
            ),
            bus,
            keys,
            config: config.clone(),
            metrics,
            origin: Arc::from(origin),
        }))
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// This process's id in control messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Is Redis in use now (breaker closed)? When not, callers work as a single gateway.
    pub fn available(&self) -> bool {
        !self.breaker.is_open()
    }

    /// Run one Redis call under the deadline and the breaker.
    pub async fn call<T, Fut>(
        &self,
        f: impl FnOnce(ConnectionManager) -> Fut,
    ) -> Result<T, FleetError>
    where
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.breaker.admit() {
            self.metrics.fleet.l2_errors.inc();
            return Err(FleetError::BreakerOpen);
        }
        let started = Instant::now();
        let result = tokio::time::timeout(self.config.redis_timeout, f(self.conn.clone())).await;
        self.metrics
            .fleet
            .redis_latency
            .observe(started.elapsed().as_secs_f64());
        let err = match result {
            Ok(Ok(value)) => {
                self.note(self.breaker.success());
                return Ok(value);
            }
            Ok(Err(e)) => FleetError::Redis(e),
            Err(_) => FleetError::Timeout(self.config.redis_timeout),
        };
        self.metrics.fleet.l2_errors.inc();
        self.note(self.breaker.failure());
        Err(err)
    }

    /// Log a breaker change once, and show it in the metrics.
    fn note(&self, transition: Option<Transition>) {
        match transition {
            Some(Transition::Opened) => {
                self.metrics.fleet.breaker_open.set(1);
                self.metrics.fleet.breaker_trips.inc();
                tracing::warn!(
                    cooloff_ms = self.config.breaker_cooloff.as_millis() as u64,
                    "fleet tier unavailable: Redis is failing; running as a single gateway until it answers again"
                );
            }
            Some(Transition::Closed) => {
                self.metrics.fleet.breaker_open.set(0);
                tracing::info!("fleet tier restored: sharing with the fleet again");
            }
            None => {}
        }
    }

    /// Publish `text` on the control channel (as this gateway).
    pub async fn publish_control(&self, text: &str) -> Result<(), FleetError> {
        let channel = self.keys.control_channel();
        let message = self.stamp(text);
        self.call(|mut c| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(message)
                .query_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    /// `text` as a control message from this gateway.
    pub fn stamp(&self, text: &str) -> String {
        format!("{} {text}", self.origin)
    }

    /// The text of a control message, unless this gateway sent it.
    pub fn from_others<'a>(&self, message: &'a str) -> Option<&'a str> {
        let (origin, text) = message.split_once(' ')?;
        (origin != &*self.origin).then_some(text)
    }

    /// The fleet's state for `/readyz`.
    pub fn status(&self) -> serde_json::Value {
        let redis_ok = self.available();
        let notified = self.bus.is_connected();
        serde_json::json!({
            "state": if redis_ok && notified { "shared" } else { "single" },
            "redis": if redis_ok { "ok" } else { "unavailable" },
            "notifications": if notified { "connected" } else { "disconnected" },
        })
    }
}
