//! The cache fill: one upstream fetch of an item page, run detached from any client.
//!
//! A fill owns everything it needs (key, credential, headers, purge
//! generation), so it runs in its own task and outlives the request that
//! started it. It reads the whole body within the request timeout, learns
//! from the status (429 → back-off), stores a 200 that fits, and returns the
//! response, stored or not, to every waiter.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;

use super::State;
use crate::body::empty_request;
use crate::cache::{Compressed, Entry, FlightOutcome, FlightResult};
use crate::error::UpstreamError;
use crate::items::key::session_cookie;
use crate::items::{CacheKey, CanonicalQuery, Credential, BATCH_PREFIX};
use crate::shield::ProbeGuard;
use crate::upstream::{error_chain, strip_hop_by_hop};

/// Bodies above this are refused outright (an item page is at most 1000 items, well below).
pub const MAX_FILL_BODY: usize = 64 * 1024 * 1024;

/// Response headers kept with a stored entry; the rest are per-exchange.
const STORED_HEADERS: [HeaderName; 3] =
    [header::CONTENT_TYPE, header::CONTENT_LANGUAGE, header::LINK];

const USER_AGENT: &str = concat!("pollgate/", env!("CARGO_PKG_VERSION"));

/// One fill, owned.
pub struct Fill {
    pub key: CacheKey,
    pub credential: Credential,
    pub job: Arc<str>,
    pub query: CanonicalQuery,
    /// Exactly what the key describes: credential, vary headers, fixed `Accept*`.
    pub headers: HeaderMap,
    /// Cache generation when the request arrived; a purge since then blocks the store.
    pub generation: u64,
}

impl Fill {
    pub fn new(
        state: &State,
        key: CacheKey,
        credential: Credential,
        job: &str,
        query: CanonicalQuery,
        client: &HeaderMap,
    ) -> Fill {
        Fill {
            headers: upstream_headers(state, client),
            generation: state.cache.generation(),
            job: Arc::from(job),
            key,
            credential,
            query,
        }
    }
}

/// The request headers a fill sends: only what is part of the key, so two
/// requests with one key can never be answered differently by the upstream.
/// `Accept-Encoding: identity` normalizes encoding: entries are stored plain
/// and no client ever receives an encoding it did not ask for.
fn upstream_headers(state: &State, client: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(6 + state.config.cache.vary_headers.len());
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
    for name in &state.config.cache.vary_headers {
        for value in client.get_all(name) {
            h.append(name.clone(), value.clone());
        }
    }
    h
}

/// Run one fill to the end. Meant to be spawned (see [`crate::cache::Flights`]).
pub async fn run(state: Arc<State>, fill: Fill, probe: Option<ProbeGuard>) -> FlightResult {
    let result = fetch(&state, &fill).await;
    if let Err(e) = &result {
        tracing::warn!(credential = %fill.credential, job = %fill.job, error = %e, "cache fill failed");
    }
    // The probe (if any) ends here, verdict recorded or not.
    drop(probe);
    result.map_err(Arc::new)
}

async fn fetch(state: &Arc<State>, fill: &Fill) -> Result<FlightOutcome, UpstreamError> {
    let mut path = String::with_capacity(BATCH_PREFIX.len() + fill.job.len() + 6);
    path.push_str(BATCH_PREFIX);
    path.push_str(&fill.job);
    path.push_str("/items");
    let uri = state.upstream.uri(&path, Some(fill.query.as_str()))?;
    let mut req = Request::new(empty_request());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = fill.headers.clone();

    let sent = state.upstream.send(req).await?;
    let deadline = sent.started + state.upstream.request_timeout();
    let (parts, body) = sent.response.into_parts();
    let body = match tokio::time::timeout_at(deadline, Limited::new(body, MAX_FILL_BODY).collect())
        .await
    {
        Err(_) => return Err(UpstreamError::Timeout(state.upstream.request_timeout())),
        Ok(Err(e)) => return Err(UpstreamError::Broken(error_chain(e.as_ref()))),
        // Copied into an allocation of exactly its size: a body that arrived in one read
        // may be a slice of hyper's larger read buffer, which storing would keep alive.
        Ok(Ok(collected)) => Bytes::copy_from_slice(&collected.to_bytes()),
    };
    drop(sent.permit);
    // Age counts from the moment the upstream's answer was complete.
    let fetched_at = Instant::now();

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

    // Fills ask for `identity`; an upstream that encodes anyway is relayed with its
    // `Content-Encoding` and never stored, so no client gets bytes it cannot decode.
    let encoded = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let ok = parts.status == StatusCode::OK && !encoded;
    let fresh_for = if state.jobs.is_terminal(&fill.job) {
        state.config.cache.terminal_ttl.max(state.config.cache.ttl)
    } else {
        state.config.cache.ttl
    };
    let stale_window = state
        .config
        .cache
        .stale_while_revalidate
        .max(state.config.cache.stale_if_error);
    let etag = Entry::etag_of(&body);
    let storable = ok && body.len() <= state.config.cache.max_entry_bytes;
    let gzip = if storable && body.len() >= GZIP_MIN_BYTES {
        compress(body.clone()).await
    } else {
        None
    };
    let entry = Arc::new(Entry {
        status: parts.status,
        headers: entry_headers(parts.headers, ok),
        etag,
        gzip,
        body,
        job: fill.job.clone(),
        fetched_at,
        fresh_for,
        retain_for: fresh_for + stale_window,
    });
    let stored = storable
        && state
            .cache
            .insert_if_current(fill.key.clone(), entry.clone(), fill.generation)
            .await;
    Ok(FlightOutcome { entry, stored })
}

/// Pages at least this large are also kept gzip-compressed. Smaller ones gain
/// little on the wire and would cost more memory per entry than they save.
pub const GZIP_MIN_BYTES: usize = 16 * 1024;

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

/// Headers sent with every copy of a fetched response. A 200 keeps only
/// representation headers (its `ETag` lives in the entry); other statuses are
/// relayed with every end-to-end header (they are shared only within one
/// credential's flight).
fn entry_headers(mut upstream: HeaderMap, stored: bool) -> Box<[(HeaderName, HeaderValue)]> {
    if stored {
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
