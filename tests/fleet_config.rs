//! `[fleet]` configuration: the keys are a contract, the secret is required and never printed.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_pollgate");

/// `pollgate check-config` with `config` (contents) and extra env, in a fresh directory.
fn check(config: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "pollgate-fleet-config-{}-{}",
        std::process::id(),
        blake3::hash(format!("{config}{env:?}{args:?}").as_bytes()).to_hex()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let secret = dir.join("fleet.secret");
    std::fs::write(&secret, "  0123456789abcdef0123456789abcdef-fleet\n").expect("secret");
    let short = dir.join("short.secret");
    std::fs::write(&short, "too-short\n").expect("secret");
    let text = config
        .replace("@SECRET@", &secret.to_string_lossy())
        .replace("@SHORT@", &short.to_string_lossy());
    let file = dir.join("config.toml");
    std::fs::write(&file, text).expect("config");
    let mut cmd = Command::new(BIN);
    cmd.current_dir(&dir)
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .args(args);
    for v in [
        "POLLGATE_REDIS_URL",
        "POLLGATE_FLEET_SECRET",
        "POLLGATE_CONFIG",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run pollgate");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn without_fleet_there_is_no_tier() {
    let out = check("", &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("# redis_url = <not set>"),
        "{}",
        text(&out)
    );
}

#[test]
fn every_key_is_read_and_the_secret_never_printed() {
    let out = check(
        "[fleet]\nredis_url = \"rediss://user:hunter2@redis.internal:6380/0\"\nsecret_file = \"@SECRET@\"\n\
         key_prefix = \"team-a\"\nlease_ttl = \"3s\"\nredis_timeout = \"100ms\"\nbreaker_failures = 5\n\
         breaker_cooloff = \"4s\"\nfallback_check = \"150ms\"\n",
        &[],
        &[],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for want in [
        "key_prefix = \"team-a\"",
        "lease_ttl = \"3s\"",
        "redis_timeout = \"100ms\"",
        "breaker_failures = 5",
        "breaker_cooloff = \"4s\"",
        "fallback_check = \"150ms\"",
        "# secret = <redacted>",
        "redis.internal:6380",
    ] {
        assert!(t.contains(want), "{want} in {t}");
    }
    assert!(
        !t.contains("0123456789abcdef0123456789abcdef"),
        "secret printed: {t}"
    );
    assert!(!t.contains("hunter2"), "Redis password printed: {t}");
}

#[test]
fn a_redis_url_needs_the_secret() {
    for (config, env, args) in [
        (
            "[fleet]\nredis_url = \"redis://127.0.0.1:1/\"\n",
            vec![],
            vec![],
        ),
        (
            "",
            vec![("POLLGATE_REDIS_URL", "redis://127.0.0.1:1/")],
            vec![],
        ),
        ("", vec![], vec!["--redis-url", "redis://127.0.0.1:1/"]),
        (
            "[fleet]\nredis_url = \"redis://127.0.0.1:1/\"\nsecret_file = \"@SHORT@\"\n",
            vec![],
            vec![],
        ),
        (
            "[fleet]\nredis_url = \"redis://127.0.0.1:1/\"\n",
            vec![("POLLGATE_FLEET_SECRET", "short")],
            vec![],
        ),
        (
            "[fleet]\nredis_url = \"redis://127.0.0.1:1/\"\nsecret_file = \"/no/such/file\"\n",
            vec![],
            vec![],
        ),
    ] {
        let out = check(config, &env, &args);
        assert!(!out.status.success(), "accepted: {config} {env:?} {args:?}");
        assert!(text(&out).contains("fleet.secret_file"), "{}", text(&out));
    }
}

#[test]
fn the_secret_may_come_from_the_environment_and_the_url_from_a_flag() {
    let out = check(
        "",
        &[(
            "POLLGATE_FLEET_SECRET",
            "an-environment-secret-of-32-bytes-or-more",
        )],
        &["--redis-url", "redis://127.0.0.1:6390/"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("redis://127.0.0.1:6390/"));
}

#[test]
fn bad_fleet_values_name_their_key() {
    for (line, key) in [
        ("redis_url = \"http://x/\"", "fleet.redis_url"),
        ("key_prefix = \"a{b}\"", "fleet.key_prefix"),
        ("lease_ttl = \"0s\"", "fleet.lease_ttl"),
        ("lease_ttl = \"100ms\"", "fleet.lease_ttl"),
        ("breaker_failures = 0", "fleet.breaker_failures"),
        ("no_such_key = 1", "no_such_key"),
    ] {
        let mut config = format!("[fleet]\nsecret_file = \"@SECRET@\"\n{line}\n");
        if !line.starts_with("redis_url") {
            config.push_str("redis_url = \"redis://127.0.0.1:1/\"\n");
        }
        let out = check(&config, &[], &[]);
        assert!(!out.status.success(), "accepted {line}");
        assert!(text(&out).contains(key), "{key}: {}", text(&out));
    }
}
