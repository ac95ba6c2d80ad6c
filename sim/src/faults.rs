//! Injected failures: the misbehaviours a gateway must survive (rate limits, resets, slowness).
//!
//! One rule is active at a time. It is checked per request after the request is recorded and the
//! base latency has elapsed, so tests can see that a failed request did reach the upstream.
//!
//! A rule applies to a set of [`Route`]s: every route when installed with
//! [`crate::SimUpstream::set_fault`], the given ones with [`crate::SimUpstream::set_fault_on`]
//! (e.g. [`RouteSet::POLLS`]: the reads pollers repeat, v1 and v2 alike). The rule's own
//! `only_item_lists` narrows it further to v1 item lists, as it always has.

use std::time::Duration;

use crate::routes::{Route, RouteSet};

/// What to do instead of (or before) answering normally.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer `status` with a JSON `{"detail": ...}` body; the retry headers are set when `Some`.
    Status {
        status: u16,
        retry_after: Option<String>,
        retry_after_ms: Option<String>,
    },
    /// Drop the connection without answering.
    ResetBeforeResponse,
    /// Send 200 headers with a Content-Length, part of the body, then abort the connection.
    ResetMidBody,
    /// Wait this long before answering normally.
    Delay(Duration),
}

/// A fault plus which requests it hits and for how long.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub fault: Fault,
    /// `None`: until cleared; `Some(n)`: the next `n` matching requests.
    pub remaining: Option<usize>,
    /// Only requests carrying exactly this credential (bearer key or session cookie).
    pub only_token: Option<String>,
    /// Only `GET`/`HEAD` v1 item-list requests ([`Route::V1Items`]).
    pub only_item_lists: bool,
}

impl FaultRule {
    /// A rule hitting every request until cleared.
    pub fn always(fault: Fault) -> Self {
        FaultRule {
            fault,
            remaining: None,
            only_token: None,
            only_item_lists: false,
        }
    }

    fn matches(&self, token: Option<&str>, route: Route) -> bool {
        if self.only_item_lists && route != Route::V1Items {
            return false;
        }
        match &self.only_token {
            Some(want) => token == Some(want.as_str()),
            None => true,
        }
    }
}

/// The installed rule and the routes it applies to.
#[derive(Clone, Debug)]
pub(crate) struct ActiveFault {
    pub(crate) rule: FaultRule,
    pub(crate) routes: RouteSet,
}

/// Takes the fault to apply to this request, if any, consuming one use of a counted rule and
/// clearing it when exhausted.
pub(crate) fn take_fault(
    slot: &mut Option<ActiveFault>,
    token: Option<&str>,
    route: Route,
) -> Option<Fault> {
    let active = slot.as_mut()?;
    if !active.routes.contains(route) || !active.rule.matches(token, route) {
        return None;
    }
    let rule = &mut active.rule;
    let fault = rule.fault.clone();
    if let Some(n) = rule.remaining.as_mut() {
        if *n == 0 {
            *slot = None;
            return None;
        }
        *n -= 1;
        if *n == 0 {
            *slot = None;
        }
    }
    Some(fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(routes: RouteSet, only_item_lists: bool, remaining: Option<usize>) -> ActiveFault {
        ActiveFault {
            rule: FaultRule {
                fault: Fault::ResetBeforeResponse,
                remaining,
                only_token: None,
                only_item_lists,
            },
            routes,
        }
    }

    #[test]
    fn routes_and_only_item_lists_both_narrow() {
        let mut slot = Some(active(RouteSet::POLLS, false, None));
        assert!(take_fault(&mut slot, None, Route::V2Get).is_some());
        assert!(take_fault(&mut slot, None, Route::V1Status).is_some());
        assert!(take_fault(&mut slot, None, Route::V2Cancel).is_none());
        let mut slot = Some(active(RouteSet::POLLS, true, None));
        assert!(take_fault(&mut slot, None, Route::V2Get).is_none());
        assert!(take_fault(&mut slot, None, Route::V1Items).is_some());
    }

    #[test]
    fn counted_rules_clear_themselves() {
        let mut slot = Some(active(RouteSet::ALL, false, Some(2)));
        assert!(take_fault(&mut slot, None, Route::Other).is_some());
        assert!(take_fault(&mut slot, None, Route::Other).is_some());
        assert!(slot.is_none());
        assert!(take_fault(&mut slot, None, Route::Other).is_none());
    }
}
