//! Keys that can also be set by a command-line flag or a `POLLGATE_*` environment variable.
//!
//! [`OVERRIDES`] is the one list of those names, a contract users and scripts rely on; the
//! command line (`cli`) and the help text are built from it. A given value is parsed by the
//! file's own mirror types (through `raw`), so `POLLGATE_TTL=750ms`, `--ttl 750ms` and
//! `ttl = "750ms"` mean the same, and an error names the variable or the flag the value came
//! from, never the other one.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;

use serde::Deserialize;

use super::error::KeyError;
use super::file::FileConfig;
use super::origin::Origin;
use super::raw::Given;

/// A configuration key settable from outside the file.
#[derive(Debug)]
pub struct Override {
    /// The dotted key in the file (`cache.ttl`).
    pub key: &'static str,
    /// Long flag name without the dashes (`ttl` for `--ttl`), if there is a flag.
    pub flag: Option<&'static str>,
    /// Environment variable, if there is one.
    pub env: Option<&'static str>,
    /// Placeholder in `--help` (`DURATION`).
    pub value_name: &'static str,
    pub help: &'static str,
    /// Never echoed: not in error messages, `Debug` output or `check-config`.
    pub secret: bool,
}

impl Override {
    /// A key with both a flag and a variable.
    pub const fn new(
        key: &'static str,
        flag: &'static str,
        env: &'static str,
        value_name: &'static str,
        help: &'static str,
    ) -> Override {
        Override {
            key,
            flag: Some(flag),
            env: Some(env),
            value_name,
            help,
            secret: false,
        }
    }

    /// A key set only by a variable (secrets, which must not show up in `ps`).
    pub const fn env_only(
        key: &'static str,
        env: &'static str,
        value_name: &'static str,
        help: &'static str,
    ) -> Override {
        Override {
            key,
            flag: None,
            env: Some(env),
            value_name,
            help,
            secret: false,
        }
    }

    /// Mark the value secret.
    pub const fn secret(self) -> Override {
        Override {
            secret: true,
            ..self
        }
    }
}

/// Every key settable by a flag or a variable, in `--help` order.
pub const OVERRIDES: &[Override] = &[
    Override::new(
        "server.listen",
        "listen",
        "POLLGATE_LISTEN",
        "ADDR",
        "Address for client traffic",
    ),
    Override::new(
        "upstream.url",
        "upstream",
        "POLLGATE_UPSTREAM",
        "URL",
        "Upstream base URL, path prefix allowed",
    ),
    Override::new(
        "admin.listen",
        "admin-listen",
        "POLLGATE_ADMIN_LISTEN",
        "ADDR",
        "Address of the admin API: health, metrics, purge",
    ),
    Override::new(
        "cache.ttl",
        "ttl",
        "POLLGATE_TTL",
        "DURATION",
        "Freshness of cached item lists, e.g. 2s, 750ms",
    ),
    Override::new(
        "log.format",
        "log-format",
        "POLLGATE_LOG_FORMAT",
        "text|json",
        "Log line format",
    ),
    Override::new(
        "fleet.redis_url",
        "redis-url",
        "POLLGATE_REDIS_URL",
        "URL",
        "Redis shared by a fleet of gateways (redis:// or rediss://); turns the fleet tier on",
    ),
    Override::env_only(
        "fleet.secret",
        "POLLGATE_FLEET_SECRET",
        "SECRET",
        "The fleet secret itself (at least 32 bytes), instead of fleet.secret_file",
    )
    .secret(),
];

/// The override whose flag is `--flag`.
fn by_flag(table: &'static [Override], flag: &str) -> Option<&'static Override> {
    table.iter().find(|o| o.flag == Some(flag))
}

/// The override whose variable is `var`.
pub(super) fn by_env(table: &'static [Override], var: &OsStr) -> Option<&'static Override> {
    table
        .iter()
        .find(|o| o.env.is_some_and(|e| OsStr::new(e) == var))
}

/// Values given as command-line flags, kept as the strings given: the loader parses them,
/// so an error can name the flag.
#[derive(Clone, Default)]
pub struct FlagValues {
    values: BTreeMap<&'static str, (&'static Override, String)>,
}

impl FlagValues {
    /// Record `--flag value`; false (and nothing recorded) if no key has that flag.
    pub fn insert(&mut self, flag: &str, value: impl Into<String>) -> bool {
        self.insert_from(OVERRIDES, flag, value.into())
    }

    pub(super) fn insert_from(
        &mut self,
        table: &'static [Override],
        flag: &str,
        value: String,
    ) -> bool {
        let Some(o) = by_flag(table, flag) else {
            return false;
        };
        let Some(name) = o.flag else {
            return false;
        };
        self.values.insert(name, (o, value));
        true
    }

    /// Each given flag (its name), with its override and value.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &'static Override, &str)> {
        self.values
            .iter()
            .map(|(flag, (o, v))| (*flag, *o, v.as_str()))
    }
}

