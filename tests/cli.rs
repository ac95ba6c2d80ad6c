//! The `pollgate` binary: configuration errors stop it (exit 2) with one line per bad key naming
//! the key and the variable or flag it came from, precedence flag > env > file > default,
//! `check-config` prints loadable TOML with each value's origin, the shipped `config.toml` is
//! valid, start-up errors are printed once, and a real process serves, logs plain values
//! without colour codes, and exits cleanly on SIGTERM.
//!
//! The loader's rules are unit-tested in `src/config/`; these tests check the process.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "pollgate-cli-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A command for the binary, run in `cwd` with a clean `POLLGATE_*` environment.
fn pollgate(cwd: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.current_dir(cwd);
    for v in ENV_VARS {
        cmd.env_remove(v);
    }
    cmd
}

fn run(cmd: &mut std::process::Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run pollgate")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `check-config`'s `key = value  # origin` lines by dotted key: (value, origin).
fn printed(out: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut lines = Vec::new();
    for line in out.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((assignment, origin)) = line.split_once("  # ") {
            if let Some((key, value)) = assignment.split_once(" = ") {
                let key = format!("{section}.{}", key.trim_start_matches("# "));
                lines.push((key, value.trim().to_owned(), origin.to_owned()));
            }
        }
    }
    lines
}

/// The printed value and origin of `key`.
fn printed_key(out: &str, key: &str) -> Option<(String, String)> {
    printed(out)
        .into_iter()
        .find(|(k, _, _)| k == key)
        .map(|(_, v, o)| (v, o))
}

/// The printed `cache.ttl`, unquoted.
fn printed_ttl(out: &str) -> Option<String> {
    printed_key(out, "cache.ttl").map(|(v, _)| v.trim_matches('"').to_owned())
}

/// Exit code 2 (a configuration error) with `needle` on stderr.
fn assert_config_error(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
    assert!(stderr(out).contains(needle), "{needle}: {}", stderr(out));
}

