//! Starting the servers: a simulated upstream and a gateway in front of it, on 127.0.0.1
//! ephemeral ports, and requests to the gateway's client and admin listeners.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use pollgate::key::FingerprintKey;
use pollgate::{App, Config, Gateway};
use pollgate_sim::{SimOptions, SimUpstream};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{bearer, metric_value, Gate, TestClient, TestResponse};

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

/// A listener on a 127.0.0.1 ephemeral port, bound as the binary binds its own (with
/// room for a burst of pending connections: 200 clients connecting at once must not
/// see the kernel drop SYNs and retry a second later).
pub fn loopback_listener() -> TcpListener {
    pollgate::server::bind("127.0.0.1:0".parse().expect("addr"), "test").expect("bind")
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

    /// Start a sim, a [`Gate`] in front of it and a gateway in front of the gate (whose
    /// address is then `upstream`): the test decides when upstream traffic gets through.
    pub async fn start_gated(tweak: impl FnOnce(&mut Config)) -> (Harness, Gate) {
        let sim = SimUpstream::new(SimOptions::default());
        let gate = Gate::spawn(sim.clone().spawn().await).await;
        let h = Self::start_with(sim, gate.addr(), tweak).await;
        (h, gate)
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
        let listener = if config.server.workers > 0 {
            let any = "127.0.0.1:0".parse().expect("addr");
            pollgate::server::bind_shared(any, "test").expect("bind")
        } else {
            loopback_listener()
        };
        let admin = loopback_listener();
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

    /// `method` on `path` with `token`'s bearer credential and `extra` headers.
    pub async fn request_as(
        &self,
        method: Method,
        path: &str,
        token: &str,
        extra: &[(&str, &str)],
    ) -> TestResponse {
        let auth = bearer(token);
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        self.request(method, path, &headers, Bytes::new()).await
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

    /// Value of a metric line (first sample whose line starts with `prefix`); 0 when absent.
    pub async fn metric(&self, prefix: &str) -> f64 {
        let text = self.admin(Method::GET, "/metrics").await.text();
        metric_value(&text, prefix).unwrap_or(0.0)
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
