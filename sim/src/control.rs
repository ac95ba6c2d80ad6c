//! `/_sim/...`: steer the simulation over HTTP (for curl users and out-of-process load tests).
//! These requests are not recorded, not counted, and never delayed or faulted.

use std::time::Duration;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use crate::handler::{detail, drain_body, json, method_not_allowed, not_found, SimResponse};
use crate::{Fault, FaultRule, JobStatus, State};

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
            state.set_fault(None);
            ok(state)
        }
        (Method::POST, "/_sim/fault") => match fault_from_params(&param) {
            Ok(rule) => {
                state.set_fault(Some(rule));
                ok(state)
            }
            Err(msg) => bad(&msg),
        },
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
        (_, "/_sim/stats" | "/_sim/reset" | "/_sim/fault" | "/_sim/latency") => {
            method_not_allowed()
        }
        _ => not_found(),
    }
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
        return Err("give one of status=, reset=before|mid, delay_ms=".to_owned());
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
