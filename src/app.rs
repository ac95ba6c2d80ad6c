//! The composition root: the gateway on the client listener and the admin API on the admin listener.
//!
//! Neither the accept loop ([`crate::server`]) nor the request flow
//! ([`crate::proxy`]) knows the admin API exists; this module is the one place
//! that puts them together, for `main` and for tests alike.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admin::Admin;
use crate::config::Config;
use crate::key::FingerprintKey;
use crate::proxy::{Gateway, SetupError};
use crate::server::{self, Limits};
use crate::shutdown::Shutdown;

/// Connections the admin listener serves at once: probes and a scraper need
/// a handful, and a flood of admin connections must not cost unbounded memory.
const ADMIN_MAX_CONNECTIONS: usize = 256;

/// A configured gateway, ready to serve.
pub struct App {
    gateway: Gateway,
    limits: Limits,
    shutdown: Shutdown,
}

impl App {
    /// Build the gateway for `config`. `fingerprints` keys credential
    /// fingerprints ([`FingerprintKey::for_config`]: the fleet's, or random for one process).
    pub fn new(config: Config, fingerprints: FingerprintKey) -> Result<App, SetupError> {
        let shutdown = Shutdown::new();
        let limits = Limits::from_config(&config.server);
        let gateway = Gateway::new(config, fingerprints, shutdown.clone())?;
        Ok(App {
            gateway,
            limits,
            shutdown,
        })
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
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
            let api = Admin::new(Arc::new(self.gateway.clone()));
            let limits = Limits {
                max_connections: ADMIN_MAX_CONNECTIONS.min(self.limits.max_connections),
                ..self.limits
            };
            tokio::spawn(server::serve(
                listener,
                limits,
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
