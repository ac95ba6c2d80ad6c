//! What a valid configuration is, stated once: the "0 disables" keys, the values the loader
//! adjusts, and every check. The loader, `check-config`, [`Config::validate`] and the README
//! all follow this file.

use std::net::SocketAddr;
use std::time::Duration;

use http::Uri;

use super::error::{ConfigError, KeyError};
use super::{AdminToken, Config, FleetSecret, TlsConfig, MIN_FLEET_SECRET};

/// Keys where 0 means "off" rather than "nothing allowed", and what off means.
///
/// The loader turns a 0 from any source into `None` in [`Config`] (`zero_disables`),
/// `check-config` prints `None` as 0 with this note, and validation accepts 0 or a positive
/// number. Every other key means what it says at 0: a zero window is no window, and a zero
/// count or timeout that would stop the gateway is an error.
pub const ZERO_DISABLES: &[(&str, &str)] = &[(
    "upstream.max_requests_per_second",
    "no per-credential budget",
)];

/// The "0 disables" rule for one value: 0 becomes `None` (off).
pub(super) fn zero_disables(value: f64) -> Option<f64> {
    (value != 0.0).then_some(value)
}

/// What "0" means for `key`, if it is one of [`ZERO_DISABLES`].
pub(super) fn zero_means(key: &str) -> Option<&'static str> {
    ZERO_DISABLES
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, meaning)| *meaning)
}

/// Values the loader changes so that [`Config`] holds what the gateway will actually use;
/// returns each changed key with a note for `check-config`.
pub(super) fn adjust(c: &mut Config) -> Vec<(&'static str, &'static str)> {
    let mut notes = Vec::new();
    // A finished job's pages change no more than a running job's, so they are never fresher.
    if c.cache.terminal_ttl < c.cache.ttl {
        c.cache.terminal_ttl = c.cache.ttl;
        notes.push(("cache.terminal_ttl", "raised to cache.ttl"));
    }
    // Every request of an item route, the one that started the fill included, waits at most
    // `cache.wait_timeout`; the fill itself may run `upstream.request_timeout`. A wait longer
    // than the fill can last never ends any differently, so it is cut to that.
    if c.cache.wait_timeout > c.upstream.request_timeout {
        c.cache.wait_timeout = c.upstream.request_timeout;
        notes.push(("cache.wait_timeout", "lowered to upstream.request_timeout"));
    }
    // The admin token is read from its file (a read error is reported by `check`).
    if let Some(path) = &c.admin.token_file {
        c.admin.token = std::fs::read_to_string(path)
            .ok()
            .map(|text| AdminToken::new(&text))
            .filter(|t| !t.as_bytes().is_empty());
    }
    // The fleet secret comes from POLLGATE_FLEET_SECRET, else from its file (a read error
    // is reported by `check`, which reads it again).
    if c.fleet.secret.is_none() {
        if let Some(path) = &c.fleet.secret_file {
            if let Ok(bytes) = std::fs::read(path) {
                c.fleet.secret = Some(FleetSecret::new(&bytes));
            }
        }
    }
    notes
}

/// Smallest `server.max_header_bytes`: hyper's minimum read buffer.
const MIN_HEADER_BYTES: usize = 8192;

/// Every violated rule, each naming its key.
/// More event loops than this would be a typo, not a machine.
const MAX_WORKERS: usize = 1024;

