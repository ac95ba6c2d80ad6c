//! The v2 batches routes (`client.batches` in the SDKs from Python 2.14 / TypeScript 2.15): get,
//! list, cancel, create.
//!
//! Order of checks, as in v1: authentication (401), validation of the query (and body) (422), the
//! handler's own checks (400 for a negative `page_size` or a bad `page_token`), then the lookup
//! (404 for an unknown batch, another tenant's, or one outside the `project_id` /
//! `organization_id` given).

use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::batches::{wall_clock_micros, Batch, BatchStatus, ListFilter};
use crate::error::{ApiError, ApiResult};
use crate::pydantic::{choice_error, datetime, int, FieldError};
use crate::query::{parse_scope_query, QueryParams, Scope};
use crate::response::{is_read, json};
use crate::routes::V2_BATCHES;
use crate::tenants::authenticate;
use crate::tenants::TenantScope;
use crate::{create_request, cursor, State};

/// List page size when `page_size` is absent or 0 (no default is published; the v1 list's is 100).
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page served; larger asks are served this many (no bound is published).
pub const MAX_PAGE_SIZE: usize = 1000;
/// Largest create body read; the real one is a few hundred bytes.
const MAX_CREATE_BODY: usize = 1024 * 1024;

enum Endpoint<'a> {
    List,
    Create,
    Get(&'a str),
    Cancel(&'a str),
}

/// The endpoint for this method and path, or the 404/405 to answer.
fn endpoint<'a>(method: &Method, path: &'a str) -> Result<Endpoint<'a>, ApiError> {
    let read = is_read(method);
    let post = method == Method::POST;
    if path == V2_BATCHES {
        return match () {
            () if read => Ok(Endpoint::List),
            () if post => Ok(Endpoint::Create),
            () => Err(ApiError::MethodNotAllowed),
        };
    }
    let rest = path
        .strip_prefix(V2_BATCHES)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or(ApiError::NotFound("Not Found"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [id] if !id.is_empty() && read => Ok(Endpoint::Get(id)),
        [id, "cancel"] if !id.is_empty() && post => Ok(Endpoint::Cancel(id)),
        [id] | [id, "cancel"] if !id.is_empty() => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::NotFound("Not Found")),
    }
}

const BATCH_MISSING: ApiError = ApiError::NotFound("Batch not found");
const UNREADABLE_BODY: ApiError = ApiError::BadRequest("Could not read request body");

pub(crate) async fn handle(
    state: &State,
    req: Request<Incoming>,
    token: Option<&str>,
) -> ApiResult {
    let path = req.uri().path().to_owned();
    let endpoint = endpoint(req.method(), &path)?;
    let tenant = authenticate(state, token)?;
    let scope_of_tenant = TenantScope::of(&tenant);
    let in_scope = |s: Scope| scope_of_tenant.admits(s.project_id, s.organization_id);
    match endpoint {
        Endpoint::Get(id) => {
            let params = QueryParams::parse(req.uri().query());
            // `expand` is a list: `expand=a&expand=b`. Only `results` means anything; other
            // values, and `results,x` (one value, not a list), are accepted and ignored.
            let with_results = params.all("expand").contains(&"results");
            let mut errors = Vec::new();
            let scope = params.scope(&mut errors);
            if !errors.is_empty() {
                return Err(errors.into());
            }
            if !in_scope(scope) {
                return Err(BATCH_MISSING);
            }
            let body = state
                .batches()
                .get_for(&tenant, id)
                .map(|b| b.to_json(with_results));
            body.map(|body| json(StatusCode::OK, body))
                .ok_or(BATCH_MISSING)
        }
        Endpoint::List => list(state, &tenant, req.uri().query(), &in_scope),
        Endpoint::Cancel(id) => {
            let scope = parse_scope_query(req.uri().query());
            // The SDK sends no body; read whatever came so the connection stays reusable.
            read_body(req.into_body()).await.ok_or(UNREADABLE_BODY)?;
            if !in_scope(scope?) {
                return Err(BATCH_MISSING);
            }
            let body = state.batches().get_for(&tenant, id).map(|b| {
                // A finished batch is answered as it is; see the README.
                b.cancel(wall_clock_micros());
                b.to_json(false)
            });
            body.map(|body| json(StatusCode::OK, body))
                .ok_or(BATCH_MISSING)
        }
        Endpoint::Create => {
            let query = req.uri().query().map(str::to_owned);
            let body = read_body(req.into_body()).await.ok_or(UNREADABLE_BODY)?;
            // FastAPI reports query errors before body errors.
            let mut errors = Vec::new();
            let scope = QueryParams::parse(query.as_deref()).scope(&mut errors);
            let request = create_request::parse(&body)
                .map_err(|e| errors.extend(e))
                .ok();
            let Some(request) = request.filter(|_| errors.is_empty()) else {
                return Err(errors.into());
            };
            if !in_scope(scope) {
                return Err(ApiError::NotFound("Project not found"));
            }
            let mut batches = state.batches();
            let id = batches.next_id();
            let mut batch = Batch::new(
                &id,
                &tenant,
                crate::batches::CREATED_BATCH_FILES,
                BatchStatus::Pending,
                wall_clock_micros(),
            );
            batch.source_directory_id = request.source_directory_id;
            batch.job_type = request.job_type;
            batch.configuration_id = request.configuration_id;
            let body = batch.to_json(false);
            batches.insert(batch);
            Ok(json(StatusCode::CREATED, body))
        }
    }
}

