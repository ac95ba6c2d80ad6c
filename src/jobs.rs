//! Job-aware freshness: which jobs are finished, learned from the traffic itself.
//!
//! pollgate sees the job-status responses that pass through it. Once the
//! upstream says a job is completed, failed or cancelled, its item pages stop
//! changing, so they are cached for `cache.terminal_ttl` instead of the short
//! polling TTL. Nothing is guessed: only a status the upstream reported counts.

use std::sync::Arc;
use std::time::Duration;

/// How many finished jobs are remembered, and for how long.
const MAX_TRACKED_JOBS: u64 = 100_000;
const REMEMBER_FOR: Duration = Duration::from_secs(24 * 3600);

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

    /// Record what a job-status response said about `job`.
    pub fn observe(&self, job: &str, terminal: bool) {
        if terminal {
            self.terminal.insert(Arc::from(job), ());
        } else {
            self.terminal.invalidate(job);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_and_unlearns_terminal_jobs() {
        let t = JobTracker::default();
        assert!(!t.is_terminal("j"));
        t.observe("j", true);
        assert!(t.is_terminal("j"));
        t.observe("j", false);
        assert!(!t.is_terminal("j"));
    }
}
