//! What reached the simulated upstream: the counts most tests assert on.

use pollgate_sim::{Fault, FaultRule, SimUpstream};

use super::ITEMS;

/// Item-list requests the sim saw for `job` (GET/HEAD of its items path).
pub fn upstream_item_requests(sim: &SimUpstream, job: &str) -> Vec<pollgate_sim::RecordedRequest> {
    let path = format!("{ITEMS}/{job}/items");
    sim.requests()
        .into_iter()
        .filter(|r| r.path == path)
        .collect()
}

/// Item-list requests that reached the upstream with this credential (any job, any query).
pub fn item_requests_of(sim: &SimUpstream, token: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path.ends_with("/items") && r.token.as_deref() == Some(token))
        .count()
}

/// Item-list requests that reached the upstream for exactly this job and (canonical) query.
pub fn key_requests(sim: &SimUpstream, job: &str, query: &str) -> usize {
    // Compared in canonical form, which is what pollgate sends.
    let items = &pollgate::route::ROUTES[0];
    let canonical = pollgate::route::canonicalize(items.params, Some(query)).expect("valid query");
    upstream_item_requests(sim, job)
        .iter()
        .filter(|r| r.query.as_deref() == Some(canonical.as_str()))
        .count()
}

/// A fault rule: the upstream answers `token`'s item lists 429 with `Retry-After: retry_after`
/// until cleared.
pub fn rate_limited(token: &str, retry_after: &str) -> FaultRule {
    FaultRule {
        fault: Fault::Status {
            status: 429,
            retry_after: Some(retry_after.into()),
            retry_after_ms: None,
        },
        remaining: None,
        only_token: Some(token.into()),
        only_item_lists: true,
    }
}
