//! A gateway started the way the binary starts it: from a configuration file (in a temporary
//! directory, beside its certificates), reloadable, in front of `pollgate-sim`, on 127.0.0.1
//! ephemeral ports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use pollgate::config::{self, ConfigFile, FlagValues, Origin, Sources};
use pollgate::key::FingerprintKey;
use pollgate::reload::Reloader;
use pollgate::{App, Gateway};
use pollgate_sim::{SimOptions, SimUpstream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::pki::TempDir;
use crate::common::{loopback_listener, TestClient, TestResponse};

pub struct Edge {
    pub dir: TempDir,
    pub sim: SimUpstream,
    pub upstream: SocketAddr,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub gateway: Gateway,
    pub reloader: Arc<Reloader>,
    pub client: TestClient,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Edge {
    /// Start with `toml` as the configuration file (the harness adds `[upstream]` and `[log]`).
    pub async fn start(dir: TempDir, toml: &str) -> Edge {
        let sim = SimUpstream::new(SimOptions::default());
        let upstream = sim.clone().spawn().await;
        let path = write_config(&dir, upstream, toml);
        let sources = Sources::new(
            ConfigFile::Named {
                path,
                by: Origin::Flag("config"),
            },
            std::iter::empty::<(String, String)>(),
            FlagValues::default(),
        );
        let loaded = config::load(&sources).expect("test config loads");
        let listener = if loaded.config.server.workers > 0 {
            let any = "127.0.0.1:0".parse().expect("addr");
            pollgate::server::bind_shared(any, "test").expect("bind")
        } else {
            loopback_listener()
        };
        let admin = loopback_listener();
        let addr = listener.local_addr().expect("addr");
        let admin_addr = admin.local_addr().expect("addr");
        let fingerprints = FingerprintKey::for_config(&loaded.config);
        let app = App::new(loaded.config, fingerprints)
            .expect("gateway")
            .reloadable(sources, None);
        let gateway = app.gateway().clone();
        let reloader = app.reloader().expect("reloadable").clone();
        let (tx, rx) = oneshot::channel::<()>();
        app.shutdown().trigger_on(async move {
            let _ = rx.await;
        });
        let task = tokio::spawn(app.serve(listener, Some(admin)));
        Edge {
            dir,
            sim,
            upstream,
            addr,
            admin: admin_addr,
            gateway,
            reloader,
            client: TestClient::new(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Replace the configuration file (the harness adds `[upstream]` and `[log]` again).
    pub fn rewrite(&self, toml: &str) {
        write_config(&self.dir, self.upstream, toml);
    }

    /// A plain-HTTP request to the admin listener, with `token` as bearer if given.
    pub async fn admin(&self, method: Method, path: &str, token: Option<&str>) -> TestResponse {
        let url = format!("http://{}{}", self.admin, path);
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        self.client.send(method, &url, &headers, Bytes::new()).await
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("served");
        }
    }
}

fn write_config(dir: &TempDir, upstream: SocketAddr, toml: &str) -> PathBuf {
    let text = format!(
        "{toml}\n[upstream]\nurl = \"http://{upstream}\"\nconnect_timeout = \"2s\"\n\
         request_timeout = \"5s\"\n[log]\naccess_log = false\n"
    );
    dir.write("pollgate.toml", &text)
}
