//! End-to-end tests of the gateway (issue 2): real servers on 127.0.0.1, a simulated upstream
//! that counts what reaches it, and assertions on statuses, bodies and upstream request counts.

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pollgate_sim::{SimOptions, SimUpstream};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Serializes the CPU-heavy tests (200 concurrent clients, the 50 MiB upload) so that on a
/// 2-core machine one cannot starve another past its upstream latency.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

fn auth_a() -> String {
    bearer(TOKEN_A)
}

// ---------------------------------------------------------------- cache lifecycle

#[tokio::test]
async fn miss_then_hit_then_miss_after_ttl() {
    let h = Harness::start(|c| {
        c.cache.ttl = Duration::from_secs(1);
        c.cache.stale_while_revalidate = Duration::ZERO;
    })
    .await;
    let p = items_path(JOB_A, "limit=10");

    let miss = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(miss.status, StatusCode::OK, "{}", miss.text());
    assert_eq!(miss.cache_status(), "pollgate; fwd=miss; stored");
    let body: Value = miss.json();
    assert_eq!(body["items"].as_array().map(Vec::len), Some(10), "{body}");

    let hit = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(hit.status, StatusCode::OK);
    let cs = hit.cache_status();
    let ttl: u64 = cs
        .strip_prefix("pollgate; hit; ttl=")
        .unwrap_or_else(|| panic!("not a hit: {cs:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("ttl in {cs:?} is not a number: {e}"));
    assert!(ttl <= 1, "ttl {ttl} exceeds the configured 1s");
    let age: u64 = hit
        .header("age")
        .expect("a hit carries Age")
        .parse()
        .expect("Age is an integer");
    assert!(age <= 1, "age {age}");
    assert_eq!(hit.body, miss.body, "a hit returns the stored bytes");
    assert_eq!(hit.header("content-type"), miss.header("content-type"));
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 1);

    // Sleeping past 2×TTL makes the entry expired for sure.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let again = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.cache_status(), "pollgate; fwd=miss; stored");
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 2);
}

// ---------------------------------------------------------------- coalescing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_requests_make_one_upstream_request() {
    let _heavy = HEAVY.lock().await;
    let h = Harness::start(|_| {}).await;
    // Long enough that all 200 requests arrive while the one fetch is in flight, even on a
    // loaded 2-core machine.
    h.sim.set_latency(Duration::from_millis(2000));
    let path = items_path(JOB_A, "limit=50&offset=100");
    let tasks: Vec<_> = (0..200)
        .map(|_| spawn_get(&h, &path, TOKEN_A, &[]))
        .collect();
    let mut responses = Vec::new();
    for t in tasks {
        responses.push(t.await.expect("task").0);
    }
    assert_eq!(
        h.sim.item_list_count(),
        1,
        "200 identical cold requests must make exactly one upstream request"
    );
    let first = &responses[0].body;
    assert!(!first.is_empty());
    let mut stored = 0;
    let mut collapsed = 0;
    for r in &responses {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(&r.body, first, "all bodies are byte-identical");
        match r.cache_status() {
            "pollgate; fwd=miss; stored" => stored += 1,
            "pollgate; fwd=miss; collapsed" => collapsed += 1,
            other => panic!("unexpected Cache-Status {other:?}"),
        }
    }
    assert_eq!((stored, collapsed), (1, 199));
    assert!(
        h.metric("pollgate_coalesced_waiters_total").await >= 199.0,
        "coalesced waiters are counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_client_disconnecting_does_not_cancel_or_repeat_the_fetch() {
    let _heavy = HEAVY.lock().await;
    let h = Harness::start(|_| {}).await;
    h.sim.set_latency(Duration::from_millis(1500));
    let path = items_path(JOB_A, "limit=20&offset=7");

    let mut raw = TcpStream::connect(h.addr).await.expect("connect");
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\r\n",
        h.addr,
        auth_a()
    );
    raw.write_all(head.as_bytes()).await.expect("write");
    let sim = h.sim.clone();
    assert!(
        wait_until(Duration::from_secs(5), || sim.item_list_count() == 1).await,
        "the upstream never received the first request"
    );
    drop(raw); // the first client goes away mid-fetch
    tokio::time::sleep(Duration::from_millis(100)).await; // let the gateway see the close

    let tasks: Vec<_> = (0..50)
        .map(|_| spawn_get(&h, &path, TOKEN_A, &[]))
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        let r = t.await.expect("task").0;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        // The only fetch is the disconnected client's: nobody else stores.
        let cs = r.cache_status();
        assert!(
            cs == "pollgate; fwd=miss; collapsed" || cs.starts_with("pollgate; hit; ttl="),
            "unexpected Cache-Status {cs:?}"
        );
        bodies.push(r.body);
    }
    assert!(bodies.iter().all(|b| b == &bodies[0]), "identical bodies");
    assert_eq!(h.sim.item_list_count(), 1, "exactly one upstream request");
    let later = h.get(&path, Some(TOKEN_A)).await;
    assert!(later.cache_status().starts_with("pollgate; hit"));
    assert_eq!(later.body, bodies[0]);
    assert_eq!(h.sim.item_list_count(), 1);
}

