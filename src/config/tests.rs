//! The loader end to end, without starting the binary: precedence for every overridable key,
//! provenance, the "0 disables" rule and adjustments as loaded and printed, every error at once
//! with its source, and `check-config`'s output loading back to the same configuration.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::de::value::Error;
use serde::de::{self, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::file::FileConfig;
use super::*;

/// A file under the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "pollgate-config-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("write temp config");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn sources(file: Option<&TempFile>, env: &[(&str, &str)], flags: &[(&str, &str)]) -> Sources {
    let file = file.map_or(ConfigFile::Absent, |f| ConfigFile::Named {
        path: f.0.clone(),
        by: Origin::Flag("config"),
    });
    let mut given = FlagValues::default();
    for (flag, value) in flags {
        assert!(given.insert(flag, *value), "unknown flag --{flag}");
    }
    Sources::new(file, env.iter().copied(), given)
}

fn load_ok(s: &Sources) -> Loaded {
    load(s).unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(s: &Sources) -> ConfigError {
    match load(s) {
        Ok(_) => panic!("invalid configuration accepted: {s:?}"),
        Err(e) => e,
    }
}

/// `check-config`'s lines by dotted key: the literal (or `<not set>`) and the comment.
fn printed(text: &str) -> BTreeMap<String, (String, String)> {
    let mut section = "";
    let mut keys = BTreeMap::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
            continue;
        }
        let assignment = line.strip_prefix("# ").unwrap_or(line);
        let Some((assignment, comment)) = assignment.split_once("  # ") else {
            continue;
        };
        let Some((key, literal)) = assignment.split_once(" = ") else {
            continue;
        };
        keys.insert(
            format!("{section}.{key}"),
            (literal.trim().to_owned(), comment.to_owned()),
        );
    }
    keys
}

/// Load `text` as the only source and return the configuration.
fn reload(text: &str) -> Loaded {
    let file = TempFile::new(text);
    load_ok(&sources(Some(&file), &[], &[]))
}

/// Every key of the file's mirror, found by asking serde which fields it reads.
fn mirror_keys() -> BTreeSet<String> {
    struct Fields<'a> {
        prefix: String,
        out: &'a RefCell<BTreeSet<String>>,
    }
    impl<'de> de::Deserializer<'de> for Fields<'_> {
        type Error = Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(de::Error::custom(format!("{}: not an Option", self.prefix)))
        }
        fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            self.out.borrow_mut().insert(self.prefix);
            v.visit_none()
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            v: V,
        ) -> Result<V::Value, Error> {
            v.visit_map(Each {
                prefix: self.prefix,
                fields: fields.iter(),
                current: "",
                out: self.out,
            })
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    struct Each<'a> {
        prefix: String,
        fields: std::slice::Iter<'static, &'static str>,
        current: &'static str,
        out: &'a RefCell<BTreeSet<String>>,
    }
    impl<'de> MapAccess<'de> for Each<'_> {
        type Error = Error;
        fn next_key_seed<K: de::DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Error> {
            let Some(field) = self.fields.next() else {
                return Ok(None);
            };
            self.current = field;
            seed.deserialize(field.into_deserializer()).map(Some)
        }
        fn next_value_seed<V: de::DeserializeSeed<'de>>(
            &mut self,
            seed: V,
        ) -> Result<V::Value, Error> {
            let prefix = if self.prefix.is_empty() {
                self.current.to_owned()
            } else {
                format!("{}.{}", self.prefix, self.current)
            };
            seed.deserialize(Fields {
                prefix,
                out: self.out,
            })
        }
    }
    let out = RefCell::new(BTreeSet::new());
    FileConfig::deserialize(Fields {
        prefix: String::new(),
        out: &out,
    })
    .expect("walk the mirror");
    out.into_inner()
}

