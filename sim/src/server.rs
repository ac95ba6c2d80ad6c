//! Accept loop: HTTP/1.1 and h2c on one port, graceful drain on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::{handler, State};

/// How long in-flight connections may take to finish after shutdown; a stuck client must not
/// keep a test or Ctrl-C waiting forever.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors under a load test) before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub(crate) async fn serve(
    state: Arc<State>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Small JSON answers must not wait for Nagle; latency benches measure this.
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |req| handler::handle(state.clone(), req));
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain deadline; abandoning them");
    }
    Ok(())
}
