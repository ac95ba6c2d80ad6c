//! The flow of one request: route, then cache or passthrough, then log.
//!
//! [`Gateway`] owns the shared state (config, upstream client, cache, shield,
//! metrics). [`Gateway::handle`] is the whole request path; it is generic over
//! the request body and takes the connection's [`ConnInfo`], so benches and
//! tests can drive it without a socket.
//! - [`cached`]: the cacheable routes of [`crate::route`] (hit, stale, coalesced miss, long-poll);
//! - [`fill`]: the detached fetch that fills the cache;
//! - [`passthrough`]: everything else, streamed both ways;
//! - [`respond`]: turning entries and outcomes into responses.

mod cached;
mod fill;
mod passthrough;
mod respond;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use hyper::body::Body;
use tokio::time::Instant;

use crate::access_log::{AccessLog, Line, Sink};
use crate::admin::{PurgeTarget, Readiness};
use crate::body::{BoxError, ResponseBody};
use crate::cache::{self, Cache, Purge};
use crate::config::Config;
use crate::conn::ConnInfo;
use crate::fleet::{Fleet, FleetError};
use crate::jobs::JobTracker;
use crate::key::{FingerprintKey, ResourceId, ResourceKind};
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::route::{self, Matched};
use crate::shield::{self, Shield};
use crate::shutdown::Shutdown;
use crate::upstream::{TlsSetupError, Upstream};

/// Why a gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("cannot open the access log (log.access_log_path): {0}")]
    AccessLog(#[source] std::io::Error),
    #[error("cannot set up the fleet tier")]
    Fleet(#[from] FleetError),
}

/// Everything a request needs, shared by all connections.
struct State {
    /// Swapped whole by a reload; a request takes the one in force when it arrives.
    config: ArcSwap<Config>,
    upstream: Upstream,
    cache: Cache,
    shield: Arc<Shield>,
    /// The fleet this gateway shares its cache and shield with, with `[fleet]`.
    fleet: Option<Arc<Fleet>>,
    jobs: JobTracker,
    metrics: Arc<Metrics>,
    fingerprints: FingerprintKey,
    /// Triggered when shutdown begins, so held long-polls answer at once.
    shutdown: Shutdown,
    /// `None` when `log.access_log` is off.
    access_log: Option<AccessLog>,
}

/// The response to one request: ready at once (a fresh hit, a 422), or a boxed future
/// for everything that waits. A hit's "future" is the response itself, so nothing the size
/// of the miss path's state machine is built or moved per hit.
pub enum Handled {
    Now(std::future::Ready<Response<ResponseBody>>),
    Later(Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send>>),
}

impl Future for Handled {
    type Output = Response<ResponseBody>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Handled::Now(ready) => Pin::new(ready).poll(cx),
            Handled::Later(later) => later.as_mut().poll(cx),
        }
    }
}

/// The gateway: cheap to clone, one per process.
#[derive(Clone)]
pub struct Gateway {
    state: Arc<State>,
}