/// Every key of the file set to a valid value different from its default.
fn every_key() -> String {
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    format!(
        r#"
[server]
listen = "127.0.0.1:18080"
max_connections = 5
workers = 2
header_read_timeout = "11s"
max_header_bytes = 9000
shutdown_grace = "31s"
[server.tls]
cert_file = {ca}
key_file = {ca}
client_ca_file = {ca}
handshake_timeout = "3s"
[admin]
listen = "127.0.0.1:19090"
token_file = {ca}
protect_metrics = false
allow_unauthenticated = true
[admin.tls]
cert_file = {ca}
key_file = {ca}
client_ca_file = {ca}
handshake_timeout = "4s"
[upstream]
url = "http://127.0.0.1:1/prefix"
connect_timeout = "6s"
request_timeout = "29s"
extra_ca_file = {ca}
pool_idle_timeout = "91s"
pool_max_idle_per_host = 3
max_concurrent = 4
max_requests_per_second = 2.5
budget_wait = "250ms"
[cache]
ttl = "3s"
terminal_ttl = "1h"
stale_while_revalidate = "0s"
stale_if_error = "1m"
capacity_bytes = 1000000
max_entry_bytes = 1000
wait_timeout = "9s"
max_waiters = 7
vary_headers = ["Accept-Language", "X-Tenant"]
long_poll_max_wait = "2m"
[backoff]
default_retry_after = "2s"
max_retry_after = "10m"
[log]
format = "json"
access_log = false
access_log_path = "/var/log/pollgate/access.log"
filter = "pollgate=debug,warn"
[fleet]
redis_url = "rediss://redis.internal:6380/1"
secret_file = {ca}
secret = "an-inline-fleet-secret-of-more-than-32-bytes"
key_prefix = "team-a"
lease_ttl = "3s"
redis_timeout = "100ms"
breaker_failures = 5
breaker_cooloff = "4s"
fallback_check = "150ms"
"#,
        ca = toml::Value::String(ca.display().to_string())
    )
}

#[test]
fn every_mirror_key_is_applied_and_printed() {
    let mirror = mirror_keys();
    assert!(mirror.contains("cache.ttl") && mirror.contains("log.access_log"));
    let defaults = printed(&load_ok(&sources(None, &[], &[])).to_toml());
    let printed_keys: BTreeSet<String> = defaults.keys().cloned().collect();
    assert_eq!(
        printed_keys, mirror,
        "check-config prints exactly the file's keys"
    );

    let loaded = reload(&every_key());
    let all = printed(&loaded.to_toml());
    assert_eq!(all.keys().cloned().collect::<BTreeSet<_>>(), mirror);
    for (key, (literal, comment)) in &all {
        assert_eq!(comment, "file", "{key} was taken from the file");
        assert_ne!(literal, &defaults[key].0, "{key} lands in the config");
    }
    assert_eq!(loaded.config.upstream.max_requests_per_second, Some(2.5));
    assert_eq!(loaded.config.cache.vary_headers.len(), 2);
}

/// Per overridable key: values for the file (TOML), the variable and the flag, and a
/// fragment of the printed literal for each.
const SAMPLES: &[(&str, [&str; 3], [&str; 3])] = &[
    (
        "server.listen",
        ["\"127.0.0.1:1001\"", "127.0.0.1:1002", "127.0.0.1:1003"],
        ["127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003"],
    ),
    (
        "upstream.url",
        [
            "\"http://file.example\"",
            "http://env.example",
            "http://flag.example/p",
        ],
        ["file.example", "env.example", "flag.example/p"],
    ),
    (
        "admin.listen",
        ["\"127.0.0.1:2001\"", "127.0.0.1:2002", "127.0.0.1:2003"],
        ["127.0.0.1:2001", "127.0.0.1:2002", "127.0.0.1:2003"],
    ),
    (
        "cache.ttl",
        ["\"5s\"", "7s", "750ms"],
        ["\"5s\"", "\"7s\"", "\"750ms\""],
    ),
    (
        "log.format",
        ["\"json\"", "text", "json"],
        ["\"json\"", "\"text\"", "\"json\""],
    ),
    (
        "fleet.redis_url",
        [
            "\"redis://file.example:6379/\"",
            "redis://env.example:6379/",
            "redis://flag.example:6379/",
        ],
        ["file.example", "env.example", "flag.example"],
    ),
];

