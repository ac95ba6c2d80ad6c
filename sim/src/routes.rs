//! The API routes the simulator tells apart, and sets of them.
//!
//! Counters, recorded requests and fault rules all speak of routes, so a test of a caching gateway
//! can ask "how many job-status polls reached the upstream" or "rate-limit only the polling reads"
//! without matching paths itself. A route is decided by method and path alone, before any
//! validation: a request the API then refuses still counts for its route.

use http::Method;

/// Path prefix of the v1 batch-processing routes.
pub(crate) const V1_PREFIX: &str = "/api/v1/beta/batch-processing/";
/// Path of the v2 batch collection.
pub(crate) const V2_BATCHES: &str = "/api/v2/batches";

/// One API route, by method and path shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET`/`HEAD /api/v1/beta/batch-processing/{job_id}/items`
    V1Items,
    /// `GET`/`HEAD /api/v1/beta/batch-processing/{job_id}`
    V1Status,
    /// `POST /api/v1/beta/batch-processing/{job_id}/cancel`
    V1Cancel,
    /// `GET`/`HEAD /api/v2/batches/{batch_id}`
    V2Get,
    /// `GET`/`HEAD /api/v2/batches`
    V2List,
    /// `POST /api/v2/batches/{batch_id}/cancel`
    V2Cancel,
    /// `POST /api/v2/batches`
    V2Create,
    /// Anything else: probes, unknown paths, a route with the wrong method.
    Other,
}

impl Route {
    pub const ALL: [Route; 8] = [
        Route::V1Items,
        Route::V1Status,
        Route::V1Cancel,
        Route::V2Get,
        Route::V2List,
        Route::V2Cancel,
        Route::V2Create,
        Route::Other,
    ];

    /// The name used in `/_sim` parameters and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::V1Items => "v1_items",
            Route::V1Status => "v1_status",
            Route::V1Cancel => "v1_cancel",
            Route::V2Get => "v2_get",
            Route::V2List => "v2_list",
            Route::V2Cancel => "v2_cancel",
            Route::V2Create => "v2_create",
            Route::Other => "other",
        }
    }

    pub fn parse(name: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The reads pollers repeat: v1 items and status, v2 get and list.
    pub fn is_poll(self) -> bool {
        matches!(
            self,
            Route::V1Items | Route::V1Status | Route::V2Get | Route::V2List
        )
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Classifies a request by method and path.
    pub fn of(method: &Method, path: &str) -> Route {
        let read = method == Method::GET || method == Method::HEAD;
        let post = method == Method::POST;
        if let Some(rest) = path.strip_prefix(V1_PREFIX) {
            let parts: Vec<&str> = rest.split('/').collect();
            return match parts.as_slice() {
                [job] if !job.is_empty() && read => Route::V1Status,
                [job, "items"] if !job.is_empty() && read => Route::V1Items,
                [job, "cancel"] if !job.is_empty() && post => Route::V1Cancel,
                _ => Route::Other,
            };
        }
        if path == V2_BATCHES {
            return match () {
                () if read => Route::V2List,
                () if post => Route::V2Create,
                () => Route::Other,
            };
        }
        if let Some(rest) = path
            .strip_prefix(V2_BATCHES)
            .and_then(|r| r.strip_prefix('/'))
        {
            let parts: Vec<&str> = rest.split('/').collect();
            return match parts.as_slice() {
                [batch] if !batch.is_empty() && read => Route::V2Get,
                [batch, "cancel"] if !batch.is_empty() && post => Route::V2Cancel,
                _ => Route::Other,
            };
        }
        Route::Other
    }
}

/// A set of routes, e.g. the ones a fault rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteSet(u16);

impl RouteSet {
    pub const NONE: RouteSet = RouteSet(0);
    pub const ALL: RouteSet = RouteSet((1 << Route::ALL.len()) - 1);
    /// The polling reads: [`Route::is_poll`].
    pub const POLLS: RouteSet = RouteSet::of(Route::V1Items)
        .with(Route::V1Status)
        .with(Route::V2Get)
        .with(Route::V2List);

    pub const fn of(route: Route) -> RouteSet {
        RouteSet(1 << route as u16)
    }

    pub const fn with(self, route: Route) -> RouteSet {
        RouteSet(self.0 | 1 << route as u16)
    }

    pub fn contains(self, route: Route) -> bool {
        self.0 & (1 << route as u16) != 0
    }

    /// Parses `polls`, `all`, or a comma-separated list of route names.
    pub fn parse(list: &str) -> Result<RouteSet, String> {
        match list {
            "all" => return Ok(RouteSet::ALL),
            "polls" => return Ok(RouteSet::POLLS),
            _ => {}
        }
        list.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .try_fold(RouteSet::NONE, |set, name| {
                Route::parse(name).map(|r| set.with(r)).ok_or_else(|| {
                    let names: Vec<&str> = Route::ALL.iter().map(|r| r.as_str()).collect();
                    format!(
                        "unknown route {name:?}: use polls, all, or some of {}",
                        names.join(", ")
                    )
                })
            })
    }
}

impl FromIterator<Route> for RouteSet {
    fn from_iter<I: IntoIterator<Item = Route>>(iter: I) -> Self {
        iter.into_iter().fold(RouteSet::NONE, RouteSet::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_method_and_shape() {
        let get = Method::GET;
        let post = Method::POST;
        let v1 = "/api/v1/beta/batch-processing";
        for (method, path, want) in [
            (&get, format!("{v1}/j/items"), Route::V1Items),
            (&Method::HEAD, format!("{v1}/j/items"), Route::V1Items),
            (&get, format!("{v1}/j"), Route::V1Status),
            (&post, format!("{v1}/j/cancel"), Route::V1Cancel),
            (&post, format!("{v1}/j/items"), Route::Other),
            (&get, format!("{v1}/j/cancel"), Route::Other),
            (&get, format!("{v1}//items"), Route::Other),
            (&get, "/api/v2/batches".to_owned(), Route::V2List),
            (&post, "/api/v2/batches".to_owned(), Route::V2Create),
            (&get, "/api/v2/batches/b".to_owned(), Route::V2Get),
            (
                &post,
                "/api/v2/batches/b/cancel".to_owned(),
                Route::V2Cancel,
            ),
            (&get, "/api/v2/batches/b/cancel".to_owned(), Route::Other),
            (&get, "/api/v2/batchesx".to_owned(), Route::Other),
            (&get, "/echo/x".to_owned(), Route::Other),
        ] {
            assert_eq!(Route::of(method, &path), want, "{method} {path}");
        }
    }

    #[test]
    fn sets_parse_and_contain() {
        assert_eq!(RouteSet::parse("polls"), Ok(RouteSet::POLLS));
        let set = RouteSet::parse("v2_get, v1_items").unwrap();
        assert!(set.contains(Route::V2Get) && set.contains(Route::V1Items));
        assert!(!set.contains(Route::V2List));
        assert!(RouteSet::parse("v3").is_err());
        for r in Route::ALL {
            assert!(RouteSet::ALL.contains(r));
            assert_eq!(RouteSet::POLLS.contains(r), r.is_poll());
            assert_eq!(Route::parse(r.as_str()), Some(r));
        }
    }
}
