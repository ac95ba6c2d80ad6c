//! The admin API: health, readiness, metrics and purges, on its own listener.
//!
//! Kept off the client port so that purging and metrics are reachable only
//! where the operator binds them (loopback by default). The admin API sees the
//! gateway only through [`Control`], a narrow handle (purge, readiness,
//! metrics text, reload): it cannot reach the request flow's state, and the flow
//! does not know the admin API exists.
//!
//! With `admin.token_file`, what changes state (purges, `POST /reload`) and, unless
//! `admin.protect_metrics = false`, `/metrics` require `Authorization: Bearer <token>`,
//! compared in constant time. `/healthz` and `/readyz` stay open for probes.

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::config::{AdminConfig, AdminToken};
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

/// What a configuration reload did, for `POST /reload`.
#[derive(Debug, Clone, PartialEq)]
pub enum ReloadAnswer {
    /// Reloaded; the JSON body says what changed and what needs a restart.
    Reloaded(serde_json::Value),
    /// Nothing changed: every problem found.
    Invalid(Vec<String>),
    /// This process cannot reload (built from a configuration in code).
    Unsupported,
}

/// Who may use the guarded endpoints. Swapped by a reload (the token file is re-read).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Access {
    pub token: Option<AdminToken>,
    /// With a token: `/metrics` requires it too.
    pub protect_metrics: bool,
}

impl Access {
    pub fn from_config(c: &AdminConfig) -> Self {
        Access {
            token: c.token.clone(),
            protect_metrics: c.protect_metrics,
        }
    }

    /// Does `req` carry the token (or is none required)? Both sides are hashed first, so
    /// the comparison takes the same time whatever the length or content of the guess.
    fn admits<B>(&self, req: &Request<B>) -> bool {
        use subtle::ConstantTimeEq;
        let Some(token) = &self.token else {
            return true;
        };
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let Some(given) = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
            .map(|v| &v[7..])
        else {
            return false;
        };
        let expected = blake3::hash(token.as_bytes());
        let given = blake3::hash(given.trim_ascii());
        expected.as_bytes().ct_eq(given.as_bytes()).into()
    }
}

/// The live [`Access`], shared by the admin API and whoever reloads it.
pub type SharedAccess = Arc<ArcSwap<Access>>;

/// What the admin API may ask of the gateway.
pub trait Control: Send + Sync + 'static {
    /// Forget the cached pages `target` names.
    fn purge(&self, target: PurgeTarget<'_>) -> impl Future<Output = ()> + Send;
    fn readiness(&self) -> Readiness;
    /// The Prometheus text exposition, with state gauges read now.
    fn metrics_text(&self) -> impl Future<Output = String> + Send;
    /// Reload the configuration.
    fn reload(&self) -> impl Future<Output = ReloadAnswer> + Send;
}

/// The admin API over a [`Control`]. Cheap to clone.
pub struct Admin<C> {
    control: Arc<C>,
    access: SharedAccess,
}

impl<C> Clone for Admin<C> {
    fn clone(&self) -> Self {
        Admin {
            control: self.control.clone(),
            access: self.access.clone(),
        }
    }
}

/// 401 with the challenge RFC 6750 asks for.
fn unauthorized() -> Response<Full<Bytes>> {
    let mut res = json(
        StatusCode::UNAUTHORIZED,
        detail_json("this admin endpoint requires Authorization: Bearer <admin token>"),
    );
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"pollgate-admin\""),
    );
    res
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
    pub fn new(control: Arc<C>, access: SharedAccess) -> Self {
        Admin { control, access }
    }

    /// Answer one admin request (its body, if any, is ignored).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let guarded = match (req.method(), path) {
            (&Method::GET | &Method::HEAD, "/healthz" | "/readyz") => false,
            (&Method::GET | &Method::HEAD, "/metrics") => self.access.load().protect_metrics,
            _ => true,
        };
        if guarded && !self.access.load().admits(&req) {
            return unauthorized();
        }
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
            (&Method::POST, "/reload") => match self.control.reload().await {
                ReloadAnswer::Reloaded(body) => json(StatusCode::OK, Bytes::from(body.to_string())),
                ReloadAnswer::Invalid(errors) => json(
                    StatusCode::BAD_REQUEST,
                    Bytes::from(
                        serde_json::json!({
                            "detail": "invalid configuration: nothing was changed",
                            "errors": errors,
                        })
                        .to_string(),
                    ),
                ),
                ReloadAnswer::Unsupported => json(
                    StatusCode::NOT_FOUND,
                    detail_json("this gateway was not started from a configuration it can re-read"),
                ),
            },
            (_, "/healthz" | "/readyz" | "/metrics" | "/cache" | "/reload") => json(
                StatusCode::METHOD_NOT_ALLOWED,
                detail_json("method not allowed"),
            ),
            _ => json(StatusCode::NOT_FOUND, detail_json("not found")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: Option<&str>) -> Request<()> {
        let mut req = Request::new(());
        if let Some(v) = value {
            req.headers_mut().insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("header"),
            );
        }
        req
    }

    #[test]
    fn the_token_is_checked_whole_and_the_scheme_in_any_case() {
        let access = Access {
            token: Some(AdminToken::new("s3cret")),
            protect_metrics: true,
        };
        assert!(access.admits(&with_auth(Some("Bearer s3cret"))));
        assert!(access.admits(&with_auth(Some("bearer s3cret"))));
        for wrong in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("s3cret"),
            Some("Basic s3cret"),
            Some("Bearer "),
        ] {
            assert!(!access.admits(&with_auth(wrong)), "{wrong:?}");
        }
        assert!(
            Access::default().admits(&with_auth(None)),
            "no token, nothing to check"
        );
    }
}
