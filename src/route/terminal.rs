//! Reading from a response body whether its job or batch is finished.
//!
//! A finished job's or batch's pages stop changing, so they earn the longer
//! `cache.terminal_ttl`. Only what the response itself says counts (or, for
//! v1 item pages, what a job-status response said about the job): nothing is
//! guessed. Bodies are scanned with serde, skipping every field but the status,
//! so a large body costs one pass and no tree.

use std::borrow::Cow;

use serde::Deserialize;

/// Where a route's body names the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusAt {
    /// `{"status": "..."}` (v2 batches).
    TopLevel,
    /// `{"job": {"status": "..."}}` (v1 job status).
    InJob,
}

#[derive(Deserialize)]
struct TopLevel<'a> {
    #[serde(borrow)]
    status: Cow<'a, str>,
}

#[derive(Deserialize)]
struct InJob<'a> {
    #[serde(borrow)]
    job: TopLevel<'a>,
}

impl StatusAt {
    /// The status the body names, if it is JSON of the expected shape.
    pub fn read(self, body: &[u8]) -> Option<String> {
        let status = match self {
            StatusAt::TopLevel => serde_json::from_slice::<TopLevel<'_>>(body).ok()?.status,
            StatusAt::InJob => serde_json::from_slice::<InJob<'_>>(body).ok()?.job.status,
        };
        Some(status.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_wherever_the_route_puts_it() {
        assert_eq!(
            StatusAt::TopLevel.read(br#"{"id":"b","results":[{"x":1}],"status":"COMPLETED"}"#),
            Some("COMPLETED".into())
        );
        assert_eq!(
            StatusAt::InJob
                .read(br#"{"job":{"id":"j","status":"running"},"progress_percentage":1.5}"#),
            Some("running".into())
        );
        assert_eq!(StatusAt::InJob.read(br#"{"status":"completed"}"#), None);
        assert_eq!(StatusAt::TopLevel.read(b"not json"), None);
        // Escapes are decoded.
        assert_eq!(
            StatusAt::TopLevel.read(br#"{"status":"COMPL\u0045TED"}"#),
            Some("COMPLETED".into())
        );
    }
}
