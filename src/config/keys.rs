//! Every configuration key once: where its value lands in [`Config`] ([`apply`]) and how
//! `check-config` prints it ([`print`]). The two lists follow the same order as the file.
//!
//! Adding a key: its typed field and default (`mod.rs`), its mirror field (`file`), one
//! line in each list below, and, if a flag or a variable sets it, an entry in
//! `overrides::OVERRIDES`. A mirror field that [`apply`] forgets is never read, which the
//! compiler reports, and a key that either list forgets fails
//! `every_mirror_key_is_applied_and_printed` (in `tests`).
//! A nested section (`[server.tls]`) is a mirror struct inside its parent's and a typed
//! struct inside its parent's; the macros below take one more path segment for it.

use std::path::PathBuf;
use std::time::Duration;

use super::layers::Layers;
use super::render::Renderer;
use super::rules::zero_disables;
use super::{Config, TlsConfig, DEFAULT_HANDSHAKE_TIMEOUT};

/// `key!(section.key)`: the dotted name and, from the same tokens, the typed field and the
/// mirror field, so the three cannot disagree.
macro_rules! key {
    ($s:ident . $k:ident) => {
        concat!(stringify!($s), ".", stringify!($k))
    };
    ($s:ident . $t:ident . $k:ident) => {
        concat!(stringify!($s), ".", stringify!($t), ".", stringify!($k))
    };
}

/// `set!(layers, config.section.key)`: overwrite the default with the winning value, if any.
macro_rules! set {
    ($l:ident, $c:ident . $s:ident . $k:ident) => {
        $l.set(key!($s.$k), &mut $c.$s.$k, |f| f.$s.$k.as_ref())
    };
    ($l:ident, $c:ident . $s:ident . $t:ident . $k:ident) => {
        $l.set(key!($s.$t.$k), &mut $c.$s.$t.$k, |f| f.$s.$t.$k.as_ref())
    };
}

/// `pick!(layers, section.key)`: the winning value, if any, for keys that need converting.
macro_rules! pick {
    ($l:ident, $s:ident . $k:ident) => {
        $l.pick(key!($s.$k), |f| f.$s.$k.as_ref())
    };
    ($l:ident, $s:ident . $t:ident . $k:ident) => {
        $l.pick(key!($s.$t.$k), |f| f.$s.$t.$k.as_ref())
    };
}

/// Overwrite the defaults in `c` with the winning value of every key.
pub(super) fn apply(l: &mut Layers, c: &mut Config) {
    set!(l, c.server.listen);
    set!(l, c.server.max_connections);
    set!(l, c.server.workers);
    set!(l, c.server.header_read_timeout);
    set!(l, c.server.max_header_bytes);
    set!(l, c.server.shutdown_grace);
    c.server.tls = tls(
        pick!(l, server.tls.cert_file),
        pick!(l, server.tls.key_file),
        pick!(l, server.tls.client_ca_file),
        pick!(l, server.tls.handshake_timeout),
    );

    set!(l, c.admin.listen);
    c.admin.tls = tls(
        pick!(l, admin.tls.cert_file),
        pick!(l, admin.tls.key_file),
        pick!(l, admin.tls.client_ca_file),
        pick!(l, admin.tls.handshake_timeout),
    );
    // The token itself is read from the file by `rules::adjust`.
    if let Some(path) = pick!(l, admin.token_file) {
        c.admin.token_file = Some(path);
    }
    set!(l, c.admin.protect_metrics);
    set!(l, c.admin.allow_unauthenticated);

    set!(l, c.upstream.url);
    set!(l, c.upstream.connect_timeout);
    set!(l, c.upstream.request_timeout);
    if let Some(path) = pick!(l, upstream.extra_ca_file) {
        c.upstream.extra_ca_file = Some(path);
    }
    set!(l, c.upstream.pool_idle_timeout);
    set!(l, c.upstream.pool_max_idle_per_host);
    set!(l, c.upstream.max_concurrent);
    if let Some(rps) = pick!(l, upstream.max_requests_per_second) {
        c.upstream.max_requests_per_second = zero_disables(rps);
    }
    set!(l, c.upstream.budget_wait);

    set!(l, c.cache.ttl);
    set!(l, c.cache.terminal_ttl);
    set!(l, c.cache.stale_while_revalidate);
    set!(l, c.cache.stale_if_error);
    set!(l, c.cache.capacity_bytes);
    set!(l, c.cache.max_entry_bytes);
    set!(l, c.cache.wait_timeout);
    set!(l, c.cache.max_waiters);
    set!(l, c.cache.vary_headers);
    set!(l, c.cache.long_poll_max_wait);

    set!(l, c.backoff.default_retry_after);
    set!(l, c.backoff.max_retry_after);

    set!(l, c.log.format);
    set!(l, c.log.access_log);
    if let Some(path) = pick!(l, log.access_log_path) {
        c.log.access_log_path = Some(path);
    }
    set!(l, c.log.filter);

    if let Some(url) = pick!(l, fleet.redis_url) {
        c.fleet.redis_url = Some(url);
    }
    if let Some(path) = pick!(l, fleet.secret_file) {
        c.fleet.secret_file = Some(path);
    }
    // Else read from `secret_file` by `rules::adjust`.
    if let Some(secret) = pick!(l, fleet.secret) {
        c.fleet.secret = Some(secret);
    }
    set!(l, c.fleet.key_prefix);
    set!(l, c.fleet.lease_ttl);
    set!(l, c.fleet.redis_timeout);
    set!(l, c.fleet.breaker_failures);
    set!(l, c.fleet.breaker_cooloff);
    set!(l, c.fleet.fallback_check);
}