impl Gateway {
    /// A gateway for `config`, fingerprinting credentials with `fingerprints`
    /// (random per process unless a fleet shares one), answering held requests
    /// at once when `shutdown` triggers. With `[fleet]`, it starts the fleet's
    /// connections (lazily: Redis need not be up), so it must run inside a tokio runtime.
    pub fn new(
        config: Config,
        fingerprints: FingerprintKey,
        shutdown: Shutdown,
    ) -> Result<Self, SetupError> {
        let route_names: Vec<&'static str> = route::ROUTES.iter().map(|r| r.name).collect();
        let metrics = Arc::new(Metrics::new(&route_names));
        metrics
            .cache_capacity_bytes
            .set(i64::try_from(config.cache.capacity_bytes).unwrap_or(i64::MAX));
        let upstream = Upstream::new(&config.upstream, metrics.clone())?;
        let access_log = if config.log.access_log {
            let sink = match &config.log.access_log_path {
                Some(path) => Sink::File(path.clone()),
                None => Sink::Stdout,
            };
            let dropped = metrics.access_log_dropped.clone();
            Some(
                AccessLog::start(sink, config.log.format, dropped)
                    .map_err(SetupError::AccessLog)?,
            )
        } else {
            None
        };
        let rate = config.upstream.max_requests_per_second;
        let fleet = if config.fleet.enabled() {
            Some(Fleet::start(&config.fleet, metrics.clone(), &shutdown)?)
        } else {
            None
        };
        let (cache, shield) = match &fleet {
            Some(fleet) => (
                Cache::with_fleet(&config.cache, fleet.clone(), metrics.clone()),
                Shield::with_fleet(config.backoff.clone(), rate, fleet.clone()),
            ),
            None => (
                Cache::new(&config.cache),
                Arc::new(Shield::new(config.backoff.clone(), rate)),
            ),
        };
        let state = State {
            access_log,
            cache,
            shield,
            fleet,
            jobs: JobTracker::default(),
            fingerprints,
            shutdown,
            upstream,
            metrics,
            config: ArcSwap::from_pointee(config),
        };
        Ok(Gateway {
            state: Arc::new(state),
        })
    }

    /// Serve one client request.
    ///
    /// Not an `async fn`: a fresh hit (the product) is answered synchronously, before any
    /// future is made, and comes back as a ready [`Handled`]; everything that must wait
    /// (relays, misses, stale refreshes, long-polls) is one boxed future that owns what it needs.
    pub fn handle<B>(&self, req: Request<B>, conn: ConnInfo) -> Handled
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // Timed only when an access line will be written.
        let started = self.state.access_log.is_some().then(Instant::now);
        let (parts, body) = req.into_parts();
        let Some(matched) = route::match_read(&parts.method, parts.uri.path()) else {
            let this = self.clone();
            return Handled::Later(Box::pin(async move {
                this.relay(parts, body, conn, started).await
            }));
        };
        // A cached route reads no request body.
        drop(body);
        let rest = match cached::first_look(&self.state, &parts, matched) {
            Ok(answer) => {
                return Handled::Now(std::future::ready(
                    self.finish(&parts, conn, matched, answer, started),
                ))
            }
            Err(rest) => rest,
        };
        // The future owns the request; the route's id is copied out of the path it borrows.
        let (route, index) = (matched.route, matched.index);
        let id: Option<Box<str>> = matched.id.map(Box::from);
        let this = self.clone();
        Handled::Later(Box::pin(async move {
            let matched = Matched {
                route,
                index,
                id: id.as_deref(),
            };
            let answer = cached::rest(&this.state, &parts, matched, conn, rest).await;
            this.finish(&parts, conn, matched, answer, started)
        }))
    }

    /// Count and log an answer of a cacheable route.
    fn finish(
        &self,
        parts: &Parts,
        conn: ConnInfo,
        matched: Matched<'_>,
        (response, outcome): (Response<ResponseBody>, Outcome),
        started: Option<Instant>,
    ) -> Response<ResponseBody> {
        self.state
            .metrics
            .cached_route_request(matched.index, &outcome, response.status());
        self.access_log(parts, conn, matched.route.name, &response, outcome, started);
        response
    }

    /// Everything that is not a cacheable read: relayed to the upstream.
    async fn relay<B>(
        &self,
        parts: Parts,
        body: B,
        conn: ConnInfo,
        started: Option<Instant>,
    ) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.state.metrics.passthrough_request();
        let Some(started) = started else {
            return passthrough::forward(&self.state, parts, body, conn).await;
        };
        let logged = parts.clone();
        let response = passthrough::forward(&self.state, parts, body, conn).await;
        let outcome = Outcome::Passthrough;
        let route = "passthrough";
        self.access_log(&logged, conn, route, &response, outcome, Some(started));
        response
    }

    /// Run from now on with `config`'s live settings: requests that arrive from now on see
    /// it whole; freshness, back-off, budgets and the upstream timeouts change at once for
    /// everything. Settings that only a restart can change must already hold their running
    /// values (the caller's job: see `crate::reload`). Cached pages are kept.
    pub fn reconfigure(&self, config: Config) {
        let state = &self.state;
        state.cache.retune(cache::Tuning::new(&config.cache));
        state.shield.retune(shield::Tuning {
            backoff: config.backoff.clone(),
            rate: config.upstream.max_requests_per_second,
        });
        state.upstream.set_timeouts(
            config.upstream.request_timeout,
            config.upstream.connect_timeout,
        );
        state.config.store(Arc::new(config));
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.state.config.load_full()
    }

    /// The gateway's metrics registry (for what other parts of the process count).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    /// Reopen the access log file (after logrotate moved it). Blocks briefly.
    pub fn reopen_access_log(&self) {
        if let Some(log) = &self.state.access_log {
            log.reopen();
        }
    }

    /// Write every pending access line; call once serving has stopped.
    pub fn close_access_log(&self) {
        if let Some(log) = &self.state.access_log {
            log.close();
        }
    }

    /// Serve a request of a cacheable route (no body is read), with how it
    /// was answered. `None` when the request is not for one. For benches.
    pub async fn handle_items(&self, parts: &Parts) -> Option<(Response<ResponseBody>, Outcome)> {
        let matched: Matched<'_> = route::match_read(&parts.method, parts.uri.path())?;
        Some(match cached::first_look(&self.state, parts, matched) {
            Ok(answer) => answer,
            Err(rest) => cached::rest(&self.state, parts, matched, ConnInfo::local(), rest).await,
        })
    }

    fn access_log(
        &self,
        parts: &Parts,
        conn: ConnInfo,
        route: &str,
        res: &Response<ResponseBody>,
        outcome: Outcome,
        started: Option<Instant>,
    ) {
        let (Some(log), Some(started)) = (&self.state.access_log, started) else {
            return;
        };
        log.log(&Line {
            peer: conn.peer,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            status: res.status().as_u16(),
            result: outcome.result().as_str(),
            route,
            latency: started.elapsed(),
        });
    }
}

