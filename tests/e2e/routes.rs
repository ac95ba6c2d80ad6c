//! Every cacheable route of the route table gets the same treatment: miss, hit and expiry;
//! coalescing; tenancy; validation at the edge; one upstream query per meaning; invalidation
//! by writes; the terminal TTL read from each response; and the 429 back-off.
//!
//! Each test runs over the table's four routes (v1 items, v1 job status, v2 batch, v2 batch
//! list), counting what reaches the simulated upstream per route.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use http::{Method, StatusCode};
use pollgate_sim::{BatchStatus, Route, RouteSet, BATCH_A, BATCH_A_DONE, PROJECT_A};
use serde_json::Value;
use tokio::time::sleep;

/// One cacheable route and what to ask it.
struct Case {
    route: Route,
    /// The request path (no query), for tenant A.
    path: String,
    /// A query whose page tenant A may read.
    query: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            route: Route::V1Items,
            path: format!("{ITEMS}/{JOB_A}/items"),
            query: "limit=10",
        },
        Case {
            route: Route::V1Status,
            path: format!("{ITEMS}/{JOB_A}"),
            query: "",
        },
        Case {
            route: Route::V2Get,
            path: format!("/api/v2/batches/{BATCH_A}"),
            query: "expand=results",
        },
        Case {
            route: Route::V2List,
            path: "/api/v2/batches".to_owned(),
            query: "page_size=5",
        },
    ]
}

