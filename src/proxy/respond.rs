//! Responses built from entries, and the RFC 9211 `Cache-Status` they carry.
//!
//! Every response of the item-list route says how it was produced, in one
//! header: `pollgate; hit; ttl=N`, `pollgate; fwd=miss; stored`,
//! `pollgate; fwd=miss; collapsed`, `pollgate; fwd=bypass`, and the stale
//! forms (`ttl=-N; detail=...`). Hits also carry `Age`.

use std::fmt::Write;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{full, ResponseBody};
use crate::cache::Entry;
use crate::error::GatewayError;

pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// How the response was produced, as `Cache-Status` tells it.
#[derive(Debug, Clone, Copy)]
pub enum Status {
    /// Fresh hit with this much freshness left.
    Hit(Duration),
    /// Stale entry served; why, and by how much it is past its TTL.
    Stale { by: Duration, why: StaleWhy },
    /// This request's fetch; stored or not, with the upstream status when not 200.
    Miss { stored: bool, upstream: StatusCode },
    /// Joined another request's fetch.
    Collapsed { upstream: StatusCode },
    /// Not cached: no credential.
    Bypass,
    /// Rejected at the edge (422).
    Rejected,
    /// 429 from pollgate's own back-off or budget.
    BackedOff,
    /// pollgate's own error, with the reason.
    Failed(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub enum StaleWhy {
    WhileRevalidate,
    /// Upstream failed; its status when it answered.
    Error(Option<StatusCode>),
    Backoff,
    WaitTimeout,
}

impl Status {
    pub fn header(self) -> HeaderValue {
        let text = match self {
            Status::Hit(left) => {
                if let Some(v) = PREPARED
                    .get_or_init(Prepared::new)
                    .hit
                    .get(left.as_secs() as usize)
                {
                    return v.clone();
                }
                let mut s = String::with_capacity(24);
                let _ = write!(s, "pollgate; hit; ttl={}", left.as_secs());
                s
            }
            Status::Stale { by, why } => {
                // A stale entry is at least one second past (RFC 9211: negative ttl).
                let by = by.as_secs().max(1);
                match why {
                    StaleWhy::WhileRevalidate => {
                        format!("pollgate; hit; ttl=-{by}; detail=stale-while-revalidate")
                    }
                    StaleWhy::Error(Some(status)) => format!(
                        "pollgate; fwd=miss; fwd-status={}; ttl=-{by}; detail=stale-if-error",
                        status.as_u16()
                    ),
                    StaleWhy::Error(None) => {
                        format!("pollgate; fwd=miss; ttl=-{by}; detail=stale-if-error")
                    }
                    StaleWhy::Backoff => {
                        format!("pollgate; fwd=stale; fwd-status=429; ttl=-{by}; detail=backoff")
                    }
                    StaleWhy::WaitTimeout => {
                        format!("pollgate; fwd=miss; ttl=-{by}; detail=wait-timeout")
                    }
                }
            }
            Status::Miss { stored: true, .. } => {
                return HeaderValue::from_static("pollgate; fwd=miss; stored")
            }
            Status::Miss { upstream, .. } if upstream == StatusCode::OK => {
                return HeaderValue::from_static("pollgate; fwd=miss; detail=not-stored")
            }
            Status::Miss { upstream, .. } => {
                format!("pollgate; fwd=miss; fwd-status={}", upstream.as_u16())
            }
            Status::Collapsed { upstream } if upstream == StatusCode::OK => {
                return HeaderValue::from_static("pollgate; fwd=miss; collapsed")
            }
            Status::Collapsed { upstream } => {
                format!(
                    "pollgate; fwd=miss; fwd-status={}; collapsed",
                    upstream.as_u16()
                )
            }
            Status::Bypass => return HeaderValue::from_static("pollgate; fwd=bypass"),
            Status::Rejected => return HeaderValue::from_static("pollgate; detail=invalid-query"),
            Status::BackedOff => {
                return HeaderValue::from_static(
                    "pollgate; fwd=miss; fwd-status=429; detail=backoff",
                )
            }
            Status::Failed(reason) => format!("pollgate; fwd=miss; detail={reason}"),
        };
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("pollgate"))
    }
}

/// Header values a hit needs, formatted once: a hit clones a reference count
/// instead of formatting and allocating two strings.
struct Prepared {
    /// `pollgate; hit; ttl=N` for N in 0..PREPARED_SECONDS.
    hit: Vec<HeaderValue>,
    /// `N` for N in 0..PREPARED_SECONDS (for `Age`).
    seconds: Vec<HeaderValue>,
}

/// Covers every TTL and age up to an hour; longer ones are formatted per response.
const PREPARED_SECONDS: usize = 3600;

static PREPARED: OnceLock<Prepared> = OnceLock::new();

impl Prepared {
    fn new() -> Self {
        let shared = |text: String| {
            HeaderValue::from_maybe_shared(Bytes::from(text))
                .unwrap_or(HeaderValue::from_static("0"))
        };
        Prepared {
            hit: (0..PREPARED_SECONDS)
                .map(|n| shared(format!("pollgate; hit; ttl={n}")))
                .collect(),
            seconds: (0..PREPARED_SECONDS)
                .map(|n| shared(n.to_string()))
                .collect(),
        }
    }
}

/// Whole seconds, as a header value.
fn seconds(d: Duration) -> HeaderValue {
    match PREPARED
        .get_or_init(Prepared::new)
        .seconds
        .get(d.as_secs() as usize)
    {
        Some(v) => v.clone(),
        None => HeaderValue::from(d.as_secs()),
    }
}

/// A response carrying `entry` (a 304 when `not_modified`), with `Cache-Status`
/// and, when `age` is given, `Age`. The gzip representation is chosen when the
/// entry has one and the client accepts it (see [`accepts_gzip`]).
pub fn from_entry(
    entry: &Entry,
    status: Status,
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
    headers.insert(CACHE_STATUS.clone(), status.header());
    if let Some(age) = age {
        headers.insert(header::AGE, seconds(age));
    }
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

/// An error response of the item-list route, with its `Cache-Status`.
pub fn error(err: GatewayError, status: Status) -> Response<ResponseBody> {
    let mut res = err.into_response();
    res.headers_mut()
        .insert(CACHE_STATUS.clone(), status.header());
    res
}

/// Add `Cache-Status` to a response built elsewhere (bypass).
pub fn with_status(mut res: Response<ResponseBody>, status: Status) -> Response<ResponseBody> {
    res.headers_mut()
        .insert(CACHE_STATUS.clone(), status.header());
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