pub(super) fn check(c: &Config) -> Vec<KeyError> {
    let mut errors = Vec::new();
    let mut fail = |key: &str, reason: String| errors.push(KeyError::new(key, reason));

    // Zero here would time out every request or back-off at once, never a useful setting.
    let positive: [(&str, Duration); 8] = [
        ("server.header_read_timeout", c.server.header_read_timeout),
        ("upstream.connect_timeout", c.upstream.connect_timeout),
        ("upstream.request_timeout", c.upstream.request_timeout),
        ("cache.ttl", c.cache.ttl),
        ("cache.terminal_ttl", c.cache.terminal_ttl),
        ("cache.wait_timeout", c.cache.wait_timeout),
        ("backoff.default_retry_after", c.backoff.default_retry_after),
        ("backoff.max_retry_after", c.backoff.max_retry_after),
    ];
    for (key, value) in positive {
        if value.is_zero() {
            fail(key, "must be greater than zero".into());
        }
    }
    // Zero here would serve nothing at all.
    let at_least_one = [
        ("server.max_connections", c.server.max_connections),
        ("upstream.max_concurrent", c.upstream.max_concurrent),
        ("cache.max_waiters", c.cache.max_waiters),
    ];
    for (key, value) in at_least_one {
        if value == 0 {
            fail(key, "must be at least 1".into());
        }
    }
    if c.server.workers > MAX_WORKERS {
        fail(
            "server.workers",
            format!("must be at most {MAX_WORKERS} (0 = one multi-threaded runtime)"),
        );
    }
    if c.server.workers > c.server.max_connections {
        fail(
            "server.workers",
            "must not exceed server.max_connections (each worker serves its share)".into(),
        );
    }
    if c.server.max_header_bytes < MIN_HEADER_BYTES {
        fail(
            "server.max_header_bytes",
            format!("must be at least {MIN_HEADER_BYTES} (hyper's minimum read buffer)"),
        );
    }
    if let Some(reason) = upstream_url_problem(&c.upstream.url) {
        fail("upstream.url", reason);
    }
    if let Some(rps) = c.upstream.max_requests_per_second {
        if !rps.is_finite() || rps <= 0.0 {
            fail(
                "upstream.max_requests_per_second",
                format!("`{rps}` must be a positive number, or 0 for no per-credential budget"),
            );
        }
    }
    if c.cache.capacity_bytes == 0 {
        fail("cache.capacity_bytes", "must be greater than zero".into());
    }
    if c.cache.max_entry_bytes as u64 > c.cache.capacity_bytes {
        fail(
            "cache.max_entry_bytes",
            "must not exceed cache.capacity_bytes".into(),
        );
    }
    if c.cache.terminal_ttl < c.cache.ttl {
        // Only a config built in code gets here: the loader raises it (see `adjust`).
        fail("cache.terminal_ttl", "must be at least cache.ttl".into());
    }
    if c.backoff.max_retry_after < c.backoff.default_retry_after {
        fail(
            "backoff.max_retry_after",
            "must be at least backoff.default_retry_after".into(),
        );
    }
    if let Some(path) = &c.upstream.extra_ca_file {
        if !path.is_file() {
            fail(
                "upstream.extra_ca_file",
                format!("{} is not a readable file", path.display()),
            );
        }
    }
    check_fleet(c, &mut fail);
    check_tls("server.tls", c.server.tls.as_ref(), &mut fail);
    check_tls("admin.tls", c.admin.tls.as_ref(), &mut fail);
    check_admin(c, &mut fail);
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.log.filter) {
        fail(
            "log.filter",
            format!("`{}` is not a log filter ({e})", c.log.filter),
        );
    }
    if listeners_collide(c.admin.listen, c.server.listen) {
        fail(
            "admin.listen",
            format!(
                "{} overlaps server.listen {}: give the listeners different ports",
                c.admin.listen, c.server.listen
            ),
        );
    }
    errors
}

/// The `[fleet]` rules: its settings always, its URL and secret when the tier is on.
fn check_fleet(c: &Config, fail: &mut impl FnMut(&str, String)) {
    let f = &c.fleet;
    for (key, value) in [
        ("fleet.lease_ttl", f.lease_ttl),
        ("fleet.redis_timeout", f.redis_timeout),
        ("fleet.breaker_cooloff", f.breaker_cooloff),
        ("fleet.fallback_check", f.fallback_check),
    ] {
        if value.is_zero() {
            fail(key, "must be greater than zero".into());
        }
    }
    if f.lease_ttl < f.redis_timeout * 2 {
        fail(
            "fleet.lease_ttl",
            "must be at least twice fleet.redis_timeout (its holder renews it in time)".into(),
        );
    }
    if f.breaker_failures == 0 {
        fail("fleet.breaker_failures", "must be at least 1".into());
    }
    let prefix_ok = !f.key_prefix.is_empty()
        && f.key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !prefix_ok {
        fail(
            "fleet.key_prefix",
            "must be ASCII letters, digits, '-', '_', '.' or ':' (no hash-tag braces)".into(),
        );
    }
    let Some(url) = &f.redis_url else {
        return;
    };
    if let Some(reason) = redis_url_problem(url) {
        fail("fleet.redis_url", reason);
    }
    let required = format!(
        "required with fleet.redis_url: a file of at least {MIN_FLEET_SECRET} bytes shared \
         by every gateway of the fleet (or the secret itself in POLLGATE_FLEET_SECRET)"
    );
    match (&f.secret, &f.secret_file) {
        (Some(secret), _) if secret.as_bytes().len() < MIN_FLEET_SECRET => fail(
            "fleet.secret_file",
            format!(
                "the fleet secret has {} bytes; at least {MIN_FLEET_SECRET} are required",
                secret.as_bytes().len()
            ),
        ),
        (Some(_), _) => {}
        (None, Some(path)) => {
            let why = std::fs::read(path)
                .err()
                .map_or("empty".into(), |e| e.to_string());
            fail(
                "fleet.secret_file",
                format!("cannot read {}: {why}", path.display()),
            );
        }
        (None, None) => fail("fleet.secret_file", required),
    }
}

