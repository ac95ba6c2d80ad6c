//! Prometheus metrics, served by the admin listener.
//!
//! Counters on the request path are resolved once at start-up and kept as
//! plain handles, so recording a hit is one atomic add: no label hashing and
//! no registry lock per request. Gauges that describe state (cache size,
//! fetches in flight, active back-offs) are read at scrape time instead of
//! being maintained on every request.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::outcome::{Outcome, ResultLabel, StaleReason};

/// The label value is the snake_case name the access log and README use.
impl EncodeLabelValue for ResultLabel {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl EncodeLabelValue for StaleReason {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    result: ResultLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: StaleReason,
}

pub struct Metrics {
    registry: Registry,
    /// Per cacheable route (in route-table order), per result.
    routes: Vec<[Counter; ResultLabel::ALL.len()]>,
    passthrough: Counter,
    upstream: Family<StatusLabels, Counter>,
    upstream_latency: Histogram,
    pub coalesced_waiters: Counter,
    pub validation_rejections: Counter,
    stale: [Counter; StaleReason::ALL.len()],
    pub backoffs_started: Counter,
    pub upstream_429: Counter,
    without_upstream: Counter,
    pub not_modified: Counter,
    pub long_polls_waiting: Gauge,
    pub cache_entries: Gauge,
    pub cache_bytes: Gauge,
    /// `cache.capacity_bytes`, so "how full" is one division in a query.
    pub cache_capacity_bytes: Gauge,
    pub fetches_in_flight: Gauge,
    pub upstream_in_flight: Gauge,
    pub backoffs_active: Gauge,
    pub purges: Counter,
    pub access_log_dropped: Counter,
    pub fleet: FleetMetrics,
    reloads: Family<ResultOnly, Counter>,
    /// Unix time of the last configuration load that took effect (start-up counts).
    last_reload_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    tls_reloads: Family<ResultOnly, Counter>,
    tls_handshake_failures: Family<HandshakeLabels, Counter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultOnly {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HandshakeLabels {
    listener: &'static str,
    reason: &'static str,
}

/// Failed TLS handshakes of one listener, by reason.
#[derive(Debug, Clone, Default)]
pub struct HandshakeFailures {
    /// The client did not finish in time (`handshake_timeout`).
    pub timeout: Counter,
    /// The handshake failed: no shared protocol, a refused client certificate, garbage.
    pub error: Counter,
}

/// What the shared Redis tier did (all zero without `[fleet]`).
pub struct FleetMetrics {
    pub l2_hits: Counter,
    pub l2_misses: Counter,
    /// Redis calls that failed, timed out, or were not made because the breaker was open.
    pub l2_errors: Counter,
    /// Pages this gateway stored in L2 (it held the lease).
    pub l2_stores: Counter,
    /// Stores the store script refused: an older fencing token, or a purge since the lease.
    pub l2_stores_refused: Counter,
    pub leases_acquired: Counter,
    /// Fills that waited for another gateway's lease instead of fetching.
    pub leases_waited: Counter,
    /// Leases taken after another holder's lease lapsed without an answer.
    pub leases_taken_over: Counter,
    pub notifications_received: Counter,
    pub redis_latency: Histogram,
    /// 1 while the breaker keeps Redis out of the request path (single-gateway mode).
    pub breaker_open: Gauge,
    /// Times the breaker opened.
    pub breaker_trips: Counter,
}

impl FleetMetrics {
    fn new() -> Self {
        FleetMetrics {
            // 50 µs .. ~1.6 s: a loopback round trip to a timed-out call.
            redis_latency: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            l2_hits: Counter::default(),
            l2_misses: Counter::default(),
            l2_errors: Counter::default(),
            l2_stores: Counter::default(),
            l2_stores_refused: Counter::default(),
            leases_acquired: Counter::default(),
            leases_waited: Counter::default(),
            leases_taken_over: Counter::default(),
            notifications_received: Counter::default(),
            breaker_open: Gauge::default(),
            breaker_trips: Counter::default(),
        }
    }

    fn register(&self, r: &mut Registry) {
        let counters: [(&str, &str, &Counter); 10] = [
            (
                "fleet_l2_hits",
                "L1 misses answered from the shared Redis tier",
                &self.l2_hits,
            ),
            (
                "fleet_l2_misses",
                "L1 misses the shared tier could not answer",
                &self.l2_misses,
            ),
            (
                "fleet_l2_errors",
                "Redis calls failed, timed out or skipped by the open breaker",
                &self.l2_errors,
            ),
            (
                "fleet_l2_stores",
                "Pages stored in the shared tier by this gateway",
                &self.l2_stores,
            ),
            (
                "fleet_l2_stores_refused",
                "Stores refused for an older fencing token or a purge since the lease",
                &self.l2_stores_refused,
            ),
            (
                "fleet_leases_acquired",
                "Fill leases this gateway acquired",
                &self.leases_acquired,
            ),
            (
                "fleet_leases_waited",
                "Fills that waited for another gateway's lease",
                &self.leases_waited,
            ),
            (
                "fleet_leases_taken_over",
                "Leases taken after the previous holder's lapsed",
                &self.leases_taken_over,
            ),
            (
                "fleet_notifications_received",
                "Pub/sub notifications received",
                &self.notifications_received,
            ),
            (
                "fleet_breaker_trips",
                "Times the Redis breaker opened",
                &self.breaker_trips,
            ),
        ];
        for (name, help, c) in counters {
            r.register(name, help, c.clone());
        }
        r.register(
            "fleet_redis_latency_seconds",
            "Round-trip time of Redis calls",
            self.redis_latency.clone(),
        );
        r.register(
            "fleet_breaker_open",
            "1 while Redis is kept out of the request path (single-gateway mode)",
            self.breaker_open.clone(),
        );
    }
}

impl Metrics {
    /// Metrics for a gateway whose cacheable routes are named `routes` (route-table order).
    pub fn new(routes: &[&'static str]) -> Self {
        let mut registry = Registry::with_prefix("pollgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Client requests by route and how they were answered",
            requests.clone(),
        );
        // Every result but `Passthrough` can answer a cacheable route; that one slot
        // is a detached counter, so no impossible series is exported.
        let routes = routes
            .iter()
            .map(|&route| {
                ResultLabel::ALL.map(|result| match result {
                    ResultLabel::Passthrough => Counter::default(),
                    result => requests
                        .get_or_create(&RequestLabels { route, result })
                        .clone(),
                })
            })
            .collect();
        let passthrough = requests
            .get_or_create(&RequestLabels {
                route: "passthrough",
                result: ResultLabel::Passthrough,
            })
            .clone();
        let upstream = Family::<StatusLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Upstream requests by status class (or timeout/error)",
            upstream.clone(),
        );
        let upstream_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "upstream_latency_seconds",
            "Time to upstream response headers",
            upstream_latency.clone(),
        );
        let stale_family = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "stale_served",
            "Stale entries served, by reason",
            stale_family.clone(),
        );
        let stale = StaleReason::ALL
            .map(|reason| stale_family.get_or_create(&ReasonLabels { reason }).clone());

        let m = Metrics {
            routes,
            passthrough,
            upstream,
            upstream_latency,
            coalesced_waiters: Counter::default(),
            validation_rejections: Counter::default(),
            stale,
            backoffs_started: Counter::default(),
            upstream_429: Counter::default(),
            without_upstream: Counter::default(),
            not_modified: Counter::default(),
            long_polls_waiting: Gauge::default(),
            cache_entries: Gauge::default(),
            cache_bytes: Gauge::default(),
            cache_capacity_bytes: Gauge::default(),
            fetches_in_flight: Gauge::default(),
            upstream_in_flight: Gauge::default(),
            backoffs_active: Gauge::default(),
            purges: Counter::default(),
            access_log_dropped: Counter::default(),
            fleet: FleetMetrics::new(),
            reloads: Family::default(),
            last_reload_success: Gauge::default(),
            tls_reloads: Family::default(),
            tls_handshake_failures: Family::default(),
            registry,
        };
        let mut m = m;
        let r = &mut m.registry;
        r.register(
            "coalesced_waiters",
            "Requests that joined an in-flight fetch instead of making one",
            m.coalesced_waiters.clone(),
        );
        r.register(
            "validation_rejections",
            "Item-list requests rejected with 422 at the edge",
            m.validation_rejections.clone(),
        );
        r.register(
            "backoffs_started",
            "Per-credential back-offs started after an upstream 429",
            m.backoffs_started.clone(),
        );
        r.register(
            "upstream_429",
            "Upstream 429 (or 503 with Retry-After) responses",
            m.upstream_429.clone(),
        );
        r.register(
            "answered_without_upstream",
            "Item-list requests answered without an upstream call of their own",
            m.without_upstream.clone(),
        );
        r.register(
            "not_modified",
            "304 responses served from the cache",
            m.not_modified.clone(),
        );
        r.register(
            "long_polls_waiting",
            "Long-poll requests being held now",
            m.long_polls_waiting.clone(),
        );
        r.register(
            "cache_entries",
            "Entries in the cache",
            m.cache_entries.clone(),
        );
        r.register(
            "cache_bytes",
            "Weighted size of the cache in bytes",
            m.cache_bytes.clone(),
        );
        r.register(
            "cache_capacity_bytes",
            "The cache's memory bound in bytes (cache.capacity_bytes)",
            m.cache_capacity_bytes.clone(),
        );
        r.register(
            "fetches_in_flight",
            "Coalesced cache fills in flight",
            m.fetches_in_flight.clone(),
        );
        r.register(
            "upstream_in_flight",
            "Upstream requests in flight (all routes)",
            m.upstream_in_flight.clone(),
        );
        r.register(
            "backoffs_active",
            "Credentials under an upstream back-off now",
            m.backoffs_active.clone(),
        );
        r.register(
            "purges",
            "Cache purges (admin or invalidating writes)",
            m.purges.clone(),
        );
        r.register(
            "access_log_dropped",
            "Access lines dropped because the log writer fell behind",
            m.access_log_dropped.clone(),
        );
        m.fleet.register(r);
        r.register(
            "config_reloads",
            "Configuration reloads (SIGHUP or POST /reload) by result: success or failure",
            m.reloads.clone(),
        );
        r.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time the configuration in force was loaded (start-up or last good reload)",
            m.last_reload_success.clone(),
        );
        r.register(
            "tls_reloads",
            "Certificate reloads (signal, file change or config reload) by result",
            m.tls_reloads.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, by listener (server, admin) and reason (timeout, error)",
            m.tls_handshake_failures.clone(),
        );
        // Exported at zero from the start (with or without TLS), so dashboards and alerts
        // find the series.
        for listener in ["server", "admin"] {
            let _ = m.handshake_failures(listener);
        }
        for result in ["success", "failure"] {
            let _ = m.reloads.get_or_create(&ResultOnly { result });
            let _ = m.tls_reloads.get_or_create(&ResultOnly { result });
        }
        m.config_loaded();
        m
    }