/// Reads a request body up to [`MAX_CREATE_BODY`].
async fn read_body(body: Incoming) -> Option<bytes::Bytes> {
    Limited::new(body, MAX_CREATE_BODY)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes())
}

/// The list's query, in the order the API declares it.
struct ListQuery {
    scope: Scope,
    page_size: Option<i64>,
    page_token: Option<String>,
    filter: ListFilter,
}

fn parse_list_query(raw: Option<&str>) -> Result<ListQuery, Vec<FieldError>> {
    let params = QueryParams::parse(raw);
    let mut errors = Vec::new();
    let scope = params.scope(&mut errors);
    let page_size = params.last("page_size").and_then(|s| {
        int::query_param("page_size", s, None, None)
            .map_err(|e| errors.push(e))
            .ok()
    });
    let page_token = params.last("page_token").map(str::to_owned);
    let mut time = |name: &str| {
        params.last(name).and_then(|s| {
            datetime::query_param(name, s)
                .map_err(|e| errors.push(e))
                .ok()
        })
    };
    let after = time("created_at_on_or_after");
    let before = time("created_at_on_or_before");
    let status = params.last("status").and_then(|s| {
        BatchStatus::parse(s).or_else(|| {
            let names = BatchStatus::ALL.map(BatchStatus::as_str);
            errors.push(choice_error("literal_error", "status", &names, s));
            None
        })
    });
    let filter = ListFilter {
        status,
        source_directory_id: params.last("source_directory_id").map(str::to_owned),
        created_at_on_or_after: after,
        created_at_on_or_before: before,
    };
    if errors.is_empty() {
        Ok(ListQuery {
            scope,
            page_size,
            page_token,
            filter,
        })
    } else {
        Err(errors)
    }
}

fn list(
    state: &State,
    tenant: &str,
    raw_query: Option<&str>,
    in_scope: &dyn Fn(Scope) -> bool,
) -> ApiResult {
    let query = parse_list_query(raw_query)?;
    let size = match query.page_size {
        None | Some(0) => DEFAULT_PAGE_SIZE,
        Some(n) if n < 0 => return Err(ApiError::BadRequest("page_size must not be negative")),
        Some(n) => usize::try_from(n)
            .unwrap_or(MAX_PAGE_SIZE)
            .min(MAX_PAGE_SIZE),
    };
    let after = match query.page_token.as_deref() {
        None | Some("") => None,
        Some(token) => Some(
            cursor::decode(tenant, &query.filter, token)
                .ok_or(ApiError::BadRequest("Invalid page token"))?,
        ),
    };
    if !in_scope(query.scope) {
        return Ok(json(
            StatusCode::OK,
            r#"{"items":[],"next_page_token":null,"total_size":0}"#,
        ));
    }
    let mut batches = state.batches();
    let (page, total, next) = batches.page(tenant, &query.filter, after.as_ref(), size);
    let mut out = String::with_capacity(64 + page.len() * 420);
    out.push_str("{\"items\":[");
    for (i, b) in page.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        b.render(false, &mut out);
    }
    out.push_str("],\"next_page_token\":");
    match next {
        Some(pos) => {
            out.push('"');
            out.push_str(&cursor::encode(tenant, &query.filter, &pos));
            out.push('"');
        }
        None => out.push_str("null"),
    }
    out.push_str(&format!(",\"total_size\":{total}}}"));
    Ok(json(StatusCode::OK, out))
}