/// A fleet secret for tests (at least 32 bytes).
const FLEET_SECRET: &str = "a-fleet-secret-for-the-config-tests-0123";

#[test]
fn precedence_is_flag_then_env_then_file_then_default_for_every_override() {
    let sampled: BTreeSet<&str> = SAMPLES.iter().map(|s| s.0).collect();
    // Keys with a variable only (the fleet secret) have their own test.
    let overridable: BTreeSet<&str> = OVERRIDES
        .iter()
        .filter(|o| o.flag.is_some())
        .map(|o| o.key)
        .collect();
    assert_eq!(
        sampled, overridable,
        "every override with a flag has samples"
    );
    let defaults = printed(&load_ok(&sources(None, &[], &[])).to_toml());

    for (key, [in_file, in_env, in_flag], [file_p, env_p, flag_p]) in SAMPLES {
        let o = OVERRIDES.iter().find(|o| o.key == *key).expect("sampled");
        let (var, flag) = (o.env.expect("variable"), o.flag.expect("flag"));
        let (section, name) = key.rsplit_once('.').expect("dotted");
        let file = TempFile::new(&format!("[{section}]\n{name} = {in_file}\n"));
        // A fleet needs its secret, whatever sets the URL.
        let base: &[(&str, &str)] = if section == "fleet" {
            &[("POLLGATE_FLEET_SECRET", FLEET_SECRET)]
        } else {
            &[]
        };
        let env = [base, &[(var, *in_env)]].concat();
        let flags = [(flag, *in_flag)];
        let cases = [
            (sources(None, base, &[]), Origin::Default, None),
            (sources(Some(&file), base, &[]), Origin::File, Some(file_p)),
            (sources(None, &env, &[]), Origin::Env(var), Some(env_p)),
            (
                sources(Some(&file), &env, &[]),
                Origin::Env(var),
                Some(env_p),
            ),
            (
                sources(None, base, &flags),
                Origin::Flag(flag),
                Some(flag_p),
            ),
            (
                sources(Some(&file), &env, &flags),
                Origin::Flag(flag),
                Some(flag_p),
            ),
        ];
        for (s, origin, fragment) in cases {
            let loaded = load_ok(&s);
            assert_eq!(loaded.origin(key), origin, "{key} from {s:?}");
            let (literal, comment) = &printed(&loaded.to_toml())[*key];
            assert_eq!(comment, &origin.to_string(), "{key}");
            match fragment {
                Some(fragment) => assert!(literal.contains(fragment), "{key}: {literal}"),
                None => assert_eq!(literal, &defaults[*key].0, "{key}"),
            }
        }
    }
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let loaded = load_ok(&sources(None, &[("POLLGATE_TTL", "")], &[]));
    assert_eq!(loaded.origin("cache.ttl"), Origin::Default);
    let unrelated = load_ok(&sources(
        None,
        &[("HOME", "/x"), ("POLLGATE_NOPE", "1")],
        &[],
    ));
    assert_eq!(unrelated.config, Config::default());
}

#[test]
fn check_config_output_loads_back_to_the_same_configuration() {
    let every = TempFile::new(&every_key());
    let raised = TempFile::new("[cache]\nterminal_ttl = \"1s\"\n");
    let cases = [
        sources(None, &[], &[]),
        sources(Some(&every), &[], &[]),
        sources(
            Some(&raised),
            &[
                ("POLLGATE_LISTEN", "127.0.0.1:0"),
                ("POLLGATE_LOG_FORMAT", "json"),
            ],
            &[("ttl", "90m"), ("admin-listen", "127.0.0.1:0")],
        ),
    ];
    for s in cases {
        let first = load_ok(&s);
        let text = first.to_toml();
        let second = reload(&text);
        // A secret is never printed, so it cannot load back (the file's may stand in for it).
        let mut expected = first.config.clone();
        expected.fleet.secret = second.config.fleet.secret.clone();
        assert_eq!(second.config, expected, "round trip of:\n{text}");
        let values = |t: &str| -> Vec<(String, String)> {
            printed(t).into_iter().map(|(k, (v, _))| (k, v)).collect()
        };
        assert_eq!(
            values(&second.to_toml()),
            values(&text),
            "printed the same way"
        );
    }
}

