//! The `pollgate` binary: parse flags, load config, bind, serve until a signal.
//!
//! Errors are printed once, on stderr: a configuration error (exit 2) before logging starts,
//! a start-up or serving failure (exit 1) as the process's last word. The log (stdout) does
//! not repeat them.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use pollgate::cli::{Cli, Command};
use pollgate::config::{self, Sources};
use pollgate::key::FingerprintKey;
use pollgate::reload::Reloader;
use pollgate::{server, telemetry, App, Config};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (args, check_only) = match cli.into_command() {
        Command::Serve(args) => (args, false),
        Command::CheckConfig(args) => (args, true),
    };
    // Captured once: a reload re-reads the same file with the same environment and flags.
    let sources = args.sources();
    let loaded = match config::load(&sources) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("pollgate: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        print!("{}", loaded.to_toml());
        return ExitCode::SUCCESS;
    }
    let log_filter = telemetry::init(loaded.config.log.format, &loaded.config.log.filter);
    match run(loaded.config, sources, log_filter) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pollgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(
    config: Config,
    sources: Sources,
    log_filter: Option<telemetry::LogFilter>,
) -> anyhow::Result<()> {
    let listener = if config.server.workers > 0 {
        server::bind_shared(config.server.listen, "server.listen")?
    } else {
        server::bind(config.server.listen, "server.listen")?
    };
    let admin = server::bind(config.admin.listen, "admin.listen")?;
    let started = Started {
        listen: listener.local_addr()?,
        admin: admin.local_addr()?,
        tls: config.server.tls.is_some(),
        admin_tls: config.admin.tls.is_some(),
        admin_token: config.admin.token.is_some(),
        admin_exposed: !config.admin.listen.ip().is_loopback(),
        upstream: config.upstream.url.to_string(),
        fleet: config.fleet.enabled(),
        ttl_ms: config.cache.ttl.as_millis() as u64,
        config: sources.file().to_string(),
    };
    let fingerprints = FingerprintKey::for_config(&config);
    let app = App::new(config, fingerprints)
        .context("cannot set up the gateway")?
        .reloadable(sources, log_filter);
    // Logged once everything is set up: a failure above is reported once, on stderr.
    started.log();
    app.shutdown().trigger_on(shutdown_signal());
    if let Some(reloader) = app.reloader() {
        on_sighup(app.gateway().clone(), reloader.clone());
    }
    app.serve(listener, Some(admin)).await?;
    Ok(())
}

/// What the start line says.
struct Started {
    listen: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    tls: bool,
    admin_tls: bool,
    admin_token: bool,
    admin_exposed: bool,
    upstream: String,
    fleet: bool,
    ttl_ms: u64,
    config: String,
}

impl Started {
    fn log(&self) {
        tracing::info!(
            listen = %self.listen,
            tls = self.tls,
            admin = %self.admin,
            admin_tls = self.admin_tls,
            admin_token = self.admin_token,
            upstream = %self.upstream,
            fleet = self.fleet,
            ttl_ms = self.ttl_ms,
            config = %self.config,
            "pollgate started"
        );
        if self.admin_exposed && !self.admin_token {
            // Only with admin.allow_unauthenticated = true (the loader refuses it otherwise).
            tracing::warn!(
                admin = %self.admin,
                "the admin listener has no token and can purge the cache and reload the configuration: keep it on a private interface"
            );
        }
    }
}

/// On SIGHUP, reopen the access log file (logrotate moved it) and reload the configuration
/// and the certificates.
fn on_sighup(gateway: pollgate::Gateway, reloader: Arc<Reloader>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP");
                return;
            }
        };
        while hup.recv().await.is_some() {
            let (gateway, reloader) = (gateway.clone(), reloader.clone());
            let _ = tokio::task::spawn_blocking(move || {
                // Logs its own outcome. First, so the reopen below logs under the new filter.
                let _ = reloader.reload("SIGHUP");
                gateway.reopen_access_log();
                tracing::info!("SIGHUP: access log reopened");
            })
            .await;
        }
    });
    #[cfg(not(unix))]
    drop((gateway, reloader));
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received");
}
