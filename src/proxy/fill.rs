//! The cache fill: one upstream fetch of a page, run detached from any client.
//!
//! A fill owns everything it needs (key, credential, headers, purge fence), so
//! it runs in its own task and outlives the request that started it. Its
//! steps are named: [`send`] the request, [`read_within_deadline`] the whole
//! body, [`classify`] the answer (and learn from it: 429 → back-off),
//! [`build_entry`], then store a page worth keeping. The response, stored or
//! not, goes to every waiter.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::response;
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;

use super::State;
use crate::body::empty_request;
use crate::cache::{Compressed, Entry, Fence, FlightOutcome, FlightResult};
use crate::config::Config;
use crate::error::Chain;
use crate::key::{session_cookie, CacheKey, Credential, ResourceId, ResourceKind};
use crate::route::{Matched, Route, Terminal};
use crate::shield::ProbeGuard;
use crate::upstream::{strip_hop_by_hop, Sent, UpstreamError};

/// Bodies above this are refused outright (an item page is at most 1000 items, well below).
pub const MAX_FILL_BODY: usize = 64 * 1024 * 1024;

/// Pages at least this large are also kept gzip-compressed. Smaller ones gain
/// little on the wire and would cost more memory per entry than they save.
pub const GZIP_MIN_BYTES: usize = 16 * 1024;

/// Response headers kept with a stored entry; the rest are per-exchange.
const STORED_HEADERS: [HeaderName; 3] =
    [header::CONTENT_TYPE, header::CONTENT_LANGUAGE, header::LINK];

const USER_AGENT: &str = concat!("pollgate/", env!("CARGO_PKG_VERSION"));

/// One fill, owned.
pub struct Fill {
    pub key: CacheKey,
    pub credential: Credential,
    pub route: &'static Route,
    /// The job or batch the page belongs to.
    pub resource: Option<ResourceId>,
    /// The request path, as the client sent it (it matched the route's pattern).
    pub path: Box<str>,
    /// Exactly what the key describes: credential, vary headers, fixed `Accept*`.
    pub headers: HeaderMap,
    /// Taken when the request arrived; a purge since then blocks the store.
    pub fence: Fence,
    /// The configuration the request that started the fill arrived under.
    pub config: Arc<Config>,
}

impl Fill {
    pub fn new(
        state: &State,
        config: &Arc<Config>,
        key: CacheKey,
        credential: Credential,
        matched: Matched<'_>,
        path: &str,
        client: &HeaderMap,
    ) -> Fill {
        let route = matched.route;
        Fill {
            headers: upstream_headers(config, client),
            config: config.clone(),
            fence: state.cache.fence(),
            resource: route
                .resource
                .zip(matched.id)
                .map(|(kind, id)| ResourceId::new(kind, id)),
            route,
            path: Box::from(path),
            key,
            credential,
        }
    }
}

/// The request headers a fill sends: only what is part of the key, so two
/// requests with one key can never be answered differently by the upstream.
/// `Accept-Encoding: identity` normalizes encoding: entries are stored plain
/// and no client ever receives an encoding it did not ask for.
fn upstream_headers(config: &Config, client: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(6 + config.cache.vary_headers.len());
    if let Some(auth) = client.get(header::AUTHORIZATION) {
        h.insert(header::AUTHORIZATION, auth.clone());
    }
    if let Some(session) = session_cookie(client) {
        let mut cookie = b"session=".to_vec();
        cookie.extend_from_slice(session);
        if let Ok(v) = HeaderValue::from_bytes(&cookie) {
            h.insert(header::COOKIE, v);
        }
    }
    h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    h.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    h.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    for name in &config.cache.vary_headers {
        for value in client.get_all(name) {
            h.append(name.clone(), value.clone());
        }
    }
    h
}

/// Run one fill to the end. Meant to be spawned (see [`crate::cache::Cache::join_or_start`]).
pub async fn run(state: Arc<State>, fill: Fill, probe: Option<ProbeGuard>) -> FlightResult {
    let result = fetch(&state, &fill).await;
    if let Err(e) = &result {
        tracing::warn!(credential = %fill.credential, route = fill.route.name, path = %fill.path, error = %Chain(e), "cache fill failed");
    }
    // The probe (if any) ends here, verdict recorded or not.
    drop(probe);
    result.map_err(Arc::new)
}

async fn fetch(state: &State, fill: &Fill) -> Result<FlightOutcome, UpstreamError> {
    let sent = send(state, fill).await?;
    let (parts, body) = read_within_deadline(state, sent).await?;
    // Age counts from the moment the upstream's answer was complete.
    let fetched = (Instant::now(), SystemTime::now());
    let answer = classify(&parts);
    learn(state, fill, &parts);
    let storable = answer == Answer::Page && body.len() <= fill.config.cache.max_entry_bytes;
    let entry = Arc::new(build_entry(state, fill, parts, body, answer, storable, fetched).await);
    let stored = storable
        && state
            .cache
            .store_if_current(fill.key.clone(), entry.clone(), fill.fence)
            .await;
    Ok(FlightOutcome {
        entry,
        stored,
        shared: false,
    })
}

/// Step 1: send the request (bounded by the upstream's concurrency limit and timeout).
async fn send(state: &State, fill: &Fill) -> Result<Sent, UpstreamError> {
    // The canonical query, exactly what the key describes.
    let uri = state.upstream.uri(&fill.path, Some(fill.key.query()))?;
    let mut req = Request::new(empty_request());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = fill.headers.clone();
    state.upstream.send(req).await
}

