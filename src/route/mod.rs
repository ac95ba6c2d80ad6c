//! The cacheable routes of the API, as one table.
//!
//! A cacheable route is an entry in [`table::ROUTES`], not a code path: the
//! method and path pattern (and which segment names the job or batch), the
//! query schema (each parameter's type, bounds, default, scalar or list),
//! where a terminal status is read from, and which writes invalidate it. The
//! request flow is the same for every entry, so adding a polling route is one
//! table entry plus its tests.
//!
//! Every documented parameter shapes the response, so every one is part of
//! the key; unknown parameters are kept too (in the key and upstream), since
//! pollgate cannot know they do not matter.

mod memo;
pub mod query;
pub mod table;
pub mod terminal;

use http::Method;

pub use query::{canonicalize, canonicalize_into, Arity, FieldError, Kind, Param, QueryRejection};
pub use table::ROUTES;
pub use terminal::StatusAt;

use crate::key::{ResourceId, ResourceKind};

impl Terminal {
    /// Whether a 200 body of this route says its job or batch is finished;
    /// `None` when the rule does not read bodies (or the body names no status).
    pub fn read(&self, body: &[u8]) -> Option<bool> {
        match self {
            Terminal::Body { at, values, .. } => {
                let status = at.read(body)?;
                Some(values.contains(&status.as_str()))
            }
            Terminal::Never | Terminal::KnownJob => None,
        }
    }
}

/// One path segment of a pattern.
#[derive(Debug, Clone, Copy)]
pub enum Seg {
    /// This exact text.
    Lit(&'static str),
    /// The job or batch id (any non-empty segment), as in the path.
    Id,
}

/// When a response's job or batch is finished, so its page gets `cache.terminal_ttl`.
#[derive(Debug, Clone, Copy)]
pub enum Terminal {
    /// Never: the page lists many jobs or batches.
    Never,
    /// Once a job-status response said the job is finished (v1 item pages).
    KnownJob,
    /// When this response's own body says so. `teaches_jobs`: the status also
    /// tells the job tracker about the job, for the `KnownJob` routes.
    Body {
        at: StatusAt,
        values: &'static [&'static str],
        teaches_jobs: bool,
    },
}

/// Which cached pages a successful write removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The pages of the job or batch the write names, on this route.
    SameResource,
    /// Every page of this route (e.g. every list page).
    WholeRoute,
}

/// A write that invalidates a route: any successful non-read request
/// (`POST`, `PUT`, `PATCH`, `DELETE`) to `below` or any path under it.
#[derive(Debug, Clone, Copy)]
pub struct Invalidation {
    pub below: &'static [Seg],
    pub scope: Scope,
}

/// A cacheable route.
#[derive(Debug)]
pub struct Route {
    /// Stable short name: the `route` label of metrics, the access log, and part of every key.
    pub name: &'static str,
    /// Matched by `GET` and `HEAD`.
    pub path: &'static [Seg],
    /// What the path's `Id` segment names.
    pub resource: Option<ResourceKind>,
    pub params: &'static [Param],
    pub terminal: Terminal,
    pub invalidated_by: &'static [Invalidation],
}

/// A request matched to a route.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'p> {
    pub route: &'static Route,
    /// The route's position in the table (for pre-resolved per-route metrics).
    pub index: usize,
    /// The job or batch id, exactly as in the path.
    pub id: Option<&'p str>,
}

/// What to purge after a successful write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    Resource(ResourceId),
    Route(&'static str),
}

/// Is this a read the cache may answer?
pub fn cacheable_method(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The cacheable route a `GET`/`HEAD` request is for, if any.
pub fn match_read<'p>(method: &Method, path: &'p str) -> Option<Matched<'p>> {
    if !cacheable_method(method) {
        return None;
    }
    ROUTES.iter().enumerate().find_map(|(index, route)| {
        let id = match_path(route.path, path, false)?;
        Some(Matched { route, index, id })
    })
}

