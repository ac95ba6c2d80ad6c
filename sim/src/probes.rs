//! Endpoints that exist to test the gateway's generic proxying rather than the LlamaCloud API:
//! an echo that shows exactly what arrived, arbitrary statuses, and large streamed downloads.

use std::collections::BTreeMap;

use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::SimBody;
use crate::response::{detail, drain_body, json, SimResponse};

/// Largest `/download` size accepted; bigger asks are almost certainly typos.
const MAX_DOWNLOAD_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// Echoes method, path, query and headers, and a byte count and blake3 hash of the body, which
/// is read as a stream so a multi-gigabyte upload never sits in memory.
pub(crate) async fn echo(req: Request<Incoming>) -> SimResponse {
    let (parts, body) = req.into_parts();
    let mut hasher = blake3::Hasher::new();
    let mut bytes = 0u64;
    if drain_body(body, |chunk| {
        bytes += chunk.len() as u64;
        hasher.update(chunk);
    })
    .await
    .is_err()
    {
        return detail(StatusCode::BAD_REQUEST, "Could not read request body");
    }
    let mut headers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_bytes": bytes,
        "body_blake3": hasher.finalize().to_hex().as_str(),
    });
    let mut resp = json(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    );
    // Hop-by-hop headers a proxy must strip, including one named by `Connection`.
    let h = resp.headers_mut();
    for (name, value) in [
        ("connection", "x-sim-hop"),
        ("x-sim-hop", "must-not-pass"),
        ("keep-alive", "timeout=5"),
        ("x-sim-end-to-end", "kept"),
    ] {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    resp
}

/// `GET /status/{code}`: answers that status.
pub(crate) fn status(code: &str) -> SimResponse {
    let Some(status) = code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
    else {
        return detail(
            StatusCode::BAD_REQUEST,
            "status must be a number in 100..=999",
        );
    };
    let mut resp = detail(status, &format!("simulated status {}", status.as_u16()));
    resp.headers_mut()
        .insert("x-sim-status", HeaderValue::from(status.as_u16()));
    resp
}

/// `GET /download?bytes=N`: N pattern bytes streamed in chunks.
pub(crate) fn download(query: Option<&str>) -> SimResponse {
    let bytes = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "bytes")
        .last()
        .map(|(_, v)| v.parse::<u64>());
    let n = match bytes {
        None => 0,
        Some(Ok(n)) if n <= MAX_DOWNLOAD_BYTES => n,
        Some(_) => {
            return detail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bytes must be an integer between 0 and 17179869184",
            )
        }
    };
    let mut resp = Response::new(SimBody::Pattern {
        sent: 0,
        remaining: n,
    });
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(n));
    resp
}