impl fmt::Debug for FlagValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(flag, o, v)| (flag, shown(o, v))))
            .finish()
    }
}

/// `value`, unless the override is secret.
pub(super) fn shown<'v>(o: &Override, value: &'v str) -> &'v str {
    if o.secret {
        "<redacted>"
    } else {
        value
    }
}

/// Parse one given value into a mirror with only that key set; the error names `origin`.
pub(super) fn parse(o: &Override, origin: Origin, value: &OsStr) -> Result<FileConfig, KeyError> {
    let fail = |reason: String| KeyError {
        key: o.key.to_owned(),
        origin: Some(origin),
        position: None,
        reason,
    };
    let Some(value) = value.to_str() else {
        return Err(fail("not valid UTF-8".into()));
    };
    let path: Vec<&str> = o.key.split('.').collect();
    FileConfig::deserialize(Given::new(&path, value)).map_err(|e| {
        fail(if o.secret {
            "invalid value (not shown: it is secret)".into()
        } else {
            e.to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    #[test]
    fn names_are_unique() {
        let mut flags: Vec<_> = OVERRIDES.iter().filter_map(|o| o.flag).collect();
        let mut vars: Vec<_> = OVERRIDES.iter().filter_map(|o| o.env).collect();
        let mut keys: Vec<_> = OVERRIDES.iter().map(|o| o.key).collect();
        for names in [&mut flags, &mut vars, &mut keys] {
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "duplicate in {names:?}");
        }
        assert!(OVERRIDES
            .iter()
            .filter_map(|o| o.env)
            .all(|v| v.starts_with("POLLGATE_") && v != "POLLGATE_CONFIG"));
    }

    #[test]
    fn every_override_names_a_real_key() {
        // Whatever the value, it is never refused as an unknown field.
        for o in OVERRIDES {
            if let Err(e) = parse(o, Origin::Flag("x"), OsStr::new("\u{1}not valid\u{1}")) {
                assert!(
                    !e.reason.contains("unknown field"),
                    "{}: {}",
                    o.key,
                    e.reason
                );
                assert_eq!(e.key, o.key);
            }
        }
    }

    #[test]
    fn errors_name_their_origin() {
        let ttl = by_flag(OVERRIDES, "ttl").expect("--ttl");
        let e = parse(ttl, Origin::Env("POLLGATE_TTL"), OsStr::new("abc")).expect_err("bad");
        assert_eq!(e.origin, Some(Origin::Env("POLLGATE_TTL")));
        assert!(e.reason.contains("abc"), "{}", e.reason);
        assert_eq!(
            e.to_string(),
            format!("`cache.ttl` (env POLLGATE_TTL): {}", e.reason)
        );
        let e = parse(ttl, Origin::Flag("ttl"), OsStr::new("abc")).expect_err("bad");
        assert!(
            e.to_string().starts_with("`cache.ttl` (flag --ttl): "),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_is_an_error_not_a_lossy_value() {
        use std::os::unix::ffi::OsStringExt;
        let ttl = by_flag(OVERRIDES, "ttl").expect("--ttl");
        let bad = OsString::from_vec(vec![b'2', 0xff, b's']);
        let e = parse(ttl, Origin::Env("POLLGATE_TTL"), &bad).expect_err("not UTF-8");
        assert_eq!(e.reason, "not valid UTF-8");
    }

    /// A stand-in table with a secret, as the fleet secret will be.
    static WITH_SECRET: &[Override] = &[Override::new(
        "upstream.url",
        "secret-url",
        "POLLGATE_TEST_SECRET",
        "URL",
        "a secret",
    )
    .secret()];

    #[test]
    fn secret_values_are_never_echoed() {
        let o = &WITH_SECRET[0];
        let e = parse(
            o,
            Origin::Env("POLLGATE_TEST_SECRET"),
            OsStr::new("hunter2 x"),
        )
        .expect_err("not a URL");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let mut flags = FlagValues::default();
        assert!(flags.insert_from(WITH_SECRET, "secret-url", "hunter2".into()));
        assert!(!format!("{flags:?}").contains("hunter2"));
        assert!(!flags.insert("no-such-flag", "x"));
    }

    #[test]
    fn env_only_overrides_have_no_flag() {
        let o = Override::env_only("k.k", "POLLGATE_K", "V", "h").secret();
        assert_eq!((o.flag, o.env, o.secret), (None, Some("POLLGATE_K"), true));
    }
}
