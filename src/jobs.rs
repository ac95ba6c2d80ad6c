//! Job-aware freshness: which jobs are finished, learned from the traffic itself.
//!
//! pollgate sees the job-status responses that pass through it. Once the
//! upstream says a job is completed, failed or cancelled, its item pages stop
//! changing, so they are cached for `cache.terminal_ttl` instead of the short
//! polling TTL. Nothing is guessed: only a status the upstream reported counts.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// How many finished jobs are remembered, and for how long.
const MAX_TRACKED_JOBS: u64 = 100_000;
const REMEMBER_FOR: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
struct StatusBody {
    job: JobBody,
}

#[derive(Deserialize)]
struct JobBody {
    status: String,
}

/// Statuses after which a job's items no longer change.
pub fn is_terminal_status(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

pub struct JobTracker {
    terminal: moka::sync::Cache<Arc<str>, ()>,
}

impl Default for JobTracker {
    fn default() -> Self {
        JobTracker {
            terminal: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED_JOBS)
                .time_to_live(REMEMBER_FOR)
                .build(),
        }
    }
}

impl JobTracker {
    pub fn is_terminal(&self, job: &str) -> bool {
        self.terminal.contains_key(job)
    }

    /// Learn from a job-status response body (`{"job": {"status": ...}}`).
    /// Returns the status read, if the body had one.
    pub fn observe_status(&self, job: &str, body: &[u8]) -> Option<String> {
        let parsed: StatusBody = serde_json::from_slice(body).ok()?;
        if is_terminal_status(&parsed.job.status) {
            self.terminal.insert(Arc::from(job), ());
        } else {
            self.terminal.invalidate(job);
        }
        Some(parsed.job.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_terminal_jobs() {
        let t = JobTracker::default();
        assert!(!t.is_terminal("j"));
        t.observe_status(
            "j",
            br#"{"job":{"id":"j","status":"running"},"progress_percentage":1.0}"#,
        );
        assert!(!t.is_terminal("j"));
        t.observe_status("j", br#"{"job":{"id":"j","status":"completed"}}"#);
        assert!(t.is_terminal("j"));
        assert_eq!(t.observe_status("j", b"not json"), None);
        assert!(t.is_terminal("j"));
    }
}
