//! Shared set-up of the benches: a simulated upstream and a gateway pointing at it.
//!
//! Copied in spirit from `tests/common` (benches do not import tests): loopback only,
//! access log off, and a TTL long enough that a warmed key stays a hit for the whole run.
#![allow(dead_code)]

pub mod redis;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Method, Request};
use http_body_util::BodyExt;
use pollgate::body::ResponseBody;
use pollgate::key::FingerprintKey;
use pollgate::{App, Config};
use pollgate_sim::{SimOptions, SimUpstream};

#[allow(unused_imports)] // Not every bench uses both.
pub use pollgate_sim::{JOB_A, TOKEN_A};

pub const ITEMS: &str = "/api/v1/beta/batch-processing";

/// A multi-threaded runtime, as the server runs in production.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn items_path(job: &str, query: &str) -> String {
    if query.is_empty() {
        format!("{ITEMS}/{job}/items")
    } else {
        format!("{ITEMS}/{job}/items?{query}")
    }
}

/// A bench config: loopback, the given upstream, 1 h TTL (every warmed key stays a hit),
/// no access log.
pub fn bench_config(upstream: SocketAddr) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.admin.listen = "127.0.0.1:0".parse().expect("addr");
    c.upstream.url = format!("http://{upstream}").parse().expect("uri");
    c.upstream.connect_timeout = Duration::from_secs(2);
    c.upstream.request_timeout = Duration::from_secs(10);
    c.server.shutdown_grace = Duration::from_secs(1);
    c.cache.ttl = Duration::from_secs(3600);
    c.cache.terminal_ttl = Duration::from_secs(3600);
    c.log.access_log = false;
    c
}

/// A sim (spawned on the current runtime) and a gateway in front of it (not yet serving).
pub async fn start(latency: Duration) -> (SimUpstream, App) {
    let sim = SimUpstream::new(SimOptions {
        latency,
        items_per_job: 2500,
    });
    let upstream = sim.clone().spawn().await;
    let config = bench_config(upstream);
    config.validate().expect("bench config valid");
    let app = App::new(config, FingerprintKey::random()).expect("gateway");
    (sim, app)
}

/// The parts of a `GET` item-list request of tenant A.
pub fn item_parts(job: &str, query: &str) -> Parts {
    let auth = format!("Bearer {TOKEN_A}");
    let (mut parts, ()) = Request::builder()
        .method(Method::GET)
        .uri(items_path(job, query))
        .body(())
        .expect("request")
        .into_parts();
    parts.headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&auth).expect("header"),
    );
    parts
        .headers
        .insert(header::HOST, HeaderValue::from_static("pollgate.bench"));
    parts
}

/// Read a whole response body (cheap for a hit: one `Full<Bytes>` frame, shared, not copied).
pub async fn body_bytes(body: ResponseBody) -> Bytes {
    body.collect().await.expect("body").to_bytes()
}

/// The first data frame's length: for a hit that is the whole body, with no allocation.
pub async fn first_frame_len(mut body: ResponseBody) -> usize {
    match body.frame().await {
        Some(Ok(frame)) => frame.data_ref().map_or(0, |d| d.len()),
        _ => 0,
    }
}
