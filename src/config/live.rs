//! What a reload may change while pollgate runs, and what only a restart can.
//!
//! Restart-only keys are those fixed into something built at start-up: the sockets
//! (`listen`), the accept loop's limits, the upstream connection pool and its TLS roots, the
//! cache's memory bound, the log's format and sink, the fleet's connections, and whether a
//! listener speaks TLS at all. A reload that changes one keeps the running value and names
//! the key ([`keep_running`]); everything else (freshness, stale windows, budgets, back-off,
//! the upstream timeouts, vary headers, waits, the log filter, the TLS files, the admin token)
//! takes effect at once.

use std::collections::BTreeMap;

use super::keys;
use super::origin::Provenance;
use super::render::Renderer;
use super::Config;

/// Keys only a restart can change (a whole section for `fleet`, and `server.tls` /
/// `admin.tls` for turning TLS on or off; their files are live).
pub const RESTART_ONLY: &[&str] = &[
    "server.listen",
    "server.max_connections",
    "server.header_read_timeout",
    "server.max_header_bytes",
    "server.shutdown_grace",
    "server.workers",
    "server.tls",
    "admin.listen",
    "admin.tls",
    "upstream.url",
    "upstream.extra_ca_file",
    "upstream.pool_idle_timeout",
    "upstream.pool_max_idle_per_host",
    "upstream.max_concurrent",
    "cache.capacity_bytes",
    "log.format",
    "log.access_log",
    "log.access_log_path",
    "fleet",
];

/// Put the running value back into `next` for every restart-only key that differs; returns
/// those keys.
pub fn keep_running(next: &mut Config, running: &Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($($s:ident . $k:ident),* $(,)?) => {$(
            if next.$s.$k != running.$s.$k {
                next.$s.$k = running.$s.$k.clone();
                kept.push(concat!(stringify!($s), ".", stringify!($k)));
            }
        )*};
    }
    keep!(
        server.listen,
        server.max_connections,
        server.header_read_timeout,
        server.max_header_bytes,
        server.shutdown_grace,
        server.workers,
        admin.listen,
        upstream.url,
        upstream.extra_ca_file,
        upstream.pool_idle_timeout,
        upstream.pool_max_idle_per_host,
        upstream.max_concurrent,
        cache.capacity_bytes,
        log.format,
        log.access_log,
        log.access_log_path,
    );
    if next.server.tls.is_some() != running.server.tls.is_some() {
        next.server.tls = running.server.tls.clone();
        kept.push("server.tls");
    }
    if next.admin.tls.is_some() != running.admin.tls.is_some() {
        next.admin.tls = running.admin.tls.clone();
        kept.push("admin.tls");
    }
    if next.fleet != running.fleet {
        next.fleet = running.fleet.clone();
        kept.push("fleet");
    }
    kept
}

/// The dotted keys whose values differ between `a` and `b` (as `check-config` prints them).
pub fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let (a, b) = (values(a), values(b));
    a.iter()
        .filter(|(key, value)| b.get(*key) != Some(value))
        .map(|(key, _)| key.clone())
        .collect()
}

fn values(c: &Config) -> BTreeMap<String, String> {
    let provenance = Provenance::default();
    let mut r = Renderer::new(&[], &provenance);
    keys::print(&mut r, c);
    let mut section = String::new();
    let mut out = BTreeMap::new();
    for line in r.finish().lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((assignment, _origin)) = line.split_once("  # ") {
            let assignment = assignment.trim_start_matches("# ");
            if let Some((key, value)) = assignment.split_once(" = ") {
                out.insert(format!("{section}.{key}"), value.trim().to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn restart_only_changes_are_undone_and_named_live_ones_kept() {
        let running = Config::default();
        let mut next = Config::default();
        next.server.listen = "127.0.0.1:1".parse().expect("addr");
        next.cache.ttl = Duration::from_secs(9);
        next.fleet.key_prefix = "other".into();
        let kept = keep_running(&mut next, &running);
        assert_eq!(kept, ["server.listen", "fleet"]);
        assert_eq!(next.server.listen, running.server.listen);
        assert_eq!(next.cache.ttl, Duration::from_secs(9));
        assert_eq!(changed_keys(&running, &next), ["cache.ttl"]);
    }

    #[test]
    fn every_restart_only_key_is_a_key_or_section() {
        let printed = values(&Config::default());
        for key in RESTART_ONLY {
            assert!(
                printed
                    .keys()
                    .any(|k| k == key || k.starts_with(&format!("{key}."))),
                "{key}"
            );
        }
    }
}