fn url(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

#[tokio::test]
async fn every_route_misses_then_hits_then_expires() {
    let h = Harness::start(|c| {
        c.cache.ttl = Duration::from_millis(800);
        c.cache.stale_while_revalidate = Duration::ZERO;
    })
    .await;
    for case in cases() {
        let p = url(&case.path, case.query);
        let first = h.get(&p, Some(TOKEN_A)).await;
        assert_eq!(first.status, 200, "{p}: {}", first.text());
        assert_eq!(first.cache_status(), "pollgate; fwd=miss; stored", "{p}");
        let second = h.get(&p, Some(TOKEN_A)).await;
        assert!(
            second.cache_status().starts_with("pollgate; hit"),
            "{p}: {}",
            second.cache_status()
        );
        assert_eq!(second.body, first.body, "{p}");
        assert_eq!(
            h.sim.route_count(case.route),
            1,
            "{p}: one upstream request"
        );
    }
    // Past the TTL (no stale window): every route goes upstream again.
    sleep(Duration::from_millis(900)).await;
    for case in cases() {
        let p = url(&case.path, case.query);
        let again = h.get(&p, Some(TOKEN_A)).await;
        assert_eq!(again.cache_status(), "pollgate; fwd=miss; stored", "{p}");
        assert_eq!(h.sim.route_count(case.route), 2, "{p}: expired, refetched");
    }
    let text = h.admin(Method::GET, "/metrics").await.text();
    for route in ["items", "job", "batch", "batches"] {
        let hits = format!("pollgate_requests_total{{route=\"{route}\",result=\"hit\"}} 1");
        assert!(text.contains(&hits), "{hits} missing");
    }
}

#[tokio::test]
async fn a_hundred_cold_requests_make_one_upstream_request_on_every_route() {
    let h = Harness::start(|c| c.cache.ttl = Duration::from_secs(30)).await;
    h.sim.set_latency(Duration::from_millis(300));
    let mut tasks = Vec::new();
    for case in cases() {
        for _ in 0..100 {
            tasks.push(spawn_get(&h, &url(&case.path, case.query), TOKEN_A, &[]));
        }
    }
    let results = join_all_within(Duration::from_secs(20), tasks).await;
    assert!(results.iter().all(|(r, _)| r.status == 200));
    for case in cases() {
        let n = h.sim.route_count(case.route);
        println!(
            "{:?}: 100 concurrent cold requests, upstream requests = {n}",
            case.route
        );
        assert_eq!(n, 1, "{:?}", case.route);
    }
}

#[tokio::test]
async fn tenants_never_share_a_page_on_any_route() {
    let h = Harness::start(|c| c.cache.ttl = Duration::from_secs(30)).await;
    for case in cases() {
        let p = url(&case.path, case.query);
        let a = h.get(&p, Some(TOKEN_A)).await;
        assert_eq!(a.status, 200, "{p}");
        let b = h.get(&p, Some(TOKEN_B)).await;
        // Tenant B's own answer from the upstream: 404 for A's job or batch, B's own list.
        assert_ne!(b.body, a.body, "{p}: B must not get A's cached page");
        assert!(
            !b.cache_status().contains("hit"),
            "{p}: {}",
            b.cache_status()
        );
        let seen: Vec<_> = h
            .sim
            .requests()
            .into_iter()
            .filter(|r| Route::of(&r.method, &r.path) == case.route)
            .map(|r| r.token)
            .collect();
        assert_eq!(
            seen,
            [Some(TOKEN_A.to_owned()), Some(TOKEN_B.to_owned())],
            "{p}"
        );
    }
}

/// Queries the API refuses, per route, with the pydantic error type each one gets.
fn invalid_queries(route: Route) -> Vec<(&'static str, &'static str)> {
    let uuid = [
        ("project_id=not-a-uuid", "uuid_parsing"),
        ("organization_id=5f3c1a2e-7b4d-4e8a-9c61", "uuid_parsing"),
        (
            "project_id=%205f3c1a2e-7b4d-4e8a-9c61-0a1b2c3d4e5f",
            "uuid_parsing",
        ),
        (
            "project_id=URN:UUID:5f3c1a2e-7b4d-4e8a-9c61-0a1b2c3d4e5f",
            "uuid_parsing",
        ),
    ];
    let own: Vec<(&str, &str)> = match route {
        Route::V1Items => vec![
            ("limit=0", "greater_than_equal"),
            ("limit=1001", "less_than_equal"),
            ("offset=-1", "greater_than_equal"),
            ("limit=1.5", "int_parsing"),
            ("status=Completed", "enum"),
        ],
        Route::V2List => vec![
            ("status=running", "literal_error"),
            ("status=COMPLETE", "literal_error"),
            ("page_size=ten", "int_parsing"),
            ("page_size=2.5", "int_parsing"),
        ],
        _ => vec![],
    };
    own.into_iter().chain(uuid).collect()
}

#[tokio::test]
async fn invalid_queries_are_422_on_every_route_without_upstream_calls() {
    let h = Harness::start(|_| {}).await;
    let mut direct_requests = 0;
    for case in cases() {
        for (query, kind) in invalid_queries(case.route) {
            let p = url(&case.path, query);
            let r = h.get(&p, Some(TOKEN_A)).await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{p}: {}",
                r.text()
            );
            let detail = &r.json()["detail"][0];
            assert_eq!(detail["type"], kind, "{p}: {}", r.text());
            assert_eq!(detail["loc"][0], "query", "{p}");
            assert_eq!(r.cache_status(), "pollgate; detail=invalid-query");
            // The simulated API refuses it the same way (it mirrors pydantic).
            let direct = h
                .client
                .send(
                    Method::GET,
                    &format!("http://{}{p}", h.upstream),
                    &[("authorization", &bearer(TOKEN_A))],
                    Bytes::new(),
                )
                .await;
            assert_eq!(direct.status, StatusCode::UNPROCESSABLE_ENTITY, "sim: {p}");
            assert_eq!(direct.json()["detail"][0]["type"], kind, "sim: {p}");
            direct_requests += 1;
        }
    }
    assert!(direct_requests >= 20);
    assert_eq!(
        h.sim.request_count(),
        direct_requests,
        "only the direct requests reached the upstream: pollgate forwarded none"
    );
}

