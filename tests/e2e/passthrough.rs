//! Passthrough: every route but the item lists is relayed unchanged (methods, bodies, HEAD,
//! upstream errors), uploads are streamed, hop-by-hop headers are stripped both ways, and an
//! unreachable or slow upstream is a quick JSON 502 or 504.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use crate::common::*;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pollgate_sim::{SimOptions, SimUpstream};
use serde_json::{json, Value};

/// Resident set size of this process (Linux), in bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// A loopback address nothing listens on: bind, take the port, close.
fn closed_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr
}

/// Header values the sim's `/echo` saw for `name` (empty when absent).
fn echoed(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn passthrough_post_json_is_echoed_intact() {
    let h = Harness::start(|_| {}).await;
    let payload = br#"{"hello":"world","n":[1,2,3]}"#;
    let auth = bearer(TOKEN_A);
    let r = h
        .request(
            Method::POST,
            "/echo/x?b=2&a=1&a=0",
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
                ("x-custom", "yes"),
            ],
            Bytes::from_static(payload),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/echo/x");
    assert_eq!(echo["query"], "b=2&a=1&a=0", "query as sent");
    assert_eq!(echo["body_bytes"], payload.len());
    assert_eq!(echo["body_blake3"], blake3::hash(payload).to_hex().as_str());
    assert_eq!(echoed(&echo, "authorization"), [auth.as_str()]);
    assert_eq!(echoed(&echo, "content-type"), ["application/json"]);
    assert_eq!(echoed(&echo, "x-custom"), ["yes"]);
    assert_eq!(echoed(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(echoed(&echo, "x-forwarded-host"), [h.addr.to_string()]);
    assert_eq!(echoed(&echo, "host"), [h.upstream.to_string()]);
    let seen = h.sim.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].token.as_deref(), Some(TOKEN_A));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_streams_a_large_upload() {
    const CHUNK: usize = 1024 * 1024;
    const CHUNKS: usize = 50;
    let _heavy = HEAVY.lock().await;
    let h = Harness::start(|_| {}).await;
    let chunk: Bytes = (0..CHUNK)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let mut hasher = blake3::Hasher::new();
    for n in 0..CHUNKS {
        hasher.update(&chunk);
        hasher.update(&[n as u8]);
    }
    let expected_hash = hasher.finalize().to_hex().to_string();
    let expected_len = (CHUNKS * (CHUNK + 1)) as u64;

    // Every chunk is followed by a one-byte frame carrying its index, so order matters to the hash.
    let frames = (0..CHUNKS).flat_map(move |n| {
        [
            Ok::<_, Infallible>(Frame::data(chunk.clone())),
            Ok(Frame::data(Bytes::from(vec![n as u8]))),
        ]
    });
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::builder()
        .method(Method::PUT)
        .uri(h.url("/echo/upload"))
        .header("authorization", bearer(TOKEN_A))
        .header("content-type", "application/octet-stream")
        .body(body)
        .expect("request");
    // Sample this process's RSS (client, gateway and sim all live here) during the upload:
    // a gateway that buffered the body would grow it by ~50 MiB.
    let rss_before = rss_bytes();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_bytes());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak
        })
    };
    let res = tokio::time::timeout(Duration::from_secs(25), client.request(req))
        .await
        .expect("upload finished within 25s")
        .expect("response");
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await.expect("sampler");
    let growth = peak.saturating_sub(rss_before);
    assert!(
        growth < 20 * 1024 * 1024,
        "RSS grew by {} MiB during a 50 MiB upload: the body was buffered",
        growth / (1024 * 1024)
    );
    let echo: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body_bytes"], expected_len);
    assert_eq!(echo["body_blake3"], expected_hash);
    assert!(
        echoed(&echo, "content-length").is_empty(),
        "a chunked upload stays streamed (no Content-Length invented): {:?}",
        echo["headers"]
    );
}

