//! Configuration: the typed settings the gateway runs with.
//!
//! [`Config`] and its sections are what the rest of the crate reads. They hold
//! effective values only: load-time adjustments are already applied and every
//! "0 disables" value is already `None` (both rules live in `rules`). Where
//! the values come from is the loader's business, in the submodules:
//! - `file`: the TOML file's shape, all-`Option` mirror structs that reject unknown keys;
//! - `overrides`: the `POLLGATE_*` variables and command-line flags, and their names;
//! - `layers`: the precedence flag > env > file > default, recording each value's origin;
//! - `keys`: every key once: where its value lands in [`Config`] and how it is printed;
//! - `rules`: what a valid configuration is, "0 disables", load-time adjustments;
//! - `load`: the sources captured at start-up and [`load`], re-runnable for a reload;
//! - `render`: `check-config`'s TOML output, each value followed by its origin;
//! - `live`: which keys a reload may change, and which only a restart;
//! - `tests`: the loader end to end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Uri};
use serde::Deserialize;

mod error;
mod file;
mod keys;
mod layers;
mod live;
mod load;
mod origin;
mod overrides;
mod raw;
mod render;
mod rules;
#[cfg(test)]
mod tests;

pub use error::{ConfigError, KeyError};
pub use live::{changed_keys, keep_running, RESTART_ONLY};
pub use load::{load, Loaded, Sources};
pub use origin::{ConfigFile, Origin, CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE};
pub use overrides::{FlagValues, Override, OVERRIDES};
pub use rules::ZERO_DISABLES;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// The name used in the file, the variable and the flag.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub upstream: UpstreamConfig,
    pub cache: CacheConfig,
    pub backoff: BackoffConfig,
    pub log: LogConfig,
    pub fleet: FleetConfig,
}

/// The client listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Connections beyond this wait in the kernel's accept queue instead of eating memory.
    pub max_connections: usize,
    /// 0: one multi-threaded runtime whose workers steal each other's connections (the
    /// default: robust when a few connections carry most of the load). N: N single-threaded
    /// runtimes, one per thread, each accepting on its own `SO_REUSEPORT` socket, the way
    /// nginx runs one event loop per worker: less coordination per request, but a busy
    /// connection cannot move to an idle worker. `max_connections` is split between them.
    pub workers: usize,
    /// A client that has not sent its whole request head by then is disconnected (slowloris).
    pub header_read_timeout: Duration,
    /// Largest request head accepted; bigger gets 431 instead of unbounded buffering.
    pub max_header_bytes: usize,
    /// How long shutdown waits for in-flight requests, so a stuck client cannot hold it forever.
    pub shutdown_grace: Duration,
    /// HTTPS instead of plain HTTP, with `[server.tls]`.
    pub tls: Option<TlsConfig>,
}

/// TLS termination on a listener (`[server.tls]`, `[admin.tls]`).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// PEM: the certificate and its chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: PathBuf,
    /// PEM CA certificates: when set, clients must present a certificate they signed (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// A client must finish its handshake within this, so one that never does cannot hold a
    /// connection slot (`server.header_read_timeout` starts only after the handshake).
    pub handshake_timeout: Duration,
}

/// Default of `handshake_timeout`: a handshake is two round trips; 10 s covers a bad mobile link.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin API's bearer token. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(std::sync::Arc<str>);