#[test]
fn adjusted_values_are_shown_adjusted_with_a_note() {
    let loaded = load_ok(&sources(None, &[], &[("ttl", "10m")]));
    assert_eq!(loaded.config.cache.terminal_ttl, Duration::from_secs(600));
    assert_eq!(
        loaded.note("cache.terminal_ttl"),
        Some("raised to cache.ttl")
    );
    let lines = printed(&loaded.to_toml());
    assert_eq!(
        lines["cache.terminal_ttl"],
        ("\"10m\"".into(), "default, raised to cache.ttl".into())
    );
    assert_eq!(lines["cache.ttl"], ("\"10m\"".into(), "flag --ttl".into()));

    let file = TempFile::new("[cache]\nttl = \"2s\"\nterminal_ttl = \"1s\"\n");
    let loaded = load_ok(&sources(Some(&file), &[], &[]));
    assert_eq!(loaded.config.cache.terminal_ttl, Duration::from_secs(2));
    assert_eq!(
        printed(&loaded.to_toml())["cache.terminal_ttl"].1,
        "file, raised to cache.ttl"
    );
    // Not adjusted: no note.
    let loaded = load_ok(&sources(None, &[], &[]));
    assert_eq!(loaded.note("cache.terminal_ttl"), None);
}

#[test]
fn zero_disables_the_budget_from_any_source() {
    let file = TempFile::new("[upstream]\nmax_requests_per_second = 0\n");
    let loaded = load_ok(&sources(Some(&file), &[], &[]));
    assert_eq!(loaded.config.upstream.max_requests_per_second, None);
    assert_eq!(
        printed(&loaded.to_toml())["upstream.max_requests_per_second"],
        ("0".into(), "file, 0 = no per-credential budget".into())
    );
    let file = TempFile::new("[upstream]\nmax_requests_per_second = -1\n");
    let e = load_err(&sources(Some(&file), &[], &[]));
    assert_eq!(e.key_errors()[0].key, "upstream.max_requests_per_second");
}

#[test]
fn a_variable_error_names_the_variable_and_a_flag_error_the_flag() {
    let e = load_err(&sources(None, &[("POLLGATE_TTL", "abc")], &[])).to_string();
    assert!(
        e.contains("POLLGATE_TTL") && e.contains("`cache.ttl`"),
        "{e}"
    );
    assert!(!e.contains("--ttl"), "{e}");

    let e = load_err(&sources(None, &[], &[("ttl", "abc")])).to_string();
    assert!(e.contains("flag --ttl") && e.contains("`cache.ttl`"), "{e}");
    assert!(!e.contains("POLLGATE_TTL"), "{e}");

    // A value that parses but breaks a rule is named by its source too.
    let e = load_err(&sources(None, &[("POLLGATE_TTL", "0s")], &[])).to_string();
    assert!(
        e.contains("`cache.ttl` (env POLLGATE_TTL): must be greater than zero"),
        "{e}"
    );
    let e = load_err(&sources(None, &[], &[("ttl", "0s")])).to_string();
    assert!(
        e.contains("`cache.ttl` (flag --ttl): must be greater than zero"),
        "{e}"
    );

    // Every given value must be valid, even one that a higher source overrides.
    let both = sources(None, &[("POLLGATE_TTL", "abc")], &[("ttl", "3s")]);
    assert_eq!(
        load_err(&both).key_errors()[0].origin,
        Some(Origin::Env("POLLGATE_TTL"))
    );
}

