//! The item-list route: validate, key, then serve from cache or one coalesced fetch.
//!
//! Order of decisions for a valid request with a credential:
//! 1. long-poll (`Prefer: wait=N` + `If-None-Match`) is held in [`long_poll`];
//! 2. a fresh entry is a hit (or a 304);
//! 3. an entry within `stale_while_revalidate` is served at once and refreshed
//!    once in the background;
//! 4. otherwise the request joins or starts the key's fill, unless the
//!    credential is backed off or out of budget, in which case it gets stale
//!    data or a 429 without any upstream call;
//! 5. a failed fill (5xx, 429, timeout, reset) falls back to stale data within
//!    `stale_if_error`, else to the error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use tokio::time::Instant;

use super::fill::{self, Fill};
use super::passthrough;
use super::respond::{self, StaleWhy, Status};
use super::State;
use crate::body::ResponseBody;
use crate::cache::{Entry, FlightOutcome, Freshness, Role};
use crate::error::{GatewayError, UpstreamError};
use crate::items::{canonicalize, CacheKey, CanonicalQuery, Credential};
use crate::metrics::{Outcome, StaleReason};
use crate::shield::Gate;

type Answer = (Response<ResponseBody>, Outcome);

/// Serve one item-list request (GET or HEAD).
pub async fn serve(
    state: &Arc<State>,
    parts: &Parts,
    job: &str,
    peer: Option<SocketAddr>,
) -> Answer {
    let query = match canonicalize(parts.uri.query()) {
        Ok(q) => q,
        Err(rejection) => {
            state.metrics.validation_rejections.inc();
            state.metrics.item_request(Outcome::Rejected);
            let res = respond::error(GatewayError::InvalidQuery(rejection), Status::Rejected);
            return (res, Outcome::Rejected);
        }
    };
    let Some(credential) = state.fingerprints.credential(&parts.headers) else {
        // Anonymous requests are not ours to cache: the upstream answers them (401).
        state.metrics.item_request(Outcome::Bypass);
        let res = passthrough::forward_without_body(state, parts, peer).await;
        return (respond::with_status(res, Status::Bypass), Outcome::Bypass);
    };
    let key = CacheKey::new(
        &credential,
        job,
        &query,
        &state.config.cache.vary_headers,
        &parts.headers,
    );
    let request = ItemRequest {
        state,
        parts,
        job,
        key,
        credential,
        if_none_match: parts.headers.get(header::IF_NONE_MATCH),
    };
    // `Prefer` is only looked at when there is an ETag to wait on.
    let long_poll = request
        .if_none_match
        .and_then(|etag| Some((etag.clone(), prefer_wait(&parts.headers)?)));
    let (res, outcome) = match long_poll {
        // Boxed: the held request's large state machine stays off the hit path's future.
        Some((etag, wait)) => Box::pin(request.long_poll(query, etag, wait)).await,
        None => request.serve(query).await,
    };
    state.metrics.item_request(outcome);
    (res, outcome)
}

/// `Prefer: wait=N` (RFC 7240), in seconds.
fn prefer_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .find_map(|pref| {
            let (name, value) = pref.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            let secs: f64 = value.trim().trim_matches('"').parse().ok()?;
            (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
        })
}

struct ItemRequest<'a> {
    state: &'a Arc<State>,
    parts: &'a Parts,
    job: &'a str,
    key: CacheKey,
    credential: Credential,
    if_none_match: Option<&'a HeaderValue>,
}

