//! The flow of one request: route, then cache or passthrough, then log.
//!
//! [`Gateway`] owns the shared state (config, upstream client, cache, in-flight
//! fetches, shield, metrics). [`Gateway::handle`] is the whole request path;
//! it needs no socket, so benches and tests can drive it directly.
//! - [`items`]: the cacheable item-list route (hit, stale, coalesced miss, long-poll);
//! - [`fill`]: the detached fetch that fills the cache;
//! - [`passthrough`]: everything else, streamed both ways;
//! - [`respond`]: turning entries into responses with `Cache-Status`.

pub mod fill;
pub mod items;
pub mod passthrough;
pub mod respond;

use std::net::SocketAddr;
use std::sync::Arc;

use http::request::Parts;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::ResponseBody;
use crate::cache::{Flights, ResponseCache};
use crate::config::Config;
use crate::items::{match_items_path, FingerprintKey};
use crate::jobs::JobTracker;
use crate::metrics::{Metrics, Outcome};
use crate::shield::Shield;
use crate::upstream::{TlsSetupError, Upstream};

/// Everything a request needs, shared by all connections.
pub struct State {
    pub config: Config,
    pub upstream: Upstream,
    pub cache: ResponseCache,
    pub flights: Arc<Flights>,
    pub shield: Arc<Shield>,
    pub jobs: JobTracker,
    pub metrics: Arc<Metrics>,
    pub fingerprints: FingerprintKey,
    /// Flips to `true` when shutdown begins, so held long-polls answer at once.
    pub draining: watch::Sender<bool>,
}

/// The gateway: cheap to clone, one per process.
#[derive(Clone)]
pub struct Gateway {
    state: Arc<State>,
}

impl Gateway {
    pub fn new(config: Config) -> Result<Self, TlsSetupError> {
        let metrics = Arc::new(Metrics::new());
        let upstream = Upstream::new(&config.upstream, metrics.clone())?;
        let state = State {
            cache: ResponseCache::new(config.cache.capacity_bytes),
            flights: Arc::new(Flights::default()),
            shield: Arc::new(Shield::new(
                config.backoff.clone(),
                config.upstream.max_requests_per_second,
            )),
            jobs: JobTracker::default(),
            fingerprints: FingerprintKey::random(),
            draining: watch::Sender::new(false),
            upstream,
            metrics,
            config,
        };
        Ok(Gateway {
            state: Arc::new(state),
        })
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Tell held requests that the server is shutting down.
    pub fn begin_drain(&self) {
        self.state.draining.send_replace(true);
    }

    /// Serve one client request.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
        // Timed only when an access line will be written.
        let started = self.state.config.log.access_log.then(Instant::now);
        let (parts, body) = req.into_parts();
        if let Some(job) = items_job(&parts) {
            let (response, outcome) = items::serve(&self.state, &parts, job, Some(peer)).await;
            self.access_log(&parts.method, &parts.uri, &response, outcome, started);
            return response;
        }
        self.state.metrics.passthrough_request();
        let (method, uri) = (parts.method.clone(), parts.uri.clone());
        let response = passthrough::forward(&self.state, parts, body, peer).await;
        self.access_log(&method, &uri, &response, Outcome::Passthrough, started);
        response
    }

    /// Serve a request of the item-list route (no body is read). Public for benches.
    pub async fn handle_items(&self, parts: &Parts) -> Option<(Response<ResponseBody>, Outcome)> {
        let job = items_job(parts)?;
        Some(items::serve(&self.state, parts, job, None).await)
    }

    fn access_log(
        &self,
        method: &Method,
        uri: &http::Uri,
        res: &Response<ResponseBody>,
        outcome: Outcome,
        started: Option<Instant>,
    ) {
        let Some(started) = started else {
            return;
        };
        // The path only: the query may carry identifiers users consider private; never headers.
        tracing::info!(
            target: "pollgate::access",
            method = %method,
            path = uri.path(),
            status = res.status().as_u16(),
            cache = outcome.as_str(),
            latency_us = started.elapsed().as_micros() as u64,
        );
    }
}

/// The job id when the request is a cacheable item-list request (GET or HEAD).
fn items_job(parts: &Parts) -> Option<&str> {
    if !items::cacheable_method(&parts.method) {
        return None;
    }
    match_items_path(parts.uri.path())
}