// ---------------------------------------------------------------- tenancy

#[tokio::test]
async fn tenants_never_see_each_others_pages() {
    let h = Harness::start(|_| {}).await;
    let p = items_path(JOB_A, "limit=10");

    let a = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.cache_status(), "pollgate; fwd=miss; stored");

    let b = h.get(&p, Some(TOKEN_B)).await;
    assert_eq!(b.status, StatusCode::NOT_FOUND, "{}", b.text());
    assert_eq!(b.json(), json!({"detail": "Job not found"}));
    assert_ne!(b.body, a.body);
    assert!(
        !b.cache_status().contains("hit"),
        "B must not be served from A's entry: {}",
        b.cache_status()
    );
    let seen = upstream_item_requests(&h.sim, JOB_A);
    assert_eq!(seen.len(), 2, "B's request went upstream");
    assert_eq!(seen[1].token.as_deref(), Some(TOKEN_B));
    assert_eq!(
        seen[1]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some(bearer(TOKEN_B).as_str())
    );

    // A 404 is not stored: B asks again, upstream answers again.
    let b2 = h.get(&p, Some(TOKEN_B)).await;
    assert_eq!(b2.status, StatusCode::NOT_FOUND);
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 3);

    // A's entry is intact.
    let a2 = h.get(&p, Some(TOKEN_A)).await;
    assert!(a2.cache_status().starts_with("pollgate; hit"));
    assert_eq!(a2.body, a.body);
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 3);
}

#[tokio::test]
async fn session_cookie_is_a_credential_keyed_apart_from_bearer() {
    let h = Harness::start(|_| {}).await;
    let p = items_path(JOB_A, "limit=5");
    let cookie = format!("theme=dark; session={TOKEN_A}");

    let bearer_a = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(bearer_a.cache_status(), "pollgate; fwd=miss; stored");

    let c1 = h.get_with(&p, &[("cookie", cookie.as_str())]).await;
    assert_eq!(c1.status, StatusCode::OK, "{}", c1.text());
    assert_eq!(
        c1.cache_status(),
        "pollgate; fwd=miss; stored",
        "the cookie credential has its own key"
    );
    let seen = upstream_item_requests(&h.sim, JOB_A);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].token.as_deref(), Some(TOKEN_A));
    assert!(seen[1].headers.get("authorization").is_none());

    let c2 = h.get_with(&p, &[("cookie", cookie.as_str())]).await;
    assert!(
        c2.cache_status().starts_with("pollgate; hit"),
        "{}",
        c2.cache_status()
    );
    assert_eq!(c2.body, c1.body);

    // Tenant B's cookie is another tenant again.
    let b_cookie = format!("session={TOKEN_B}");
    let b = h.get_with(&p, &[("cookie", b_cookie.as_str())]).await;
    assert_eq!(b.status, StatusCode::NOT_FOUND, "{}", b.text());
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 3);

    // No credential at all: passed through, not cached, upstream says 401.
    let anon = h.get(&p, None).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anon.cache_status(), "pollgate; fwd=bypass");
    let anon2 = h.get(&p, None).await;
    assert_eq!(anon2.status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 5);
}

// ---------------------------------------------------------------- validation

