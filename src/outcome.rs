//! One vocabulary for how a request was answered.
//!
//! [`Outcome`] is the single description of a response's provenance. Both the
//! RFC 9211 `Cache-Status` header ([`Outcome::cache_status`]) and the
//! `result` label of `pollgate_requests_total` ([`Outcome::result`]) are
//! derived from it, as is the `reason` label of stale serving
//! ([`StaleWhy::reason`]), so adding a state is one edit here and the header
//! and the metric can never disagree.

use std::fmt::Write;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

/// How one client request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A fresh entry, with this much freshness left.
    Hit { left: Duration },
    /// A `304` for a fresh entry the client already has.
    NotModified { left: Duration },
    /// A stale entry, this far past its TTL, served for `why`.
    Stale { by: Duration, why: StaleWhy },
    /// This request's fill; the upstream answered 200.
    Miss { stored: bool },
    /// Joined another request's fill; the upstream answered 200.
    Collapsed,
    /// The upstream's own non-200 answer (401, 404, 422, 429, …) relayed to this
    /// request, never stored.
    Relayed {
        upstream: StatusCode,
        collapsed: bool,
    },
    /// The upstream answered 5xx and nothing stale could stand in: pollgate's 502.
    UpstreamFailed { upstream: StatusCode },
    /// pollgate's own error (502/504) with no upstream answer: unreachable,
    /// timeout, reset, waited too long.
    Failed(FailReason),
    /// Cacheable route, but not ours to cache (no credential): relayed.
    Bypass,
    /// Rejected at the edge with 422, no upstream call.
    Rejected,
    /// 429 from pollgate's own back-off or budget, no upstream call.
    BackedOff,
    /// Not a cacheable route: relayed as is.
    Passthrough,
}

/// Why a stale entry was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleWhy {
    /// Within the stale-while-revalidate window; a refresh runs in the background.
    WhileRevalidate,
    /// The upstream failed; its status when it answered at all.
    UpstreamError(Option<StatusCode>),
    /// The credential is backed off after a 429 (or over budget).
    Backoff,
    /// The fill this request joined took longer than `cache.wait_timeout`.
    WaitTimeout,
}

/// Why pollgate itself failed a request (the `detail` of its `Cache-Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    Connect,
    Timeout,
    Broken,
    Saturated,
    Abandoned,
    WaitTimeout,
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Connect => "connect",
            FailReason::Timeout => "timeout",
            FailReason::Broken => "broken",
            FailReason::Saturated => "saturated",
            FailReason::Abandoned => "abandoned",
            FailReason::WaitTimeout => "wait-timeout",
        }
    }
}

/// The `result` label of `pollgate_requests_total`: [`Outcome`] without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultLabel {
    Hit,
    Stale,
    Miss,
    Collapsed,
    Relayed,
    Bypass,
    NotModified,
    Rejected,
    BackedOff,
    Error,
    Passthrough,
}

impl ResultLabel {
    /// Every label, in declaration order (so `label as usize` indexes it).
    pub const ALL: [ResultLabel; 11] = [
        ResultLabel::Hit,
        ResultLabel::Stale,
        ResultLabel::Miss,
        ResultLabel::Collapsed,
        ResultLabel::Relayed,
        ResultLabel::Bypass,
        ResultLabel::NotModified,
        ResultLabel::Rejected,
        ResultLabel::BackedOff,
        ResultLabel::Error,
        ResultLabel::Passthrough,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResultLabel::Hit => "hit",
            ResultLabel::Stale => "stale",
            ResultLabel::Miss => "miss",
            ResultLabel::Collapsed => "collapsed",
            ResultLabel::Relayed => "relayed",
            ResultLabel::Bypass => "bypass",
            ResultLabel::NotModified => "not_modified",
            ResultLabel::Rejected => "rejected",
            ResultLabel::BackedOff => "backed_off",
            ResultLabel::Error => "error",
            ResultLabel::Passthrough => "passthrough",
        }
    }

    /// Whether a request answered this way cost no upstream call of its own.
    pub fn without_upstream(self) -> bool {
        !matches!(
            self,
            ResultLabel::Miss
                | ResultLabel::Relayed
                | ResultLabel::Bypass
                | ResultLabel::Passthrough
                | ResultLabel::Error
        )
    }
}

/// The `reason` label of `pollgate_stale_served_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StaleReason {
    WhileRevalidate,
    UpstreamError,
    Backoff,
    WaitTimeout,
}

