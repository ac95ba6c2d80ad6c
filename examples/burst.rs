//! Cold-burst client: N identical requests released at once, latency per request.
//!
//! The load comparison (`benches/load/compare.sh`) uses it to measure how fast
//! coalesced waiters are answered. Written in Rust so that the client's own
//! per-response cost (microseconds) does not dominate the tail it measures.
//! Loopback only: it refuses any other address.
//!
//! ```sh
//! cargo run --release --example burst -- 127.0.0.1:8080 '/api/...?limit=10' 500 'Authorization: Bearer sk-tenant-a'
//! ```
//! Prints one JSON object (the shape `burst.py` prints): n, ok, status counts, errors, p50/p99/max in ms.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// Whole-run bound: a burst that has not finished by then is reported as timed out.
const RUN_TIMEOUT: Duration = Duration::from_secs(10);

async fn one(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    go: Arc<Barrier>,
) -> Result<(u16, Duration), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    go.wait().await;
    let started = Instant::now();
    stream
        .write_all(&request)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before a full response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("bad status line")?;
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or("no content-length")?;
        if buf.len() >= end + 4 + length {
            return Ok((status, started.elapsed()));
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: burst ADDR PATH N [HEADER...]".into());
    }
    let addr: SocketAddr = args[1].parse().map_err(|e| format!("address: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err("loopback addresses only".into());
    }
    let n: usize = args[3].parse().map_err(|e| format!("N: {e}"))?;
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n",
        args[2]
    );
    for h in &args[4..] {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request = Arc::new(request.into_bytes());
    let go = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| tokio::spawn(one(addr, request.clone(), go.clone())))
        .collect();
    let results = tokio::time::timeout(RUN_TIMEOUT, futures_util::future::join_all(tasks))
        .await
        .map_err(|_| "burst did not finish within 10 s")?;
    let mut latencies = Vec::with_capacity(n);
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    let mut errors = 0;
    for r in results {
        match r {
            Ok(Ok((status, latency))) => {
                *statuses.entry(status.to_string()).or_default() += 1;
                latencies.push(latency);
            }
            _ => errors += 1,
        }
    }
    latencies.sort();
    let ok = statuses.get("200").copied().unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({
            "n": n, "ok": ok, "status": statuses,
            "errors": if errors > 0 { serde_json::json!({ "failed": errors }) } else { serde_json::json!({}) },
            "timeouts": 0, "connected": n - errors,
            "p50_ms": percentile(&latencies, 50.0),
            "p99_ms": percentile(&latencies, 99.0),
            "max_ms": percentile(&latencies, 100.0),
        })
    );
    Ok(())
}
