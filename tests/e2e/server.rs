//! The client listener's bounds: oversized request heads, slow clients, the connection limit,
//! graceful shutdown of in-flight requests, and h2c.

use std::time::{Duration, Instant};

use crate::common::*;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn oversized_request_head_is_refused_and_the_gateway_keeps_serving() {
    let h = Harness::start(|_| {}).await;
    let mut raw = TcpStream::connect(h.addr).await.expect("connect");
    let big = "a".repeat(100 * 1024);
    let head = format!(
        "GET /echo/big HTTP/1.1\r\nHost: {}\r\nX-Big: {big}\r\n\r\n",
        h.addr
    );
    // The gateway may close before it has read everything: a write error is fine.
    let _ = raw.write_all(head.as_bytes()).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut buf))
        .await
        .expect("the gateway answers or closes within 5s");
    if read.is_ok() && !buf.is_empty() {
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.starts_with("HTTP/1.1 431"),
            "expected 431, got {:?}",
            text.lines().next()
        );
    }
    assert!(
        h.sim.requests().iter().all(|r| r.path != "/echo/big"),
        "an oversized request must not reach the upstream"
    );
    let ok = h.get("/echo/after", None).await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_the_in_flight_request() {
    let (mut h, gate) = Harness::start_gated(|_| {}).await;
    // The request is held at the gate until draining has surely begun.
    gate.close();
    let client = h.client.clone();
    let url = h.url(&items_path(JOB_A, "limit=10"));
    let auth = bearer(TOKEN_A);
    let pending = tokio::spawn(async move {
        client
            .send(
                Method::GET,
                &url,
                &[("authorization", auth.as_str())],
                Bytes::new(),
            )
            .await
    });
    assert!(
        wait_until(Duration::from_secs(5), || gate.held() == 1).await,
        "the request never reached the upstream"
    );
    let task = h.begin_shutdown().expect("server task");
    let addr = h.addr;
    assert!(
        wait_for(Duration::from_secs(5), || async move {
            TcpStream::connect(addr).await.is_err()
        })
        .await,
        "the listener never closed"
    );
    gate.open();
    let r = pending.await.expect("request task");
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["items"].as_array().map(Vec::len), Some(10));
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the server ends after draining")
        .expect("server task did not panic");
    assert!(ended.is_ok(), "{ended:?}");
    // The listener is closed: new connections are refused.
    assert!(TcpStream::connect(h.addr).await.is_err());
}

#[tokio::test]
async fn slow_client_is_disconnected_after_the_header_timeout() {
    let h = Harness::start(|c| c.server.header_read_timeout = Duration::from_millis(300)).await;
    let mut slow = TcpStream::connect(h.addr).await.expect("connect");
    // Half a request head, then nothing.
    slow.write_all(
        b"GET /api/v1/beta/batch-processing/job-a-running/items HTTP/1.1\r\nHost: x\r\n",
    )
    .await
    .expect("write");
    let started = Instant::now();
    let mut buf = Vec::new();
    // The server must end the connection by itself; 10 s is only a no-hang bound.
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the slow client was never disconnected");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "disconnected before the header timeout: {:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "unexpected answer: {text}"
    );
    // Others are unaffected.
    let ok = h.get(&items_path(JOB_A, "limit=1"), Some(TOKEN_A)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        h.sim.request_count(),
        1,
        "the half request never reached the upstream"
    );
}

#[tokio::test]
async fn h2c_clients_are_served_and_cached() {
    let h = Harness::start(|_| {}).await;
    let client: Client<_, http_body_util::Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut bodies = Vec::new();
    for expected in ["pollgate; fwd=miss; stored", "pollgate; hit"] {
        let req = Request::get(h.url(&items_path(JOB_A, "limit=3")))
            .header("authorization", bearer(TOKEN_A))
            .body(http_body_util::Empty::new())
            .expect("request");
        let res = client.request(req).await.expect("h2c response");
        assert_eq!(res.version(), http::Version::HTTP_2);
        assert_eq!(res.status(), StatusCode::OK);
        let status = res
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(status.starts_with(expected), "{status}");
        bodies.push(res.into_body().collect().await.expect("body").to_bytes());
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 1);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let h = Harness::start(|c| c.server.max_connections = 1).await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN_A}\r\n\r\n",
        items_path(JOB_A, "limit=1")
    );
    // A takes the only slot and keeps its connection open.
    let mut a = TcpStream::connect(h.addr).await.expect("connect a");
    a.write_all(request.as_bytes()).await.expect("write a");
    let mut buf = [0u8; 4096];
    let n = a.read(&mut buf).await.expect("read a");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "A is served");
    // B is accepted by the kernel but not served while A holds the slot.
    let mut b = TcpStream::connect(h.addr).await.expect("connect b");
    b.write_all(request.as_bytes()).await.expect("write b");
    let early = tokio::time::timeout(Duration::from_millis(300), b.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "B was served while A held the only connection slot"
    );
    // A leaves: B is served.
    drop(a);
    let n = tokio::time::timeout(Duration::from_secs(10), b.read(&mut buf))
        .await
        .expect("B is served once A's connection closes")
        .expect("read b");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

/// One request on a fresh connection (`Connection: close`); the status and `Cache-Status`.
async fn get_on_new_connection(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        bearer(TOKEN_A)
    );
    raw.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    raw.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let cache_status = text
        .lines()
        .find_map(|l| l.strip_prefix("cache-status: "))
        .unwrap_or("")
        .to_owned();
    (status, cache_status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_core_workers_share_one_cache_and_one_fill() {
    let (h, gate) = Harness::start_gated(|c| c.server.workers = 2).await;
    // Both event loops run, each on its own thread (names as `ps -L` shows them).
    let workers = || {
        std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("pg-worker-"))
            .count()
    };
    assert!(
        wait_until(secs(5), || workers() == 2).await,
        "server.workers = 2 starts two worker threads (saw {})",
        workers()
    );
    // 40 clients on 40 connections (the kernel spreads them over both workers' sockets)
    // ask for one cold page while the upstream is held: one fill answers all of them.
    gate.close();
    let path = items_path(JOB_A, "limit=10");
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (addr, path) = (h.addr, path.clone());
            tokio::spawn(async move { get_on_new_connection(addr, &path).await })
        })
        .collect();
    metric_reaches(&h, "pollgate_coalesced_waiters_total", 39.0, secs(10)).await;
    gate.open();
    let answers = join_all_within(secs(10), tasks).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    assert_eq!(
        h.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/items"))
            .count(),
        1,
        "one upstream request for the whole burst, whichever worker accepted each client"
    );
    // Later clients, on new connections and so on either worker, hit the one cache.
    for _ in 0..10 {
        let (status, cache_status) = get_on_new_connection(h.addr, &path).await;
        assert_eq!(status, 200);
        assert!(cache_status.contains("hit"), "{cache_status}");
    }
    h.shutdown().await.expect("every worker drains and stops");
}
