//! The admin API: health, readiness, metrics and purges, on its own listener.
//!
//! Kept off the client port so that purging and metrics are reachable only
//! where the operator binds them (loopback by default). The admin API sees the
//! gateway only through [`Control`], a narrow handle (purge, readiness,
//! metrics text): it cannot reach the request flow's state, and the flow does
//! not know the admin API exists.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::error::detail_json;

/// Whether the gateway should receive traffic, and what `/readyz` says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    pub ready: bool,
    /// The JSON body of `/readyz`.
    pub body: serde_json::Value,
}

/// Which cached pages an admin purge removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeTarget<'a> {
    All,
    /// Every credential's pages of one v1 job (items and status).
    Job(&'a str),
    /// Every credential's pages of one v2 batch.
    Batch(&'a str),
}

/// What the admin API may ask of the gateway.
pub trait Control: Send + Sync + 'static {
    /// Forget the cached pages `target` names.
    fn purge(&self, target: PurgeTarget<'_>) -> impl Future<Output = ()> + Send;
    fn readiness(&self) -> Readiness;
    /// The Prometheus text exposition, with state gauges read now.
    fn metrics_text(&self) -> impl Future<Output = String> + Send;
}

/// The admin API over a [`Control`]. Cheap to clone.
pub struct Admin<C> {
    control: Arc<C>,
}

impl<C> Clone for Admin<C> {
    fn clone(&self) -> Self {
        Admin {
            control: self.control.clone(),
        }
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

impl<C: Control> Admin<C> {
    pub fn new(control: Arc<C>) -> Self {
        Admin { control }
    }

    /// Answer one admin request (its body, if any, is ignored).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        match (req.method(), path) {
            (&Method::GET, "/healthz") => {
                json(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}"))
            }
            (&Method::GET, "/readyz") => {
                let readiness = self.control.readiness();
                let status = if readiness.ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json(status, Bytes::from(readiness.body.to_string()))
            }
            (&Method::GET, "/metrics") => {
                let text = self.control.metrics_text().await;
                let mut res = Response::new(Full::new(Bytes::from(text)));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                res
            }
            (&Method::DELETE, "/cache") => {
                self.control.purge(PurgeTarget::All).await;
                tracing::info!("admin purge: all entries");
                json(StatusCode::OK, Bytes::from_static(b"{\"purged\":\"all\"}"))
            }
            (&Method::DELETE, p) if p.starts_with("/cache/") => {
                let (kind, id) = match p["/cache/".len()..].split_once('/') {
                    Some((kind @ ("jobs" | "batches"), id))
                        if !id.is_empty() && !id.contains('/') =>
                    {
                        (kind, id)
                    }
                    _ => return json(StatusCode::NOT_FOUND, detail_json("no such purge path")),
                };
                let (target, kind) = if kind == "jobs" {
                    (PurgeTarget::Job(id), "job")
                } else {
                    (PurgeTarget::Batch(id), "batch")
                };
                self.control.purge(target).await;
                tracing::info!(kind, id, "admin purge");
                json(
                    StatusCode::OK,
                    Bytes::from(serde_json::json!({ "purged": id, "kind": kind }).to_string()),
                )
            }
            (_, "/healthz" | "/readyz" | "/metrics" | "/cache") => json(
                StatusCode::METHOD_NOT_ALLOWED,
                detail_json("method not allowed"),
            ),
            _ => json(StatusCode::NOT_FOUND, detail_json("not found")),
        }
    }
}
