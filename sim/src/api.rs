//! The batch-processing endpoints the gateway fronts: item list, job status, cancel.
//!
//! Order of checks follows FastAPI: authentication dependency (401), then query validation
//! (422), then the handler's own lookup (404 for unknown jobs and other tenants' jobs alike, so
//! tenants cannot probe each other's job ids).

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use crate::handler::{
    detail, drain_body, is_read, json, method_not_allowed, not_found, SimResponse,
};
use crate::query::parse_items_query;
use crate::State;

/// Path prefix of every batch-processing endpoint.
pub(crate) const PREFIX: &str = "/api/v1/beta/batch-processing/";

/// Whether this is an item-list read, the request the gateway exists to cache.
pub(crate) fn is_item_list(method: &Method, path: &str) -> bool {
    is_read(method)
        && path
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_suffix("/items"))
            .is_some_and(|job| !job.is_empty() && !job.contains('/'))
}

enum Endpoint<'a> {
    Items(&'a str),
    Status(&'a str),
    Cancel(&'a str),
}

fn parse_endpoint(rest: &str) -> Option<Endpoint<'_>> {
    let mut parts = rest.split('/');
    let job = parts.next().filter(|j| !j.is_empty())?;
    let endpoint = match parts.next() {
        None => Endpoint::Status(job),
        Some("items") => Endpoint::Items(job),
        Some("cancel") => Endpoint::Cancel(job),
        Some(_) => return None,
    };
    parts.next().is_none().then_some(endpoint)
}

pub(crate) async fn handle(
    state: &State,
    req: Request<Incoming>,
    rest: &str,
    token: Option<&str>,
) -> SimResponse {
    let Some(endpoint) = parse_endpoint(rest) else {
        return not_found();
    };
    let allowed = match endpoint {
        Endpoint::Items(_) | Endpoint::Status(_) => is_read(req.method()),
        Endpoint::Cancel(_) => req.method() == Method::POST,
    };
    if !allowed {
        return method_not_allowed();
    }
    let Some(token) = token else {
        return detail(StatusCode::UNAUTHORIZED, "Not authenticated");
    };
    let Some(tenant) = state.world().tenants.get(token).cloned() else {
        return detail(StatusCode::UNAUTHORIZED, "Invalid API key");
    };
    let job_missing = || detail(StatusCode::NOT_FOUND, "Job not found");
    match endpoint {
        Endpoint::Items(job_id) => {
            let query = match parse_items_query(req.uri().query()) {
                Ok(q) => q,
                Err(errors) => {
                    let body = serde_json::json!({ "detail": errors });
                    return json(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        serde_json::to_vec(&body).unwrap_or_default(),
                    );
                }
            };
            let body = state
                .world()
                .job_for(&tenant, job_id)
                .map(|job| job.render_items(query.offset, query.limit, query.status));
            match body {
                Some(body) => json(StatusCode::OK, body),
                None => job_missing(),
            }
        }
        Endpoint::Status(job_id) => match state.world().job_for(&tenant, job_id) {
            Some(job) => json(StatusCode::OK, job.render_status()),
            None => job_missing(),
        },
        Endpoint::Cancel(job_id) => {
            // The SDK sends a JSON body; read it so the connection stays reusable, then ignore it.
            if drain_body(req.into_body(), |_| {}).await.is_err() {
                return detail(StatusCode::BAD_REQUEST, "Could not read request body");
            }
            let body = state.world_mut().job_for_mut(&tenant, job_id).map(|job| {
                job.cancel();
                job.render_status()
            });
            match body {
                Some(body) => json(StatusCode::OK, body),
                None => job_missing(),
            }
        }
    }
}
