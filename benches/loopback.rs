//! A cache hit through a real listener: `App::serve` on 127.0.0.1:0 and one
//! keep-alive HTTP/1.1 client connection (raw hyper, reused by every iteration).
//!
//! One iteration = write the request, the server parses it, serves the hit, writes the
//! response, the client reads the whole body. Client and server share the runtime and
//! the 2 cores, so this is a latency (one request at a time), not a throughput figure.

mod support;

use std::cell::Cell;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{header, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use support::{items_path, runtime, JOB_A, TOKEN_A};
use tokio::net::{TcpListener, TcpStream};

fn request(addr: std::net::SocketAddr, path: &str) -> Request<Empty<Bytes>> {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .body(Empty::new())
        .expect("request");
    let h = req.headers_mut();
    h.insert(
        header::HOST,
        HeaderValue::from_str(&addr.to_string()).expect("host"),
    );
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {TOKEN_A}")).expect("auth"),
    );
    req
}

fn bench_loopback(c: &mut Criterion) {
    let rt = runtime();
    let (sim, addr, sender) = rt.block_on(async {
        let (sim, app) = support::start(Duration::ZERO).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(app.serve(listener, None));
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        (sim, addr, sender)
    });

    // The timed futures run one at a time on the bench thread (`block_on`), never
    // concurrently: each takes the connection out of the cell and puts it back.
    let sender = Cell::new(Some(sender));

    let mut g = c.benchmark_group("loopback");
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, query) in [
        ("small_10_items", "limit=10"),
        ("large_1000_items", "limit=1000"),
    ] {
        let path = items_path(JOB_A, query);
        // Warm the key; the second answer must be a hit on the same connection.
        rt.block_on(async {
            let mut conn = sender.take().expect("connection");
            for expect in ["pollgate; fwd=miss", "pollgate; hit"] {
                conn.ready().await.expect("connection ready");
                let res = conn
                    .send_request(request(addr, &path))
                    .await
                    .expect("response");
                assert_eq!(res.status(), 200, "{path}");
                let cache_status = res
                    .headers()
                    .get("cache-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                assert!(
                    cache_status.starts_with(expect),
                    "{path}: expected {expect:?}, got {cache_status:?}"
                );
                let body = res.into_body().collect().await.expect("body").to_bytes();
                eprintln!("loopback/{name}: {cache_status}, body {} bytes", body.len());
            }
            sender.set(Some(conn));
        });
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let req = request(addr, &path);
                let sender = &sender;
                async move {
                    // Borrow the connection for this request and give it back.
                    let mut conn = sender.take().expect("connection");
                    conn.ready().await.expect("connection ready");
                    let res = conn.send_request(req).await.expect("response");
                    let len = res
                        .into_body()
                        .collect()
                        .await
                        .expect("body")
                        .to_bytes()
                        .len();
                    sender.set(Some(conn));
                    len
                }
            })
        });
    }
    g.finish();
    assert_eq!(sim.item_list_count(), 2, "every timed iteration was a hit");
}

criterion_group!(benches, bench_loopback);
criterion_main!(benches);
