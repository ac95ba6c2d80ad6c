//! Configuration: built-in defaults, then `config.toml`, then environment, then flags.
//!
//! The file is read into all-`Option` structs that reject unknown keys, so a
//! typo stops the program instead of silently keeping a default. The result is
//! validated into [`Config`], the typed form the rest of the gateway uses;
//! every error names the key and the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Uri};
use serde::Deserialize;

/// A key and why its value is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub upstream: UpstreamConfig,
    pub cache: CacheConfig,
    pub backoff: BackoffConfig,
    pub log: LogConfig,
    /// The shared tier; `None` (no `fleet.redis_url`) = one process, moka only.
    pub fleet: Option<FleetConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Connections beyond this wait in the kernel's accept queue instead of eating memory.
    pub max_connections: usize,
    /// A client that has not sent its whole request head by then is disconnected (slowloris).
    pub header_read_timeout: Duration,
    /// Largest request head accepted; bigger gets 431 instead of unbounded buffering.
    pub max_header_bytes: usize,
    /// How long shutdown waits for in-flight requests before closing connections.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub url: Uri,
    pub connect_timeout: Duration,
    /// Bound on one upstream exchange: headers for passthrough, headers and body for item lists.
    pub request_timeout: Duration,
    pub extra_ca_file: Option<PathBuf>,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// Global bound on upstream requests in flight, so a burst cannot stampede the API.
    pub max_concurrent: usize,
    /// Per-credential budget for cacheable fetches (token bucket); `None` = unlimited.
    pub max_requests_per_second: Option<f64>,
    /// How long a cacheable request may wait for budget before it is answered 429.
    pub budget_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub ttl: Duration,
    /// Freshness of item lists of jobs seen in a terminal state (their pages stop changing).
    /// Never shorter than `ttl`: a larger `--ttl` raises it too.
    pub terminal_ttl: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    pub capacity_bytes: u64,
    pub max_entry_bytes: usize,
    /// Longest a request waits on another request's in-flight fetch.
    pub wait_timeout: Duration,
    /// Most requests allowed to wait on one in-flight fetch.
    pub max_waiters: usize,
    /// Request headers that shape the response: forwarded upstream and part of the key.
    pub vary_headers: Vec<HeaderName>,
    /// Upper bound on `Prefer: wait=N` long-polls.
    pub long_poll_max_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct BackoffConfig {
    /// Back-off after a 429 that carries no usable `Retry-After`.
    pub default_retry_after: Duration,
    /// Cap on any back-off, whatever the upstream asks.
    pub max_retry_after: Duration,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// One line per request at info level on target `pollgate::access`.
    pub access_log: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                max_connections: 10_000,
                header_read_timeout: Duration::from_secs(10),
                max_header_bytes: 64 * 1024,
                shutdown_grace: Duration::from_secs(30),
            },
            admin: AdminConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
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
                default_retry_after: Duration::from_secs(5),
                max_retry_after: Duration::from_secs(300),
            },
            log: LogConfig {
                format: LogFormat::Text,
                access_log: true,
            },
            fleet: None,
        }
    }
}

/// Values given on the command line or in `POLLGATE_*` variables; they win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub upstream: Option<String>,
    pub admin_listen: Option<SocketAddr>,
    pub ttl: Option<Duration>,
    pub log_format: Option<LogFormat>,
    /// `--redis-url` / `POLLGATE_REDIS_URL`.
    pub redis_url: Option<String>,
    /// `POLLGATE_FLEET_SECRET`: the fleet key itself (never a flag: flags show in `ps`).
    pub fleet_secret: Option<Vec<u8>>,
}