#[test]
fn unknown_key_in_config_file_is_fatal_and_named() {
    let dir = TempDir::new();
    let cfg = dir.file("bad.toml", "[cache]\nttl = \"1s\"\ntll_typo_key = \"2s\"\n");
    let out = run(pollgate(&dir.0)
        .arg("check-config")
        .arg("--config")
        .arg(&cfg));
    assert!(!out.status.success(), "exit {:?}", out.status);
    assert!(
        stderr(&out).contains("`cache.tll_typo_key`"),
        "stderr must name the key with its table: {}",
        stderr(&out)
    );
    // The same file stops `serve` before it binds.
    let out = run(pollgate(&dir.0).arg("--config").arg(&cfg).args([
        "--listen",
        "127.0.0.1:1",
        "--admin-listen",
        "127.0.0.1:1",
    ]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("tll_typo_key"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("cannot listen"),
        "it stopped before binding: {}",
        stderr(&out)
    );
}

#[test]
fn unknown_section_is_fatal_and_named() {
    let dir = TempDir::new();
    assert_config_rejected(&dir, "bad.toml", "[cachee]\nttl = \"1s\"\n", "cachee");
}

/// `check-config` on a file with `contents` fails and its stderr names `key`.
fn assert_config_rejected(dir: &TempDir, name: &str, contents: &str, key: &str) {
    let cfg = dir.file(name, contents);
    let out = run(pollgate(&dir.0)
        .arg("check-config")
        .arg("--config")
        .arg(&cfg));
    assert_config_error(&out, key);
}

#[test]
fn bad_value_is_fatal_and_names_the_key() {
    let dir = TempDir::new();
    assert_config_rejected(&dir, "bad.toml", "[cache]\nttl = \"abc\"\n", "ttl");

    assert_config_rejected(
        &dir,
        "bad2.toml",
        "[server]\nlisten = \"not-an-address\"\n",
        "server.listen",
    );

    assert_config_rejected(
        &dir,
        "bad3.toml",
        "[upstream]\nurl = \"ftp://example.com\"\n",
        "upstream.url",
    );
}

#[test]
fn zero_ttl_flag_is_fatal_and_names_cache_ttl() {
    let dir = TempDir::new();
    let out = run(pollgate(&dir.0).args(["check-config", "--ttl", "0s"]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cache.ttl"), "{}", stderr(&out));
    // And for `serve` (the default command) too, before binding.
    let out = run(pollgate(&dir.0).args(["--ttl", "0s", "--listen", "127.0.0.1:1"]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cache.ttl"), "{}", stderr(&out));
}

#[test]
fn an_empty_config_variable_counts_as_unset() {
    let dir = TempDir::new();
    let out = run(pollgate(&dir.0)
        .env("POLLGATE_CONFIG", "")
        .env("POLLGATE_TTL", "")
        .arg("check-config"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("# pollgate configuration: no config file"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn missing_config_file_is_fatal() {
    let dir = TempDir::new();
    let out = run(pollgate(&dir.0).args(["check-config", "--config", "does-not-exist.toml"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does-not-exist.toml"),
        "{}",
        stderr(&out)
    );
    // Named by the variable: the message says so.
    let out = run(pollgate(&dir.0)
        .env("POLLGATE_CONFIG", "does-not-exist.toml")
        .arg("check-config"));
    assert_config_error(&out, "does-not-exist.toml (env POLLGATE_CONFIG): ");
}

#[test]
fn shipped_config_toml_is_valid() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    assert!(shipped.is_file(), "config.toml ships at the top level");
    let dir = TempDir::new();
    let out = run(pollgate(&dir.0)
        .arg("check-config")
        .arg("--config")
        .arg(&shipped));
    assert!(
        out.status.success(),
        "shipped config.toml must pass check-config: {}",
        stderr(&out)
    );
    let shown = stdout(&out);
    assert!(
        shown.starts_with(&format!(
            "# pollgate configuration, loaded from {} (flag --config).",
            shipped.display()
        )),
        "{shown}"
    );
    assert!(
        shown.contains("api.cloud.llamaindex.ai"),
        "shipped config points at the real API: {shown}"
    );
    assert!(shown.contains("127.0.0.1:8080"), "{shown}");
    assert!(shown.contains("127.0.0.1:9090"), "{shown}");
    // It spells out the defaults: loading it gives the built-in configuration, every key
    // taken from the file except the optional ones it leaves commented out.
    let defaults = run(pollgate(&dir.0).arg("check-config"));
    assert!(defaults.status.success(), "{}", stderr(&defaults));
    let (from_file, built_in) = (printed(&shown), printed(&stdout(&defaults)));
    assert_eq!(from_file.len(), built_in.len());
    for ((key, value, origin), (key_d, value_d, origin_d)) in from_file.iter().zip(&built_in) {
        assert_eq!(
            (key, value),
            (key_d, value_d),
            "config.toml lists {key} with its default"
        );
        // A comment may follow the origin (`default, 0 = no per-credential budget`).
        let source = |o: &str| o.split(',').next().unwrap_or_default().to_owned();
        assert_eq!(source(origin_d), "default", "{key}");
        let expected = match key.as_str() {
            "upstream.extra_ca_file"
            | "server.tls.cert_file"
            | "server.tls.key_file"
            | "server.tls.client_ca_file"
            | "admin.token_file"
            | "admin.tls.cert_file"
            | "admin.tls.key_file"
            | "admin.tls.client_ca_file"
            | "log.access_log_path"
            | "fleet.redis_url"
            | "fleet.secret_file"
            | "fleet.secret" => "default",
            _ => "file",
        };
        assert_eq!(source(origin), expected, "{key}");
    }
}

#[test]
fn precedence_is_flag_then_env_then_file_then_default() {
    let dir = TempDir::new();
    let check = |env: Option<&str>, flag: Option<&str>, file: bool| -> Option<String> {
        let mut cmd = pollgate(&dir.0);
        cmd.arg("check-config");
        if file {
            let cfg = dir.file("ttl.toml", "[cache]\nttl = \"5s\"\n");
            cmd.arg("--config").arg(cfg);
        }
        if let Some(e) = env {
            cmd.env("POLLGATE_TTL", e);
        }
        if let Some(f) = flag {
            cmd.args(["--ttl", f]);
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "{}", stderr(&out));
        printed_ttl(&stdout(&out))
    };
    assert_eq!(check(None, None, false).as_deref(), Some("2s"), "default");
    assert_eq!(check(None, None, true).as_deref(), Some("5s"), "file");
    assert_eq!(check(Some("7s"), None, true).as_deref(), Some("7s"), "env");
    assert_eq!(
        check(Some("7s"), Some("3s"), true).as_deref(),
        Some("3s"),
        "flag over env"
    );
    assert_eq!(
        check(None, Some("750ms"), false).as_deref(),
        Some("750ms"),
        "humantime flag"
    );

    // Other flags and their variables.
    let mut cmd = pollgate(&dir.0);
    cmd.env("POLLGATE_LISTEN", "127.0.0.1:18081")
        .env("POLLGATE_UPSTREAM", "http://127.0.0.1:18999/prefix")
        .args(["check-config", "--admin-listen", "127.0.0.1:19091"]);
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    let expect = [
        (
            "server.listen",
            "\"127.0.0.1:18081\"",
            "env POLLGATE_LISTEN",
        ),
        (
            "upstream.url",
            "\"http://127.0.0.1:18999/prefix\"",
            "env POLLGATE_UPSTREAM",
        ),
        ("admin.listen", "\"127.0.0.1:19091\"", "flag --admin-listen"),
        ("server.max_connections", "10000", "default"),
    ];
    for (key, value, origin) in expect {
        assert_eq!(
            printed_key(&shown, key),
            Some((value.to_owned(), origin.to_owned())),
            "{shown}"
        );
    }
}

#[test]
fn a_variable_error_names_the_variable_and_a_flag_error_the_flag() {
    let dir = TempDir::new();
    let out = run(pollgate(&dir.0)
        .env("POLLGATE_TTL", "abc")
        .arg("check-config"));
    assert_config_error(&out, "`cache.ttl` (env POLLGATE_TTL): ");
    assert!(!stderr(&out).contains("--ttl"), "{}", stderr(&out));

    let out = run(pollgate(&dir.0).args(["check-config", "--ttl", "abc"]));
    assert_config_error(&out, "`cache.ttl` (flag --ttl): ");
    assert!(!stderr(&out).contains("POLLGATE_TTL"), "{}", stderr(&out));

    // The same for `serve`, before it binds.
    let out = run(pollgate(&dir.0).env("POLLGATE_LISTEN", "nope"));
    assert_config_error(&out, "`server.listen` (env POLLGATE_LISTEN): ");
}

#[test]
fn every_bad_key_is_reported_at_once_one_per_line() {
    let dir = TempDir::new();
    let cfg = dir.file(
        "bad.toml",
        "[cache]\nmax_waiters = 0\n[upstream]\nurl = \"ftp://example.com\"\n",
    );
    let out = run(pollgate(&dir.0)
        .env("POLLGATE_TTL", "0s")
        .arg("check-config")
        .arg("--config")
        .arg(&cfg)
        .args([
            "--listen",
            "127.0.0.1:18080",
            "--admin-listen",
            "127.0.0.1:18080",
        ]));
    assert_config_error(&out, "4 invalid settings:");
    let err = stderr(&out);
    for line in [
        format!(
            "  `cache.max_waiters` ({}): must be at least 1",
            cfg.display()
        ),
        format!("  `upstream.url` ({}): ", cfg.display()),
        "  `cache.ttl` (env POLLGATE_TTL): must be greater than zero".to_owned(),
        "  `admin.listen` (flag --admin-listen): 127.0.0.1:18080 overlaps server.listen".to_owned(),
    ] {
        assert_eq!(
            err.lines().filter(|l| l.starts_with(&line)).count(),
            1,
            "{line}: {err}"
        );
    }
    // Port 0 twice is two different ports.
    let out = run(pollgate(&dir.0).args([
        "check-config",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn check_config_prints_toml_that_loads_to_the_same_configuration() {
    let dir = TempDir::new();
    // ./config.toml is read when no file is named, and the output says so.
    dir.file("config.toml", "[cache]\nstale_if_error = \"7m\"\n");
    let out = run(pollgate(&dir.0).env("POLLGATE_LOG_FORMAT", "json").args([
        "check-config",
        "--ttl",
        "10m",
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(
        shown.starts_with(
            "# pollgate configuration, loaded from config.toml (found in the working directory)."
        ),
        "{shown}"
    );
    let expect = [
        ("cache.stale_if_error", "\"7m\"", "file"),
        ("log.format", "\"json\"", "env POLLGATE_LOG_FORMAT"),
        ("cache.ttl", "\"10m\"", "flag --ttl"),
        (
            "cache.terminal_ttl",
            "\"10m\"",
            "default, raised to cache.ttl",
        ),
        (
            "upstream.max_requests_per_second",
            "0",
            "default, 0 = no per-credential budget",
        ),
    ];
    for (key, value, origin) in expect {
        assert_eq!(
            printed_key(&shown, key),
            Some((value.to_owned(), origin.to_owned())),
            "{shown}"
        );
    }

    // The output is a config file: loaded alone, it gives the same values, all from the file.
    let again = dir.file("again.toml", &shown);
    let out = run(pollgate(&dir.0)
        .env("POLLGATE_CONFIG", &again)
        .arg("check-config"));
    assert!(out.status.success(), "{}", stderr(&out));
    let values = |t: &str| -> Vec<(String, String)> {
        printed(t).into_iter().map(|(k, v, _)| (k, v)).collect()
    };
    assert_eq!(values(&stdout(&out)), values(&shown));
    assert_eq!(
        printed_key(&stdout(&out), "cache.terminal_ttl").map(|(_, o)| o),
        Some("file".to_owned())
    );
}

#[test]
fn busy_listen_address_is_fatal_and_named() {
    let dir = TempDir::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let admin = free_port().to_string();
    let out = run(pollgate(&dir.0).args([
        "--listen",
        &addr,
        "--admin-listen",
        &admin,
        "--upstream",
        "http://127.0.0.1:9",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("server.listen"), "{}", stderr(&out));
    // Printed once: on stderr, not repeated in the log on stdout.
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(all.matches("server.listen").count(), 1, "{all}");
    drop(busy);
}

/// A pollgate process on fresh loopback ports in front of `upstream`, with `args` added;
/// returns once `/healthz` answers (within 10 s).
async fn start_binary(
    dir: &TempDir,
    upstream: &str,
    args: &[&str],
) -> (tokio::process::Child, SocketAddr, SocketAddr) {
    let (listen, admin) = (free_port(), free_port());
    let mut cmd = tokio::process::Command::new(BIN);
    for v in ENV_VARS {
        cmd.env_remove(v);
    }
    let mut child = cmd
        .current_dir(&dir.0)
        .args(["--listen", &listen.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--upstream", upstream])
        .args(args)
        .env("RUST_LOG", "pollgate=debug")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pollgate");

    let client = TestClient::new();
    let health = format!("http://{admin}/healthz");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("pollgate exited early: {status}");
        }
        if tokio::net::TcpStream::connect(admin).await.is_ok()
            && client
                .send(Method::GET, &health, &[], Bytes::new())
                .await
                .status
                == StatusCode::OK
        {
            return (child, listen, admin);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/healthz did not answer within 10s");
}

/// SIGTERM; the process must exit successfully within 10 s. Returns stdout and stderr.
async fn stop_binary(child: tokio::process::Child) -> String {
    let pid = child.id().expect("child pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("pollgate exits within 10s of SIGTERM")
        .expect("wait");
    assert!(output.status.success(), "exit status {}", output.status);
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_and_exits_cleanly_on_sigterm() {
    let sim = pollgate_sim::SimUpstream::new(pollgate_sim::SimOptions::default());
    let upstream = sim.clone().spawn().await;
    let dir = TempDir::new();
    let upstream_url = format!("http://{upstream}");
    let (child, listen, _) = start_binary(&dir, &upstream_url, &["--log-format", "json"]).await;

    let client = TestClient::new();
    let auth = bearer(TOKEN_A);
    let url = format!("http://{listen}{}", items_path(JOB_A, "limit=10"));
    let r = client
        .send(
            Method::GET,
            &url,
            &[("authorization", auth.as_str())],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.cache_status(), "pollgate; fwd=miss; stored");
    let r2 = client
        .send(
            Method::GET,
            &url,
            &[("authorization", auth.as_str())],
            Bytes::new(),
        )
        .await;
    assert!(r2.cache_status().starts_with("pollgate; hit"));
    assert_eq!(upstream_item_requests(&sim, JOB_A).len(), 1);
    drop(client); // close pooled connections

    let logs = stop_binary(child).await;
    // One JSON access line per request, all flushed at shutdown, in order.
    let access: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| l.contains("\"target\":\"pollgate::access\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        access.len(),
        2,
        "one access line per request expected in the logs: {logs}"
    );
    assert_eq!(access[0]["result"], "miss");
    assert_eq!(access[1]["result"], "hit");
    assert_eq!(access[1]["route"], "items");
    assert_eq!(access[1]["status"], 200);
    assert_eq!(access[1]["path"], format!("{ITEMS}/{JOB_A}/items"));
    assert!(
        !logs.contains(TOKEN_A),
        "a credential leaked into the logs: {logs}"
    );
    // Log fields hold values: no config file is `none`, not `None` or `Some(..)`.
    let started = logs
        .lines()
        .find(|l| l.contains("pollgate started"))
        .expect("a start line");
    assert!(started.contains(r#""config":"none""#), "{started}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_to_a_pipe_have_no_colour_codes() {
    let dir = TempDir::new();
    dir.file("config.toml", "[log]\nformat = \"text\"\n");
    // Nothing is fetched: the upstream is never contacted.
    let (child, _, _) = start_binary(&dir, "http://127.0.0.1:9", &[]).await;
    let logs = stop_binary(child).await;
    let started = logs
        .lines()
        .find(|l| l.contains("pollgate started"))
        .expect("a start line");
    assert!(started.contains(" config=config.toml"), "{started}");
    assert!(
        !logs.contains('\x1b'),
        "ANSI escape in piped logs: {logs:?}"
    );
}