impl AdminToken {
    /// The token from a file's text, surrounding whitespace trimmed.
    pub fn new(text: &str) -> Self {
        AdminToken(std::sync::Arc::from(text.trim()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminToken({} bytes, redacted)", self.0.len())
    }
}

/// The admin listener (health, metrics, purges).
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// HTTPS on the admin listener, with `[admin.tls]`.
    pub tls: Option<TlsConfig>,
    /// File holding the bearer token that purges, `/reload` and (see `protect_metrics`)
    /// `/metrics` require.
    pub token_file: Option<PathBuf>,
    /// The token, read from `token_file` by the loader (again on every reload).
    pub token: Option<AdminToken>,
    /// With a token: whether `/metrics` requires it too.
    pub protect_metrics: bool,
    /// Serve the admin API off loopback without a token (otherwise pollgate refuses to start).
    pub allow_unauthenticated: bool,
}

/// The API pollgate fronts.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub url: Uri,
    /// An unreachable upstream answers 502 after this instead of after the OS's minutes.
    pub connect_timeout: Duration,
    /// Bound on one upstream exchange (headers for passthrough, headers and body for item
    /// lists), so a hung upstream turns into a 504 rather than a held client.
    pub request_timeout: Duration,
    pub extra_ca_file: Option<PathBuf>,
    /// Idle pooled connections are closed after this, before the upstream's own idle cut-off.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per upstream host, so a burst does not pay fresh TLS handshakes.
    pub pool_max_idle_per_host: usize,
    /// Global bound on upstream requests in flight, so a burst cannot stampede the API.
    pub max_concurrent: usize,
    /// Per-credential budget for cacheable fetches (token bucket); `None` = unlimited
    /// (written as 0: see [`ZERO_DISABLES`]).
    pub max_requests_per_second: Option<f64>,
    /// How long a cacheable request may wait for budget before it is answered 429,
    /// so an over-budget client gets an answer instead of an unbounded wait.
    pub budget_wait: Duration,
}

/// Storing, freshness and coalescing of item lists.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// How long a page is served without asking the upstream: the staleness clients accept.
    pub ttl: Duration,
    /// Freshness of item lists of jobs seen in a terminal state (their pages stop changing).
    /// Never shorter than `ttl`: the loader raises it (see `rules`).
    pub terminal_ttl: Duration,
    /// After the TTL, the old page is served at once while one background fill refreshes it.
    pub stale_while_revalidate: Duration,
    /// After the TTL, the old page is served when the upstream fails or rate-limits.
    pub stale_if_error: Duration,
    /// Memory bound of the cache (bodies, headers, keys), so it cannot grow without limit.
    pub capacity_bytes: u64,
    /// Larger pages are delivered but not stored, so one huge page cannot evict the rest.
    pub max_entry_bytes: usize,
    /// Longest a request waits on another request's in-flight fetch before it gets stale
    /// data or 504, so a slow fill does not hold every waiter.
    pub wait_timeout: Duration,
    /// Most requests allowed to wait on one in-flight fetch, so waiters cannot pile up unbounded.
    pub max_waiters: usize,
    /// Request headers that shape the response: forwarded upstream and part of the key.
    pub vary_headers: Vec<HeaderName>,
    /// Upper bound on `Prefer: wait=N` long-polls, so a client cannot hold a request for hours.
    pub long_poll_max_wait: Duration,
}

/// Reaction to upstream rate limiting.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffConfig {
    /// Back-off after a 429 that carries no usable `Retry-After`; it doubles on each repeat.
    /// 1 s, about what an SDK waits on its own (0.5 s × 2ⁿ): a longer first back-off made one
    /// such 429 cost an SDK call 4.5 s through pollgate against 0.8 s direct.
    pub default_retry_after: Duration,
    /// Cap on any back-off, whatever the upstream asks, so a bogus `Retry-After` cannot
    /// silence a credential for days.
    pub max_retry_after: Duration,
}

/// Log output.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// One line per request (see `access_log.rs`), in `format`.
    pub access_log: bool,
    /// Where access lines go: their own file (reopened on SIGHUP, for logrotate),
    /// or, when unset, standard output beside the other logs.
    pub access_log_path: Option<PathBuf>,
    /// Which log lines are written: `tracing` directives (`info`, `pollgate=debug,info`).
    /// `RUST_LOG`, when set, wins.
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                max_connections: 10_000,
                workers: 0,
                header_read_timeout: Duration::from_secs(10),
                max_header_bytes: 64 * 1024,
                shutdown_grace: Duration::from_secs(30),
                tls: None,
            },
            admin: AdminConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
                tls: None,
                token_file: None,
                token: None,
                protect_metrics: true,
                allow_unauthenticated: false,
            },
            upstream: UpstreamConfig {
                url: Uri::from_static("https://api.cloud.llamaindex.ai"),
                connect_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(30),
                extra_ca_file: None,
                pool_idle_timeout: Duration::from_secs(90),
                pool_max_idle_per_host: 64,
                max_concurrent: 64,
                max_requests_per_second: None,
                budget_wait: Duration::from_secs(1),
            },
            cache: CacheConfig {
                ttl: Duration::from_secs(2),
                terminal_ttl: Duration::from_secs(300),
                stale_while_revalidate: Duration::from_secs(10),
                stale_if_error: Duration::from_secs(300),
                capacity_bytes: 256 * 1024 * 1024,
                max_entry_bytes: 8 * 1024 * 1024,
                wait_timeout: Duration::from_secs(10),
                max_waiters: 10_000,
                vary_headers: Vec::new(),
                long_poll_max_wait: Duration::from_secs(60),
            },
            backoff: BackoffConfig {
                default_retry_after: Duration::from_secs(1),
                max_retry_after: Duration::from_secs(300),
            },
            log: LogConfig {
                format: LogFormat::Text,
                access_log: true,
                access_log_path: None,
                filter: "info".into(),
            },
            fleet: FleetConfig::default(),
        }
    }
}