#[tokio::test]
async fn invalid_queries_are_rejected_without_upstream_requests() {
    let h = Harness::start(|_| {}).await;
    let cases: [(&str, &str, &str); 9] = [
        ("limit=0", "limit", "0"),
        ("limit=1001", "limit", "1001"),
        ("limit=-1", "limit", "-1"),
        ("limit=abc", "limit", "abc"),
        ("limit=1.5", "limit", "1.5"),
        ("limit=", "limit", ""),
        ("status=unknown", "status", "unknown"),
        ("offset=-1", "offset", "-1"),
        ("offset=abc", "offset", "abc"),
    ];
    let mut ours = Vec::new();
    for (query, param, input) in cases {
        let r = h.get(&items_path(JOB_A, query), Some(TOKEN_A)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(r.header("cache-status").is_some(), "{query}: Cache-Status");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{query}"
        );
        let body = r.json();
        let d = &body["detail"][0];
        assert_eq!(d["loc"], json!(["query", param]), "{query}: {body}");
        assert!(
            d["type"].as_str().is_some_and(|t| !t.is_empty()),
            "{query}: {body}"
        );
        assert!(
            d["msg"].as_str().is_some_and(|t| !t.is_empty()),
            "{query}: {body}"
        );
        assert_eq!(d["input"], json!(input), "{query}: {body}");
        ours.push((query, body));
    }
    assert_eq!(
        h.sim.request_count(),
        0,
        "no upstream request for a rejected query"
    );
    assert!(h.metric("pollgate_validation_rejections_total").await >= 9.0);

    // The bodies are the ones the (simulated) API itself gives.
    let auth = auth_a();
    for (query, body) in ours {
        let url = format!("http://{}{}", h.upstream, items_path(JOB_A, query));
        let direct = h
            .client
            .send(
                Method::GET,
                &url,
                &[("authorization", auth.as_str())],
                Bytes::new(),
            )
            .await;
        assert_eq!(direct.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(body, direct.json(), "{query}: gateway vs API 422 body");
    }
}

#[tokio::test]
async fn limit_bounds_are_accepted() {
    let h = Harness::start(|_| {}).await;
    for (query, n) in [("limit=1", 1), ("limit=1000", 1000)] {
        let r = h.get(&items_path(JOB_A, query), Some(TOKEN_A)).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text());
        assert_eq!(r.json()["items"].as_array().map(Vec::len), Some(n));
    }
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 2);
}

#[tokio::test]
async fn equivalent_queries_share_one_key_and_upstream_sees_the_canonical_one() {
    let h = Harness::start(|_| {}).await;
    let variants = [
        "offset=0&limit=010",
        "limit=10&offset=0",
        "limit=5&limit=10&offset=00",
        "offset=0&limit=10",
    ];
    let mut bodies = Vec::new();
    for q in variants {
        let r = h.get(&items_path(JOB_A, q), Some(TOKEN_A)).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text());
        bodies.push(r.body);
    }
    assert!(bodies.iter().all(|b| b == &bodies[0]));
    let seen = upstream_item_requests(&h.sim, JOB_A);
    assert_eq!(seen.len(), 1, "one key for all variants");
    assert_eq!(seen[0].query.as_deref(), Some("limit=10&offset=0"));
    assert!(!bodies[0].is_empty(), "non-empty page");

    // Unknown parameters are kept (and so forwarded), in canonical order.
    let r = h
        .get(&items_path(JOB_A, "zeta=1&limit=3&alpha=x"), Some(TOKEN_A))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = upstream_item_requests(&h.sim, JOB_A);
    assert_eq!(seen.len(), 2, "an unknown parameter makes another key");
    assert_eq!(
        seen[1].query.as_deref(),
        Some("alpha=x&limit=3&offset=0&zeta=1")
    );
}

// ---------------------------------------------------------------- passthrough

