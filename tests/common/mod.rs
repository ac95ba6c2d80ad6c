//! Test harness: a real simulated upstream and a real gateway on 127.0.0.1 ephemeral ports.
#![allow(dead_code, unused_imports)]

pub mod fleet;
pub mod redis;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pollgate::key::FingerprintKey;
use pollgate::{App, Config, Gateway};
use pollgate_sim::{SimOptions, SimUpstream};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use pollgate_sim::{Fault, FaultRule, JobStatus, JOB_A, JOB_A_DONE, JOB_B, TOKEN_A, TOKEN_B};

pub const ITEMS: &str = "/api/v1/beta/batch-processing";

pub fn items_path(job: &str, query: &str) -> String {
    if query.is_empty() {
        format!("{ITEMS}/{job}/items")
    } else {
        format!("{ITEMS}/{job}/items?{query}")
    }
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A config for tests: loopback, the given upstream, short timeouts.
pub fn test_config(upstream: SocketAddr) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.admin.listen = "127.0.0.1:0".parse().expect("addr");
    c.upstream.url = format!("http://{upstream}").parse().expect("uri");
    c.upstream.connect_timeout = Duration::from_secs(2);
    c.upstream.request_timeout = Duration::from_secs(5);
    c.server.shutdown_grace = Duration::from_secs(5);
    c.log.access_log = false;
    c
}

pub struct Harness {
    pub sim: SimUpstream,
    pub upstream: SocketAddr,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub gateway: Gateway,
    pub client: TestClient,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Harness {
    /// Start a sim and a gateway; `tweak` adjusts the test config.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Harness {
        let sim = SimUpstream::new(SimOptions::default());
        let upstream = sim.clone().spawn().await;
        Self::start_with(sim, upstream, tweak).await
    }

    /// Start a gateway in front of an already running upstream.
    pub async fn start_with(
        sim: SimUpstream,
        upstream: SocketAddr,
        tweak: impl FnOnce(&mut Config),
    ) -> Harness {
        let mut config = test_config(upstream);
        tweak(&mut config);
        config.validate().expect("test config valid");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let addr = listener.local_addr().expect("addr");
        let admin_addr = admin.local_addr().expect("addr");
        let fingerprints = FingerprintKey::for_config(&config);
        let app = App::new(config, fingerprints).expect("gateway");
        let gateway = app.gateway().clone();
        let (tx, rx) = oneshot::channel::<()>();
        app.shutdown().trigger_on(async move {
            let _ = rx.await;
        });
        let task = tokio::spawn(app.serve(listener, Some(admin)));
        Harness {
            sim,
            upstream,
            addr,
            admin: admin_addr,
            gateway,
            client: TestClient::new(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET `path` with a bearer token (or none).
    pub async fn get(&self, path: &str, token: Option<&str>) -> TestResponse {
        let mut h = Vec::new();
        let auth;
        if let Some(t) = token {
            auth = bearer(t);
            h.push(("authorization", auth.as_str()));
        }
        self.client
            .send(Method::GET, &self.url(path), &h, Bytes::new())
            .await
    }

    /// GET `path` with exactly these headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        self.client
            .send(Method::GET, &self.url(path), headers, Bytes::new())
            .await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> TestResponse {
        self.client
            .send(method, &self.url(path), headers, body)
            .await
    }

    pub async fn admin(&self, method: Method, path: &str) -> TestResponse {
        let url = format!("http://{}{}", self.admin, path);
        self.client.send(method, &url, &[], Bytes::new()).await
    }

    /// Value of a metric line (first sample whose line starts with `prefix`).
    pub async fn metric(&self, prefix: &str) -> f64 {
        let text = self.admin(Method::GET, "/metrics").await.text();
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Stop the gateway gracefully and wait for it.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => t.await.expect("server task"),
            None => Ok(()),
        }
    }

    pub fn begin_shutdown(&mut self) -> Option<JoinHandle<std::io::Result<()>>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take()
    }
}

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

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns whether it held.
/// (Waiting for a condition, never asserting on elapsed time.)
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Item-list requests the sim saw for `job` (GET/HEAD of its items path).
pub fn upstream_item_requests(sim: &SimUpstream, job: &str) -> Vec<pollgate_sim::RecordedRequest> {
    let path = format!("{ITEMS}/{job}/items");
    sim.requests()
        .into_iter()
        .filter(|r| r.path == path)
        .collect()
}

/// Log lines the gateway writes in this test process: a global subscriber
/// (installed once per test binary) writing into a shared buffer.
#[derive(Clone)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Capture every log line of this test binary from now on.
pub fn capture_logs() -> CapturedLogs {
    static LOGS: std::sync::OnceLock<CapturedLogs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = CapturedLogs(Default::default());
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        logs
    })
    .clone()
}
