//! Injected failures: the misbehaviours a gateway must survive (rate limits, resets, slowness).
//!
//! One rule is active at a time. It is checked per request after the request is recorded and the
//! base latency has elapsed, so tests can see that a failed request did reach the upstream.

use std::time::Duration;

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
    /// Only `GET`/`HEAD` item-list requests.
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

    fn matches(&self, token: Option<&str>, is_item_list: bool) -> bool {
        if self.only_item_lists && !is_item_list {
            return false;
        }
        match &self.only_token {
            Some(want) => token == Some(want.as_str()),
            None => true,
        }
    }
}

/// Takes the fault to apply to this request, if any, consuming one use of a counted rule and
/// clearing it when exhausted.
pub(crate) fn take_fault(
    slot: &mut Option<FaultRule>,
    token: Option<&str>,
    is_item_list: bool,
) -> Option<Fault> {
    let rule = slot.as_mut()?;
    if !rule.matches(token, is_item_list) {
        return None;
    }
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
