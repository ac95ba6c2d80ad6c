//! Passthrough: every request that is not a cacheable item-list request.
//!
//! Method, path and query go upstream as sent; bodies stream both ways and are
//! never buffered whole (a 50 MB upload costs a few buffers, not 50 MB), with
//! one exception: job-status responses relayed uncached (anonymous requests;
//! small JSON) are read so pollgate learns when a job is finished. Hop-by-hop
//! headers are removed in both directions, `Host` is the upstream's, and
//! `X-Forwarded-*` are added. A successful write purges what the route table
//! says it invalidates (a job's or batch's pages, or every list page), for everyone.
//!
//! Passthrough requests are not held back by a credential's back-off: they
//! include writes (cancel) that must not be silently delayed, and the upstream
//! answers them itself. Their 429s do extend the back-off of cacheable reads.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Incoming};

use super::State;
use crate::body::{empty_request, full, relayed, streamed, BoxError, ResponseBody, UpstreamBody};
use crate::cache::Purge;
use crate::conn::ConnInfo;
use crate::error::{Chain, GatewayError};
use crate::key::Credential;
use crate::route::{self, Terminal};
use crate::upstream::{strip_hop_by_hop, UpstreamError};

/// Job-status bodies larger than this are not inspected (they are a few hundred bytes).
const MAX_STATUS_BODY: usize = 1024 * 1024;

static X_FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: header::HeaderName = header::HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: header::HeaderName = header::HeaderName::from_static("x-forwarded-host");

/// Relay a request with its body.
pub async fn forward<B>(
    state: &Arc<State>,
    parts: Parts,
    body: B,
    conn: ConnInfo,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    relay(state, parts, relayed(body), conn).await
}

/// Relay a body-less request we only hold by reference (anonymous item lists).
pub async fn forward_without_body(
    state: &Arc<State>,
    parts: &Parts,
    conn: ConnInfo,
) -> Response<ResponseBody> {
    relay(state, parts.clone(), empty_request(), conn).await
}

async fn relay(
    state: &Arc<State>,
    parts: Parts,
    body: UpstreamBody,
    conn: ConnInfo,
) -> Response<ResponseBody> {
    let path = parts.uri.path().to_owned();
    let method = parts.method.clone();
    let credential = state.fingerprints.credential(&parts.headers);
    match exchange(state, parts, body, conn).await {
        Ok(res) => {
            if let Some(credential) = &credential {
                learn_rate_limit(state, credential, &res);
            }
            after_response(state, &method, &path, res).await
        }
        Err(e) => {
            let credential = credential.map(|c| c.to_string());
            tracing::warn!(method = %method, path = %path, credential = credential.as_deref().unwrap_or("none"), error = %Chain(&e), "passthrough failed");
            GatewayError::Upstream(e).into_response()
        }
    }
}

async fn exchange(
    state: &Arc<State>,
    parts: Parts,
    body: UpstreamBody,
    conn: ConnInfo,
) -> Result<Response<Incoming>, UpstreamError> {
    let uri = state.upstream.uri(parts.uri.path(), parts.uri.query())?;
    let mut headers = parts.headers;
    let original_host = headers.remove(header::HOST).or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    strip_hop_by_hop(&mut headers);
    add_forwarded(&mut headers, conn, original_host);

    let mut req = Request::new(body);
    *req.method_mut() = parts.method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    // The permit bounds requests waiting for headers; a long download does not hold it.
    let sent = state.upstream.send(req).await?;
    drop(sent.permit);
    Ok(sent.response)
}

fn add_forwarded(headers: &mut HeaderMap, conn: ConnInfo, host: Option<HeaderValue>) {
    if let Some(peer) = conn.peer {
        let ip = peer.ip().to_string();
        let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(conn.scheme.as_str()),
    );
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
}

/// A 429 on any route extends the credential's back-off for cacheable reads.
fn learn_rate_limit(state: &State, credential: &Credential, res: &Response<Incoming>) {
    let status = res.status();
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::SERVICE_UNAVAILABLE
            && res.headers().contains_key(header::RETRY_AFTER));
    if limited
        && state
            .shield
            .record(credential, status, res.headers())
            .is_some()
    {
        state.metrics.backoffs_started.inc();
    }
}

/// Learn from the response (back-off, finished jobs, invalidating writes), then relay it.
async fn after_response(
    state: &Arc<State>,
    method: &Method,
    path: &str,
    res: Response<Incoming>,
) -> Response<ResponseBody> {
    let (mut parts, body) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let status = parts.status;

    if status == StatusCode::TOO_MANY_REQUESTS {
        state.metrics.upstream_429.inc();
    }
    if status.is_success() {
        for purge in route::invalidations(method, path) {
            let scope = match purge {
                route::Purge::Resource(resource) => {
                    tracing::info!(kind = resource.kind.as_str(), id = %resource.id, method = %method, "write passed through: purging its pages");
                    Purge::Resource(resource)
                }
                route::Purge::Route(name) => {
                    tracing::info!(route = name, method = %method, "write passed through: purging the route's pages");
                    Purge::Route(name)
                }
            };
            state.metrics.purges.inc();
            state.cache.purge(&scope).await;
        }
    }
    let teaches = route::match_read(method, path).and_then(|m| match m.route.terminal {
        rule @ Terminal::Body {
            teaches_jobs: true, ..
        } => Some((rule, m.id?)),
        _ => None,
    });
    if let (StatusCode::OK, Some((rule, job))) = (status, teaches) {
        if *method == Method::GET {
            // Small JSON: read it to learn the job's status, then relay the same bytes.
            return match Limited::new(body, MAX_STATUS_BODY).collect().await {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    if let Some(terminal) = rule.read(&bytes) {
                        state.jobs.observe(job, terminal);
                        tracing::debug!(job, terminal, "job status seen");
                    }
                    Response::from_parts(parts, full(bytes))
                }
                Err(e) => {
                    let e = UpstreamError::Broken(Arc::from(e));
                    tracing::warn!(path, error = %Chain(&e), "job status body failed");
                    GatewayError::Upstream(e).into_response()
                }
            };
        }
    }
    Response::from_parts(parts, streamed(body))
}