/// A TLS section names both files, readable; the handshake timeout is positive. Whether
/// they hold a usable certificate and key is checked when the listener loads them.
fn check_tls(section: &str, tls: Option<&TlsConfig>, fail: &mut impl FnMut(&str, String)) {
    let Some(tls) = tls else {
        return;
    };
    let files = [
        ("cert_file", Some(&tls.cert_file)),
        ("key_file", Some(&tls.key_file)),
        ("client_ca_file", tls.client_ca_file.as_ref()),
    ];
    for (name, path) in files {
        let Some(path) = path else {
            continue;
        };
        let key = format!("{section}.{name}");
        if path.as_os_str().is_empty() {
            fail(
                &key,
                format!("required: {section} needs cert_file and key_file"),
            );
        } else if !path.is_file() {
            fail(&key, format!("{} is not a readable file", path.display()));
        }
    }
    if tls.handshake_timeout.is_zero() {
        fail(
            &format!("{section}.handshake_timeout"),
            "must be greater than zero".into(),
        );
    }
}

/// The admin API can purge the cache and reload the configuration: off loopback it needs a
/// token, unless the operator says otherwise in so many words.
fn check_admin(c: &Config, fail: &mut impl FnMut(&str, String)) {
    let a = &c.admin;
    if let Some(path) = &a.token_file {
        if a.token.is_none() {
            let why = match std::fs::read_to_string(path) {
                Ok(_) => "the file is empty".to_owned(),
                Err(e) => e.to_string(),
            };
            fail(
                "admin.token_file",
                format!("cannot read a token from {}: {why}", path.display()),
            );
        }
    } else if !a.listen.ip().is_loopback() && !a.allow_unauthenticated {
        fail(
            "admin.listen",
            format!(
                "{} is not a loopback address, and anyone who reaches it could purge the cache \
                 and reload the configuration: set admin.token_file (or \
                 admin.allow_unauthenticated = true)",
                a.listen
            ),
        );
    }
}

/// A Redis URL pollgate can connect to; the reason never echoes it (it may hold a password).
fn redis_url_problem(url: &str) -> Option<String> {
    use redis::IntoConnectionInfo;
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Some("must start with redis:// or rediss://".into());
    }
    url.into_connection_info()
        .err()
        .map(|e| format!("not a Redis URL ({:?})", e.kind()))
}

/// The upstream must be an absolute http(s) URL without a query; a path is a prefix.
fn upstream_url_problem(url: &Uri) -> Option<String> {
    if !matches!(url.scheme_str(), Some("http") | Some("https")) {
        return Some(format!("`{url}` must start with http:// or https://"));
    }
    if url.host().is_none() {
        return Some(format!("`{url}` has no host"));
    }
    if url.query().is_some() {
        return Some(format!("`{url}` must not carry a query"));
    }
    None
}

/// Two listeners cannot bind the same port on the same address, and an unspecified address
/// (`0.0.0.0`, `[::]`) covers every address. Port 0 asks the OS for a fresh port each time.
fn listeners_collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