/// Least length of the fleet secret, in bytes: a BLAKE3 key's worth.
pub const MIN_FLEET_SECRET: usize = 32;

/// The fleet-wide key material for credential fingerprints. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetSecret(std::sync::Arc<[u8]>);

impl FleetSecret {
    /// The secret from its bytes, surrounding whitespace trimmed.
    pub fn new(bytes: &[u8]) -> Self {
        FleetSecret(std::sync::Arc::from(bytes.trim_ascii()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for FleetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FleetSecret({} bytes, redacted)", self.0.len())
    }
}

/// The shared tier: many gateways on one Redis behave like one gateway. Off (one process,
/// no Redis) without a `redis_url`.
#[derive(Clone, PartialEq)]
pub struct FleetConfig {
    /// `redis://` or `rediss://` (TLS through rustls); setting it turns the tier on.
    pub redis_url: Option<String>,
    /// File holding the fleet secret (its bytes, surrounding whitespace trimmed).
    pub secret_file: Option<PathBuf>,
    /// The fleet secret: `POLLGATE_FLEET_SECRET`, else `secret_file`'s contents (read by the
    /// loader). Gateways share entries exactly when they share it.
    pub secret: Option<FleetSecret>,
    /// Namespace of every Redis key and channel, so several fleets can share one Redis.
    pub key_prefix: String,
    /// How long a fill lease lasts unless renewed, so a dead holder blocks a key no longer.
    pub lease_ttl: Duration,
    /// Deadline on every Redis call, so a hung Redis cannot hang a request.
    pub redis_timeout: Duration,
    /// Consecutive failed Redis calls that open the breaker (single-gateway mode).
    pub breaker_failures: u32,
    /// How long the open breaker keeps Redis out of the request path before one trial call.
    pub breaker_cooloff: Duration,
    /// Mean interval of the jittered check a waiter on another gateway's fill makes, in
    /// case a notification was lost.
    pub fallback_check: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            redis_url: None,
            secret_file: None,
            secret: None,
            key_prefix: "pollgate".into(),
            lease_ttl: Duration::from_secs(2),
            redis_timeout: Duration::from_millis(250),
            breaker_failures: 3,
            breaker_cooloff: Duration::from_secs(2),
            fallback_check: Duration::from_millis(250),
        }
    }
}

impl FleetConfig {
    /// The tier on `redis_url` with `secret`, other settings at their defaults.
    pub fn new(redis_url: &str, secret: &[u8]) -> Self {
        FleetConfig {
            redis_url: Some(redis_url.to_owned()),
            secret: Some(FleetSecret::new(secret)),
            ..FleetConfig::default()
        }
    }

    /// Is the shared tier on?
    pub fn enabled(&self) -> bool {
        self.redis_url.is_some()
    }

    /// The Redis URL with any password hidden, for logs and `check-config`.
    pub fn redis_url_shown(&self) -> Option<String> {
        let url = self.redis_url.as_deref()?;
        Some(match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://<redacted>{}", &url[..scheme], &url[at..])
            }
            _ => url.to_owned(),
        })
    }
}

impl std::fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetConfig")
            .field("redis_url", &self.redis_url_shown())
            .field("secret_file", &self.secret_file)
            .field("secret", &self.secret)
            .field("key_prefix", &self.key_prefix)
            .field("lease_ttl", &self.lease_ttl)
            .field("redis_timeout", &self.redis_timeout)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_cooloff", &self.breaker_cooloff)
            .field("fallback_check", &self.fallback_check)
            .finish()
    }
}
