//! The composition root: the gateway on the client listener and the admin API on the admin
//! listener, each over TLS when configured, and the reloader that changes them live.
//!
//! Neither the accept loop ([`crate::server`]) nor the request flow
//! ([`crate::proxy`]) knows the admin API exists; this module is the one place
//! that puts them together, for `main` and for tests alike.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::admin::{Access, Admin, Control, PurgeTarget, Readiness, ReloadAnswer, SharedAccess};
use crate::config::{Config, Sources};
use crate::key::FingerprintKey;
use crate::proxy::{Gateway, SetupError};
use crate::reload::Reloader;
use crate::server::{self, Limits};
use crate::shutdown::Shutdown;
use crate::telemetry::LogFilter;
use crate::tls::{Terminator, TlsError};

/// Connections the admin listener serves at once: probes and a scraper need
/// a handful, and a flood of admin connections must not cost unbounded memory.
const ADMIN_MAX_CONNECTIONS: usize = 256;

/// Why the app could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Gateway(#[from] SetupError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A configured gateway, ready to serve.
pub struct App {
    gateway: Gateway,
    limits: Limits,
    shutdown: Shutdown,
    client_tls: Option<Arc<Terminator>>,
    admin_tls: Option<Arc<Terminator>>,
    access: SharedAccess,
    reloader: Option<Arc<Reloader>>,
}

impl App {
    /// Build the gateway for `config`. `fingerprints` keys credential
    /// fingerprints ([`FingerprintKey::for_config`]: the fleet's, or random for one process).
    pub fn new(config: Config, fingerprints: FingerprintKey) -> Result<App, StartError> {
        let shutdown = Shutdown::new();
        let limits = Limits::from_config(&config.server);
        let access = Arc::new(ArcSwap::from_pointee(Access::from_config(&config.admin)));
        let (server_tls, admin_tls) = (config.server.tls.clone(), config.admin.tls.clone());
        let gateway = Gateway::new(config, fingerprints, shutdown.clone())?;
        let metrics = gateway.metrics();
        let client_tls = server_tls
            .map(|t| Terminator::new("server.tls", &t, metrics.handshake_failures("server")))
            .transpose()?;
        let admin_tls = admin_tls
            .map(|t| Terminator::new("admin.tls", &t, metrics.handshake_failures("admin")))
            .transpose()?;
        Ok(App {
            gateway,
            limits,
            shutdown,
            client_tls,
            admin_tls,
            access,
            reloader: None,
        })
    }

    /// Make the app reloadable (SIGHUP, `POST /reload`, TLS file changes) by re-reading
    /// `sources`, the sources its configuration was loaded from; `log_filter` follows
    /// `log.filter`. Needs a tokio runtime (it starts watching the TLS files).
    pub fn reloadable(mut self, sources: Sources, log_filter: Option<LogFilter>) -> App {
        let tls = self
            .client_tls
            .iter()
            .chain(&self.admin_tls)
            .cloned()
            .collect();
        let reloader = Reloader::new(
            sources,
            self.gateway.clone(),
            tls,
            self.access.clone(),
            log_filter,
        );
        reloader.watch_certificates();
        self.reloader = Some(reloader);
        self
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The reloader, once [`reloadable`](Self::reloadable).
    pub fn reloader(&self) -> Option<&Arc<Reloader>> {
        self.reloader.as_ref()
    }

    /// Triggering this stops both listeners and drains.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Serve clients on `client` and the admin API on `admin` until shutdown
    /// triggers; returns when both have drained.
    pub async fn serve(
        self,
        client: TcpListener,
        admin: Option<TcpListener>,
    ) -> std::io::Result<()> {
        let admin_task = admin.map(|listener| {
            let console = Console {
                gateway: self.gateway.clone(),
                reloader: self.reloader.clone(),
            };
            let api = Admin::new(Arc::new(console), self.access.clone());
            let limits = Limits {
                max_connections: ADMIN_MAX_CONNECTIONS.min(self.limits.max_connections),
                ..self.limits
            };
            tokio::spawn(server::serve(
                listener,
                limits,
                self.admin_tls.clone(),
                self.shutdown.clone(),
                move |req, _conn| {
                    let api = api.clone();
                    async move { api.handle(req).await }
                },
            ))
        });
        let gateway = self.gateway.clone();
        let result = server::serve(
            client,
            self.limits,
            self.client_tls.clone(),
            self.shutdown.clone(),
            move |req, conn| {
                let gateway = gateway.clone();
                async move { gateway.handle(req, conn).await }
            },
        )
        .await;
        if let Some(task) = admin_task {
            match task.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "admin listener ended with an error"),
                Ok(Ok(())) => {}
                Err(e) => tracing::warn!(error = %e, "admin listener task failed"),
            }
        }
        let gateway = self.gateway.clone();
        // Joins the writer thread: off the async workers.
        let _ = tokio::task::spawn_blocking(move || gateway.close_access_log()).await;
        result
    }
}

/// What the admin API controls: the gateway, and the reloader when there is one.
struct Console {
    gateway: Gateway,
    reloader: Option<Arc<Reloader>>,
}

impl Control for Console {
    async fn purge(&self, target: PurgeTarget<'_>) {
        self.gateway.purge(target).await;
    }

    fn readiness(&self) -> Readiness {
        self.gateway.readiness()
    }

    async fn metrics_text(&self) -> String {
        self.gateway.metrics_text().await
    }

    async fn reload(&self) -> ReloadAnswer {
        match &self.reloader {
            Some(r) => r.reload_for_admin().await,
            None => ReloadAnswer::Unsupported,
        }
    }
}
