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
    /// `server.workers`: 0 serves clients on the caller's runtime.
    workers: usize,
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
        let workers = config.server.workers;
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
            workers,
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
        let tls = self.client_tls.clone();
        let result = match self.workers {
            0 => {
                serve_clients(
                    self.gateway.clone(),
                    client,
                    self.limits,
                    tls,
                    &self.shutdown,
                )
                .await
            }
            n => self.serve_per_core(client, n).await,
        };
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

    /// `server.workers = n`: `n` threads, each a single-threaded runtime accepting on its
    /// own `SO_REUSEPORT` socket (the first is `client`, which must have been bound with
    /// [`server::bind_shared`]). Requests never leave the thread that accepted them; the
    /// cache, coalescing and shield are shared by all. Returns once every worker has drained.
    async fn serve_per_core(&self, client: TcpListener, n: usize) -> std::io::Result<()> {
        let addr = client.local_addr()?;
        let mut listeners = vec![client.into_std()?];
        for _ in 1..n {
            listeners.push(server::bind_shared(addr, "server.listen")?.into_std()?);
        }
        let limits = Limits {
            max_connections: (self.limits.max_connections / n).max(1),
            ..self.limits
        };
        let mut done = Vec::with_capacity(n);
        for (i, listener) in listeners.into_iter().enumerate() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let gateway = self.gateway.clone();
            let shutdown = self.shutdown.clone();
            let tls = self.client_tls.clone();
            std::thread::Builder::new()
                .name(format!("pg-worker-{i}"))
                .spawn(move || {
                    let served = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .and_then(|rt| {
                            rt.block_on(async {
                                let listener = TcpListener::from_std(listener)?;
                                serve_clients(gateway, listener, limits, tls, &shutdown).await
                            })
                        });
                    if let Err(e) = &served {
                        tracing::error!(worker = i, error = %e, "a worker stopped serving");
                    }
                    // The receiver is gone only if `serve` itself was dropped.
                    let _ = tx.send(served);
                })?;
            done.push(rx);
        }
        let mut result = Ok(());
        for rx in done {
            let served = rx.await.unwrap_or_else(|_| {
                Err(std::io::Error::other(
                    "a worker thread ended without a result",
                ))
            });
            // Every worker drains; the first failure is the one reported.
            result = result.and(served);
        }
        result
    }
}

/// The client listener's accept loop (over TLS with `tls`), every request through `gateway`.
async fn serve_clients(
    gateway: Gateway,
    listener: TcpListener,
    limits: Limits,
    tls: Option<Arc<Terminator>>,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    server::serve(listener, limits, tls, shutdown.clone(), move |req, conn| {
        gateway.handle(req, conn)
    })
    .await
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
