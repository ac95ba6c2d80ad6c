//! The cacheable routes: hit, stale, coalesced miss, long-poll.
//!
//! Every entry of the route table takes this one path. A request is validated
//! and canonicalized against its route's query schema (422 at the edge), keyed
//! by its credential's fingerprint, route, job or batch id and canonical
//! query, then answered from the cache when fresh, from a
//! stale copy while a background refresh runs, or by joining (or starting)
//! the one fill of its key. Back-off and budget are checked before any fill
//! starts; every fallback prefers a usable stale copy to an error.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode};
use tokio::time::Instant;

use super::fill::{self, Fill};
use super::passthrough;
use super::respond;
use super::State;
use crate::body::ResponseBody;
use crate::cache::{CacheError, Entry, FlightOutcome, Freshness, Policy, Role};
use crate::config::Config;
use crate::conn::ConnInfo;
use crate::error::GatewayError;
use crate::key::{CacheKey, Credential};
use crate::outcome::{FailReason, Outcome, StaleWhy};
use crate::route::{canonicalize, canonicalize_into, Matched};
use crate::shield::Gate;
use crate::upstream::UpstreamError;

type Answer = (Response<ResponseBody>, Outcome);

/// Why a fetch gave no response: the ways [`CachedRequest::fetch`] can fail.
enum FetchError {
    /// The credential is backed off or over budget for this long.
    BackedOff(Duration),
    Cache(CacheError),
    Upstream(UpstreamError),
}

impl From<CacheError> for FetchError {
    fn from(e: CacheError) -> Self {
        FetchError::Cache(e)
    }
}

impl From<FetchError> for GatewayError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::BackedOff(left) => GatewayError::BackedOff(left),
            FetchError::Cache(e) => GatewayError::Cache(e),
            FetchError::Upstream(e) => GatewayError::Upstream(e),
        }
    }
}

/// What [`first_look`] left to do, asynchronously.
pub enum Rest {
    /// No credential: the upstream answers (401); the query was valid.
    Anonymous,
    /// Keyed, and looked up in this gateway's memory (L1) without finding a fresh copy;
    /// `local` is what was there. The shared tier, fills, stale answers and long-polls follow.
    Keyed {
        key: CacheKey,
        credential: Credential,
        local: Option<Arc<Entry>>,
        /// The configuration the key was built under; the request finishes under it.
        config: Arc<Config>,
    },
}

/// The synchronous part of a request of a cacheable route (GET or HEAD): validate, key,
/// and look in L1. A fresh hit (and a 422) is answered here, with no future at all: the
/// hit path is plain calls. Everything else is [`rest`]'s.
pub fn first_look(state: &Arc<State>, parts: &Parts, matched: Matched<'_>) -> Result<Answer, Rest> {
    let raw_query = parts.uri.query();
    let rejected = |rejection| {
        let outcome = Outcome::Rejected;
        let res = respond::error(GatewayError::InvalidQuery(rejection), &outcome);
        (res, outcome)
    };
    let Some(credential) = state.fingerprints.credential(&parts.headers) else {
        // Validated all the same: a bad query is a 422 whoever asks.
        return match canonicalize(matched.route.params, raw_query) {
            Err(rejection) => Ok(rejected(rejection)),
            Ok(_) => Err(Rest::Anonymous),
        };
    };
    // Borrowed, not counted: a fresh hit never touches the configuration's reference count.
    let config = state.config.load();
    // The key is written into this thread's buffer and looked up as text: a hit allocates
    // no key. Only what goes on (a miss, a stale copy, a long-poll) takes an owned copy.
    KEY.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        let query = CacheKey::write(
            &mut buf,
            &credential,
            matched.route.name,
            matched.id.unwrap_or(""),
            &config.cache.vary_headers,
            &parts.headers,
            |out| canonicalize_into(matched.route.params, raw_query, out),
        );
        let query = match query {
            Ok(query) => query,
            Err(rejection) => return Ok(rejected(rejection)),
        };
        let if_none_match = parts.headers.get(header::IF_NONE_MATCH);
        // `Prefer` is only looked at when there is an ETag to wait on.
        let local = if if_none_match.is_some() && prefer_wait(&parts.headers).is_some() {
            None
        } else {
            state.cache.get_local(&buf)
        };
        if let Some(entry) = &local {
            let now = Instant::now();
            // The policy of the configuration already loaded: one snapshot read per hit.
            if let Freshness::Fresh(left) = Policy::new(&config.cache).judge(entry, now) {
                return Ok(hit(parts, if_none_match, entry, Outcome::Hit { left }, now));
            }
        }
        let key = CacheKey::from_written(&buf, query);
        if buf.capacity() > KEY_BUFFER_KEEP {
            // One huge query must not pin its buffer for the thread's life.
            *buf = String::new();
        }
        Err(Rest::Keyed {
            key,
            credential,
            local,
            // Only a request that goes on takes its own reference to the configuration.
            config: arc_swap::Guard::into_inner(config),
        })
    })
}

