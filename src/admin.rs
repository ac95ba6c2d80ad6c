//! The admin listener: health, readiness, metrics and purges, on its own address.
//!
//! Kept off the public port so that purging and metrics are reachable only
//! where the operator binds them (loopback by default).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::detail_json;
use crate::proxy::{Gateway, State};

pub async fn serve(gateway: Gateway, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
            _ = crate::server::stopped(&mut stop) => return,
        };
        let state = gateway.state().clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

async fn route(state: &Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET, "/healthz") => {
            json(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}"))
        }
        (&Method::GET, "/readyz") => {
            if *state.draining.borrow() {
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Bytes::from_static(b"{\"status\":\"draining\"}"),
                )
            } else {
                json(
                    StatusCode::OK,
                    Bytes::from_static(b"{\"status\":\"ready\"}"),
                )
            }
        }
        (&Method::GET, "/metrics") => {
            refresh_gauges(state).await;
            let mut res = Response::new(Full::new(Bytes::from(state.metrics.encode())));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            res
        }
        (&Method::DELETE, "/cache") => {
            state.cache.purge_all();
            state.metrics.purges.inc();
            tracing::info!("admin purge: all entries");
            json(StatusCode::OK, Bytes::from_static(b"{\"purged\":\"all\"}"))
        }
        (&Method::DELETE, p) if p.starts_with("/cache/jobs/") => {
            let job = &p["/cache/jobs/".len()..];
            if job.is_empty() || job.contains('/') {
                return json(StatusCode::NOT_FOUND, detail_json("no such job path"));
            }
            state.cache.purge_job(job);
            state.metrics.purges.inc();
            tracing::info!(job, "admin purge: job");
            json(
                StatusCode::OK,
                Bytes::from(serde_json::json!({ "purged": job }).to_string()),
            )
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/cache") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            detail_json("method not allowed"),
        ),
        _ => json(StatusCode::NOT_FOUND, detail_json("not found")),
    }
}

/// State gauges are read at scrape time, not maintained per request.
async fn refresh_gauges(state: &State) {
    state.cache.sync().await;
    let usage = state.cache.usage();
    let m = &state.metrics;
    m.cache_entries
        .set(i64::try_from(usage.entries).unwrap_or(i64::MAX));
    m.cache_bytes
        .set(i64::try_from(usage.bytes).unwrap_or(i64::MAX));
    m.fetches_in_flight.set(state.flights.len() as i64);
    m.upstream_in_flight.set(
        state
            .upstream
            .in_flight(state.config.upstream.max_concurrent) as i64,
    );
    m.backoffs_active.set(state.shield.active() as i64);
}