#[test]
fn every_unparsable_value_is_reported_at_once() {
    let file = TempFile::new("[cache]\nttl = \"abc\"\n");
    let s = sources(
        Some(&file),
        &[("POLLGATE_LISTEN", "nope"), ("POLLGATE_LOG_FORMAT", "xml")],
        &[("upstream", "http://exa mple")],
    );
    let e = load_err(&s);
    let found: Vec<(&str, Option<Origin>)> = e
        .key_errors()
        .iter()
        .map(|e| (e.key.as_str(), e.origin))
        .collect();
    assert_eq!(
        found,
        [
            ("cache.ttl", Some(Origin::File)),
            ("server.listen", Some(Origin::Env("POLLGATE_LISTEN"))),
            ("log.format", Some(Origin::Env("POLLGATE_LOG_FORMAT"))),
            ("upstream.url", Some(Origin::Flag("upstream"))),
        ]
    );
    let text = e.to_string();
    assert!(text.starts_with("4 invalid settings:\n"), "{text}");
    let file_line = format!("`cache.ttl` ({}, line 2, column 7): ", file.0.display());
    assert!(text.contains(&file_line), "{text}");
    assert_eq!(text.lines().count(), 5, "one line per key: {text}");
}

#[test]
fn every_broken_rule_is_reported_at_once_with_its_source() {
    let file = TempFile::new("[cache]\nmax_waiters = 0\n[backoff]\nmax_retry_after = \"500ms\"\n");
    let s = sources(
        Some(&file),
        &[("POLLGATE_TTL", "0s")],
        &[("admin-listen", "127.0.0.1:8080")],
    );
    let e = load_err(&s);
    let mut found: Vec<(&str, Option<Origin>)> = e
        .key_errors()
        .iter()
        .map(|e| (e.key.as_str(), e.origin))
        .collect();
    found.sort_by_key(|(key, _)| *key);
    assert_eq!(
        found,
        [
            ("admin.listen", Some(Origin::Flag("admin-listen"))),
            ("backoff.max_retry_after", Some(Origin::File)),
            ("cache.max_waiters", Some(Origin::File)),
            ("cache.ttl", Some(Origin::Env("POLLGATE_TTL"))),
        ]
    );
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "`cache.max_waiters` ({}): must be at least 1",
            file.0.display()
        )),
        "{text}"
    );
}

#[test]
fn a_named_file_must_be_readable() {
    let s = Sources::new(
        ConfigFile::resolve(None, Some("/nonexistent/pollgate.toml".into())),
        Vec::<(String, String)>::new(),
        FlagValues::default(),
    );
    let e = load_err(&s);
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(
        e.to_string().starts_with(
            "cannot read config file /nonexistent/pollgate.toml (env POLLGATE_CONFIG): "
        ),
        "{e}"
    );
}

#[test]
fn the_header_names_the_file_and_what_chose_it_or_says_there_is_none() {
    let text = load_ok(&sources(None, &[], &[])).to_toml();
    assert!(
        text.starts_with("# pollgate configuration: no config file"),
        "{text}"
    );
    let file = TempFile::new("");
    let text = load_ok(&sources(Some(&file), &[], &[])).to_toml();
    let first = text.lines().next().unwrap_or_default();
    let expected = format!(
        "# pollgate configuration, loaded from {} (flag --config).",
        file.0.display()
    );
    assert_eq!(first, expected);

    // --config wins over the variable; an empty variable is unset. Log fields get the path.
    let named = ConfigFile::resolve(Some("a.toml".into()), Some("b.toml".into()));
    assert_eq!(named.describe(), "a.toml (flag --config)");
    assert_eq!(named.to_string(), "a.toml");
    let by_env = ConfigFile::resolve(None, Some("b.toml".into()));
    assert_eq!(by_env.describe(), "b.toml (env POLLGATE_CONFIG)");
    assert_eq!(ConfigFile::Absent.to_string(), "none");
    let empty = ConfigFile::resolve(None, Some("".into()));
    assert!(!matches!(empty, ConfigFile::Named { .. }), "{empty:?}");
}