#[tokio::test]
async fn passthrough_other_endpoints_head_and_errors_are_relayed_unchanged() {
    let h = Harness::start(|_| {}).await;
    let auth = bearer(TOKEN_A);
    let direct = |path: &str| format!("http://{}{}", h.upstream, path);
    // A GET of an endpoint that is not a cacheable route: same bytes as the upstream's.
    let other = "/download?bytes=3000";
    let via = h.get(other, Some(TOKEN_A)).await;
    assert_eq!(via.status, StatusCode::OK, "{}", via.text());
    assert_eq!(via.body.len(), 3000);
    assert!(via.header("cache-status").is_none(), "not a cached route");
    let up = h
        .client
        .send(
            Method::GET,
            &direct(other),
            &[("authorization", auth.as_str())],
            Bytes::new(),
        )
        .await;
    assert_eq!(via.body, up.body);
    assert_eq!(via.header("content-type"), up.header("content-type"));

    // HEAD of it: no body, same length.
    let head = h
        .request(
            Method::HEAD,
            other,
            &[("authorization", auth.as_str())],
            Bytes::new(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(up.body.len().to_string().as_str())
    );
    let last = h.sim.requests().pop().expect("recorded");
    assert_eq!(last.method, Method::HEAD);

    // HEAD of the item list (the cached route): no body, Cache-Status.
    let ihead = h
        .request(
            Method::HEAD,
            &items_path(JOB_A, "limit=2"),
            &[("authorization", auth.as_str())],
            Bytes::new(),
        )
        .await;
    assert_eq!(ihead.status, StatusCode::OK);
    assert!(ihead.body.is_empty());
    assert!(ihead.header("cache-status").is_some());

    // Upstream errors pass unchanged: status, headers, body.
    for code in [404u16, 500] {
        let path = format!("/status/{code}");
        let via = h.get(&path, Some(TOKEN_A)).await;
        let up = h
            .client
            .send(Method::GET, &direct(&path), &[], Bytes::new())
            .await;
        assert_eq!(via.status.as_u16(), code);
        assert_eq!(via.status, up.status);
        assert_eq!(via.body, up.body);
        assert_eq!(
            via.json(),
            json!({ "detail": format!("simulated status {code}") })
        );
        assert_eq!(via.header("x-sim-status"), Some(code.to_string().as_str()));
        assert_eq!(via.header("content-type"), up.header("content-type"));
    }
    // An unknown upstream path: the upstream's 404, not pollgate's.
    let nf = h.get("/no/such/thing", Some(TOKEN_A)).await;
    assert_eq!(nf.status, StatusCode::NOT_FOUND);
    assert_eq!(nf.json(), json!({"detail": "Not Found"}));
    assert_eq!(
        h.sim
            .requests()
            .iter()
            .filter(|r| r.path == "/no/such/thing")
            .count(),
        1
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let h = Harness::start(|_| {}).await;
    let r = h
        .get_with(
            "/echo/hops",
            &[
                ("connection", "x-client-hop"),
                ("x-client-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("proxy-authorization", "Basic c2VjcmV0"),
                ("x-client-end-to-end", "kept"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let echo = r.json();
    for gone in [
        "x-client-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(
            echoed(&echo, gone).is_empty(),
            "{gone} reached the upstream: {:?}",
            echo["headers"]
        );
    }
    for v in echoed(&echo, "connection") {
        assert!(!v.contains("x-client-hop"), "connection: {v}");
    }
    assert_eq!(echoed(&echo, "x-client-end-to-end"), ["kept"]);

    // The sim's response names hop-by-hop headers; none may reach the client.
    assert!(r.header("x-sim-hop").is_none(), "{:?}", r.headers);
    assert!(r.header("keep-alive").is_none(), "{:?}", r.headers);
    assert!(
        r.header("connection")
            .is_none_or(|v| !v.contains("x-sim-hop")),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("x-sim-end-to-end"), Some("kept"));
}

#[tokio::test]
async fn upstream_down_is_a_quick_502_with_json() {
    let sim = SimUpstream::new(SimOptions::default());
    let h = Harness::start_with(sim, closed_addr(), |_| {}).await;
    for path in [items_path(JOB_A, "limit=10"), "/echo/down".to_owned()] {
        let started = Instant::now();
        let r = h.get(&path, Some(TOKEN_A)).await;
        let took = started.elapsed();
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{path}: {}", r.text());
        assert!(
            r.json()["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{path}: {}",
            r.text()
        );
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{path}"
        );
        assert!(took < Duration::from_millis(2500), "{path}: took {took:?}");
    }
    // The failure was not cached: a second attempt is a 502 again, not a 200 from nowhere.
    let again = h.get(&items_path(JOB_A, "limit=10"), Some(TOKEN_A)).await;
    assert_eq!(again.status, StatusCode::BAD_GATEWAY);
    assert!(again.header("cache-status").is_some());
}

#[tokio::test]
async fn slow_upstream_is_a_504_with_json_within_the_timeout() {
    let h = Harness::start(|c| {
        c.upstream.request_timeout = Duration::from_millis(500);
    })
    .await;
    h.sim.set_latency(Duration::from_secs(3));
    for path in [items_path(JOB_A, "limit=10"), "/echo/slow".to_owned()] {
        let started = Instant::now();
        let r = h.get(&path, Some(TOKEN_A)).await;
        let took = started.elapsed();
        assert_eq!(
            r.status,
            StatusCode::GATEWAY_TIMEOUT,
            "{path}: {}",
            r.text()
        );
        assert!(
            r.json()["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{path}: {}",
            r.text()
        );
        assert!(took < Duration::from_millis(2500), "{path}: took {took:?}");
    }
    // Nothing was stored: once the upstream is fast again, the item list is fetched anew.
    h.sim.set_latency(Duration::ZERO);
    let ok = h.get(&items_path(JOB_A, "limit=10"), Some(TOKEN_A)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.cache_status(), "pollgate; fwd=miss; stored");
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 2);
}