// ---- the file's shape: every key optional, unknown keys rejected ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: Option<FileServer>,
    admin: Option<FileAdmin>,
    upstream: Option<FileUpstream>,
    cache: Option<FileCache>,
    backoff: Option<FileBackoff>,
    log: Option<FileLog>,
    fleet: Option<FileFleet>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    listen: Option<String>,
    max_connections: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    header_read_timeout: Option<Duration>,
    max_header_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    shutdown_grace: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAdmin {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    url: Option<String>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    request_timeout: Option<Duration>,
    extra_ca_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pool_idle_timeout: Option<Duration>,
    pool_max_idle_per_host: Option<usize>,
    max_concurrent: Option<usize>,
    max_requests_per_second: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    budget_wait: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCache {
    #[serde(default, with = "humantime_serde")]
    ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    terminal_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    stale_while_revalidate: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    stale_if_error: Option<Duration>,
    capacity_bytes: Option<u64>,
    max_entry_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    wait_timeout: Option<Duration>,
    max_waiters: Option<usize>,
    vary_headers: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    long_poll_max_wait: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackoff {
    #[serde(default, with = "humantime_serde")]
    default_retry_after: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_retry_after: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    format: Option<LogFormat>,
    access_log: Option<bool>,
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn parse_addr(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse()
        .map_err(|e| invalid(key, format!("`{value}` is not an IP:port address ({e})")))
}

impl Config {
    /// Defaults, overlaid with the file at `path` (if any), then with `overrides`, then validated.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::parse_file(path, &text)?
            }
            None => FileConfig::default(),
        };
        let mut file = file;
        let fleet = file.fleet.take();
        let mut config = Config::default();
        config.apply_file(file)?;
        config.apply_overrides(overrides)?;
        config.fleet = FleetConfig::build(fleet, overrides)?;
        config.validate()?;
        Ok(config)
    }

    /// Parse the file; errors lead with the dotted key (`cache.ttl: ...`), then toml's
    /// own message with the line and column.
    fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            ConfigError::Parse {
                path: path.to_owned(),
                message: if key == "." || key.is_empty() {
                    message
                } else {
                    format!("`{key}`: {message}")
                },
            }
        })
    }

    fn apply_file(&mut self, file: FileConfig) -> Result<(), ConfigError> {
        if let Some(s) = file.server {
            if let Some(listen) = s.listen {
                self.server.listen = parse_addr("server.listen", &listen)?;
            }
            set(&mut self.server.max_connections, s.max_connections);
            set(&mut self.server.header_read_timeout, s.header_read_timeout);
            set(&mut self.server.max_header_bytes, s.max_header_bytes);
            set(&mut self.server.shutdown_grace, s.shutdown_grace);
        }
        if let Some(a) = file.admin {
            if let Some(listen) = a.listen {
                self.admin.listen = parse_addr("admin.listen", &listen)?;
            }
        }
        if let Some(u) = file.upstream {
            if let Some(url) = u.url {
                self.upstream.url = parse_upstream("upstream.url", &url)?;
            }
            set(&mut self.upstream.connect_timeout, u.connect_timeout);
            set(&mut self.upstream.request_timeout, u.request_timeout);
            if u.extra_ca_file.is_some() {
                self.upstream.extra_ca_file = u.extra_ca_file;
            }
            set(&mut self.upstream.pool_idle_timeout, u.pool_idle_timeout);
            set(
                &mut self.upstream.pool_max_idle_per_host,
                u.pool_max_idle_per_host,
            );
            set(&mut self.upstream.max_concurrent, u.max_concurrent);
            if let Some(rps) = u.max_requests_per_second {
                self.upstream.max_requests_per_second = (rps != 0.0).then_some(rps);
            }
            set(&mut self.upstream.budget_wait, u.budget_wait);
        }
        if let Some(c) = file.cache {
            set(&mut self.cache.ttl, c.ttl);
            set(&mut self.cache.terminal_ttl, c.terminal_ttl);
            set(
                &mut self.cache.stale_while_revalidate,
                c.stale_while_revalidate,
            );
            set(&mut self.cache.stale_if_error, c.stale_if_error);
            set(&mut self.cache.capacity_bytes, c.capacity_bytes);
            set(&mut self.cache.max_entry_bytes, c.max_entry_bytes);
            set(&mut self.cache.wait_timeout, c.wait_timeout);
            set(&mut self.cache.max_waiters, c.max_waiters);
            set(&mut self.cache.long_poll_max_wait, c.long_poll_max_wait);
            if let Some(names) = c.vary_headers {
                self.cache.vary_headers = names
                    .iter()
                    .map(|n| {
                        HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                            invalid("cache.vary_headers", format!("`{n}` is not a header name"))
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
        }
        if let Some(b) = file.backoff {
            set(&mut self.backoff.default_retry_after, b.default_retry_after);
            set(&mut self.backoff.max_retry_after, b.max_retry_after);
        }
        if let Some(l) = file.log {
            set(&mut self.log.format, l.format);
            set(&mut self.log.access_log, l.access_log);
        }
        Ok(())
    }

    fn apply_overrides(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        set(&mut self.server.listen, o.listen);
        set(&mut self.admin.listen, o.admin_listen);
        if let Some(url) = &o.upstream {
            self.upstream.url = parse_upstream("upstream.url (--upstream)", url)?;
        }
        set(&mut self.cache.ttl, o.ttl);
        set(&mut self.log.format, o.log_format);
        Ok(())
    }

    /// Cross-field checks; every error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("upstream.connect_timeout", self.upstream.connect_timeout),
            ("upstream.request_timeout", self.upstream.request_timeout),
            ("cache.ttl", self.cache.ttl),
            ("cache.terminal_ttl", self.cache.terminal_ttl),
            ("cache.wait_timeout", self.cache.wait_timeout),
            (
                "backoff.default_retry_after",
                self.backoff.default_retry_after,
            ),
            ("backoff.max_retry_after", self.backoff.max_retry_after),
        ];
        for (key, value) in positive {
            if value.is_zero() {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        if self.server.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        if self.server.max_header_bytes < 8192 {
            return Err(invalid(
                "server.max_header_bytes",
                "must be at least 8192 (hyper's minimum read buffer)",
            ));
        }
        if self.upstream.max_concurrent == 0 {
            return Err(invalid("upstream.max_concurrent", "must be at least 1"));
        }
        if let Some(rps) = self.upstream.max_requests_per_second {
            if !rps.is_finite() || rps < 0.0 {
                return Err(invalid(
                    "upstream.max_requests_per_second",
                    "must be a positive number (0 disables the budget)",
                ));
            }
        }
        if self.cache.capacity_bytes == 0 {
            return Err(invalid("cache.capacity_bytes", "must be greater than zero"));
        }
        if self.cache.max_entry_bytes as u64 > self.cache.capacity_bytes {
            return Err(invalid(
                "cache.max_entry_bytes",
                "must not exceed cache.capacity_bytes",
            ));
        }
        if self.cache.max_waiters == 0 {
            return Err(invalid("cache.max_waiters", "must be at least 1"));
        }
        if self.backoff.max_retry_after < self.backoff.default_retry_after {
            return Err(invalid(
                "backoff.max_retry_after",
                "must be at least backoff.default_retry_after",
            ));
        }
        if let Some(fleet) = &self.fleet {
            fleet.validate()?;
        }
        if let Some(path) = &self.upstream.extra_ca_file {
            if !path.is_file() {
                return Err(invalid(
                    "upstream.extra_ca_file",
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        Ok(())
    }
}

/// The upstream must be an absolute http(s) URL without a query; a path is a prefix.
fn parse_upstream(key: &'static str, value: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = value
        .parse()
        .map_err(|e| invalid(key, format!("`{value}` is not a URL ({e})")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(invalid(
                key,
                format!("`{value}` must start with http:// or https://"),
            ))
        }
    }
    if uri.host().is_none() {
        return Err(invalid(key, format!("`{value}` has no host")));
    }
    if uri.query().is_some() {
        return Err(invalid(key, format!("`{value}` must not carry a query")));
    }
    Ok(uri)
}

// ---- [fleet]: the shared Redis tier (one block, to port onto the new loader as is) ----

/// Least length of the fleet secret, in bytes: a BLAKE3 key's worth.
pub const MIN_FLEET_SECRET: usize = 32;

/// The fleet-wide key material for credential fingerprints. Never printed.
#[derive(Clone)]
pub struct FleetSecret(std::sync::Arc<[u8]>);

impl FleetSecret {
    pub fn new(bytes: &[u8]) -> Self {
        FleetSecret(std::sync::Arc::from(bytes))
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

#[derive(Clone)]
pub struct FleetConfig {
    /// `redis://` or `rediss://` (TLS through rustls).
    pub redis_url: String,
    /// Keys credential fingerprints: gateways share entries exactly when they share it.
    pub secret: FleetSecret,
    /// Namespace of every Redis key and channel, so several fleets can share one Redis.
    pub key_prefix: String,
    /// How long a fill lease lasts without renewal before another gateway may take over.
    pub lease_ttl: Duration,
    /// Deadline on every Redis call; a slower Redis counts as failed.
    pub redis_timeout: Duration,
    /// Consecutive failed Redis calls that open the breaker.
    pub breaker_failures: u32,
    /// How long the breaker keeps Redis out of every request path once open.
    pub breaker_cooloff: Duration,
    /// Mean interval of the jittered L2 check a remote waiter makes in case a
    /// notification was lost.
    pub fallback_check: Duration,
}

impl std::fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: show everything but it.
        let url = match (self.redis_url.find("://"), self.redis_url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!(
                    "{}://***{}",
                    &self.redis_url[..scheme],
                    &self.redis_url[at..]
                )
            }
            _ => self.redis_url.clone(),
        };
        f.debug_struct("FleetConfig")
            .field("redis_url", &url)
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFleet {
    redis_url: Option<String>,
    secret_file: Option<PathBuf>,
    key_prefix: Option<String>,
    #[serde(default, with = "humantime_serde")]
    lease_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    redis_timeout: Option<Duration>,
    breaker_failures: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    breaker_cooloff: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    fallback_check: Option<Duration>,
}

impl FleetConfig {
    /// The tier from the file's `[fleet]` and the overrides; `None` without a Redis URL.
    fn build(file: Option<FileFleet>, o: &Overrides) -> Result<Option<FleetConfig>, ConfigError> {
        let file = file.unwrap_or_default();
        let Some(redis_url) = o.redis_url.clone().or(file.redis_url) else {
            return Ok(None);
        };
        let secret = match (&o.fleet_secret, &file.secret_file) {
            (Some(bytes), _) => trimmed_secret(bytes, "POLLGATE_FLEET_SECRET")?,
            (None, Some(path)) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    invalid(
                        "fleet.secret_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                trimmed_secret(&bytes, &path.display().to_string())?
            }
            (None, None) => {
                return Err(invalid(
                    "fleet.secret_file",
                    format!(
                    "required with fleet.redis_url: a file of at least {MIN_FLEET_SECRET} bytes \
                         shared by every gateway of the fleet (or env POLLGATE_FLEET_SECRET)"
                ),
                ))
            }
        };
        Ok(Some(FleetConfig {
            redis_url,
            secret,
            key_prefix: file.key_prefix.unwrap_or_else(|| "pollgate".into()),
            lease_ttl: file.lease_ttl.unwrap_or(Duration::from_secs(2)),
            redis_timeout: file.redis_timeout.unwrap_or(Duration::from_millis(250)),
            breaker_failures: file.breaker_failures.unwrap_or(3),
            breaker_cooloff: file.breaker_cooloff.unwrap_or(Duration::from_secs(2)),
            fallback_check: file.fallback_check.unwrap_or(Duration::from_millis(250)),
        }))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        use redis::IntoConnectionInfo;
        let url = self.redis_url.as_str();
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(invalid(
                "fleet.redis_url",
                "must start with redis:// or rediss://",
            ));
        }
        if let Err(e) = url.into_connection_info() {
            // The parse error may echo the URL, password included: name the kind only.
            return Err(invalid(
                "fleet.redis_url",
                format!("not a Redis URL ({:?})", e.kind()),
            ));
        }
        let prefix_ok = !self.key_prefix.is_empty()
            && self
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !prefix_ok {
            return Err(invalid(
                "fleet.key_prefix",
                "must be non-empty ASCII letters, digits, '-', '_', '.' or ':' (no hash-tag braces)",
            ));
        }
        for (key, value) in [
            ("fleet.lease_ttl", self.lease_ttl),
            ("fleet.redis_timeout", self.redis_timeout),
            ("fleet.breaker_cooloff", self.breaker_cooloff),
            ("fleet.fallback_check", self.fallback_check),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        if self.lease_ttl < self.redis_timeout * 2 {
            return Err(invalid(
                "fleet.lease_ttl",
                "must be at least twice fleet.redis_timeout (the holder renews it in time)",
            ));
        }
        if self.breaker_failures == 0 {
            return Err(invalid("fleet.breaker_failures", "must be at least 1"));
        }
        Ok(())
    }
}

/// The secret's bytes with surrounding whitespace trimmed, if long enough.
fn trimmed_secret(bytes: &[u8], source: &str) -> Result<FleetSecret, ConfigError> {
    let trimmed = bytes.trim_ascii();
    if trimmed.len() < MIN_FLEET_SECRET {
        return Err(invalid(
            "fleet.secret_file",
            format!(
                "the fleet secret from {source} has {} bytes; at least {MIN_FLEET_SECRET} are required",
                trimmed.len()
            ),
        ));
    }
    Ok(FleetSecret::new(trimmed))
}