/// What the admin API asks of the gateway (through `crate::admin::Control`, which the
/// composition root implements with these).
impl Gateway {
    /// Forget the cached pages `target` names.
    pub async fn purge(&self, target: PurgeTarget<'_>) {
        let scope = match target {
            PurgeTarget::All => Purge::All,
            PurgeTarget::Job(id) => Purge::Resource(ResourceId::new(ResourceKind::Job, id)),
            PurgeTarget::Batch(id) => Purge::Resource(ResourceId::new(ResourceKind::Batch, id)),
        };
        self.state.cache.purge(&scope).await;
        self.state.metrics.purges.inc();
    }

    pub fn readiness(&self) -> Readiness {
        let draining = self.state.shutdown.is_triggered();
        let mut body = serde_json::json!({ "status": if draining { "draining" } else { "ready" } });
        // A fleet without Redis still serves (as a single gateway): shown, never "not ready".
        if let Some(fleet) = &self.state.fleet {
            body["fleet"] = fleet.status();
        }
        Readiness {
            ready: !draining,
            body,
        }
    }

    /// The Prometheus text exposition, with state gauges read now.
    pub async fn metrics_text(&self) -> String {
        // State gauges are read at scrape time, not maintained per request.
        let state = &self.state;
        let usage = state.cache.usage().await;
        let m = &state.metrics;
        m.cache_entries
            .set(i64::try_from(usage.entries).unwrap_or(i64::MAX));
        m.cache_bytes
            .set(i64::try_from(usage.bytes).unwrap_or(i64::MAX));
        m.fetches_in_flight
            .set(i64::try_from(state.cache.fills_in_flight()).unwrap_or(i64::MAX));
        m.upstream_in_flight.set(
            i64::try_from(
                state
                    .upstream
                    .in_flight(state.config.load().upstream.max_concurrent),
            )
            .unwrap_or(i64::MAX),
        );
        m.backoffs_active
            .set(i64::try_from(state.shield.active()).unwrap_or(i64::MAX));
        m.encode()
    }
}
