//! The upstream side: a pooled HTTP/1.1 + HTTP/2 client over rustls, and the header rules of a proxy.
//!
//! One client serves every request (passthrough and cache fills) so
//! connections are reused. Every exchange is bounded: a connect timeout, a
//! whole-request timeout, and a global semaphore on requests in flight
//! (`upstream.max_concurrent`), so a burst of misses cannot stampede the API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::body::UpstreamBody;
use crate::config::UpstreamConfig;
use crate::metrics::Metrics;
use crate::outcome::FailReason;

/// A failure's cause, shared by every coalesced waiter of one fetch.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Why an upstream exchange failed. Shared (`Arc`) with every coalesced waiter.
///
/// `Display` is the short, client-safe description (it becomes the `detail` of
/// pollgate's 502/504); the cause chain is kept in [`source`](std::error::Error::source)
/// for the log and never reaches a client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable")]
    Connect(#[source] Cause),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream connection broke mid-response")]
    Broken(#[source] Cause),
    #[error("upstream answered {0}")]
    Status(http::StatusCode),
    #[error("no upstream capacity within {0:?}")]
    Saturated(Duration),
    #[error("the fetch was abandoned before it finished")]
    Abandoned,
}

impl UpstreamError {
    /// Timeouts are 504 (the upstream may still answer later); the rest are 502.
    pub fn status(&self) -> http::StatusCode {
        match self {
            UpstreamError::Timeout(_) | UpstreamError::Saturated(_) => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            UpstreamError::Connect(_)
            | UpstreamError::Broken(_)
            | UpstreamError::Status(_)
            | UpstreamError::Abandoned => http::StatusCode::BAD_GATEWAY,
        }
    }

    /// Why the request failed, for `Cache-Status` and metrics.
    pub fn reason(&self) -> FailReason {
        match self {
            UpstreamError::Connect(_) => FailReason::Connect,
            UpstreamError::Timeout(_) => FailReason::Timeout,
            UpstreamError::Broken(_) | UpstreamError::Status(_) => FailReason::Broken,
            UpstreamError::Saturated(_) => FailReason::Saturated,
            UpstreamError::Abandoned => FailReason::Abandoned,
        }
    }
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus
/// the proxy-authentication pair which is meant for the hop it was sent to.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Remove hop-by-hop headers and every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("upstream.extra_ca_file {path}: {reason}")]
    ExtraCa { path: String, reason: String },
    #[error("upstream.url has no host")]
    NoHost,
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

type HttpsClient = Client<TimedConnect<HttpsConnector<HttpConnector>>, UpstreamBody>;

/// A connector bounded by a timeout read at each connect (TCP and TLS together), so a
/// reload can change `upstream.connect_timeout` without rebuilding the pool.
#[derive(Clone)]
struct TimedConnect<C> {
    inner: C,
    timeout: Arc<AtomicU64>,
}

/// What the upstream connector fails with.
type ConnectError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower_service::Service<Uri> for TimedConnect<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<ConnectError>,
{
    type Response = C::Response;
    type Error = ConnectError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<C::Response, ConnectError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ConnectError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let limit = Duration::from_nanos(self.timeout.load(Ordering::Relaxed));
        let connect = self.inner.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(limit, connect).await {
                Ok(done) => done.map_err(Into::into),
                Err(_) => Err(format!("connect timed out after {limit:?}").into()),
            }
        })
    }
}

/// A response whose headers arrived, with the concurrency permit it holds.
pub struct Sent {
    pub response: Response<Incoming>,
    /// Dropped by the caller when it no longer counts as in flight.
    pub permit: OwnedSemaphorePermit,
    pub started: Instant,
}

#[derive(Clone)]
pub struct Upstream {
    client: HttpsClient,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// Path prefix of the upstream URL, without a trailing slash ("" for none).
    prefix: Arc<str>,
    /// `upstream.request_timeout` in nanoseconds; a reload changes it.
    request_timeout: Arc<AtomicU64>,
    /// `upstream.connect_timeout` in nanoseconds, read by the connector; a reload changes it.
    connect_timeout: Arc<AtomicU64>,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig, metrics: Arc<Metrics>) -> Result<Self, TlsSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &config.extra_ca_file {
            let extra = |reason: String| TlsSetupError::ExtraCa {
                path: path.display().to_string(),
                reason,
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| extra(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| extra(e.to_string()))?;
            if certs.is_empty() {
                return Err(extra("no PEM certificate in file".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| extra(e.to_string()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let connect_timeout = Arc::new(AtomicU64::new(nanos(config.connect_timeout)));
        let https = TimedConnect {
            inner: https,
            timeout: connect_timeout.clone(),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);

        let url = &config.url;
        let scheme = url.scheme().cloned().unwrap_or(http::uri::Scheme::HTTPS);
        let authority = url.authority().cloned().ok_or(TlsSetupError::NoHost)?;
        let prefix = url.path().trim_end_matches('/');
        Ok(Upstream {
            client,
            scheme,
            authority,
            prefix: Arc::from(prefix),
            request_timeout: Arc::new(AtomicU64::new(nanos(config.request_timeout))),
            connect_timeout,
            slots: Arc::new(Semaphore::new(config.max_concurrent)),
            metrics,
        })
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_nanos(self.request_timeout.load(Ordering::Relaxed))
    }

    /// Bound exchanges that start from now on by `request`, and new connections (TCP and
    /// TLS) by `connect`.
    pub fn set_timeouts(&self, request: Duration, connect: Duration) {
        self.request_timeout
            .store(nanos(request), Ordering::Relaxed);
        self.connect_timeout
            .store(nanos(connect), Ordering::Relaxed);
    }

    /// The upstream URI for a client path and query (the prefix is prepended).
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, UpstreamError> {
        let mut pq =
            String::with_capacity(self.prefix.len() + path.len() + 1 + query.map_or(0, str::len));
        pq.push_str(&self.prefix);
        pq.push_str(path);
        if let Some(q) = query {
            if !q.is_empty() {
                pq.push('?');
                pq.push_str(q);
            }
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| UpstreamError::Connect(Arc::new(e)))
    }

    /// Upstream requests in flight now.
    pub fn in_flight(&self, max: usize) -> usize {
        max.saturating_sub(self.slots.available_permits())
    }

    /// Send one request; bounded by the concurrency limit and the request timeout
    /// (up to the response headers; the caller bounds the body it reads).
    pub async fn send(&self, req: Request<UpstreamBody>) -> Result<Sent, UpstreamError> {
        let started = Instant::now();
        let request_timeout = self.request_timeout();
        let deadline = started + request_timeout;
        let permit = tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| UpstreamError::Saturated(request_timeout))?
            .map_err(|_| UpstreamError::Abandoned)?;
        let result = tokio::time::timeout_at(deadline, self.client.request(req)).await;
        let elapsed = started.elapsed();
        match result {
            Err(_) => {
                self.metrics.upstream_result("timeout", elapsed);
                Err(UpstreamError::Timeout(request_timeout))
            }
            Ok(Err(e)) => {
                self.metrics.upstream_result("error", elapsed);
                if e.is_connect() {
                    Err(UpstreamError::Connect(Arc::new(e)))
                } else {
                    Err(UpstreamError::Broken(Arc::new(e)))
                }
            }
            Ok(Ok(response)) => {
                self.metrics
                    .upstream_result(status_class(response.status()), elapsed);
                Ok(Sent {
                    response,
                    permit,
                    started,
                })
            }
        }
    }
}

fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        h.insert("x-end-to-end", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["authorization", "x-end-to-end"]);
    }
}