impl ItemRequest<'_> {
    /// Serve the entry's gzip representation? Only parsed when the entry has one.
    fn gzip_ok(&self, entry: &Entry) -> bool {
        entry.gzip.is_some() && respond::accepts_gzip(&self.parts.headers)
    }

    fn not_modified(&self, entry: &Entry) -> bool {
        entry.status == StatusCode::OK && self.if_none_match.is_some_and(|inm| entry.matches(inm))
    }

    /// A response carrying a cached entry (or a 304 for it).
    fn cached(&self, entry: &Entry, status: Status, outcome: Outcome, now: Instant) -> Answer {
        let not_modified = self.not_modified(entry);
        if not_modified {
            self.state.metrics.not_modified.inc();
        }
        let res = respond::from_entry(
            entry,
            status,
            Some(entry.age(now)),
            not_modified,
            self.gzip_ok(entry),
        );
        let outcome = if not_modified && outcome == Outcome::Hit {
            Outcome::NotModified
        } else {
            outcome
        };
        (res, outcome)
    }

    fn stale(&self, entry: &Entry, why: StaleWhy, now: Instant) -> Answer {
        let reason = match why {
            StaleWhy::WhileRevalidate => StaleReason::WhileRevalidate,
            StaleWhy::Error(_) => StaleReason::UpstreamError,
            StaleWhy::Backoff => StaleReason::Backoff,
            StaleWhy::WaitTimeout => StaleReason::WaitTimeout,
        };
        self.state.metrics.stale_served(reason);
        let by = match entry.freshness(now) {
            Freshness::Stale(by) => by,
            Freshness::Fresh(_) => Duration::ZERO,
        };
        self.cached(entry, Status::Stale { by, why }, Outcome::Stale, now)
    }

    /// The entry if it is still within `stale_if_error` (used for every fallback).
    fn usable_stale(&self, entry: Option<Arc<Entry>>, now: Instant) -> Option<Arc<Entry>> {
        entry.filter(|e| match e.freshness(now) {
            Freshness::Fresh(_) => true,
            Freshness::Stale(by) => by <= self.state.config.cache.stale_if_error,
        })
    }

    async fn serve(&self, query: CanonicalQuery) -> Answer {
        let state = self.state;
        let now = Instant::now();
        let cached = state.cache.get(&self.key).await;
        if let Some(entry) = &cached {
            match entry.freshness(now) {
                Freshness::Fresh(left) => {
                    return self.cached(entry, Status::Hit(left), Outcome::Hit, now);
                }
                Freshness::Stale(by) if by <= state.config.cache.stale_while_revalidate => {
                    self.refresh_in_background(query);
                    return self.stale(entry, StaleWhy::WhileRevalidate, now);
                }
                Freshness::Stale(_) => {}
            }
        }
        let stale = self.usable_stale(cached, now);
        // Boxed so the miss machinery does not inflate (and get moved with) every hit's future.
        match Box::pin(self.fetch(query)).await {
            Ok((outcome, role)) => self.fetched(outcome, role, stale),
            Err(err) => self.failed(err, stale),
        }
    }

    /// Start (or join) a fill and leave it running; nobody waits for it here.
    fn refresh_in_background(&self, query: CanonicalQuery) {
        if self.state.flights.contains(&self.key) {
            return;
        }
        let probe = match self.state.shield.gate(&self.credential) {
            Gate::Closed(_) => return,
            Gate::Open => None,
            Gate::Probe(p) => Some(p),
        };
        if self
            .state
            .shield
            .take_budget(&self.credential, Duration::ZERO)
            .is_err()
        {
            return;
        }
        let fill = Fill::new(
            self.state,
            self.key.clone(),
            self.credential,
            self.job,
            query,
            &self.parts.headers,
        );
        let state = self.state.clone();
        // The ticket is dropped at once: the fill runs detached and stores its result.
        let _ = self
            .state
            .flights
            .join_or_start(&self.key, usize::MAX, move || fill::run(state, fill, probe));
    }

    /// Join the key's fill or start one (respecting back-off and budget), and wait for it.
    async fn fetch(&self, query: CanonicalQuery) -> Result<(FlightOutcome, Role), GatewayError> {
        let state = self.state;
        let cfg = &state.config.cache;
        let probe = match state.shield.gate(&self.credential) {
            Gate::Closed(left) => return Err(GatewayError::BackedOff(left)),
            Gate::Open => None,
            Gate::Probe(p) => Some(p),
        };
        if !state.flights.contains(&self.key) {
            match state
                .shield
                .take_budget(&self.credential, state.config.upstream.budget_wait)
            {
                Ok(wait) if wait.is_zero() => {}
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(wait) => return Err(GatewayError::BackedOff(wait)),
            }
        }
        let fill = Fill::new(
            state,
            self.key.clone(),
            self.credential,
            self.job,
            query,
            &self.parts.headers,
        );
        let owned = state.clone();
        let ticket = state
            .flights
            .join_or_start(&self.key, cfg.max_waiters, move || {
                fill::run(owned, fill, probe)
            })?;
        if ticket.role == Role::Collapsed {
            state.metrics.coalesced_waiters.inc();
        }
        match ticket.wait(cfg.wait_timeout).await? {
            Ok(outcome) => Ok((outcome, ticket.role)),
            Err(e) => Err(GatewayError::Upstream(UpstreamError::clone(&e))),
        }
    }

    /// Answer from a completed fill, falling back to stale data on 5xx and 429.
    fn fetched(&self, outcome: FlightOutcome, role: Role, stale: Option<Arc<Entry>>) -> Answer {
        let now = Instant::now();
        let upstream = outcome.entry.status;
        if let Some(stale) = stale {
            if upstream.is_server_error() {
                return self.stale(&stale, StaleWhy::Error(Some(upstream)), now);
            }
            if upstream == StatusCode::TOO_MANY_REQUESTS {
                return self.stale(&stale, StaleWhy::Backoff, now);
            }
        }
        if upstream.is_server_error() {
            // Nothing to fall back on: pollgate's own 502, naming what the upstream said.
            let res = respond::error(
                GatewayError::Upstream(UpstreamError::Status(upstream)),
                Status::Miss {
                    stored: false,
                    upstream,
                },
            );
            return (res, Outcome::Error);
        }
        let (status, result) = match role {
            Role::Leader => (
                Status::Miss {
                    stored: outcome.stored,
                    upstream,
                },
                Outcome::Miss,
            ),
            Role::Collapsed => (Status::Collapsed { upstream }, Outcome::Collapsed),
        };
        let not_modified = self.not_modified(&outcome.entry);
        if not_modified {
            self.state.metrics.not_modified.inc();
        }
        (
            respond::from_entry(
                &outcome.entry,
                status,
                None,
                not_modified,
                self.gzip_ok(&outcome.entry),
            ),
            result,
        )
    }

    /// Answer when no response came: stale data if any, else pollgate's error.
    fn failed(&self, err: GatewayError, stale: Option<Arc<Entry>>) -> Answer {
        let now = Instant::now();
        if let Some(stale) = stale {
            let why = match &err {
                GatewayError::BackedOff(_) => Some(StaleWhy::Backoff),
                GatewayError::WaitTimeout(_) | GatewayError::TooManyWaiters => {
                    Some(StaleWhy::WaitTimeout)
                }
                GatewayError::Upstream(_) => Some(StaleWhy::Error(None)),
                _ => None,
            };
            if let Some(why) = why {
                return self.stale(&stale, why, now);
            }
        }
        let (status, outcome) = match &err {
            GatewayError::BackedOff(_) => (Status::BackedOff, Outcome::BackedOff),
            GatewayError::WaitTimeout(_) | GatewayError::TooManyWaiters => {
                (Status::Failed("wait-timeout"), Outcome::Error)
            }
            GatewayError::Upstream(e) => (Status::Failed(e.kind()), Outcome::Error),
            _ => (Status::Failed("error"), Outcome::Error),
        };
        (respond::error(err, status), outcome)
    }

    /// Hold the request until the content differs from the client's `If-None-Match`,
    /// or `wait` passes (then 304). All held requests of a key share one fill per TTL.
    async fn long_poll(&self, query: CanonicalQuery, etag: HeaderValue, wait: Duration) -> Answer {
        let state = self.state;
        let deadline = Instant::now() + wait.min(state.config.cache.long_poll_max_wait);
        let _held = Held::new(state);
        let mut draining = state.draining.subscribe();
        loop {
            let now = Instant::now();
            let entry = match state.cache.get(&self.key).await {
                Some(e) if matches!(e.freshness(now), Freshness::Fresh(_)) => e,
                cached => {
                    let stale = self.usable_stale(cached, now);
                    match self.fetch(query.clone()).await {
                        Ok((outcome, _)) if outcome.entry.status == StatusCode::OK => outcome.entry,
                        Ok((outcome, role)) => return self.fetched(outcome, role, stale),
                        Err(err) => return self.failed(err, stale),
                    }
                }
            };
            let now = Instant::now();
            if !entry.matches(&etag) {
                return self.cached(
                    &entry,
                    Status::Hit(entry.fresh_until().saturating_duration_since(now)),
                    Outcome::Hit,
                    now,
                );
            }
            if now >= deadline {
                state.metrics.not_modified.inc();
                let res = respond::from_entry(
                    &entry,
                    Status::Hit(entry.fresh_until().saturating_duration_since(now)),
                    Some(entry.age(now)),
                    true,
                    self.gzip_ok(&entry),
                );
                return (res, Outcome::NotModified);
            }
            let wake = entry.fresh_until().min(deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = crate::server::stopped(&mut draining) => {
                    let res = respond::from_entry(
                        &entry,
                        Status::Hit(Duration::ZERO),
                        Some(entry.age(now)),
                        true,
                        self.gzip_ok(&entry),
                    );
                    return (res, Outcome::NotModified);
                }
            }
        }
    }
}

/// Counts a held long-poll in the gauge for as long as it lives.
struct Held<'a>(&'a State);

impl<'a> Held<'a> {
    fn new(state: &'a State) -> Self {
        state.metrics.long_polls_waiting.inc();
        Held(state)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.metrics.long_polls_waiting.dec();
    }
}

/// Is this method one the route caches? (Used by the router.)
pub fn cacheable_method(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}