/// Spellings of one meaning, per route, and the one query the upstream should see.
fn spellings(route: Route) -> (Vec<String>, String) {
    let upper = PROJECT_A.to_uppercase();
    let simple = PROJECT_A.replace('-', "");
    match route {
        Route::V1Items => (
            vec![
                "".into(),
                "offset=0".into(),
                "limit=100".into(),
                "limit=100&offset=0".into(),
                "offset=00&limit=1_00".into(),
                "limit=100.0&limit=100".into(),
            ],
            "limit=100&offset=0".into(),
        ),
        Route::V1Status => (
            vec![
                format!("project_id={PROJECT_A}"),
                format!("project_id={upper}"),
                format!("project_id={simple}"),
                format!("project_id=%7B{PROJECT_A}%7D"),
                format!("project_id=urn:uuid:{PROJECT_A}"),
            ],
            format!("project_id={PROJECT_A}"),
        ),
        Route::V2Get => (
            vec![
                format!("expand=results&project_id={upper}"),
                format!("project_id={simple}&expand=results"),
            ],
            format!("expand=results&project_id={PROJECT_A}"),
        ),
        Route::V2List => (
            vec![
                "page_size=5&status=RUNNING".into(),
                "status=RUNNING&page_size=05".into(),
                "page_size=+5&status=COMPLETED&status=RUNNING".into(),
                "page_size=5.0&status=RUNNING".into(),
            ],
            "page_size=5&status=RUNNING".into(),
        ),
        _ => unreachable!("not a cacheable route"),
    }
}

#[tokio::test]
async fn every_spelling_of_one_meaning_is_one_upstream_query() {
    let h = Harness::start(|c| c.cache.ttl = Duration::from_secs(30)).await;
    for case in cases() {
        let (variants, canonical) = spellings(case.route);
        let mut bodies = Vec::new();
        for q in &variants {
            let r = h.get(&url(&case.path, q), Some(TOKEN_A)).await;
            assert_eq!(r.status, 200, "{:?} {q}: {}", case.route, r.text());
            bodies.push(r.body);
        }
        assert!(bodies.iter().all(|b| *b == bodies[0]), "{:?}", case.route);
        let seen: Vec<_> = h
            .sim
            .requests()
            .into_iter()
            .filter(|r| Route::of(&r.method, &r.path) == case.route)
            .map(|r| r.query.unwrap_or_default())
            .collect();
        assert_eq!(
            seen,
            std::slice::from_ref(&canonical),
            "{:?}: one upstream query",
            case.route
        );
    }
    // `expand` is a list: every value is kept, in order, and forwarded.
    let p = format!("/api/v2/batches/{BATCH_A}?expand=zzz&expand=results");
    assert_eq!(h.get(&p, Some(TOKEN_A)).await.status, 200);
    let last = h.sim.requests().pop().expect("recorded");
    assert_eq!(last.query.as_deref(), Some("expand=zzz&expand=results"));
}

#[tokio::test]
async fn writes_invalidate_what_the_route_table_says() {
    let h = Harness::start(|c| c.cache.ttl = Duration::from_secs(60)).await;
    let auth = bearer(TOKEN_A);
    let warm = |h: &Harness| {
        let h_paths: Vec<String> = cases().iter().map(|c| url(&c.path, c.query)).collect();
        let client = h.client.clone();
        let base = h.url("");
        let auth = auth.clone();
        async move {
            let mut statuses = Vec::new();
            for p in h_paths {
                let r = client
                    .send(
                        Method::GET,
                        &format!("{base}{p}"),
                        &[("authorization", &auth)],
                        Bytes::new(),
                    )
                    .await;
                statuses.push(r.cache_status().to_owned());
            }
            statuses
        }
    };
    let first = warm(&h).await;
    assert!(first.iter().all(|s| s.contains("stored")), "{first:?}");
    assert!(warm(&h).await.iter().all(|s| s.contains("hit")));

    // v1 cancel: the job's items and status pages go; the v2 pages stay.
    let cancel = h
        .request(
            Method::POST,
            &format!("{ITEMS}/{JOB_A}/cancel"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Bytes::from_static(b"{}"),
        )
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.text());
    let after = warm(&h).await;
    assert!(
        after[0].contains("stored") && after[1].contains("stored"),
        "{after:?}"
    );
    assert!(
        after[2].contains("hit") && after[3].contains("hit"),
        "{after:?}"
    );

    // v2 create: the list pages go, the batch page stays.
    let create = h
        .request(
            Method::POST,
            "/api/v2/batches",
            &[("authorization", &auth), ("content-type", "application/json")],
            Bytes::from_static(
                br#"{"source_directory_id":"dir-a-main","config":{"job":{"type":"parse_v2","configuration_id":"cfg-1"}}}"#,
            ),
        )
        .await;
    assert!(
        create.status.is_success(),
        "create: {} {}",
        create.status,
        create.text()
    );
    let after = warm(&h).await;
    assert!(after[2].contains("hit"), "{after:?}");
    assert!(after[3].contains("stored"), "{after:?}");

    // v2 cancel: the batch's pages and every list page go.
    let cancel = h
        .request(
            Method::POST,
            &format!("/api/v2/batches/{BATCH_A}/cancel"),
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.text());
    let after = warm(&h).await;
    assert!(
        after[0].contains("hit") && after[1].contains("hit"),
        "{after:?}"
    );
    assert!(
        after[2].contains("stored") && after[3].contains("stored"),
        "{after:?}"
    );
    let batch: Value = h
        .get(&url(&cases()[2].path, ""), Some(TOKEN_A))
        .await
        .json();
    assert_eq!(
        batch["status"], "CANCELLED",
        "the refetched page is the new state"
    );
}

