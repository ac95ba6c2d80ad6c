//! What is special about the item-list endpoint.
//!
//! `GET /api/v1/beta/batch-processing/{job_id}/items` is the one route pollgate
//! caches. This module decides whether a request is that route ([`match_items_path`]),
//! validates and canonicalizes its query the way the API would ([`query`]), and
//! hands the canonical query to the flow, which keys it by credential ([`crate::key`]).

pub mod query;

pub use query::{canonicalize, CanonicalQuery, FieldError, QueryRejection};

/// Prefix shared by every batch-processing route.
pub const BATCH_PREFIX: &str = "/api/v1/beta/batch-processing/";

/// The job id of an item-list path, exactly as it appears in the path.
pub fn match_items_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(BATCH_PREFIX)?;
    let job = rest.strip_suffix("/items")?;
    (!job.is_empty() && !job.contains('/')).then_some(job)
}

/// The job a batch-processing path belongs to: `{job_id}` or anything below it.
pub fn job_of_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(BATCH_PREFIX)?;
    let job = rest.split('/').next()?;
    (!job.is_empty()).then_some(job)
}

/// The job id of a job-status path (`GET /api/v1/beta/batch-processing/{job_id}`).
pub fn match_job_status_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(BATCH_PREFIX)?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_path() {
        assert_eq!(
            match_items_path("/api/v1/beta/batch-processing/j1/items"),
            Some("j1")
        );
        assert_eq!(
            match_items_path("/api/v1/beta/batch-processing//items"),
            None
        );
        assert_eq!(
            match_items_path("/api/v1/beta/batch-processing/a/b/items"),
            None
        );
        assert_eq!(
            match_items_path("/api/v1/beta/batch-processing/j1/items/"),
            None
        );
        assert_eq!(match_items_path("/api/v1/beta/batch-processing/j1"), None);
    }

    #[test]
    fn job_paths() {
        assert_eq!(
            job_of_path("/api/v1/beta/batch-processing/j1/cancel"),
            Some("j1")
        );
        assert_eq!(job_of_path("/api/v1/beta/batch-processing/j1"), Some("j1"));
        assert_eq!(job_of_path("/api/v1/beta/batch-processing/"), None);
        assert_eq!(
            match_job_status_path("/api/v1/beta/batch-processing/j1"),
            Some("j1")
        );
        assert_eq!(
            match_job_status_path("/api/v1/beta/batch-processing/j1/items"),
            None
        );
    }
}