impl Config {
    /// Check every rule; the error lists every violation, each naming its key.
    ///
    /// The loader runs this after its adjustments; a `Config` built in code (tests,
    /// benches) should call it before use.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let errors = check(self);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { file: None, errors })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(errors: &[KeyError]) -> Vec<&str> {
        errors.iter().map(|e| e.key.as_str()).collect()
    }

    type Tweak = fn(&mut Config);

    /// `check` on the defaults changed by `tweak`: the keys reported.
    fn bad_keys(tweak: impl FnOnce(&mut Config)) -> Vec<String> {
        let mut c = Config::default();
        tweak(&mut c);
        check(&c).into_iter().map(|e| e.key).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate().ok(), Some(()));
    }

    #[test]
    fn every_rule_names_its_key() {
        let addr = |s: &str| s.parse::<SocketAddr>().expect("addr");
        let cases: &[(&str, Tweak)] = &[
            ("server.header_read_timeout", |c| {
                c.server.header_read_timeout = Duration::ZERO
            }),
            ("upstream.connect_timeout", |c| {
                c.upstream.connect_timeout = Duration::ZERO
            }),
            ("upstream.request_timeout", |c| {
                c.upstream.request_timeout = Duration::ZERO
            }),
            ("cache.wait_timeout", |c| {
                c.cache.wait_timeout = Duration::ZERO
            }),
            ("backoff.default_retry_after", |c| {
                c.backoff.default_retry_after = Duration::ZERO
            }),
            ("server.max_connections", |c| c.server.max_connections = 0),
            ("server.workers", |c| c.server.workers = 1025),
            ("server.workers", |c| {
                c.server.max_connections = 2;
                c.server.workers = 3
            }),
            ("upstream.max_concurrent", |c| c.upstream.max_concurrent = 0),
            ("cache.max_waiters", |c| c.cache.max_waiters = 0),
            ("server.max_header_bytes", |c| {
                c.server.max_header_bytes = MIN_HEADER_BYTES - 1
            }),
            ("upstream.url", |c| {
                c.upstream.url = Uri::from_static("ftp://example.com")
            }),
            ("upstream.url", |c| {
                c.upstream.url = Uri::from_static("/no/host")
            }),
            ("upstream.url", |c| {
                c.upstream.url = Uri::from_static("http://h/?a=1")
            }),
            ("upstream.max_requests_per_second", |c| {
                c.upstream.max_requests_per_second = Some(-1.0)
            }),
            ("upstream.max_requests_per_second", |c| {
                c.upstream.max_requests_per_second = Some(f64::NAN)
            }),
            ("upstream.max_requests_per_second", |c| {
                c.upstream.max_requests_per_second = Some(0.0)
            }),
            ("cache.capacity_bytes", |c| {
                c.cache.capacity_bytes = 0;
                c.cache.max_entry_bytes = 0;
            }),
            ("cache.max_entry_bytes", |c| {
                c.cache.max_entry_bytes = c.cache.capacity_bytes as usize + 1
            }),
            ("cache.terminal_ttl", |c| {
                c.cache.terminal_ttl = c.cache.ttl / 2
            }),
            ("backoff.max_retry_after", |c| {
                c.backoff.max_retry_after = c.backoff.default_retry_after / 2
            }),
            ("upstream.extra_ca_file", |c| {
                c.upstream.extra_ca_file = Some("/nonexistent/ca.pem".into())
            }),
            ("admin.listen", |c| c.admin.listen = c.server.listen),
            ("admin.listen", |c| {
                c.admin.listen = SocketAddr::from(([10, 0, 0, 1], 9090))
            }),
            ("admin.token_file", |c| {
                c.admin.token_file = Some("/nonexistent/token".into())
            }),
            ("server.tls.key_file", |c| {
                c.server.tls = Some(TlsConfig {
                    cert_file: "Cargo.toml".into(),
                    key_file: "".into(),
                    client_ca_file: None,
                    handshake_timeout: Duration::from_secs(1),
                })
            }),
            ("admin.tls.cert_file", |c| {
                c.admin.tls = Some(TlsConfig {
                    cert_file: "/nonexistent/cert.pem".into(),
                    key_file: "Cargo.toml".into(),
                    client_ca_file: None,
                    handshake_timeout: Duration::from_secs(1),
                })
            }),
            ("log.filter", |c| c.log.filter = "pollgate=loud".into()),
        ];
        for (key, tweak) in cases {
            assert_eq!(bad_keys(tweak), [key.to_owned()], "expected only {key}");
        }
        // An unspecified address covers every address of the same port.
        for (server, admin) in [
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("127.0.0.1:8080", "[::]:8080"),
        ] {
            let found = bad_keys(|c| {
                c.server.listen = addr(server);
                c.admin.listen = addr(admin);
                c.admin.allow_unauthenticated = true;
            });
            assert_eq!(found, ["admin.listen"], "{server} / {admin}");
        }
    }

    #[test]
    fn off_loopback_admin_is_allowed_with_a_token_or_when_said_so() {
        let off = SocketAddr::from(([0, 0, 0, 0], 9090));
        assert!(bad_keys(|c| {
            c.admin.listen = off;
            c.admin.allow_unauthenticated = true;
        })
        .is_empty());
        assert!(bad_keys(|c| {
            c.admin.listen = off;
            c.admin.token_file = Some("t".into());
            c.admin.token = Some(AdminToken::new("s3cret"));
        })
        .is_empty());
    }

    #[test]
    fn zero_ttl_fails_positive_rule_and_keeps_terminal_ttl_consistent() {
        // ttl 0 is the error; terminal_ttl (5m) is still at least ttl.
        assert_eq!(bad_keys(|c| c.cache.ttl = Duration::ZERO), ["cache.ttl"]);
    }

    #[test]
    fn valid_edge_values_pass() {
        assert!(bad_keys(|c| {
            // Port 0 twice: each bind gets its own port.
            c.server.listen = "127.0.0.1:0".parse().expect("addr");
            c.admin.listen = "127.0.0.1:0".parse().expect("addr");
            c.server.max_header_bytes = MIN_HEADER_BYTES;
            c.upstream.max_requests_per_second = Some(0.5);
            c.cache.max_entry_bytes = c.cache.capacity_bytes as usize;
            c.cache.terminal_ttl = c.cache.ttl;
            c.cache.stale_while_revalidate = Duration::ZERO;
            c.upstream.budget_wait = Duration::ZERO;
            c.backoff.max_retry_after = c.backoff.default_retry_after;
        })
        .is_empty());
        // Same port on different specific addresses is fine.
        assert!(bad_keys(|c| {
            c.server.listen = "127.0.0.1:8080".parse().expect("addr");
            c.admin.listen = "127.0.0.2:8080".parse().expect("addr");
        })
        .is_empty());
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let mut c = Config::default();
        c.cache.ttl = Duration::ZERO;
        c.server.max_connections = 0;
        c.admin.listen = c.server.listen;
        c.upstream.url = Uri::from_static("ftp://example.com");
        let Err(e) = c.validate() else {
            panic!("invalid config accepted")
        };
        let mut reported = keys(e.key_errors());
        reported.sort_unstable();
        assert_eq!(
            reported,
            [
                "admin.listen",
                "cache.ttl",
                "server.max_connections",
                "upstream.url"
            ]
        );
        let text = e.to_string();
        assert!(text.starts_with("4 invalid settings:"), "{text}");
        for key in [
            "cache.ttl",
            "server.max_connections",
            "admin.listen",
            "upstream.url",
        ] {
            assert_eq!(
                text.lines()
                    .filter(|l| l.contains(&format!("`{key}`")))
                    .count(),
                1,
                "{key} on its own line: {text}"
            );
        }
    }

    #[test]
    fn zero_disables_maps_only_zero_to_off() {
        assert_eq!(zero_disables(0.0), None);
        assert_eq!(zero_disables(2.5), Some(2.5));
        assert_eq!(
            zero_disables(-1.0),
            Some(-1.0),
            "left for validation to reject"
        );
        assert_eq!(
            zero_means("upstream.max_requests_per_second"),
            Some("no per-credential budget")
        );
        assert_eq!(zero_means("cache.ttl"), None);
    }

    #[test]
    fn adjust_raises_terminal_ttl_to_ttl_with_a_note() {
        let mut c = Config::default();
        c.cache.ttl = Duration::from_secs(600);
        assert_eq!(
            adjust(&mut c),
            [("cache.terminal_ttl", "raised to cache.ttl")]
        );
        assert_eq!(c.cache.terminal_ttl, Duration::from_secs(600));
        assert!(adjust(&mut c).is_empty(), "idempotent");
        let mut d = Config::default();
        assert!(adjust(&mut d).is_empty());
        assert_eq!(d, Config::default());
    }
}