#[test]
fn the_fleet_secret_comes_from_its_variable_or_its_file_and_is_never_printed() {
    let file = TempFile::new(&format!("  {FLEET_SECRET}-from-the-file\n"));
    let config = TempFile::new(&format!(
        "[fleet]\nredis_url = \"redis://127.0.0.1:1/\"\nsecret_file = {}\n",
        toml::Value::String(file.0.display().to_string())
    ));
    let from_file = load_ok(&sources(Some(&config), &[], &[]));
    let secret = from_file
        .config
        .fleet
        .secret
        .clone()
        .expect("read from the file");
    assert_eq!(
        secret.as_bytes(),
        format!("{FLEET_SECRET}-from-the-file").as_bytes(),
        "trimmed"
    );
    let env = [("POLLGATE_FLEET_SECRET", FLEET_SECRET)];
    let from_env = load_ok(&sources(Some(&config), &env, &[]));
    assert_eq!(
        from_env.config.fleet.secret.as_ref().map(|s| s.as_bytes()),
        Some(FLEET_SECRET.as_bytes()),
        "the variable wins over the file"
    );
    assert_eq!(
        from_env.origin("fleet.secret"),
        Origin::Env("POLLGATE_FLEET_SECRET")
    );
    for loaded in [&from_file, &from_env] {
        let text = loaded.to_toml();
        assert!(!text.contains(FLEET_SECRET), "{text}");
        assert!(text.contains("# secret = <redacted>"), "{text}");
        assert!(!format!("{:?}", loaded.config).contains(FLEET_SECRET));
    }
    // Short, missing or unreadable: the error names fleet.secret_file.
    let short = [("POLLGATE_FLEET_SECRET", "short")];
    let none = TempFile::new("[fleet]\nredis_url = \"redis://127.0.0.1:1/\"\n");
    let unreadable = TempFile::new(
        "[fleet]\nredis_url = \"redis://127.0.0.1:1/\"\nsecret_file = \"/no/such/secret\"\n",
    );
    for s in [
        sources(Some(&none), &short, &[]),
        sources(Some(&none), &[], &[]),
        sources(Some(&unreadable), &[], &[]),
    ] {
        let e = load(&s).expect_err("refused").to_string();
        assert!(e.contains("fleet.secret_file"), "{e}");
        assert!(!e.contains("short"), "the secret is not echoed: {e}");
    }
    // Without a Redis URL there is no tier and no secret is needed.
    let off = load_ok(&sources(None, &[], &[]));
    assert!(!off.config.fleet.enabled());
}

#[test]
fn no_request_waits_longer_than_a_fill_can_last() {
    let file =
        TempFile::new("[upstream]\nrequest_timeout = \"4s\"\n[cache]\nwait_timeout = \"10s\"\n");
    let loaded = load_ok(&sources(Some(&file), &[], &[]));
    assert_eq!(loaded.config.cache.wait_timeout, Duration::from_secs(4));
    assert_eq!(
        printed(&loaded.to_toml())["cache.wait_timeout"],
        (
            "\"4s\"".into(),
            "file, lowered to upstream.request_timeout".into()
        )
    );
    // The defaults agree already (10 s within 30 s): no note.
    let defaults = load_ok(&sources(None, &[], &[]));
    assert_eq!(defaults.note("cache.wait_timeout"), None);
}

#[test]
fn the_admin_token_is_read_from_its_file_and_never_printed() {
    let token = TempFile::new("  s3cret-admin-token\n");
    let file = TempFile::new(&format!(
        "[admin]\ntoken_file = {}\n",
        toml::Value::String(token.0.display().to_string())
    ));
    let loaded = load_ok(&sources(Some(&file), &[], &[]));
    let read = loaded.config.admin.token.as_ref().expect("token read");
    assert_eq!(read.as_bytes(), b"s3cret-admin-token");
    assert!(!loaded.to_toml().contains("s3cret"));
    assert!(!format!("{:?}", loaded.config).contains("s3cret"));
}
