//! A gate between the gateway and its upstream: a TCP relay that can hold what the gateway
//! sends until the test opens it.
//!
//! Tests of coalescing, probing and draining need an upstream request to stay in flight until
//! every client has arrived (or the server has begun to drain). A fixed upstream latency only
//! makes that likely, and costs its whole length in every run; with the gate the test closes
//! it, starts its clients, waits for a condition (a counter, the held request itself) and opens
//! it. The relay copies bytes, not requests: what the gateway sends and what the upstream
//! answers pass unchanged, and an upstream that breaks a connection mid-body breaks the
//! gateway's connection mid-body too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Gate {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    held: Arc<AtomicUsize>,
}

impl Gate {
    /// An open gate in front of `upstream`, on a 127.0.0.1 ephemeral port.
    pub async fn spawn(upstream: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gate");
        let addr = listener.local_addr().expect("gate addr");
        let (open, _) = watch::channel(true);
        let held = Arc::new(AtomicUsize::new(0));
        let (opened, counter) = (open.clone(), held.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(relay(
                    inbound,
                    upstream,
                    opened.subscribe(),
                    counter.clone(),
                ));
            }
        });
        Gate { addr, open, held }
    }

    /// Where the gateway should send its upstream traffic.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, hold what the gateway sends.
    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// Let everything held, and everything after it, through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Connections whose next bytes from the gateway wait at the closed gate.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

async fn relay(
    inbound: TcpStream,
    upstream: SocketAddr,
    mut open: watch::Receiver<bool>,
    held: Arc<AtomicUsize>,
) {
    let Ok(outbound) = TcpStream::connect(upstream).await else {
        return; // dropping `inbound` tells the gateway the upstream is unreachable
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (mut from_gateway, mut to_gateway) = inbound.into_split();
    let (mut from_upstream, mut to_upstream) = outbound.into_split();
    let answers = async {
        let _ = tokio::io::copy(&mut from_upstream, &mut to_gateway).await;
        let _ = to_gateway.shutdown().await;
    };
    let requests = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from_gateway.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !*open.borrow() {
                held.fetch_add(1, Ordering::SeqCst);
                let _ = open.wait_for(|open| *open).await;
                held.fetch_sub(1, Ordering::SeqCst);
            }
            if to_upstream.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to_upstream.shutdown().await;
    };
    tokio::join!(answers, requests);
}