/// What a successful request with `method` to `path` invalidates (nothing for reads).
pub fn invalidations(method: &Method, path: &str) -> Vec<Purge> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for route in &ROUTES {
        for rule in route.invalidated_by {
            let Some(id) = match_path(rule.below, path, true) else {
                continue;
            };
            let purge = match (rule.scope, id, route.resource) {
                (Scope::WholeRoute, _, _) => Purge::Route(route.name),
                (Scope::SameResource, Some(id), Some(kind)) => {
                    Purge::Resource(ResourceId::new(kind, id))
                }
                // A same-resource rule on a pattern without an id cannot name one.
                (Scope::SameResource, _, _) => continue,
            };
            if !out.contains(&purge) {
                out.push(purge);
            }
        }
    }
    out
}

/// Match `path` against `pattern`; `Some(id)` on a match (the `Id` segment's text,
/// if the pattern has one). With `prefix`, deeper paths match too. Byte
/// comparisons only: this runs on every request.
fn match_path<'p>(pattern: &[Seg], path: &'p str, prefix: bool) -> Option<Option<&'p str>> {
    let mut rest = path.strip_prefix('/')?;
    let mut id = None;
    for (i, seg) in pattern.iter().enumerate() {
        let end = match seg {
            Seg::Lit(text) if rest.starts_with(text) => text.len(),
            Seg::Lit(_) => return None,
            Seg::Id => {
                let n = rest.bytes().position(|b| b == b'/').unwrap_or(rest.len());
                if n == 0 {
                    return None;
                }
                id = Some(&rest[..n]);
                n
            }
        };
        let last = i + 1 == pattern.len();
        match rest.as_bytes().get(end) {
            // The path ends with this segment.
            None => return last.then_some(id),
            Some(b'/') if !last => rest = &rest[end + 1..],
            Some(b'/') => return prefix.then_some(id),
            // A literal that is only the start of a longer segment.
            Some(_) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_of(method: Method, path: &str) -> Option<(&'static str, Option<&str>)> {
        match_read(&method, path).map(|m| (m.route.name, m.id))
    }

    #[test]
    fn every_route_matches_its_path_and_nothing_else() {
        let v1 = "/api/v1/beta/batch-processing";
        assert_eq!(
            route_of(Method::GET, &format!("{v1}/j1/items")),
            Some(("items", Some("j1")))
        );
        assert_eq!(
            route_of(Method::HEAD, &format!("{v1}/j1")),
            Some(("job", Some("j1")))
        );
        assert_eq!(
            route_of(Method::GET, "/api/v2/batches/b-1"),
            Some(("batch", Some("b-1")))
        );
        assert_eq!(
            route_of(Method::GET, "/api/v2/batches"),
            Some(("batches", None))
        );
        for miss in [
            format!("{v1}//items"),
            format!("{v1}/a/b/items"),
            format!("{v1}/j1/items/"),
            format!("{v1}/"),
            format!("{v1}/j1/cancel"),
            "/api/v2/batches/".to_owned(),
            "/api/v2/batches/b/cancel".to_owned(),
            "/api/v2/batchesx".to_owned(),
            "api/v2/batches".to_owned(),
        ] {
            assert_eq!(route_of(Method::GET, &miss), None, "{miss}");
        }
        assert_eq!(route_of(Method::POST, &format!("{v1}/j1/items")), None);
    }

    #[test]
    fn writes_invalidate_what_the_table_says() {
        let job = |id: &str| Purge::Resource(ResourceId::new(ResourceKind::Job, id));
        let batch = |id: &str| Purge::Resource(ResourceId::new(ResourceKind::Batch, id));
        assert_eq!(
            invalidations(&Method::POST, "/api/v1/beta/batch-processing/j1/cancel"),
            [job("j1")]
        );
        assert_eq!(
            invalidations(&Method::DELETE, "/api/v1/beta/batch-processing/j1"),
            [job("j1")]
        );
        assert_eq!(
            invalidations(&Method::POST, "/api/v2/batches/b1/cancel"),
            [batch("b1"), Purge::Route("batches")]
        );
        assert_eq!(
            invalidations(&Method::POST, "/api/v2/batches"),
            [Purge::Route("batches")]
        );
        assert!(invalidations(&Method::GET, "/api/v2/batches/b1/cancel").is_empty());
        assert!(invalidations(&Method::POST, "/api/v1/other").is_empty());
    }
}
