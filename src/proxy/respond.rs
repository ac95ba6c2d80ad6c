//! Responses built from entries and outcomes, with the RFC 9211 `Cache-Status` they carry.
//!
//! Every response of a cacheable route says how it was produced, in one
//! header derived from its [`Outcome`] (see [`crate::outcome`]). Hits also
//! carry `Age`.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{full, ResponseBody};
use crate::cache::Entry;
use crate::error::GatewayError;
use crate::outcome::{seconds_header, Outcome};

pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

fn set_cache_status(res: &mut Response<ResponseBody>, outcome: &Outcome) {
    if let Some(value) = outcome.cache_status() {
        res.headers_mut().insert(CACHE_STATUS.clone(), value);
    }
}

/// A response carrying `entry` (a 304 when `not_modified`), with `Cache-Status`
/// and, when `age` is given, `Age`. The gzip representation is chosen when the
/// entry has one and the client accepts it (see [`accepts_gzip`]).
pub fn from_entry(
    entry: &Entry,
    outcome: &Outcome,
    age: Option<Duration>,
    not_modified: bool,
    client_accepts_gzip: bool,
) -> Response<ResponseBody> {
    let gzip = entry.gzip.as_ref().filter(|_| client_accepts_gzip);
    let (bytes, etag) = match gzip {
        Some(g) => (&g.body, &g.etag),
        None => (&entry.body, &entry.etag),
    };
    let body = if not_modified {
        Bytes::new()
    } else {
        bytes.clone()
    };
    let mut res = Response::new(full(body));
    *res.status_mut() = if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        entry.status
    };
    let headers = res.headers_mut();
    headers.reserve(entry.headers.len() + 5);
    for (name, value) in entry.headers.iter() {
        if not_modified && name == header::CONTENT_TYPE {
            continue;
        }
        headers.append(name, value.clone());
    }
    if entry.status == StatusCode::OK {
        headers.insert(header::ETAG, etag.clone());
    }
    if entry.gzip.is_some() {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        if gzip.is_some() && !not_modified {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
    if let Some(age) = age {
        headers.insert(header::AGE, seconds_header(age));
    }
    set_cache_status(&mut res, outcome);
    res
}

/// Does the request's `Accept-Encoding` accept gzip (RFC 9110 §12.5.3)?
/// `gzip`/`x-gzip` with a non-zero q, or `*` with a non-zero q and no explicit gzip entry.
pub fn accepts_gzip(headers: &http::HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut params = item.split(';');
            let coding = params.next().unwrap_or("").trim();
            let q = params
                .find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| v.trim().parse::<f32>().ok())?
                })
                .unwrap_or(1.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(q > 0.0);
            } else if coding == "*" {
                any = Some(q > 0.0);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// An error response of a cacheable route, with its `Cache-Status`.
pub fn error(err: GatewayError, outcome: &Outcome) -> Response<ResponseBody> {
    let mut res = err.into_response();
    set_cache_status(&mut res, outcome);
    res
}

/// Add `Cache-Status` to a response built elsewhere (bypass).
pub fn with_outcome(mut res: Response<ResponseBody>, outcome: &Outcome) -> Response<ResponseBody> {
    set_cache_status(&mut res, outcome);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ae(v: &'static str) -> bool {
        let mut h = http::HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
        accepts_gzip(&h)
    }

    #[test]
    fn accept_encoding() {
        assert!(ae("gzip, deflate"));
        assert!(ae("br;q=1.0, GZIP;q=0.5"));
        assert!(ae("*"));
        assert!(!ae("gzip;q=0"));
        assert!(!ae("*, gzip;q=0"));
        assert!(!ae("identity"));
        assert!(!ae("br"));
        assert!(!accepts_gzip(&http::HeaderMap::new()));
    }
}
