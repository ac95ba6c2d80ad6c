//! The configuration file's shape: all-`Option` mirror structs of [`super::Config`].
//!
//! Every key is optional (absent means "not set here"), and unknown keys and sections are
//! rejected, so a typo stops the program instead of silently keeping a default. Values are
//! parsed into their types here (durations with humantime, addresses, URLs, header names),
//! so the same mirror also parses values given by environment variables and flags
//! (see `overrides`), and a value means the same wherever it is written. Rules that relate
//! values to each other live in `rules`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Uri};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::error::KeyError;
use super::origin::Origin;
use super::{FleetSecret, LogFormat};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub server: FileServer,
    #[serde(default)]
    pub admin: FileAdmin,
    #[serde(default)]
    pub upstream: FileUpstream,
    #[serde(default)]
    pub cache: FileCache,
    #[serde(default)]
    pub backoff: FileBackoff,
    #[serde(default)]
    pub log: FileLog,
    #[serde(default)]
    pub fleet: FileFleet,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServer {
    #[serde(default, deserialize_with = "address")]
    pub listen: Option<SocketAddr>,
    pub max_connections: Option<usize>,
    pub workers: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub header_read_timeout: Option<Duration>,
    pub max_header_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    #[serde(default)]
    pub tls: FileTls,
}

/// `[server.tls]` and `[admin.tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub handshake_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAdmin {
    #[serde(default, deserialize_with = "address")]
    pub listen: Option<SocketAddr>,
    #[serde(default)]
    pub tls: FileTls,
    pub token_file: Option<PathBuf>,
    pub protect_metrics: Option<bool>,
    pub allow_unauthenticated: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileUpstream {
    #[serde(default, deserialize_with = "url")]
    pub url: Option<Uri>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
    pub extra_ca_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub pool_idle_timeout: Option<Duration>,
    pub pool_max_idle_per_host: Option<usize>,
    pub max_concurrent: Option<usize>,
    /// 0 disables the budget (`rules::ZERO_DISABLES`).
    pub max_requests_per_second: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    pub budget_wait: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCache {
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub terminal_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub stale_while_revalidate: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub stale_if_error: Option<Duration>,
    pub capacity_bytes: Option<u64>,
    pub max_entry_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub wait_timeout: Option<Duration>,
    pub max_waiters: Option<usize>,
    #[serde(default, deserialize_with = "header_names")]
    pub vary_headers: Option<Vec<HeaderName>>,
    #[serde(default, with = "humantime_serde")]
    pub long_poll_max_wait: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBackoff {
    #[serde(default, with = "humantime_serde")]
    pub default_retry_after: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max_retry_after: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLog {
    pub format: Option<LogFormat>,
    pub access_log: Option<bool>,
    pub access_log_path: Option<PathBuf>,
    pub filter: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileFleet {
    pub redis_url: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// Meant for `POLLGATE_FLEET_SECRET`: the secret itself (prefer `secret_file` in files).
    #[serde(default, deserialize_with = "secret")]
    pub secret: Option<FleetSecret>,
    pub key_prefix: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub lease_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub redis_timeout: Option<Duration>,
    pub breaker_failures: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub breaker_cooloff: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub fallback_check: Option<Duration>,
}

/// Parse the file's text. The error names the dotted key (`cache.ttl`) and, when toml
/// located it, the line and column; parsing stops at the first such error.
pub(super) fn parse(text: &str) -> Result<FileConfig, KeyError> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        KeyError {
            key: if path == "." { String::new() } else { path },
            origin: Some(Origin::File),
            position: inner.span().map(|span| line_column(text, span.start)),
            // toml's messages may span lines; an error report keeps one line per key.
            reason: inner.message().trim().replace('\n', "; "),
        }
    })
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

fn address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|e| D::Error::custom(format!("`{text}` is not an IP:port address ({e})")))
}

/// Syntax only; what makes an upstream URL acceptable is a rule (`rules`).
fn url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uri>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|e| D::Error::custom(format!("`{text}` is not a URL ({e})")))
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<FleetSecret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(|s| FleetSecret::new(s.as_bytes())))
}

fn header_names<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<HeaderName>>, D::Error> {
    let Some(names) = Option::<Vec<String>>::deserialize(d)? else {
        return Ok(None);
    };
    names
        .iter()
        .map(|n| {
            HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| D::Error::custom(format!("`{n}` is not a header name")))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_sets_nothing() {
        let f = parse("").expect("empty file parses");
        assert!(f.cache.ttl.is_none() && f.server.listen.is_none());
    }

    #[test]
    fn values_are_typed() {
        let f = parse(
            "[server]\nlisten = \"127.0.0.1:1\"\n[cache]\nttl = \"750ms\"\nvary_headers = [\"Accept-Language\"]\n\
             [upstream]\nurl = \"http://h:1/p\"\nmax_requests_per_second = 0\n[log]\nformat = \"json\"\n",
        )
        .expect("parses");
        assert_eq!(f.server.listen, Some(SocketAddr::from(([127, 0, 0, 1], 1))));
        assert_eq!(f.cache.ttl, Some(Duration::from_millis(750)));
        assert_eq!(
            f.cache.vary_headers,
            Some(vec![HeaderName::from_static("accept-language")])
        );
        assert_eq!(f.upstream.url, Some(Uri::from_static("http://h:1/p")));
        assert_eq!(f.upstream.max_requests_per_second, Some(0.0));
        assert_eq!(f.log.format, Some(LogFormat::Json));
    }

    #[test]
    fn unknown_key_names_the_dotted_key_and_its_position() {
        let e = parse("[cache]\nttl = \"1s\"\ntll_typo_key = \"2s\"\n").expect_err("unknown key");
        assert_eq!(e.key, "cache.tll_typo_key");
        assert_eq!(e.origin, Some(Origin::File));
        assert_eq!(e.position, Some((3, 1)));
        assert!(e.reason.contains("unknown field"), "{}", e.reason);
    }

    #[test]
    fn unknown_section_is_named() {
        let e = parse("[cachee]\nttl = \"1s\"\n").expect_err("unknown section");
        assert_eq!(e.key, "cachee");
    }

    #[test]
    fn bad_values_name_the_key_and_the_value() {
        let cases = [
            ("[cache]\nttl = \"abc\"\n", "cache.ttl", "abc", (2, 7)),
            (
                "[server]\nlisten = \"not-an-address\"\n",
                "server.listen",
                "not-an-address",
                (2, 10),
            ),
            (
                "[upstream]\nurl = \"http://exa mple\"\n",
                "upstream.url",
                "exa mple",
                (2, 7),
            ),
            (
                "[cache]\nvary_headers = [\"bad header\"]\n",
                "cache.vary_headers",
                "bad header",
                (2, 16),
            ),
            ("[log]\nformat = \"xml\"\n", "log.format", "xml", (2, 10)),
            (
                "[server]\nmax_connections = -1\n",
                "server.max_connections",
                "-1",
                (2, 19),
            ),
        ];
        for (text, key, value, position) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.key, key, "{text}");
            assert!(e.reason.contains(value), "{key}: {}", e.reason);
            assert_eq!(e.position, Some(position), "{key}");
        }
    }

    #[test]
    fn syntax_error_has_a_position_and_no_key() {
        let e = parse("[cache\nttl = 1\n").expect_err("syntax");
        assert_eq!(e.key, "");
        assert_eq!(e.position.map(|(line, _)| line), Some(1));
        assert!(!e.reason.contains('\n'));
    }
}
