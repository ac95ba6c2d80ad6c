//! Errors pollgate answers with, and the single place they become HTTP responses.
//!
//! Every failure a client can see is a [`GatewayError`]: the variant says
//! *whose* fault it is (the client's query, the upstream, our own limits), and
//! [`GatewayError::into_response`] is the only function that turns one into a
//! status code and a JSON body. The client gets a short, fixed `detail` (the
//! variant's `Display`, never the cause chain); the log gets the whole chain
//! through [`Chain`].

use std::error::Error;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{full, ResponseBody};
use crate::cache::CacheError;
use crate::route::QueryRejection;
use crate::upstream::UpstreamError;

/// Everything that ends a request with an error response produced by pollgate itself.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid query")]
    InvalidQuery(QueryRejection),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("rate limited by the upstream; retry in {} s", .0.as_millis().max(1).div_ceil(1000))]
    BackedOff(Duration),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::InvalidQuery(_) => StatusCode::UNPROCESSABLE_ENTITY,
            GatewayError::Upstream(e) => e.status(),
            GatewayError::BackedOff(_) => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Cache(CacheError::WaitTimeout(_) | CacheError::TooManyWaiters) => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    /// When the client should try again, if pollgate knows.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::BackedOff(left) => Some(*left),
            GatewayError::Cache(CacheError::WaitTimeout(_) | CacheError::TooManyWaiters) => {
                Some(Duration::from_secs(1))
            }
            GatewayError::InvalidQuery(_) | GatewayError::Upstream(_) => None,
        }
    }

    /// The one mapping from error to response: status, JSON `detail`, `Retry-After`.
    pub fn into_response(self) -> Response<ResponseBody> {
        let status = self.status();
        let retry_after = self.retry_after();
        let body = match &self {
            GatewayError::InvalidQuery(rejection) => rejection.to_json(),
            // `Display` only: the cause chain stays in the log.
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

/// Displays an error and all its sources on one line (`a: b: c`), for logs only.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::Arc;

    #[tokio::test]
    async fn clients_get_the_short_detail_logs_get_the_chain() {
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "tcp connect error");
        let err = GatewayError::Upstream(UpstreamError::Connect(Arc::new(cause)));
        let logged = Chain(&err).to_string();
        assert!(logged.contains("tcp connect error"), "{logged}");
        let res = err.into_response();
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
        let body = res.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], br#"{"detail":"upstream unreachable"}"#);
    }
}