/// The largest key buffer a thread keeps between requests.
const KEY_BUFFER_KEEP: usize = 4096;

thread_local! {
    /// The key of the request this thread is looking up.
    static KEY: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The rest of a request [`first_look`] could not answer.
pub async fn rest(
    state: &Arc<State>,
    parts: &Parts,
    matched: Matched<'_>,
    conn: ConnInfo,
    rest: Rest,
) -> Answer {
    let (key, credential, local, config) = match rest {
        Rest::Anonymous => {
            // Anonymous requests are not ours to cache: the upstream answers them (401).
            let outcome = Outcome::Bypass;
            let res = passthrough::forward_without_body(state, parts, conn).await;
            return (respond::with_outcome(res, &outcome), outcome);
        }
        Rest::Keyed {
            key,
            credential,
            local,
            config,
        } => (key, credential, local, config),
    };
    let request = CachedRequest::new(state, &config, parts, matched, key, credential);
    match long_poll(&parts.headers) {
        // Boxed: the held request's large state machine stays off the miss path's future.
        Some((etag, wait)) => Box::pin(request.long_poll(etag.clone(), wait)).await,
        None => request.serve(local).await,
    }
}

/// A response carrying a cached entry (or a 304 for it), with `Age`.
fn hit(
    parts: &Parts,
    if_none_match: Option<&HeaderValue>,
    entry: &Entry,
    outcome: Outcome,
    now: Instant,
) -> Answer {
    let not_modified = not_modified(if_none_match, entry);
    let outcome = match outcome {
        Outcome::Hit { left } if not_modified => Outcome::NotModified { left },
        other => other,
    };
    let res = respond::from_entry(
        entry,
        &outcome,
        Some(entry.age(now)),
        not_modified,
        gzip_ok(parts, entry),
    );
    (res, outcome)
}

/// Serve the entry's gzip representation? Only parsed when the entry has one.
fn gzip_ok(parts: &Parts, entry: &Entry) -> bool {
    entry.gzip.is_some() && respond::accepts_gzip(&parts.headers)
}

/// Does the client's `If-None-Match` name this entry (a 304)?
fn not_modified(if_none_match: Option<&HeaderValue>, entry: &Entry) -> bool {
    entry.status == StatusCode::OK && if_none_match.is_some_and(|inm| entry.matches(inm))
}

/// A long-poll's `If-None-Match` and `Prefer: wait`; `Prefer` is only looked at when
/// there is an ETag to wait on.
fn long_poll(headers: &HeaderMap) -> Option<(&HeaderValue, Duration)> {
    let etag = headers.get(header::IF_NONE_MATCH)?;
    Some((etag, prefer_wait(headers)?))
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

struct CachedRequest<'a> {
    state: &'a Arc<State>,
    /// The configuration in force when the request arrived: a reload does not change it
    /// under a request (freshness excepted: it is judged by the policy in force).
    config: &'a Arc<Config>,
    parts: &'a Parts,
    matched: Matched<'a>,
    key: CacheKey,
    credential: Credential,
    if_none_match: Option<&'a HeaderValue>,
}

impl<'a> CachedRequest<'a> {
    fn new(
        state: &'a Arc<State>,
        config: &'a Arc<Config>,
        parts: &'a Parts,
        matched: Matched<'a>,
        key: CacheKey,
        credential: Credential,
    ) -> Self {
        CachedRequest {
            state,
            config,
            parts,
            matched,
            key,
            credential,
            if_none_match: parts.headers.get(header::IF_NONE_MATCH),
        }
    }

    /// Serve the entry's gzip representation? Only parsed when the entry has one.
    fn gzip_ok(&self, entry: &Entry) -> bool {
        gzip_ok(self.parts, entry)
    }

    fn not_modified(&self, entry: &Entry) -> bool {
        not_modified(self.if_none_match, entry)
    }

    /// A response carrying a cached entry (or a 304 for it), with `Age`.
    fn cached(&self, entry: &Entry, outcome: Outcome, now: Instant) -> Answer {
        hit(self.parts, self.if_none_match, entry, outcome, now)
    }

    fn stale(&self, entry: &Entry, why: StaleWhy, now: Instant) -> Answer {
        let by = match self.state.cache.policy().judge(entry, now) {
            Freshness::Stale(s) => s.by,
            Freshness::Fresh(_) => Duration::ZERO,
        };
        self.cached(entry, Outcome::Stale { by, why }, now)
    }

    /// The entry if it may stand in for a failed fetch (within `stale_if_error`).
    fn usable_stale(&self, entry: Option<Arc<Entry>>, now: Instant) -> Option<Arc<Entry>> {
        entry.filter(|e| self.state.cache.policy().usable(e, now))
    }

    /// After an L1 look that found `local` (not fresh): L2, then stale-while-revalidate,
    /// or a fill.
    async fn serve(&self, local: Option<Arc<Entry>>) -> Answer {
        let state = self.state;
        let cached = state.cache.get_after(&self.key, local).await;
        let now = Instant::now();
        if let Some(entry) = &cached {
            match state.cache.policy().judge(entry, now) {
                Freshness::Fresh(left) => {
                    return self.cached(entry, Outcome::Hit { left }, now);
                }
                Freshness::Stale(s) if s.revalidate => {
                    // Boxed: the shield's fleet calls must not size every hit's future.
                    Box::pin(self.refresh_in_background()).await;
                    return self.stale(entry, StaleWhy::WhileRevalidate, now);
                }
                Freshness::Stale(_) => {}
            }
        }
        let stale = self.usable_stale(cached, now);
        // Boxed so the miss machinery does not inflate (and get moved with) every hit's future.
        match Box::pin(self.fetch()).await {
            Ok((outcome, role)) => self.fetched(outcome, role, stale),
            Err(err) => self.failed(err, stale),
        }
    }

    fn fill(&self) -> Fill {
        Fill::new(
            self.state,
            self.config,
            self.key.clone(),
            self.credential,
            self.matched,
            self.parts.uri.path(),
            &self.parts.headers,
        )
    }

    /// Start (or join) a fill and leave it running; nobody waits for it here.
    async fn refresh_in_background(&self) {
        let state = self.state;
        if state.cache.is_filling(&self.key) {
            return;
        }
        let probe = match state.shield.gate(&self.credential).await {
            Gate::Closed(_) => return,
            Gate::Open => None,
            Gate::Probe(p) => Some(p),
        };
        if state
            .shield
            .take_budget(&self.credential, Duration::ZERO)
            .await
            .is_err()
        {
            return;
        }
        let fill = self.fill();
        let owned = state.clone();
        // The ticket is dropped at once: the fill runs detached and stores its result.
        let _ = state
            .cache
            .join_or_start(&self.key, usize::MAX, move || fill::run(owned, fill, probe));
    }

    /// Join the key's fill or start one (respecting back-off and budget), and wait for it.
    async fn fetch(&self) -> Result<(FlightOutcome, Role), FetchError> {
        let state = self.state;
        let cfg = &self.config.cache;
        let probe = match state.shield.gate(&self.credential).await {
            Gate::Closed(left) => return Err(FetchError::BackedOff(left)),
            Gate::Open => None,
            Gate::Probe(p) => Some(p),
        };
        if !state.cache.is_filling(&self.key) {
            match state
                .shield
                .take_budget(&self.credential, self.config.upstream.budget_wait)
                .await
            {
                Ok(wait) if wait.is_zero() => {}
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(wait) => return Err(FetchError::BackedOff(wait)),
            }
        }
        let fill = self.fill();
        let owned = state.clone();
        let ticket = state
            .cache
            .join_or_start(&self.key, cfg.max_waiters, move || {
                fill::run(owned, fill, probe)
            })?;
        if ticket.role == Role::Collapsed {
            state.metrics.coalesced_waiters.inc();
        }
        match ticket.wait(cfg.wait_timeout).await? {
            // Another gateway's fetch: for this request, a collapsed one.
            Ok(outcome) if outcome.shared => Ok((outcome, Role::Collapsed)),
            Ok(outcome) => Ok((outcome, ticket.role)),
            Err(e) => Err(FetchError::Upstream(UpstreamError::clone(&e))),
        }
    }

    /// Answer from a completed fill, falling back to stale data on 5xx and 429.
    fn fetched(&self, fetched: FlightOutcome, role: Role, stale: Option<Arc<Entry>>) -> Answer {
        let now = Instant::now();
        let upstream = fetched.entry.status;
        if let Some(stale) = stale {
            if upstream.is_server_error() {
                return self.stale(&stale, StaleWhy::UpstreamError(Some(upstream)), now);
            }
            if upstream == StatusCode::TOO_MANY_REQUESTS {
                return self.stale(&stale, StaleWhy::Backoff, now);
            }
        }
        if upstream.is_server_error() {
            // Nothing to fall back on: pollgate's own 502, naming what the upstream said.
            let outcome = Outcome::UpstreamFailed { upstream };
            let res = respond::error(
                GatewayError::Upstream(UpstreamError::Status(upstream)),
                &outcome,
            );
            return (res, outcome);
        }
        let collapsed = role == Role::Collapsed;
        let outcome = match (upstream == StatusCode::OK, collapsed) {
            (true, false) => Outcome::Miss {
                stored: fetched.stored,
            },
            (true, true) => Outcome::Collapsed,
            (false, _) => Outcome::Relayed {
                upstream,
                collapsed,
            },
        };
        let res = respond::from_entry(
            &fetched.entry,
            &outcome,
            None,
            self.not_modified(&fetched.entry),
            self.gzip_ok(&fetched.entry),
        );
        (res, outcome)
    }

    /// Answer when no response came: stale data if any, else pollgate's error.
    fn failed(&self, err: FetchError, stale: Option<Arc<Entry>>) -> Answer {
        let now = Instant::now();
        let (why, outcome) = match &err {
            FetchError::BackedOff(_) => (StaleWhy::Backoff, Outcome::BackedOff),
            FetchError::Cache(CacheError::WaitTimeout(_) | CacheError::TooManyWaiters) => (
                StaleWhy::WaitTimeout,
                Outcome::Failed(FailReason::WaitTimeout),
            ),
            FetchError::Upstream(e) => (StaleWhy::UpstreamError(None), Outcome::Failed(e.reason())),
        };
        if let Some(stale) = stale {
            return self.stale(&stale, why, now);
        }
        (respond::error(err.into(), &outcome), outcome)
    }

    /// Hold the request until the content differs from the client's `If-None-Match`,
    /// or `wait` passes (then 304). All held requests of a key share one fill per TTL.
    async fn long_poll(&self, etag: HeaderValue, wait: Duration) -> Answer {
        let state = self.state;
        let policy = state.cache.policy();
        let deadline = Instant::now() + wait.min(self.config.cache.long_poll_max_wait);
        let _held = Held::new(state);
        loop {
            let now = Instant::now();
            let entry = match state.cache.get(&self.key).await {
                Some(e) if matches!(policy.judge(&e, now), Freshness::Fresh(_)) => e,
                cached => {
                    let stale = self.usable_stale(cached, now);
                    match self.fetch().await {
                        Ok((fetched, _)) if fetched.entry.status == StatusCode::OK => fetched.entry,
                        Ok((fetched, role)) => return self.fetched(fetched, role, stale),
                        Err(err) => return self.failed(err, stale),
                    }
                }
            };
            let now = Instant::now();
            let left = policy.fresh_until(&entry).saturating_duration_since(now);
            if !entry.matches(&etag) {
                return self.cached(&entry, Outcome::Hit { left }, now);
            }
            if now >= deadline {
                return self.cached(&entry, Outcome::NotModified { left }, now);
            }
            let wake = policy.fresh_until(&entry).min(deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = state.shutdown.triggered() => {
                    let outcome = Outcome::NotModified { left: Duration::ZERO };
                    return self.cached(&entry, outcome, now);
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