/// Print every key of `c`, section by section.
pub(super) fn print(r: &mut Renderer<'_>, c: &Config) {
    let s = &c.server;
    r.section("server");
    r.key("listen", s.listen);
    r.key("max_connections", s.max_connections);
    r.key("workers", s.workers);
    r.key("header_read_timeout", s.header_read_timeout);
    r.key("max_header_bytes", s.max_header_bytes);
    r.key("shutdown_grace", s.shutdown_grace);
    print_tls(r, "server.tls", s.tls.as_ref());

    let a = &c.admin;
    r.section("admin");
    r.key("listen", a.listen);
    r.optional("token_file", shown_path(a.token_file.as_ref()));
    r.key("protect_metrics", a.protect_metrics);
    r.key("allow_unauthenticated", a.allow_unauthenticated);
    print_tls(r, "admin.tls", a.tls.as_ref());

    let u = &c.upstream;
    r.section("upstream");
    r.key("url", &u.url);
    r.key("connect_timeout", u.connect_timeout);
    r.key("request_timeout", u.request_timeout);
    let ca = u.extra_ca_file.as_ref().map(|p| p.display().to_string());
    r.optional("extra_ca_file", ca);
    r.key("pool_idle_timeout", u.pool_idle_timeout);
    r.key("pool_max_idle_per_host", u.pool_max_idle_per_host);
    r.key("max_concurrent", u.max_concurrent);
    // `None` is written as 0 (`rules::ZERO_DISABLES`).
    let rps = u.max_requests_per_second.unwrap_or(0.0);
    r.key("max_requests_per_second", rps);
    r.key("budget_wait", u.budget_wait);

    let k = &c.cache;
    r.section("cache");
    r.key("ttl", k.ttl);
    r.key("terminal_ttl", k.terminal_ttl);
    r.key("stale_while_revalidate", k.stale_while_revalidate);
    r.key("stale_if_error", k.stale_if_error);
    r.key("capacity_bytes", k.capacity_bytes);
    r.key("max_entry_bytes", k.max_entry_bytes);
    r.key("wait_timeout", k.wait_timeout);
    r.key("max_waiters", k.max_waiters);
    r.key("vary_headers", &k.vary_headers[..]);
    r.key("long_poll_max_wait", k.long_poll_max_wait);

    r.section("backoff");
    r.key("default_retry_after", c.backoff.default_retry_after);
    r.key("max_retry_after", c.backoff.max_retry_after);

    r.section("log");
    r.key("format", c.log.format);
    r.key("access_log", c.log.access_log);
    let path = c
        .log
        .access_log_path
        .as_ref()
        .map(|p| p.display().to_string());
    r.optional("access_log_path", path);
    r.key("filter", &c.log.filter);

    let f = &c.fleet;
    r.section("fleet");
    r.optional("redis_url", f.redis_url_shown());
    let file = f.secret_file.as_ref().map(|p| p.display().to_string());
    r.optional("secret_file", file);
    r.secret("secret", f.secret.is_some());
    r.key("key_prefix", &f.key_prefix);
    r.key("lease_ttl", f.lease_ttl);
    r.key("redis_timeout", f.redis_timeout);
    r.key("breaker_failures", u64::from(f.breaker_failures));
    r.key("breaker_cooloff", f.breaker_cooloff);
    r.key("fallback_check", f.fallback_check);
}

/// A TLS section is on when any of its files is given; a missing partner file is an error
/// of `rules`. A `handshake_timeout` alone turns nothing on.
fn tls(
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    handshake_timeout: Option<Duration>,
) -> Option<TlsConfig> {
    if cert_file.is_none() && key_file.is_none() && client_ca_file.is_none() {
        return None;
    }
    Some(TlsConfig {
        cert_file: cert_file.unwrap_or_default(),
        key_file: key_file.unwrap_or_default(),
        client_ca_file,
        handshake_timeout: handshake_timeout.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT),
    })
}

fn shown_path(path: Option<&PathBuf>) -> Option<String> {
    path.map(|p| p.display().to_string())
}

/// `[server.tls]` or `[admin.tls]`; off prints every file as not set.
fn print_tls(r: &mut Renderer<'_>, section: &'static str, tls: Option<&TlsConfig>) {
    r.section(section);
    let nonempty = |p: &PathBuf| (!p.as_os_str().is_empty()).then(|| p.display().to_string());
    r.optional("cert_file", tls.and_then(|t| nonempty(&t.cert_file)));
    r.optional("key_file", tls.and_then(|t| nonempty(&t.key_file)));
    r.optional(
        "client_ca_file",
        tls.and_then(|t| shown_path(t.client_ca_file.as_ref())),
    );
    let timeout = tls.map_or(DEFAULT_HANDSHAKE_TIMEOUT, |t| t.handshake_timeout);
    r.key("handshake_timeout", timeout);
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_names_are_dotted_paths() {
        assert_eq!(key!(cache.ttl), "cache.ttl");
        assert_eq!(key!(server.tls.cert_file), "server.tls.cert_file");
    }
}
