//! Reloading without a restart: the configuration on SIGHUP and `POST /reload`, the TLS
//! certificates also when their files change.
//!
//! A reload re-reads the same sources the process started with (the same file, environment
//! and flags), validates them, reads the TLS files, and only when all of that succeeded
//! swaps everything in: the gateway's live settings, the listeners' TLS configs, the admin
//! token, the log filter. Requests in flight finish under the configuration they started
//! with, and no cached page is dropped: entries keep facts, not verdicts, so a new TTL judges
//! pages already cached. Keys only a restart can change keep their running values, each
//! named in a warning (see [`config::RESTART_ONLY`]). An invalid configuration changes
//! nothing; every problem is logged and `POST /reload` answers 400 listing them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::admin::{Access, ReloadAnswer, SharedAccess};
use crate::config::{self, Config, ConfigError, Sources};
use crate::proxy::Gateway;
use crate::telemetry::LogFilter;
use crate::tls::{FileWatch, Terminator, TlsError};

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{} TLS problem(s): {}", .0.len(), list(.0))]
    Tls(Vec<TlsError>),
}

fn list(errors: &[TlsError]) -> String {
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    shown.join("; ")
}

impl ReloadError {
    /// One line per problem, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ReloadError::Config(ConfigError::Invalid { errors, .. }) => {
                errors.iter().map(ToString::to_string).collect()
            }
            ReloadError::Config(e) => vec![e.to_string()],
            ReloadError::Tls(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Keys whose new value is in force.
    pub changed: Vec<String>,
    /// Restart-only keys that changed in the sources but keep their running value.
    pub kept: Vec<&'static str>,
    pub took: Duration,
}

impl Report {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "status": "reloaded",
            "changed": self.changed,
            "restart_required": self.kept,
            "took_ms": self.took.as_secs_f64() * 1000.0,
        })
    }
}

/// Reloads this process's configuration. One per process, shared by the SIGHUP task, the
/// admin API and the file watch.
pub struct Reloader {
    sources: Sources,
    gateway: Gateway,
    /// The listeners' TLS: the client listener's, then the admin listener's, when on.
    tls: Vec<Arc<Terminator>>,
    access: SharedAccess,
    log_filter: Option<LogFilter>,
    /// One reload at a time, so two cannot interleave their swaps.
    busy: Mutex<()>,
    watch: Mutex<Option<FileWatch>>,
}

impl Reloader {
    pub fn new(
        sources: Sources,
        gateway: Gateway,
        tls: Vec<Arc<Terminator>>,
        access: SharedAccess,
        log_filter: Option<LogFilter>,
    ) -> Arc<Self> {
        Arc::new(Reloader {
            sources,
            gateway,
            tls,
            access,
            log_filter,
            busy: Mutex::new(()),
            watch: Mutex::new(None),
        })
    }

    /// Re-read the sources and apply them (blocking: it reads files). Logs the outcome.
    pub fn reload(&self, trigger: &'static str) -> Result<Report, ReloadError> {
        let started = Instant::now();
        let _busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let result = self.apply(started);
        self.gateway.metrics().config_reload(result.is_ok());
        match &result {
            Ok(report) => {
                for key in &report.kept {
                    tracing::warn!(
                        key = *key,
                        trigger,
                        "configuration reload: this key only changes on a restart; the running value stays"
                    );
                }
                tracing::info!(
                    trigger,
                    changed = %report.changed.join(","),
                    took_ms = report.took.as_secs_f64() * 1000.0,
                    "configuration reloaded"
                );
            }
            Err(e) => {
                for problem in e.problems() {
                    tracing::error!(trigger, problem = %problem, "configuration reload: invalid setting");
                }
                tracing::error!(trigger, "configuration reload failed: nothing was changed");
            }
        }
        result
    }

    fn apply(&self, started: Instant) -> Result<Report, ReloadError> {
        let loaded = config::load(&self.sources)?;
        let running = self.gateway.config();
        let mut next = loaded.config;
        let kept = config::keep_running(&mut next, &running);
        // Every TLS config is built before anything is swapped: a bad pair changes nothing.
        let mut staged = Vec::new();
        let mut errors = Vec::new();
        for t in &self.tls {
            let Some(settings) = tls_settings(&next, t.section()) else {
                continue;
            };
            match t.prepare(settings) {
                Ok(s) => staged.push((t, s)),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            self.gateway.metrics().tls_reload(false);
            return Err(ReloadError::Tls(errors));
        }
        let changed = config::changed_keys(&running, &next);
        for (t, s) in staged {
            t.install(s);
            self.gateway.metrics().tls_reload(true);
        }
        self.access
            .store(Arc::new(Access::from_config(&next.admin)));
        if let Some(filter) = &self.log_filter {
            if next.log.filter != running.log.filter {
                filter.set(&next.log.filter);
            }
        }
        self.gateway.reconfigure(next);
        self.rewatch();
        Ok(Report {
            changed,
            kept,
            took: started.elapsed(),
        })
    }

    /// Reload only the certificates (a file changed): each listener keeps its old one if
    /// its new files are unusable.
    pub fn reload_certificates(&self, trigger: &'static str) {
        let _busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        for t in &self.tls {
            let result = t.prepare(&t.settings()).map(|s| t.install(s));
            self.gateway.metrics().tls_reload(result.is_ok());
            match result {
                Ok(()) => tracing::info!(listener = t.section(), trigger, "certificate reloaded"),
                Err(e) => tracing::error!(
                    listener = t.section(),
                    trigger,
                    error = %e,
                    "certificate reload failed: the previous certificate stays in use"
                ),
            }
        }
    }

    /// Answer `POST /reload`.
    pub async fn reload_for_admin(self: &Arc<Self>) -> ReloadAnswer {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.reload("admin")).await {
            Ok(Ok(report)) => ReloadAnswer::Reloaded(report.to_json()),
            Ok(Err(e)) => ReloadAnswer::Invalid(e.problems()),
            Err(e) => ReloadAnswer::Invalid(vec![format!("reload task failed: {e}")]),
        }
    }

    /// Watch the TLS files' directories and reload the certificates when they change.
    /// Needs a tokio runtime.
    pub fn watch_certificates(self: &Arc<Self>) {
        if self.tls.is_empty() {
            return;
        }
        let weak = Arc::downgrade(self);
        let on_change = move || {
            if let Some(this) = weak.upgrade() {
                tokio::task::spawn_blocking(move || this.reload_certificates("file change"));
            }
        };
        match crate::tls::watch(&self.files(), on_change) {
            Ok(w) => *self.watch.lock().unwrap_or_else(|e| e.into_inner()) = Some(w),
            Err(e) => tracing::warn!(
                error = %e,
                "cannot watch the TLS files: certificates reload on SIGHUP and POST /reload only"
            ),
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        self.tls.iter().flat_map(|t| t.files()).collect()
    }

    fn rewatch(&self) {
        let files = self.files();
        if let Some(w) = &*self.watch.lock().unwrap_or_else(|e| e.into_inner()) {
            if let Err(e) = w.set_files(&files) {
                tracing::warn!(error = %e, "cannot watch the new TLS files' directories");
            }
        }
    }
}

fn tls_settings<'c>(c: &'c Config, section: &str) -> Option<&'c crate::config::TlsConfig> {
    match section {
        "server.tls" => c.server.tls.as_ref(),
        "admin.tls" => c.admin.tls.as_ref(),
        _ => None,
    }
}