impl StaleReason {
    pub const ALL: [StaleReason; 4] = [
        StaleReason::WhileRevalidate,
        StaleReason::UpstreamError,
        StaleReason::Backoff,
        StaleReason::WaitTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StaleReason::WhileRevalidate => "while_revalidate",
            StaleReason::UpstreamError => "upstream_error",
            StaleReason::Backoff => "backoff",
            StaleReason::WaitTimeout => "wait_timeout",
        }
    }
}

impl StaleWhy {
    pub fn reason(self) -> StaleReason {
        match self {
            StaleWhy::WhileRevalidate => StaleReason::WhileRevalidate,
            StaleWhy::UpstreamError(_) => StaleReason::UpstreamError,
            StaleWhy::Backoff => StaleReason::Backoff,
            StaleWhy::WaitTimeout => StaleReason::WaitTimeout,
        }
    }
}

impl Outcome {
    pub fn result(&self) -> ResultLabel {
        match self {
            Outcome::Hit { .. } => ResultLabel::Hit,
            Outcome::NotModified { .. } => ResultLabel::NotModified,
            Outcome::Stale { .. } => ResultLabel::Stale,
            Outcome::Miss { .. } => ResultLabel::Miss,
            Outcome::Collapsed => ResultLabel::Collapsed,
            Outcome::Relayed { .. } => ResultLabel::Relayed,
            Outcome::UpstreamFailed { .. } | Outcome::Failed(_) => ResultLabel::Error,
            Outcome::Bypass => ResultLabel::Bypass,
            Outcome::Rejected => ResultLabel::Rejected,
            Outcome::BackedOff => ResultLabel::BackedOff,
            Outcome::Passthrough => ResultLabel::Passthrough,
        }
    }

