//! The fleet when things die: Redis killed or hung under load, a lease holder killed mid-fetch.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{eventually, fleet_state, Fleet, SECRET};
use crate::common::redis::RedisServer;
use crate::common::*;
use http::{Method, StatusCode};
use tokio::time::Instant;

/// What a bounded poller load saw.
#[derive(Default, Debug)]
struct Seen {
    requests: usize,
    errors: Vec<(StatusCode, String)>,
    slowest: Duration,
}

/// Two pollers per gateway, each cycling over 4 pages, until `stop` (at most 3000 requests each).
fn load(f: &Fleet, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Seen>> {
    let mut tasks = Vec::new();
    for (i, g) in f.gateways.iter().enumerate() {
        for p in 0..2 {
            let client = g.client.clone();
            let base = g.url("");
            let stop = stop.clone();
            let auth = bearer(TOKEN_A);
            tasks.push(tokio::spawn(async move {
                let mut seen = Seen::default();
                for n in 0..3000usize {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let path = items_path(JOB_A, &format!("limit={}", 1 + (n + i + p) % 4));
                    let started = Instant::now();
                    let res = client
                        .send(
                            Method::GET,
                            &format!("{base}{path}"),
                            &[("authorization", &auth)],
                            bytes::Bytes::new(),
                        )
                        .await;
                    seen.slowest = seen.slowest.max(started.elapsed());
                    seen.requests += 1;
                    if res.status != StatusCode::OK {
                        seen.errors
                            .push((res.status, res.cache_status().to_owned()));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                seen
            }));
        }
    }
    tasks
}

async fn all_in_state(f: &Fleet, state: &str, limit: Duration) -> bool {
    eventually(limit, || async {
        for g in &f.gateways {
            let ready = g.admin(Method::GET, "/readyz").await;
            assert_eq!(
                ready.status,
                StatusCode::OK,
                "/readyz stays ready: {}",
                ready.text()
            );
            if fleet_state(g).await != state {
                return false;
            }
        }
        true
    })
    .await
}

/// Run the load through an outage made by `fail` and ended by `heal`.
async fn outage(fail: impl FnOnce(&mut RedisServer), heal: impl FnOnce(&mut RedisServer)) {
    let mut f = Fleet::start(3, |c| c.cache.ttl = Duration::from_millis(200)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(&f, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    fail(&mut f.redis);
    assert!(
        all_in_state(&f, "single", Duration::from_secs(5)).await,
        "every gateway runs alone while Redis is out"
    );
    // Keep serving alone for a while.
    tokio::time::sleep(Duration::from_millis(700)).await;
    heal(&mut f.redis);
    assert!(
        all_in_state(&f, "shared", Duration::from_secs(8)).await,
        "sharing resumes by itself"
    );
    stop.store(true, Ordering::Release);
    let mut total = Seen::default();
    for t in tasks {
        let s = t.await.expect("poller");
        total.requests += s.requests;
        total.errors.extend(s.errors);
        total.slowest = total.slowest.max(s.slowest);
    }
    assert!(total.requests > 50, "the load ran: {total:?}");
    assert!(
        total.errors.is_empty(),
        "no client-visible error: {:?}",
        total.errors
    );
    assert!(
        total.slowest < Duration::from_secs(3),
        "bounded latency: {:?}",
        total.slowest
    );
    // Shared again: a new page via one gateway is a hit on another.
    let path = items_path(JOB_A, "limit=99");
    let first = f.gateways[0].get(&path, Some(TOKEN_A)).await;
    assert!(
        first.cache_status().contains("fwd=miss"),
        "{}",
        first.cache_status()
    );
    let second = f.gateways[2].get(&path, Some(TOKEN_A)).await;
    assert!(
        second.cache_status().starts_with("pollgate; hit"),
        "{}",
        second.cache_status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_then_restarted() {
    outage(RedisServer::kill, RedisServer::restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hung_under_load_then_resumed() {
    outage(|r| r.pause(), |r| r.resume()).await;
}

/// A pollgate process in the fleet, to be killed mid-fetch.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// Start a pollgate process in `f`'s fleet; returns it and its client and admin ports.
async fn spawn_member(f: &Fleet, dir: &std::path::Path) -> (Process, u16, u16) {
    std::fs::create_dir_all(dir).expect("dir");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[log]\naccess_log = false\n[fleet]\nredis_url = \"{}\"\nkey_prefix = \"pgtest\"\nlease_ttl = \"1s\"\nredis_timeout = \"500ms\"\n",
            f.redis.url()
        ),
    )
    .expect("config");
    let (port, admin) = (free_port(), free_port());
    let member = Process(
        Command::new(env!("CARGO_BIN_EXE_pollgate"))
            .arg("--config")
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(["--upstream", &format!("http://{}", f.upstream)])
            .env(
                "POLLGATE_FLEET_SECRET",
                std::str::from_utf8(SECRET).expect("utf8"),
            )
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pollgate"),
    );
    let joined = eventually(Duration::from_secs(10), || async {
        let url = format!("http://127.0.0.1:{admin}/readyz");
        match tokio::time::timeout(Duration::from_millis(500), get_body(&url)).await {
            Ok(Some(body)) => body.contains("\"shared\""),
            _ => false,
        }
    })
    .await;
    assert!(joined, "the pollgate process joined the fleet");
    (member, port, admin)
}

/// Send a GET to the process without waiting for the answer (it may never come).
async fn fire(port: u16, path: &str) -> tokio::net::TcpStream {
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!(
        "GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\n\r\n",
        bearer(TOKEN_A)
    );
    tokio::io::AsyncWriteExt::write_all(&mut raw, head.as_bytes())
        .await
        .expect("send");
    raw
}

fn hang_next_fetch(f: &Fleet, d: Duration) {
    f.sim.set_fault(Some(FaultRule {
        fault: Fault::Delay(d),
        remaining: Some(1),
        only_token: None,
        only_item_lists: true,
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_killed_mid_fetch_is_taken_over_after_the_lease() {
    let f = Fleet::start(2, |_| {}).await;
    let dir = std::env::temp_dir().join(format!("pollgate-holder-{}", std::process::id()));
    let (holder, port, _) = spawn_member(&f, &dir).await;

    // The holder's fetch hangs upstream; it holds the lease and renews it.
    f.sim.set_fault(Some(FaultRule {
        fault: Fault::Delay(Duration::from_secs(30)),
        remaining: Some(1),
        only_token: None,
        only_item_lists: true,
    }));
    let path = items_path(JOB_A, "limit=4");
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!(
        "GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\n\r\n",
        bearer(TOKEN_A)
    );
    tokio::io::AsyncWriteExt::write_all(&mut raw, head.as_bytes())
        .await
        .expect("send");
    assert!(wait_until(Duration::from_secs(5), || f.sim.in_flight() == 1).await);

    // The other gateways' requests wait on the holder's lease.
    let tasks: Vec<_> = (0..20)
        .map(|i| spawn_get(&f.gateways[i % 2], &path, TOKEN_A, &[]))
        .collect();
    let waiting = eventually(Duration::from_secs(5), || async {
        f.gateways[0]
            .metric("pollgate_fleet_leases_waited_total")
            .await
            >= 1.0
            && f.gateways[1]
                .metric("pollgate_fleet_leases_waited_total")
                .await
                >= 1.0
    })
    .await;
    assert!(waiting, "both gateways wait on the holder");
    drop(holder); // SIGKILL mid-fetch
    let killed = Instant::now();
    let mut last = Duration::ZERO;
    for t in tasks {
        let (res, done) = t.await.expect("task");
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        last = last.max(done.duration_since(killed));
    }
    assert!(
        last < Duration::from_secs(4),
        "answered soon after the lease lapsed: {last:?}"
    );
    let sent = f.upstream_items(JOB_A);
    eprintln!(
        "lease takeover: {sent} upstream requests; last waiter answered {last:?} after the kill"
    );
    assert!(
        sent <= 2,
        "at most the dead holder's fetch and one takeover: {sent}"
    );
    let taken = f.gateways[0]
        .metric("pollgate_fleet_leases_taken_over_total")
        .await
        + f.gateways[1]
            .metric("pollgate_fleet_leases_taken_over_total")
            .await;
    assert_eq!(taken, 1.0);
    drop(raw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The body of a GET, or `None` when the server does not answer.
async fn get_body(url: &str) -> Option<String> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let res = client.get(url.parse().ok()?).await.ok()?;
    let body = res.into_body().collect().await.ok()?.to_bytes();
    Some(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_wakes_after_its_lease_cannot_overwrite_the_newer_page() {
    let f = Fleet::start(1, |_| {}).await;
    let dir = std::env::temp_dir().join(format!("pollgate-fenced-{}", std::process::id()));
    let (holder, port, admin) = spawn_member(&f, &dir).await;
    // The holder's fetch takes 2 s upstream; meanwhile the holder is frozen past its lease.
    hang_next_fetch(&f, Duration::from_secs(2));
    let path = items_path(JOB_A, "limit=6");
    let raw = fire(port, &path).await;
    assert!(wait_until(Duration::from_secs(5), || f.sim.in_flight() == 1).await);
    let pid = holder.0.id().to_string();
    let signal = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
            .success());
    };
    signal("-STOP");
    // Another gateway takes the lapsed lease over and stores a newer page (a newer token).
    let res = f.gateways[0].get(&path, Some(TOKEN_A)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        f.gateways[0]
            .metric("pollgate_fleet_leases_taken_over_total")
            .await,
        1.0
    );
    assert_eq!(
        f.gateways[0].metric("pollgate_fleet_l2_stores_total").await,
        1.0
    );
    signal("-CONT");
    // The old holder's store carries the older fencing token: refused.
    let refused = eventually(Duration::from_secs(5), || async {
        let text = get_body(&format!("http://127.0.0.1:{admin}/metrics"))
            .await
            .unwrap_or_default();
        text.lines()
            .any(|l| l == "pollgate_fleet_l2_stores_refused_total 1")
    })
    .await;
    assert!(refused, "the stale holder's store was refused");
    drop(raw);
    drop(holder);
    let _ = std::fs::remove_dir_all(&dir);
}
