//! `/_sim/...`: steer the simulation over HTTP (for curl users, out-of-process load tests and the
//! SDK suites). These requests are not recorded, not counted, and never delayed or faulted.
//! `sim/README.md` lists every endpoint.

use std::time::Duration;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use crate::batches::{wall_clock_micros, Batch, BatchStatus};
use crate::response::{detail, drain_body, json, method_not_allowed, not_found, SimResponse};
use crate::{Fault, FaultRule, JobStatus, RouteSet, State};

pub(crate) async fn handle(state: &State, req: Request<Incoming>) -> SimResponse {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let params: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    // Control calls may carry a body (curl -d); drain it so the connection stays usable.
    let _ = drain_body(req.into_body(), |_| {}).await;
    let param = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let ok = |state: &State| json(StatusCode::OK, state.stats_json().to_string());
    let bad = |msg: &str| detail(StatusCode::BAD_REQUEST, msg);

    match (method, path.as_str()) {
        (Method::GET, "/_sim/stats") => ok(state),
        (Method::POST, "/_sim/reset") => {
            state.reset_observations();
            ok(state)
        }
        (Method::DELETE, "/_sim/fault") => {
            state.set_fault(None, RouteSet::ALL);
            ok(state)
        }
        (Method::POST, "/_sim/fault") => {
            let routes = RouteSet::parse(param("routes").unwrap_or("all"));
            match (fault_from_params(&param), routes) {
                (Ok(rule), Ok(routes)) => {
                    state.set_fault(Some(rule), routes);
                    ok(state)
                }
                (Err(msg), _) | (_, Err(msg)) => bad(&msg),
            }
        }
        (Method::POST, "/_sim/batch-step") => match param("ms").map(str::parse::<u64>) {
            Some(Ok(ms)) => {
                let step = (ms > 0).then(|| Duration::from_millis(ms));
                state.batches().set_step(step);
                ok(state)
            }
            _ => bad("ms must be a non-negative integer (0 stops timed steps)"),
        },
        (Method::POST, "/_sim/batches") => add_batch(state, &param),
        (m, p) if p.starts_with("/_sim/batches/") => {
            let Some((batch_id, action)) = p["/_sim/batches/".len()..].rsplit_once('/') else {
                return not_found();
            };
            if m != Method::POST {
                return method_not_allowed();
            }
            batch_action(state, batch_id, action, &param)
        }
        (Method::POST, "/_sim/latency") => match param("ms").map(str::parse::<u64>) {
            Some(Ok(ms)) => {
                state.set_latency(Duration::from_millis(ms));
                ok(state)
            }
            _ => bad("ms must be a non-negative integer"),
        },
        (m, p) if p.starts_with("/_sim/jobs/") => {
            let rest = &p["/_sim/jobs/".len()..];
            let Some((job_id, action)) = rest.rsplit_once('/') else {
                return not_found();
            };
            if m != Method::POST {
                return method_not_allowed();
            }
            let mut world = state.world_mut();
            let Some(job) = world.jobs.get_mut(job_id) else {
                return detail(StatusCode::NOT_FOUND, "Job not found");
            };
            match action {
                "mutate" => job.mutate(),
                "status" => match param("status").and_then(JobStatus::parse) {
                    Some(st) => job.status = st,
                    None => return bad("status must be a job status"),
                },
                _ => return not_found(),
            }
            json(StatusCode::OK, job.render_status())
        }
        (
            _,
            "/_sim/stats" | "/_sim/reset" | "/_sim/fault" | "/_sim/latency" | "/_sim/batch-step"
            | "/_sim/batches",
        ) => method_not_allowed(),
        _ => not_found(),
    }
}

/// `POST /_sim/batches?token=&id=&results=&status=`: adds (or replaces) a batch.
fn add_batch<'a>(state: &State, param: &impl Fn(&str) -> Option<&'a str>) -> SimResponse {
    let (Some(token), Some(id)) = (param("token"), param("id")) else {
        return detail(StatusCode::BAD_REQUEST, "give token= and id=");
    };
    let results = match param("results").map(str::parse::<usize>) {
        None => crate::CREATED_BATCH_FILES,
        Some(Ok(n)) => n,
        Some(Err(_)) => return detail(StatusCode::BAD_REQUEST, "results must be an integer"),
    };
    let status = match param("status").map(parse_batch_status) {
        None => BatchStatus::Pending,
        Some(Some(st)) => st,
        Some(None) => return detail(StatusCode::BAD_REQUEST, "status must be a batch status"),
    };
    let tenant = state.world_mut().ensure_tenant(token);
    let batch = Batch::new(id, &tenant, results, status, wall_clock_micros());
    let body = batch.to_json(false);
    state.batches().insert(batch);
    json(StatusCode::OK, body)
}

/// Control calls are typed by people: any case will do.
fn parse_batch_status(s: &str) -> Option<BatchStatus> {
    BatchStatus::parse(&s.to_ascii_uppercase())
}

/// `POST /_sim/batches/{id}/{mutate|advance|status}`.
fn batch_action<'a>(
    state: &State,
    batch_id: &str,
    action: &str,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> SimResponse {
    let mut batches = state.batches();
    let Some(batch) = batches.get_mut(batch_id) else {
        return detail(StatusCode::NOT_FOUND, "Batch not found");
    };
    let now = wall_clock_micros();
    match action {
        "mutate" => batch.mutate(now),
        "advance" => {
            batch.advance(now);
        }
        "status" => match param("status").and_then(parse_batch_status) {
            Some(st) => batch.set_status(st, now),
            None => return detail(StatusCode::BAD_REQUEST, "status must be a batch status"),
        },
        _ => return not_found(),
    }
    json(StatusCode::OK, batch.to_json(false))
}

fn fault_from_params<'a>(param: &impl Fn(&str) -> Option<&'a str>) -> Result<FaultRule, String> {
    let fault = if let Some(status) = param("status") {
        let status = status
            .parse::<u16>()
            .ok()
            .filter(|s| (100..=999).contains(s))
            .ok_or("status must be a number in 100..=999")?;
        Fault::Status {
            status,
            retry_after: param("retry_after").map(str::to_owned),
            retry_after_ms: param("retry_after_ms").map(str::to_owned),
        }
    } else if let Some(reset) = param("reset") {
        match reset {
            "before" => Fault::ResetBeforeResponse,
            "mid" => Fault::ResetMidBody,
            _ => return Err("reset must be before or mid".to_owned()),
        }
    } else if let Some(ms) = param("delay_ms") {
        let ms = ms
            .parse::<u64>()
            .map_err(|_| "delay_ms must be an integer")?;
        Fault::Delay(Duration::from_millis(ms))
    } else {
        return Err("give one of status=, reset=before|mid, delay_ms= (and optionally routes=polls|all|v1_items,v2_get,...)".to_owned());
    };
    let remaining = match param("times") {
        None => None,
        Some(t) => Some(t.parse::<usize>().map_err(|_| "times must be an integer")?),
    };
    let only_item_lists = match param("only_item_lists") {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => return Err("only_item_lists must be true or false".to_owned()),
    };
    Ok(FaultRule {
        fault,
        remaining,
        only_token: param("only_token").map(str::to_owned),
        only_item_lists,
    })
}
