//! The accept loop: connection limit, slow-client and header-size bounds, graceful drain.
//!
//! One loop serves every listener (the client listener and the admin
//! listener), so both get the same protections. It takes an already-bound
//! listener, a handler and a [`Shutdown`] signal, so tests bind
//! `127.0.0.1:0` and `main` binds the configured address. It knows nothing of
//! what it serves: the handler gets the request and the connection's
//! [`ConnInfo`]. On shutdown it stops accepting, lets in-flight requests
//! finish, and gives up at the grace deadline.
//!
//! With a [`Terminator`], connections are TLS: the handshake runs in the
//! connection's own task, bounded by the handshake timeout (a client that never
//! finishes it frees its slot then; the header timeout starts after it), and the
//! request's [`ConnInfo`] says `https`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::body::BoxError;
use crate::config::ServerConfig;
use crate::conn::{ConnInfo, Scheme};
use crate::shutdown::Shutdown;
use crate::tls::Terminator;

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The bounds one listener enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A client must send its whole request head within this (slowloris).
    pub header_read_timeout: Duration,
    /// Largest request head; bigger gets 431 instead of unbounded buffering.
    pub max_header_bytes: usize,
    /// How long shutdown waits for in-flight requests before closing connections.
    pub shutdown_grace: Duration,
}

impl Limits {
    pub fn from_config(c: &ServerConfig) -> Self {
        Limits {
            max_connections: c.max_connections,
            header_read_timeout: c.header_read_timeout,
            max_header_bytes: c.max_header_bytes,
            shutdown_grace: c.shutdown_grace,
        }
    }
}

/// Serve `handler` on `listener` (over TLS with `tls`) until `shutdown` triggers, then drain.
/// Returns once every connection is closed or the grace period ran out.
pub async fn serve<H, Fut, B>(
    listener: TcpListener,
    limits: Limits,
    tls: Option<Arc<Terminator>>,
    shutdown: Shutdown,
    handler: H,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, ConnInfo) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);

    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.triggered() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            _ = shutdown.triggered() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let Some(tls) = &tls else {
            let service = service(handler, ConnInfo::new(peer, Scheme::Http));
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    log_connection_error(peer, e.as_ref());
                }
                drop(permit);
            });
            continue;
        };
        let (tls, acceptor, limit) = (tls.clone(), tls.acceptor(), tls.handshake_timeout());
        let (builder, watcher, shutdown) = (builder.clone(), graceful.watcher(), shutdown.clone());
        tokio::spawn(async move {
            let stream = tokio::select! {
                done = tokio::time::timeout(limit, acceptor.accept(stream)) => match done {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tls.handshake_failed(false);
                        tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tls.handshake_failed(true);
                        tracing::debug!(peer = %peer, "TLS handshake timed out");
                        return;
                    }
                },
                _ = shutdown.triggered() => return,
            };
            let service = service(handler, ConnInfo::new(peer, Scheme::Https));
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                log_connection_error(peer, e.as_ref());
            }
            drop(permit);
        });
    }

    drop(listener);
    let grace = limits.shutdown_grace;
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: draining connections"
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
    Ok(())
}

/// The handler as a hyper service for one connection.
fn service<H, Fut, B>(
    handler: H,
    conn_info: ConnInfo,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<B>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<B>, Infallible>> + Send,
> + Clone
where
    H: Fn(Request<Incoming>, ConnInfo) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    service_fn(move |req| {
        let fut = handler(req, conn_info);
        async move { Ok::<_, Infallible>(fut.await) }
    })
}

fn log_connection_error(peer: SocketAddr, e: &(dyn std::error::Error + 'static)) {
    tracing::debug!(peer = %peer, error = %crate::error::Chain(e), "connection ended with an error");
}

/// Pending connections the kernel queues before `accept`: a burst of pollers
/// connecting at once must not overflow it (the usual default, 128, drops SYNs
/// and costs the overflow a one-second retransmit).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Bind a listener with [`LISTEN_BACKLOG`], naming the key in the error.
/// Call it inside the runtime that will serve it.
pub fn bind(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    bind_with(addr, what, false)
}

/// Like [`bind`], with `SO_REUSEPORT`: each of `server.workers` event loops binds its own
/// socket to the one address and the kernel spreads new connections between them.
/// (Any process of the same user may then bind the port too, as with nginx's `reuseport`.)
#[cfg(unix)]
pub fn bind_shared(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    bind_with(addr, what, true)
}

fn bind_with(addr: SocketAddr, what: &str, reuse_port: bool) -> std::io::Result<TcpListener> {
    let named = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}"))
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(named)?;
    socket.set_reuseaddr(true).map_err(named)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuseport(true).map_err(named)?;
    }
    socket.bind(addr).map_err(named)?;
    socket.listen(LISTEN_BACKLOG).map_err(named)
}