#[tokio::test]
async fn the_terminal_ttl_follows_each_response_own_status() {
    let h = Harness::start(|c| {
        c.cache.ttl = Duration::from_millis(700);
        c.cache.terminal_ttl = Duration::from_secs(60);
        c.cache.stale_while_revalidate = Duration::ZERO;
    })
    .await;
    h.sim.set_batch_status(BATCH_A, BatchStatus::Running);
    let running = format!("/api/v2/batches/{BATCH_A}?expand=results");
    let done_now = format!("/api/v2/batches/{BATCH_A}");
    let finished = [
        format!("/api/v2/batches/{BATCH_A_DONE}"),
        format!("{ITEMS}/{JOB_A_DONE}"),
    ];
    let list = "/api/v2/batches?status=COMPLETED".to_owned();
    let r = h.get(&running, Some(TOKEN_A)).await;
    assert_eq!(r.json()["status"], "RUNNING");
    // The batch finishes; another variant of it comes back COMPLETED.
    h.sim.set_batch_status(BATCH_A, BatchStatus::Completed);
    assert_eq!(
        h.get(&done_now, Some(TOKEN_A)).await.json()["status"],
        "COMPLETED"
    );
    for p in finished.iter().chain([&list]) {
        assert_eq!(h.get(p, Some(TOKEN_A)).await.status, 200, "{p}");
    }
    sleep(Duration::from_millis(800)).await; // past the normal TTL
    for p in finished.iter().chain([&done_now]) {
        let r = h.get(p, Some(TOKEN_A)).await;
        assert!(
            r.cache_status().starts_with("pollgate; hit"),
            "{p} keeps the terminal TTL: {}",
            r.cache_status()
        );
    }
    // Its RUNNING variant is not extended by the other one's status, and a list page of
    // finished batches keeps the normal TTL.
    for p in [&running, &list] {
        let r = h.get(p, Some(TOKEN_A)).await;
        assert_eq!(r.cache_status(), "pollgate; fwd=miss; stored", "{p}");
    }
}

#[tokio::test]
async fn a_429_on_one_route_backs_the_credential_off_on_every_route() {
    let h = Harness::start(|c| c.cache.ttl = Duration::from_secs(30)).await;
    h.sim.set_fault_on(
        RouteSet::POLLS,
        FaultRule {
            fault: Fault::Status {
                status: 429,
                retry_after: Some("3".into()),
                retry_after_ms: None,
            },
            remaining: None,
            only_token: Some(TOKEN_A.into()),
            only_item_lists: false,
        },
    );
    let all = cases();
    let first = h.get(&url(&all[3].path, all[3].query), Some(TOKEN_A)).await;
    assert_eq!(first.status, 429, "the upstream's 429 is relayed");
    let before = h.sim.request_count();
    for case in &all[..3] {
        let r = h.get(&url(&case.path, case.query), Some(TOKEN_A)).await;
        assert_eq!(r.status, 429, "{:?}", case.route);
        assert!(
            r.cache_status().contains("detail=backoff"),
            "{}",
            r.cache_status()
        );
        assert!(r.header("retry-after").is_some());
    }
    assert_eq!(
        h.sim.request_count(),
        before,
        "no upstream request during the back-off"
    );
    // Another credential is not affected.
    let b = h.get(&format!("{ITEMS}/{JOB_B}"), Some(TOKEN_B)).await;
    assert_eq!(b.status, 200, "{}", b.text());
}