    /// The `Cache-Status` value (RFC 9211) of a response answered this way;
    /// `None` for passthrough, which is not a cache's answer.
    pub fn cache_status(&self) -> Option<HeaderValue> {
        let text = match *self {
            Outcome::Hit { left } | Outcome::NotModified { left } => {
                if let Some(v) = prepared().hit.get(left.as_secs() as usize) {
                    return Some(v.clone());
                }
                let mut s = String::with_capacity(24);
                let _ = write!(s, "pollgate; hit; ttl={}", left.as_secs());
                s
            }
            Outcome::Stale { by, why } => {
                // A stale entry is at least one second past (RFC 9211: negative ttl).
                let by = by.as_secs().max(1);
                match why {
                    StaleWhy::WhileRevalidate => {
                        format!("pollgate; hit; ttl=-{by}; detail=stale-while-revalidate")
                    }
                    StaleWhy::UpstreamError(Some(status)) => format!(
                        "pollgate; fwd=miss; fwd-status={}; ttl=-{by}; detail=stale-if-error",
                        status.as_u16()
                    ),
                    StaleWhy::UpstreamError(None) => {
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
            Outcome::Miss { stored: true } => {
                return Some(HeaderValue::from_static("pollgate; fwd=miss; stored"))
            }
            Outcome::Miss { stored: false } => {
                return Some(HeaderValue::from_static(
                    "pollgate; fwd=miss; detail=not-stored",
                ))
            }
            Outcome::Collapsed => {
                return Some(HeaderValue::from_static("pollgate; fwd=miss; collapsed"))
            }
            Outcome::Relayed {
                upstream,
                collapsed: false,
            }
            | Outcome::UpstreamFailed { upstream } => {
                format!("pollgate; fwd=miss; fwd-status={}", upstream.as_u16())
            }
            Outcome::Relayed {
                upstream,
                collapsed: true,
            } => format!(
                "pollgate; fwd=miss; fwd-status={}; collapsed",
                upstream.as_u16()
            ),
            Outcome::Failed(reason) => format!("pollgate; fwd=miss; detail={}", reason.as_str()),
            Outcome::Bypass => return Some(HeaderValue::from_static("pollgate; fwd=bypass")),
            Outcome::Rejected => {
                return Some(HeaderValue::from_static("pollgate; detail=invalid-query"))
            }
            Outcome::BackedOff => {
                return Some(HeaderValue::from_static(
                    "pollgate; fwd=miss; fwd-status=429; detail=backoff",
                ))
            }
            Outcome::Passthrough => return None,
        };
        Some(HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("pollgate")))
    }
}

/// Header values a hit needs, formatted once: a hit clones a reference count
/// instead of formatting and allocating a string.
struct Prepared {
    /// `pollgate; hit; ttl=N` for N in 0..PREPARED_SECONDS.
    hit: Vec<HeaderValue>,
    /// `N` for N in 0..PREPARED_SECONDS (for `Age`).
    seconds: Vec<HeaderValue>,
}

/// Covers every TTL and age up to an hour; longer ones are formatted per response.
const PREPARED_SECONDS: usize = 3600;

static PREPARED: OnceLock<Prepared> = OnceLock::new();

fn prepared() -> &'static Prepared {
    PREPARED.get_or_init(|| {
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
    })
}

/// Whole seconds as a header value (for `Age`), without formatting for the common range.
pub fn seconds_header(d: Duration) -> HeaderValue {
    match prepared().seconds.get(d.as_secs() as usize) {
        Some(v) => v.clone(),
        None => HeaderValue::from(d.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_outcomes() -> Vec<Outcome> {
        let s = Duration::from_secs(3);
        vec![
            Outcome::Hit { left: s },
            Outcome::NotModified { left: s },
            Outcome::Stale {
                by: s,
                why: StaleWhy::WhileRevalidate,
            },
            Outcome::Stale {
                by: s,
                why: StaleWhy::UpstreamError(Some(StatusCode::BAD_GATEWAY)),
            },
            Outcome::Stale {
                by: s,
                why: StaleWhy::UpstreamError(None),
            },
            Outcome::Stale {
                by: s,
                why: StaleWhy::Backoff,
            },
            Outcome::Stale {
                by: s,
                why: StaleWhy::WaitTimeout,
            },
            Outcome::Miss { stored: true },
            Outcome::Miss { stored: false },
            Outcome::Collapsed,
            Outcome::Relayed {
                upstream: StatusCode::NOT_FOUND,
                collapsed: false,
            },
            Outcome::Relayed {
                upstream: StatusCode::NOT_FOUND,
                collapsed: true,
            },
            Outcome::UpstreamFailed {
                upstream: StatusCode::INTERNAL_SERVER_ERROR,
            },
            Outcome::Failed(FailReason::Timeout),
            Outcome::Bypass,
            Outcome::Rejected,
            Outcome::BackedOff,
            Outcome::Passthrough,
        ]
    }

    #[test]
    fn labels_index_in_declaration_order() {
        for (i, label) in ResultLabel::ALL.iter().enumerate() {
            assert_eq!(*label as usize, i);
        }
        for (i, reason) in StaleReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
    }

    #[test]
    fn header_and_label_agree() {
        for o in all_outcomes() {
            let label = o.result();
            let header = o.cache_status();
            match label {
                ResultLabel::Passthrough => assert!(header.is_none()),
                _ => {
                    let h = header.expect("cacheable outcomes carry Cache-Status");
                    let h = h.to_str().expect("ascii");
                    assert!(h.starts_with("pollgate"), "{o:?}: {h}");
                    match label {
                        ResultLabel::Hit | ResultLabel::NotModified => {
                            assert_eq!(h, "pollgate; hit; ttl=3")
                        }
                        ResultLabel::Stale => assert!(h.contains("ttl=-3"), "{h}"),
                        ResultLabel::Miss => assert!(h.starts_with("pollgate; fwd=miss")),
                        ResultLabel::Collapsed => assert!(h.ends_with("collapsed")),
                        ResultLabel::Relayed => assert!(h.contains("fwd-status=404")),
                        ResultLabel::Bypass => assert!(h.contains("fwd=bypass")),
                        ResultLabel::Rejected => assert!(h.contains("invalid-query")),
                        ResultLabel::BackedOff => assert!(h.contains("detail=backoff")),
                        ResultLabel::Error => assert!(h.contains("fwd=miss")),
                        ResultLabel::Passthrough => unreachable!(),
                    }
                }
            }
        }
        // Prepared and formatted hit headers agree.
        assert_eq!(
            Outcome::Hit {
                left: Duration::from_secs(7200)
            }
            .cache_status()
            .expect("hit"),
            "pollgate; hit; ttl=7200"
        );
        assert_eq!(seconds_header(Duration::from_secs(5)), "5");
        assert_eq!(seconds_header(Duration::from_secs(5000)), "5000");
    }
}