/// Step 2: read the whole body before the exchange's deadline.
async fn read_within_deadline(
    state: &State,
    sent: Sent,
) -> Result<(response::Parts, Bytes), UpstreamError> {
    let timeout = state.upstream.request_timeout();
    let deadline = sent.started + timeout;
    let (parts, body) = sent.response.into_parts();
    let collected = tokio::time::timeout_at(deadline, Limited::new(body, MAX_FILL_BODY).collect())
        .await
        .map_err(|_| UpstreamError::Timeout(timeout))?
        .map_err(|e| UpstreamError::Broken(Arc::from(e)))?;
    // The exchange is over: it no longer counts against the concurrency limit.
    drop(sent.permit);
    // Copied into an allocation of exactly its size: a body that arrived in one read
    // may be a slice of hyper's larger read buffer, which storing would keep alive.
    Ok((parts, Bytes::copy_from_slice(&collected.to_bytes())))
}

/// What kind of answer the upstream gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A 200 in identity encoding: a page worth storing.
    Page,
    /// A 200 the upstream encoded despite `identity`: relayed with its
    /// `Content-Encoding`, never stored, so no client gets bytes it cannot decode.
    EncodedPage,
    /// Any other status: relayed to this fill's waiters, never stored. (Whether
    /// it is a rate limit is the shield's call: see [`learn`].)
    Other,
}

/// Step 3: classify the answer.
fn classify(parts: &response::Parts) -> Answer {
    if parts.status != StatusCode::OK {
        return Answer::Other;
    }
    let encoded = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        Answer::EncodedPage
    } else {
        Answer::Page
    }
}

/// Learn from the answer: a rate limit starts the credential's back-off, any other ends it.
fn learn(state: &State, fill: &Fill, parts: &response::Parts) {
    if parts.status == StatusCode::TOO_MANY_REQUESTS {
        state.metrics.upstream_429.inc();
    }
    if let Some(wait) = state
        .shield
        .record(&fill.credential, parts.status, &parts.headers)
    {
        state.metrics.backoffs_started.inc();
        tracing::warn!(credential = %fill.credential, status = parts.status.as_u16(), backoff_ms = wait.as_millis() as u64, "upstream rate limit: backing off");
    }
}

/// Step 4: the entry every waiter gets (and the cache keeps, when `storable`).
async fn build_entry(
    state: &State,
    fill: &Fill,
    parts: response::Parts,
    body: Bytes,
    answer: Answer,
    storable: bool,
    (fetched_at, fetched_wall): (Instant, SystemTime),
) -> Entry {
    let etag = Entry::etag_of(&body);
    let terminal = answer == Answer::Page && is_terminal(state, fill, &body);
    let gzip = if storable && body.len() >= GZIP_MIN_BYTES {
        compress(body.clone()).await
    } else {
        None
    };
    Entry {
        status: parts.status,
        headers: entry_headers(parts.headers, answer == Answer::Page),
        etag,
        gzip,
        body,
        route: fill.route.name,
        resource: fill.resource.clone(),
        fetched_at,
        fetched_wall,
        terminal,
    }
}

/// Is the page's job or batch finished, by its route's rule? A job-status page
/// also tells the job tracker, for the item pages of that job.
fn is_terminal(state: &State, fill: &Fill, body: &[u8]) -> bool {
    let job = fill
        .resource
        .as_ref()
        .filter(|r| r.kind == ResourceKind::Job)
        .map(|r| &*r.id);
    match fill.route.terminal {
        Terminal::Never => false,
        Terminal::KnownJob => job.is_some_and(|job| state.jobs.is_terminal(job)),
        rule @ Terminal::Body { teaches_jobs, .. } => {
            let terminal = rule.read(body);
            if let (true, Some(job), Some(terminal)) = (teaches_jobs, job, terminal) {
                state.jobs.observe(job, terminal);
            }
            terminal.unwrap_or(false)
        }
    }
}

/// Gzip a body once, off the async workers (a 1000-item page takes milliseconds).
/// `None` when compression fails or does not save at least a tenth.
async fn compress(body: Bytes) -> Option<Box<Compressed>> {
    use std::io::Write;
    let task = tokio::task::spawn_blocking(move || {
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        encoder.write_all(&body).ok()?;
        let compressed = encoder.finish().ok()?;
        (compressed.len() < body.len() / 10 * 9).then(|| {
            Box::new(Compressed {
                etag: Entry::gzip_etag_of(&body),
                // Exact-size copy: the encoder's vector may have spare capacity.
                body: Bytes::copy_from_slice(&compressed),
            })
        })
    });
    task.await.ok().flatten()
}

/// Headers sent with every copy of a fetched response. A page keeps only
/// representation headers (its `ETag` lives in the entry); other answers are
/// relayed with every end-to-end header (they are shared only within one
/// credential's flight).
fn entry_headers(mut upstream: HeaderMap, page: bool) -> Box<[(HeaderName, HeaderValue)]> {
    if page {
        STORED_HEADERS
            .iter()
            .filter_map(|name| {
                // Copied, not cloned: hyper's header values are slices of its read buffer,
                // and a stored clone would keep that whole buffer (kilobytes) alive per entry.
                let value = HeaderValue::from_bytes(upstream.get(name)?.as_bytes()).ok()?;
                Some((name.clone(), value))
            })
            .collect()
    } else {
        strip_hop_by_hop(&mut upstream);
        upstream.remove(header::CONTENT_LENGTH);
        let mut out = Vec::with_capacity(upstream.len());
        let mut last: Option<HeaderName> = None;
        for (name, value) in upstream {
            // `HeaderMap`'s owned iterator names only the first value of a repeated header.
            if let Some(name) = name {
                last = Some(name);
            }
            if let Some(name) = &last {
                out.push((name.clone(), value));
            }
        }
        out.into_boxed_slice()
    }
}
