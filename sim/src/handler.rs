//! The life of one request: classify its [`Route`], record, count as in flight, wait, maybe
//! misbehave, dispatch to the v1 or v2 handlers or the probes.
//!
//! Recording happens before latency and faults so a test can see that a request which was then
//! rate-limited or reset did reach the upstream.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, COOKIE};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::SimBody;
use crate::error::ApiError;
use crate::response::{detail, not_found, SimResponse};
use crate::routes::{Route, V1_PREFIX, V2_BATCHES};
use crate::{control, probes, v1, v2, Fault, InFlightGuard, RecordedRequest, State};

/// Body sent in place of an empty one when a mid-body reset must have something to cut.
const RESET_PAD_BYTES: usize = 4096;

pub(crate) async fn handle(state: Arc<State>, req: Request<Incoming>) -> io::Result<SimResponse> {
    if req.uri().path() == "/_sim" || req.uri().path().starts_with("/_sim/") {
        return Ok(control::handle(&state, req).await);
    }
    let token = credential(req.headers());
    let route = Route::of(req.method(), req.uri().path());
    state.record(RecordedRequest {
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().map(str::to_owned),
        headers: req.headers().clone(),
        token: token.clone(),
        route,
    });
    let _in_flight = InFlightGuard::enter(&state);

    let latency = state.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut truncate = false;
    match state.take_fault(token.as_deref(), route) {
        None => {}
        Some(Fault::Status {
            status,
            retry_after,
            retry_after_ms,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = detail(status, &format!("simulated fault: {status}"));
            for (name, value) in [
                ("retry-after", retry_after),
                ("retry-after-ms", retry_after_ms),
            ] {
                if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                    resp.headers_mut().insert(name, v);
                }
            }
            return Ok(resp);
        }
        Some(Fault::ResetBeforeResponse) => {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "simulated reset before response",
            ));
        }
        Some(Fault::ResetMidBody) => truncate = true,
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
    }

    let resp = dispatch(&state, req, token.as_deref()).await;
    Ok(if truncate { truncated(resp) } else { resp })
}

async fn dispatch(state: &State, req: Request<Incoming>, token: Option<&str>) -> SimResponse {
    let path = req.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix(V1_PREFIX) {
        return v1::handle(state, req, rest, token)
            .await
            .unwrap_or_else(ApiError::into_response);
    }
    if path == V2_BATCHES || path.starts_with(&format!("{V2_BATCHES}/")) {
        return v2::handle(state, req, token)
            .await
            .unwrap_or_else(ApiError::into_response);
    }
    if path.starts_with("/echo/") {
        return probes::echo(req).await;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return probes::status(code);
    }
    if path == "/download" {
        return probes::download(req.uri().query());
    }
    not_found()
}

/// Turns a normal response into one that announces its full length, sends half, then aborts.
fn truncated(resp: SimResponse) -> SimResponse {
    let (mut parts, body) = resp.into_parts();
    let full = match body {
        SimBody::Full(Some(b)) if b.len() >= 2 => b,
        _ => Bytes::from(vec![b' '; RESET_PAD_BYTES]),
    };
    parts.status = StatusCode::OK;
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(full.len() as u64));
    let len = full.len() as u64;
    let head = full.slice(..full.len() / 2);
    Response::from_parts(parts, SimBody::truncated(head, len))
}

/// The credential as the real API reads it: a bearer key, else the `session` cookie.
pub(crate) fn credential(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, key) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        })
        .filter(|k| !k.is_empty());
    if let Some(key) = bearer {
        return Some(key.to_owned());
    }
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == "session" && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}
