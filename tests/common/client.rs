//! Talking to the servers: an HTTP/1 client with a large pool (tests open hundreds of
//! concurrent requests), its collected responses, and the checks many tests make on them.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;

use super::{bearer, Harness};

#[derive(Clone)]
pub struct TestClient {
    inner: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Default for TestClient {
    fn default() -> Self {
        Self::new()
    }
}

impl TestClient {
    pub fn new() -> Self {
        let inner = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(512)
            .build_http();
        TestClient { inner }
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder.body(Full::new(body)).expect("request");
        let res = tokio::time::timeout(Duration::from_secs(30), self.inner.request(req))
            .await
            .expect("response within 30s")
            .expect("response");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn cache_status(&self) -> &str {
        self.header("cache-status").unwrap_or("")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// GET `path` for `token` with extra headers, on a clone of the harness client (spawnable).
pub fn spawn_get(
    h: &Harness,
    path: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> JoinHandle<(TestResponse, tokio::time::Instant)> {
    let client = h.client.clone();
    let url = h.url(path);
    let mut headers: Vec<(String, String)> = vec![("authorization".into(), bearer(token))];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    tokio::spawn(async move {
        let hs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let res = client.send(Method::GET, &url, &hs, Bytes::new()).await;
        (res, tokio::time::Instant::now())
    })
}

/// Pollgate's own errors are JSON `{"detail": "..."}`, as the API's are.
pub fn assert_json_detail(r: &TestResponse) {
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "error must be JSON: {:?}",
        r.headers
    );
    assert!(
        r.json()["detail"].is_string(),
        "error body must be {{\"detail\": ...}}: {}",
        r.text()
    );
}

/// A hit with freshness left (not a stale copy, whose `ttl` is negative).
pub fn is_fresh_hit(r: &TestResponse) -> bool {
    r.cache_status().starts_with("pollgate; hit; ttl=") && !r.cache_status().contains("ttl=-")
}
