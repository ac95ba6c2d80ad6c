//! The pieces every answer is made of: the response type, JSON bodies with an exact length,
//! FastAPI's `{"detail": ...}` errors, and reading a request body without keeping it.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::SimBody;

pub(crate) type SimResponse = Response<SimBody>;

/// A JSON response with an exact Content-Length.
pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> SimResponse {
    let body = body.into();
    let mut resp = Response::new(SimBody::empty());
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len() as u64));
    *resp.body_mut() = SimBody::full(body);
    resp
}

/// FastAPI's error shape: `{"detail": "..."}`.
pub(crate) fn detail(status: StatusCode, message: &str) -> SimResponse {
    json(
        status,
        serde_json::to_vec(&serde_json::json!({ "detail": message })).unwrap_or_default(),
    )
}

pub(crate) fn not_found() -> SimResponse {
    detail(StatusCode::NOT_FOUND, "Not Found")
}

pub(crate) fn method_not_allowed() -> SimResponse {
    detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

/// Reads a request body to the end without keeping it, calling `each` on every chunk.
pub(crate) async fn drain_body(
    body: Incoming,
    mut each: impl FnMut(&[u8]),
) -> Result<(), hyper::Error> {
    use http_body_util::BodyExt;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            each(&data);
        }
    }
    Ok(())
}

/// `GET` and `HEAD` are the read methods the polling routes answer.
pub(crate) fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}