#[tokio::test]
async fn passthrough_post_json_is_echoed_intact() {
    let h = Harness::start(|_| {}).await;
    let payload = br#"{"hello":"world","n":[1,2,3]}"#;
    let auth = auth_a();
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
        .header("authorization", auth_a())
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
    let auth = auth_a();
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

// ---------------------------------------------------------------- upstream failures

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

// ---------------------------------------------------------------- encoding

#[tokio::test]
async fn no_content_encoding_the_client_did_not_ask_for() {
    let h = Harness::start(|_| {}).await;
    let auth = auth_a();
    let p = items_path(JOB_A, "limit=10");
    for accept in ["gzip", "br, gzip, deflate", "identity"] {
        let r = h
            .get_with(
                &p,
                &[
                    ("authorization", auth.as_str()),
                    ("accept-encoding", accept),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.header("content-encoding").is_none(), "{:?}", r.headers);
        let _: Value = r.json(); // plain JSON
    }
    let seen = upstream_item_requests(&h.sim, JOB_A);
    assert_eq!(seen.len(), 1, "encoding is normalized, not keyed");
    assert_eq!(
        seen[0]
            .headers
            .get("accept-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("identity")
    );
}

// ---------------------------------------------------------------- admin

#[tokio::test]
async fn admin_health_metrics_and_purges() {
    let h = Harness::start(|_| {}).await;
    let health = h.admin(Method::GET, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = h.admin(Method::GET, "/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);

    let p = items_path(JOB_A, "limit=10");
    let other = items_path(JOB_A_DONE, "limit=10");
    assert_eq!(
        h.get(&p, Some(TOKEN_A)).await.cache_status(),
        "pollgate; fwd=miss; stored"
    );
    assert!(h
        .get(&p, Some(TOKEN_A))
        .await
        .cache_status()
        .starts_with("pollgate; hit"));
    assert_eq!(
        h.get(&other, Some(TOKEN_A)).await.cache_status(),
        "pollgate; fwd=miss; stored"
    );
    let _ = h.get("/echo/m", Some(TOKEN_A)).await;

    let metrics = h.admin(Method::GET, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text();
    let sample = |prefix: &str, labels: &[&str]| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix) && labels.iter().all(|lab| l.contains(lab)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        sample(
            "pollgate_requests_total{",
            &["route=\"items\"", "result=\"miss\""]
        ) >= 2.0,
        "{text}"
    );
    assert!(
        sample(
            "pollgate_requests_total{",
            &["route=\"items\"", "result=\"hit\""]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        sample("pollgate_requests_total{", &["route=\"passthrough\""]) >= 1.0,
        "{text}"
    );
    assert!(
        sample("pollgate_upstream_requests_total{", &["2xx"]) >= 3.0,
        "{text}"
    );
    assert!(text.contains("pollgate_upstream_latency_seconds"), "{text}");
    assert!(!text.contains(TOKEN_A), "metrics never carry a credential");

    // Purge one job: its page misses, the other job's page still hits.
    let purge = h
        .admin(Method::DELETE, &format!("/cache/jobs/{JOB_A}"))
        .await;
    assert_eq!(purge.status, StatusCode::OK, "{}", purge.text());
    assert_eq!(
        h.get(&p, Some(TOKEN_A)).await.cache_status(),
        "pollgate; fwd=miss; stored"
    );
    assert!(h
        .get(&other, Some(TOKEN_A))
        .await
        .cache_status()
        .starts_with("pollgate; hit"));
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 2);

    // Purge all: both miss.
    let purge = h.admin(Method::DELETE, "/cache").await;
    assert_eq!(purge.status, StatusCode::OK, "{}", purge.text());
    assert_eq!(
        h.get(&p, Some(TOKEN_A)).await.cache_status(),
        "pollgate; fwd=miss; stored"
    );
    assert_eq!(
        h.get(&other, Some(TOKEN_A)).await.cache_status(),
        "pollgate; fwd=miss; stored"
    );
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 3);
    assert_eq!(upstream_item_requests(&h.sim, JOB_A_DONE).len(), 2);
}

// ---------------------------------------------------------------- server bounds

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
    let mut h = Harness::start(|_| {}).await;
    h.sim.set_latency(Duration::from_secs(1));
    let client = h.client.clone();
    let url = h.url(&items_path(JOB_A, "limit=10"));
    let auth = auth_a();
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
    let sim = h.sim.clone();
    assert!(
        wait_until(Duration::from_secs(5), || sim.in_flight() == 1).await,
        "the request never reached the upstream"
    );
    let task = h.begin_shutdown().expect("server task");
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
            .header("authorization", auth_a())
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
async fn concurrent_fetches_are_never_shared_across_credentials() {
    let h = Harness::start(|_| {}).await;
    h.sim.set_latency(Duration::from_millis(500));
    let path = items_path(JOB_A, "limit=4");
    // Interleaved: tenant A and tenant B ask for the same page at the same moment.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let token = if i % 2 == 0 { TOKEN_A } else { TOKEN_B };
            (token, spawn_get(&h, &path, token, &[]))
        })
        .collect();
    for (token, task) in tasks {
        let (res, _) = task.await.expect("task");
        if token == TOKEN_A {
            assert_eq!(res.status, StatusCode::OK, "{}", res.text());
            assert!(res.json()["items"].is_array());
        } else {
            assert_eq!(
                res.status,
                StatusCode::NOT_FOUND,
                "B must get the upstream's answer for B: {}",
                res.text()
            );
        }
    }
    let seen = upstream_item_requests(&h.sim, JOB_A);
    let tokens: Vec<_> = seen
        .iter()
        .map(|r| r.token.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        seen.len(),
        2,
        "one fetch per credential, not one shared: {tokens:?}"
    );
    assert!(tokens.contains(&TOKEN_A.to_owned()) && tokens.contains(&TOKEN_B.to_owned()));
}

#[tokio::test]
async fn a_response_over_the_entry_limit_is_delivered_intact_and_not_stored() {
    let h = Harness::start(|c| c.cache.max_entry_bytes = 10_000).await;
    let direct = h.get(&items_path(JOB_A, "limit=1000"), Some(TOKEN_A)).await;
    assert_eq!(direct.status, StatusCode::OK);
    assert!(
        direct.body.len() > 10_000,
        "the page is larger than the limit"
    );
    assert_eq!(direct.json()["items"].as_array().map(Vec::len), Some(1000));
    assert_eq!(
        direct.cache_status(),
        "pollgate; fwd=miss; detail=not-stored"
    );
    let again = h.get(&items_path(JOB_A, "limit=1000"), Some(TOKEN_A)).await;
    assert_eq!(again.body, direct.body);
    assert!(
        again.cache_status().starts_with("pollgate; fwd=miss"),
        "{}",
        again.cache_status()
    );
    assert_eq!(
        upstream_item_requests(&h.sim, JOB_A).len(),
        2,
        "nothing was stored"
    );
    // A small page under the same limit is stored.
    let small = h.get(&items_path(JOB_A, "limit=5"), Some(TOKEN_A)).await;
    assert_eq!(small.cache_status(), "pollgate; fwd=miss; stored");
}

#[tokio::test]
async fn large_pages_are_served_gzipped_only_to_clients_that_accept_it() {
    use std::io::Read;
    let h = Harness::start(|_| {}).await;
    let auth = auth_a();
    let large = items_path(JOB_A, "limit=1000");
    let get = |accept: &'static str, extra: Option<(&'static str, String)>| {
        let h = &h;
        let auth = auth.clone();
        let large = large.clone();
        async move {
            let mut headers = vec![
                ("authorization", auth.as_str()),
                ("accept-encoding", accept),
            ];
            if let Some((k, v)) = &extra {
                headers.push((k, v.as_str()));
            }
            h.request(Method::GET, &large, &headers, Bytes::new()).await
        }
    };
    let plain = get("identity", None).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(plain.header("content-encoding").is_none());
    assert_eq!(plain.header("vary"), Some("accept-encoding"));
    let zipped = get("gzip, deflate", None).await;
    assert!(
        zipped.cache_status().starts_with("pollgate; hit"),
        "{}",
        zipped.cache_status()
    );
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert!(
        zipped.body.len() * 4 < plain.body.len(),
        "compressed: {} vs {}",
        zipped.body.len(),
        plain.body.len()
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped.body[..])
        .read_to_end(&mut unzipped)
        .expect("valid gzip");
    assert_eq!(
        unzipped, plain.body,
        "the gzip representation holds the same bytes"
    );
    let (tag_plain, tag_zip) = (
        plain.header("etag").expect("etag"),
        zipped.header("etag").expect("etag"),
    );
    assert_ne!(
        tag_plain, tag_zip,
        "each representation has its own strong ETag"
    );
    // Refused explicitly, or not offered: identity.
    assert!(get("gzip;q=0, br", None)
        .await
        .header("content-encoding")
        .is_none());
    assert!(get("br", None).await.header("content-encoding").is_none());
    // Conditional requests work with either tag.
    let not_modified = get("gzip", Some(("if-none-match", tag_zip.to_owned()))).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.header("etag"), Some(tag_zip));
    assert!(not_modified.body.is_empty());
    // Small pages stay plain (and carry no Vary).
    let small = h
        .request(
            Method::GET,
            &items_path(JOB_A, "limit=10"),
            &[
                ("authorization", auth.as_str()),
                ("accept-encoding", "gzip"),
            ],
            Bytes::new(),
        )
        .await;
    assert!(small.header("content-encoding").is_none() && small.header("vary").is_none());
    assert_eq!(
        upstream_item_requests(&h.sim, JOB_A).len(),
        2,
        "one fill per page, whatever the encoding"
    );
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
