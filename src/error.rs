//! Errors of the gateway and the single place they become HTTP responses.
//!
//! Every failure a client can see is a [`GatewayError`]: the variant says
//! *whose* fault it is (the client's query, the upstream, our own limits), and
//! [`GatewayError::into_response`] is the only function that turns one into a
//! status code and a JSON body. The client gets a short, clear `detail`; the
//! log gets the source chain.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{full, ResponseBody};
use crate::items::QueryRejection;

/// Why an upstream exchange failed. Shared (`Arc`) with every coalesced waiter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable: {0}")]
    Connect(String),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream failed mid-response: {0}")]
    Broken(String),
    #[error("upstream answered {0}")]
    Status(http::StatusCode),
    #[error("no upstream capacity within {0:?}")]
    Saturated(Duration),
    #[error("the fetch was abandoned before it finished")]
    Abandoned,
}

impl UpstreamError {
    /// Timeouts are 504 (the upstream may still answer later); the rest are 502.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout(_) | UpstreamError::Saturated(_) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// Label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Broken(_) => "broken",
            UpstreamError::Status(_) => "status",
            UpstreamError::Saturated(_) => "saturated",
            UpstreamError::Abandoned => "abandoned",
        }
    }
}

/// Everything that ends a request with an error response produced by pollgate itself.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid query")]
    InvalidQuery(QueryRejection),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("rate limited by the upstream; retry in {} s", .0.as_millis().max(1).div_ceil(1000))]
    BackedOff(Duration),
    #[error("still waiting for the upstream after {0:?}")]
    WaitTimeout(Duration),
    #[error("too many clients waiting on one fetch")]
    TooManyWaiters,
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::InvalidQuery(_) => StatusCode::UNPROCESSABLE_ENTITY,
            GatewayError::Upstream(e) => e.status(),
            GatewayError::BackedOff(_) => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::WaitTimeout(_) | GatewayError::TooManyWaiters => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    /// When the client should try again, if pollgate knows.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::BackedOff(left) => Some(*left),
            GatewayError::WaitTimeout(_) | GatewayError::TooManyWaiters => {
                Some(Duration::from_secs(1))
            }
            _ => None,
        }
    }

    /// The one mapping from error to response: status, JSON `detail`, `Retry-After`.
    pub fn into_response(self) -> Response<ResponseBody> {
        let status = self.status();
        let retry_after = self.retry_after();
        let body = match &self {
            GatewayError::InvalidQuery(rejection) => rejection.to_json(),
            other => detail_json(&other.to_string()),
        };
        let mut res = Response::new(full(body));
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(after) = retry_after {
            // Round up: a client told "0" would retry at once.
            let ms = after.as_millis().max(1);
            let secs = ms.div_ceil(1000);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
            headers.insert("retry-after-ms", HeaderValue::from(ms as u64));
        }
        res
    }
}

/// `{"detail": "..."}`, the shape FastAPI uses for every non-validation error.
pub fn detail_json(detail: &str) -> Bytes {
    let value = serde_json::json!({ "detail": detail });
    Bytes::from(value.to_string())
}
