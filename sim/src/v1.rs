//! The v1 batch-processing routes (`client.beta.batch` in the SDKs up to 2.13): item list, job
//! status, cancel.
//!
//! Order of checks follows FastAPI: authentication dependency (401), then query validation
//! (422), then the handler's own lookup (404 for unknown jobs, other tenants' jobs and jobs
//! outside the `project_id`/`organization_id` given, alike, so tenants cannot probe each other's
//! job ids).

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use crate::error::{ApiError, ApiResult};
use crate::query::{parse_items_query, parse_scope_query, Scope};
use crate::response::{drain_body, is_read, json};
use crate::tenants::authenticate;
use crate::tenants::TenantScope;
use crate::State;

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

const JOB_MISSING: ApiError = ApiError::NotFound("Job not found");

/// `rest` is the path after the v1 prefix.
pub(crate) async fn handle(
    state: &State,
    req: Request<Incoming>,
    rest: &str,
    token: Option<&str>,
) -> ApiResult {
    let endpoint = parse_endpoint(rest).ok_or(ApiError::NotFound("Not Found"))?;
    let allowed = match endpoint {
        Endpoint::Items(_) | Endpoint::Status(_) => is_read(req.method()),
        Endpoint::Cancel(_) => req.method() == Method::POST,
    };
    if !allowed {
        return Err(ApiError::MethodNotAllowed);
    }
    let tenant = authenticate(state, token)?;
    let check_scope = |scope: Scope| {
        TenantScope::of(&tenant)
            .admits(scope.project_id, scope.organization_id)
            .then_some(())
            .ok_or(JOB_MISSING)
    };
    let body = match endpoint {
        Endpoint::Items(job_id) => {
            let query = parse_items_query(req.uri().query())?;
            check_scope(query.scope)?;
            state
                .world()
                .job_for(&tenant, job_id)
                .map(|job| job.render_items(query.offset, query.limit, query.status))
        }
        Endpoint::Status(job_id) => {
            check_scope(parse_scope_query(req.uri().query())?)?;
            state
                .world()
                .job_for(&tenant, job_id)
                .map(|job| job.render_status())
        }
        Endpoint::Cancel(job_id) => {
            let scope = parse_scope_query(req.uri().query());
            // The SDK sends a JSON body (`reason`, optional); read it so the connection stays
            // reusable, then ignore it.
            drain_body(req.into_body(), |_| {})
                .await
                .map_err(|_| ApiError::BadRequest("Could not read request body"))?;
            check_scope(scope?)?;
            state.world_mut().job_for_mut(&tenant, job_id).map(|job| {
                let changed = job.cancel();
                job.render_cancel(changed)
            })
        }
    };
    body.map(|body| json(StatusCode::OK, body))
        .ok_or(JOB_MISSING)
}