    /// Count a configuration reload.
    pub fn config_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultOnly { result }).inc();
        if ok {
            self.config_loaded();
        }
    }

    fn config_loaded(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_reload_success.set(now);
    }

    /// The failed-handshake counters of `listener` (`server` or `admin`), exported from now on.
    pub fn handshake_failures(&self, listener: &'static str) -> HandshakeFailures {
        let counter = |reason| {
            self.tls_handshake_failures
                .get_or_create(&HandshakeLabels { listener, reason })
                .clone()
        };
        HandshakeFailures {
            timeout: counter("timeout"),
            error: counter("error"),
        }
    }

    /// Count a certificate reload.
    pub fn tls_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.tls_reloads.get_or_create(&ResultOnly { result }).inc();
    }

    /// Count one request of cacheable route number `route` (route-table order) by how
    /// it was answered (and with what status).
    pub fn cached_route_request(&self, route: usize, outcome: &Outcome, status: http::StatusCode) {
        let result = outcome.result();
        // `ALL` lists the variants in declaration order, so the discriminant is the index.
        if let Some(counters) = self.routes.get(route) {
            counters[result as usize].inc();
        }
        if result.without_upstream() {
            self.without_upstream.inc();
        }
        if let Outcome::Stale { why, .. } = outcome {
            self.stale[why.reason() as usize].inc();
        }
        if *outcome == Outcome::Rejected {
            self.validation_rejections.inc();
        }
        if status == http::StatusCode::NOT_MODIFIED {
            self.not_modified.inc();
        }
    }

    pub fn passthrough_request(&self) {
        self.passthrough.inc();
    }

    pub fn upstream_result(&self, status: &'static str, latency: Duration) {
        self.upstream.get_or_create(&StatusLabels { status }).inc();
        self.upstream_latency.observe(latency.as_secs_f64());
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}
