//! TLS termination for a listener: rustls through tokio-rustls, no OpenSSL.
//!
//! A [`Terminator`] holds the listener's current rustls `ServerConfig` behind an `ArcSwap`.
//! Each new connection takes the current one for its handshake; a reload builds a whole new
//! config from the files and swaps it in only if everything in it is usable, so a bad new
//! pair (unreadable, mismatched, not PEM) keeps the old one and says why. Connections already
//! established keep the session they negotiated: nothing is dropped. The session cache is
//! carried from one config to the next, so clients resume across a reload.
//!
//! Offered: TLS 1.3 and 1.2, ALPN `h2` and `http/1.1` on the same port, and optionally
//! client-certificate verification (`client_ca_file`) for mTLS deployments.
//! - `pem`: reading the files, errors naming the key at fault;
//! - `watch`: noticing that the files changed (a renewal, a Kubernetes secret update).

mod pem;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;
use crate::metrics::HandshakeFailures;

pub use pem::TlsError;
pub use watch::{watch, FileWatch};

/// What the listener currently terminates TLS with.
struct Current {
    acceptor: TlsAcceptor,
    settings: TlsConfig,
}

/// A config read and checked, not yet in use.
pub struct Staged(Current);

/// A listener's TLS, reloadable. Shared by the accept loop and whoever reloads it.
pub struct Terminator {
    /// `server.tls` or `admin.tls`: the section named in logs and errors.
    section: &'static str,
    current: ArcSwap<Current>,
    failures: HandshakeFailures,
}

impl Terminator {
    /// TLS for the listener configured by `section` (`server.tls`), counting failed
    /// handshakes in `failures`.
    pub fn new(
        section: &'static str,
        settings: &TlsConfig,
        failures: HandshakeFailures,
    ) -> Result<Arc<Self>, TlsError> {
        let config = build(section, settings, None)?;
        Ok(Arc::new(Terminator {
            section,
            current: ArcSwap::from_pointee(Current {
                acceptor: TlsAcceptor::from(Arc::new(config)),
                settings: settings.clone(),
            }),
            failures,
        }))
    }

    /// Count a handshake that did not finish in time (`timed_out`) or failed.
    pub fn handshake_failed(&self, timed_out: bool) {
        if timed_out {
            self.failures.timeout.inc();
        } else {
            self.failures.error.inc();
        }
    }

    pub fn section(&self) -> &'static str {
        self.section
    }

    /// The acceptor for the next handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.load().acceptor.clone()
    }

    /// How long a client has to finish its handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.current.load().settings.handshake_timeout
    }

    /// The settings in force (the files last loaded successfully).
    pub fn settings(&self) -> TlsConfig {
        self.current.load().settings.clone()
    }

    /// The files in force, for watching.
    pub fn files(&self) -> Vec<PathBuf> {
        let s = &self.current.load().settings;
        let mut files = vec![s.cert_file.clone(), s.key_file.clone()];
        files.extend(s.client_ca_file.clone());
        files
    }

    /// Read `settings`' files into a config ready to [`install`](Self::install); nothing
    /// changes yet, and on an error the config in force stays.
    pub fn prepare(&self, settings: &TlsConfig) -> Result<Staged, TlsError> {
        let old = self.current.load();
        let config = build(self.section, settings, Some(old.acceptor.config()))?;
        Ok(Staged(Current {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            settings: settings.clone(),
        }))
    }

    /// Use a prepared config for every handshake from now on.
    pub fn install(&self, staged: Staged) {
        self.current.store(Arc::new(staged.0));
    }
}

/// A rustls server config from the files of `settings`, keeping `previous`' session cache.
fn build(
    section: &str,
    settings: &TlsConfig,
    previous: Option<&Arc<ServerConfig>>,
) -> Result<ServerConfig, TlsError> {
    let key_of = |name: &str| format!("{section}.{name}");
    let certs = pem::certificates(&key_of("cert_file"), &settings.cert_file)?;
    let key = pem::private_key(&key_of("key_file"), &settings.key_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::unusable(key_of("cert_file"), e))?;
    let builder = match &settings.client_ca_file {
        Some(path) => {
            let key = key_of("client_ca_file");
            let roots = pem::client_roots(&key, path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::unusable(key, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    // rustls checks that the key is usable and matches the certificate.
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError::unusable(
            key_of("key_file"),
            format!("does not go with cert_file: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if let Some(previous) = previous {
        config.session_storage = previous.session_storage.clone();
        config.ticketer = previous.ticketer.clone();
    }
    Ok(config)
}
