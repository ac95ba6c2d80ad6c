//! End-to-end checks of the simulated upstream over real loopback HTTP.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use pollgate_sim::{
    BatchStatus, Fault, FaultRule, Route, RouteSet, SimOptions, SimUpstream, BATCH_A, BATCH_A_DONE,
    BATCH_B, BATCH_HISTORY_A, CREATED_BATCH_FILES, DEFAULT_PAGE_SIZE, JOB_A, JOB_A_DONE, JOB_B,
    ORG_A, ORG_B, PROJECT_A, PROJECT_B, SOURCE_DIR_A, TOKEN_A, TOKEN_B,
};
use serde_json::Value;

type TestClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(
    client: &TestClient,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Bytes,
) -> Result<(StatusCode, http::HeaderMap, Bytes), String> {
    let mut req = Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(req.body(Full::new(body)).unwrap())
        .await
        .map_err(|e| format!("request: {e:?}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e:?}"))?
        .to_bytes();
    Ok((parts.status, parts.headers, body))
}

async fn get(
    client: &TestClient,
    url: String,
    token: Option<&str>,
) -> (StatusCode, http::HeaderMap, Value) {
    let (status, headers, body) = send(client, Method::GET, url, token, Bytes::new())
        .await
        .unwrap();
    (status, headers, serde_json::from_slice(&body).unwrap())
}

fn items_url(addr: std::net::SocketAddr, job: &str, query: &str) -> String {
    format!("http://{addr}/api/v1/beta/batch-processing/{job}/items{query}")
}

#[tokio::test]
async fn items_page_shape_and_pagination() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();

    let (status, headers, v) = get(&c, items_url(addr, JOB_A, "?limit=1000"), Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.contains_key("content-length"));
    assert_eq!(v["total_size"], 2500);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1000);
    assert_eq!(items[42]["item_id"], "job-a-running-item-00042");
    assert_eq!(items[42]["item_name"], "document-00042.pdf");
    assert!(v["next_page_token"].is_string());

    // Last page: partial, no next token.
    let (_, _, v) = get(
        &c,
        items_url(addr, JOB_A, "?limit=1000&offset=2000"),
        Some(TOKEN_A),
    )
    .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 500);
    assert!(v.get("next_page_token").is_none());

    // Status filter narrows total_size.
    let (_, _, v) = get(
        &c,
        items_url(addr, JOB_A_DONE, "?status=failed"),
        Some(TOKEN_A),
    )
    .await;
    let failed = v["items"].as_array().unwrap();
    assert!(!failed.is_empty());
    assert_eq!(v["total_size"], failed.len());
    assert!(failed
        .iter()
        .all(|i| i["status"] == "failed" && i["error_message"].is_string()));

    assert_eq!(sim.item_list_count(), 3);
    assert_eq!(sim.requests()[0].token.as_deref(), Some(TOKEN_A));
    assert_eq!(sim.requests()[0].query.as_deref(), Some("limit=1000"));
}

#[tokio::test]
async fn validation_auth_and_tenancy() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();

    let (status, _, v) = get(&c, items_url(addr, JOB_A, "?limit=0"), Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["type"], "greater_than_equal");
    assert_eq!(v["detail"][0]["loc"][1], "limit");

    let (status, _, v) = get(&c, items_url(addr, JOB_A, ""), Some(TOKEN_B)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["detail"], "Job not found");
    let (status, _, _) = get(&c, items_url(addr, JOB_B, ""), Some(TOKEN_B)).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, v) = get(&c, items_url(addr, JOB_A, ""), None).await;
    assert_eq!(
        (status, v["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Not authenticated"))
    );
    let (status, _, v) = get(&c, items_url(addr, JOB_A, ""), Some("sk-nobody")).await;
    assert_eq!(
        (status, v["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Invalid API key"))
    );
}

#[tokio::test]
async fn status_fault_applies_once() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();
    sim.set_fault(Some(FaultRule {
        fault: Fault::Status {
            status: 429,
            retry_after: Some("2".into()),
            retry_after_ms: None,
        },
        remaining: Some(1),
        only_token: None,
        only_item_lists: true,
    }));
    let (status, headers, _) = get(&c, items_url(addr, JOB_B, ""), Some(TOKEN_B)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "2");
    let (status, headers, _) = get(&c, items_url(addr, JOB_B, ""), Some(TOKEN_B)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key("retry-after"));
    assert_eq!(sim.request_count(), 2);
}

#[tokio::test]
async fn reset_faults_break_the_exchange() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();
    sim.set_fault(Some(FaultRule::always(Fault::ResetBeforeResponse)));
    let r = send(
        &c,
        Method::GET,
        items_url(addr, JOB_B, ""),
        Some(TOKEN_B),
        Bytes::new(),
    )
    .await;
    assert!(r.is_err(), "expected a client error, got {r:?}");

    sim.set_fault(Some(FaultRule::always(Fault::ResetMidBody)));
    let r = send(
        &c,
        Method::GET,
        items_url(addr, JOB_B, ""),
        Some(TOKEN_B),
        Bytes::new(),
    )
    .await;
    let err = r.unwrap_err();
    assert!(err.starts_with("body"), "headers arrive, body fails: {err}");

    sim.set_fault(None);
    let r = send(
        &c,
        Method::GET,
        items_url(addr, JOB_B, ""),
        Some(TOKEN_B),
        Bytes::new(),
    )
    .await;
    assert_eq!(r.unwrap().0, StatusCode::OK);
    assert_eq!(sim.in_flight(), 0);
}

#[tokio::test]
async fn mutate_job_changes_the_body() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();
    let url = items_url(addr, JOB_A, "?limit=10&offset=2490");
    let (_, _, before) = send(&c, Method::GET, url.clone(), Some(TOKEN_A), Bytes::new())
        .await
        .unwrap();
    let (_, _, again) = send(&c, Method::GET, url.clone(), Some(TOKEN_A), Bytes::new())
        .await
        .unwrap();
    assert_eq!(before, again, "bodies are deterministic");
    sim.mutate_job(JOB_A);
    let (_, _, after) = send(&c, Method::GET, url, Some(TOKEN_A), Bytes::new())
        .await
        .unwrap();
    assert_ne!(before, after);
}

#[tokio::test]
async fn echo_streams_a_large_body_and_latency_counts_in_flight() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();
    let body = Bytes::from(vec![7u8; 1024 * 1024]);
    let (status, headers, raw) = send(
        &c,
        Method::PUT,
        format!("http://{addr}/echo/x?a=1"),
        None,
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-sim-end-to-end"], "kept");
    let v: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["body_bytes"], 1024 * 1024);
    assert_eq!(v["body_blake3"], blake3::hash(&body).to_hex().as_str());
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["query"], "a=1");

    sim.reset();
    sim.set_latency(Duration::from_millis(100));
    let calls = (0..4).map(|_| {
        let c = c.clone();
        let url = format!("http://{addr}/status/204");
        async move { send(&c, Method::GET, url, None, Bytes::new()).await }
    });
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.unwrap().0, StatusCode::NO_CONTENT);
    }
    assert_eq!(sim.max_in_flight(), 4);
    assert_eq!(sim.in_flight(), 0);
}

// ---------------------------------------------------------------------------------------------
// v2 batches, validation, tenancy, faults and counters per route, v1 shapes
// ---------------------------------------------------------------------------------------------

fn v2_url(addr: std::net::SocketAddr, rest: &str) -> String {
    format!("http://{addr}/api/v2/batches{rest}")
}

async fn post(c: &TestClient, url: String, token: Option<&str>, body: &str) -> (StatusCode, Value) {
    let (status, _, body) = send(c, Method::POST, url, token, Bytes::from(body.to_owned()))
        .await
        .unwrap();
    let v = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, v)
}

/// Walks the v2 list from the first page to the last; returns every id, in order, and the
/// `total_size` of the first page.
async fn walk(
    c: &TestClient,
    addr: std::net::SocketAddr,
    token: &str,
    query: &str,
) -> (Vec<String>, u64) {
    let mut ids = Vec::new();
    let mut next: Option<String> = None;
    let mut total = None;
    for _ in 0..200 {
        let sep = if query.is_empty() { "" } else { "&" };
        let url = match &next {
            None => v2_url(addr, &format!("?{query}")),
            Some(t) => v2_url(addr, &format!("?{query}{sep}page_token={t}")),
        };
        let (status, _, v) = get(c, url, Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        total.get_or_insert(v["total_size"].as_u64().unwrap());
        ids.extend(
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["id"].as_str().unwrap().to_owned()),
        );
        match v["next_page_token"].as_str() {
            Some(t) => next = Some(t.to_owned()),
            None => {
                assert!(v["next_page_token"].is_null(), "null on the last page: {v}");
                return (ids, total.unwrap_or(0));
            }
        }
    }
    panic!("the walk did not end in 200 pages");
}

#[tokio::test]
async fn v2_get_has_the_sdk_shape_and_results_only_when_expanded() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();

    let (status, _, v) = get(&c, v2_url(addr, &format!("/{BATCH_A}")), Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["id"], BATCH_A);
    assert_eq!(v["project_id"], PROJECT_A);
    assert_eq!(v["source_directory_id"], SOURCE_DIR_A);
    assert_eq!(v["config"]["job"]["type"], "parse_v2");
    assert!(v["config"]["job"]["configuration_id"].is_string());
    assert_eq!(v["status"], "RUNNING");
    assert!(v["results"].is_null(), "no results without expand");

    for query in ["?expand=results", "?expand=unknown&expand=results"] {
        let (status, _, v) = get(
            &c,
            v2_url(addr, &format!("/{BATCH_A}{query}")),
            Some(TOKEN_A),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 2500, "{query}");
        let with_job = results
            .iter()
            .filter(|r| r["job_reference"].is_object())
            .count();
        assert!((900..=1000).contains(&with_job), "40 % started: {with_job}");
        let r = &results[0];
        assert!(r["source_directory_file_id"]
            .as_str()
            .unwrap()
            .starts_with("dfl-"));
        assert_eq!(r["job_reference"]["type"], "parse_v2");
        assert!(r["job_reference"]["id"]
            .as_str()
            .unwrap()
            .starts_with("pjb-"));
        assert!(r.get("error_message").is_some());
    }
    // Unknown values, and a comma list (one value, not a list), are accepted and ignored.
    for query in ["?expand=unknown", "?expand=results,unknown"] {
        let (status, _, v) = get(
            &c,
            v2_url(addr, &format!("/{BATCH_A}{query}")),
            Some(TOKEN_A),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(v["results"].is_null(), "{query}");
    }
    assert_eq!(sim.route_count(Route::V2Get), 5);
    assert_eq!(sim.path_count(&format!("/api/v2/batches/{BATCH_A}")), 5);
    assert_eq!(sim.request_count(), 5);
}

#[tokio::test]
async fn v2_list_walks_return_every_batch_exactly_once() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();
    let seeded = BATCH_HISTORY_A + 2;

    let (all, total) = walk(&c, addr, TOKEN_A, "").await;
    assert_eq!(
        (all.len(), total as usize),
        (seeded, seeded),
        "default page size holds them all"
    );
    assert_eq!(sim.route_count(Route::V2List), 1);
    for size in ["1", "4", "+4", "4.0", "26", "27", "100000"] {
        let (ids, total) = walk(&c, addr, TOKEN_A, &format!("page_size={size}")).await;
        assert_eq!(ids, all, "page_size={size}: same batches, same order");
        assert_eq!(total as usize, seeded);
    }
    // Newest first.
    assert_eq!(all[0], BATCH_A);
    assert_eq!(all[1], BATCH_A_DONE);

    // Filters narrow the walk and total_size alike; a token keeps its filters.
    let (done, total) = walk(&c, addr, TOKEN_A, "status=COMPLETED&page_size=3").await;
    assert_eq!(done.len() as u64, total);
    assert!(done.contains(&BATCH_A_DONE.to_owned()) && !done.contains(&BATCH_A.to_owned()));
    let (archive, _) = walk(
        &c,
        addr,
        TOKEN_A,
        "source_directory_id=dir-a-archive&page_size=5",
    )
    .await;
    assert_eq!(archive.len(), BATCH_HISTORY_A / 2);
    let (recent, _) = walk(
        &c,
        addr,
        TOKEN_A,
        "created_at_on_or_after=2025-06-01T08:00:00%2B00:00&created_at_on_or_before=2025-06-01%2009:00:00",
    )
    .await;
    assert_eq!(recent, [BATCH_A, BATCH_A_DONE]);

    // Batches created mid-walk are newer, so they are not met again.
    let (status, _, first) = get(&c, v2_url(addr, "?page_size=10"), Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::OK);
    let mut ids: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    sim.add_batch(TOKEN_A, "bat-new", 3, BatchStatus::Pending);
    let mut token = first["next_page_token"].as_str().map(str::to_owned);
    while let Some(t) = token {
        let (_, _, page) = get(
            &c,
            v2_url(addr, &format!("?page_size=10&page_token={t}")),
            Some(TOKEN_A),
        )
        .await;
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["id"].as_str().unwrap().to_owned()),
        );
        assert_eq!(
            page["total_size"],
            seeded + 1,
            "the total counts the new batch"
        );
        token = page["next_page_token"].as_str().map(str::to_owned);
    }
    assert_eq!(ids, all, "each seeded batch once, the new one not mid-walk");
    let (with_new, _) = walk(&c, addr, TOKEN_A, "").await;
    assert_eq!(with_new[0], "bat-new");
}

#[tokio::test]
async fn v2_page_size_and_token_edge_cases() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();
    for (query, want) in [
        ("page_size=0", DEFAULT_PAGE_SIZE.min(27)),
        ("page_size=1_0", 10),
    ] {
        let (status, _, v) = get(&c, v2_url(addr, &format!("?{query}")), Some(TOKEN_A)).await;
        assert_eq!(status, StatusCode::OK, "{query}");
        assert_eq!(v["items"].as_array().unwrap().len(), want, "{query}");
    }
    let (status, _, v) = get(&c, v2_url(addr, "?page_size=-1"), Some(TOKEN_A)).await;
    assert_eq!(
        (status, v["detail"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("page_size must not be negative")
        )
    );
    let (status, _, v) = get(&c, v2_url(addr, "?page_size=1.5"), Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["type"], "int_parsing");
    assert_eq!(
        v["detail"][0]["loc"],
        serde_json::json!(["query", "page_size"])
    );

    let (_, _, first) = get(&c, v2_url(addr, "?page_size=2"), Some(TOKEN_A)).await;
    let token = first["next_page_token"].as_str().unwrap().to_owned();
    for (who, query) in [
        (TOKEN_A, "page_token=garbage".to_owned()),
        (TOKEN_A, format!("page_token={token}&status=COMPLETED")),
        (TOKEN_B, format!("page_token={token}")),
    ] {
        let (status, _, v) = get(&c, v2_url(addr, &format!("?{query}")), Some(who)).await;
        assert_eq!(
            (status, v["detail"].as_str()),
            (StatusCode::BAD_REQUEST, Some("Invalid page token")),
            "{query}"
        );
    }
    let (status, _, _) = get(
        &c,
        v2_url(addr, &format!("?page_size=5&page_token={token}")),
        Some(TOKEN_A),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "page size may change between pages");
}

#[tokio::test]
async fn v2_validation_is_pydantics() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();
    let (status, _, v) = get(&c, v2_url(addr, "?status=pending"), Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let expected = "'PENDING', 'THROTTLED', 'RUNNING', 'COMPLETED', 'FAILED' or 'CANCELLED'";
    assert_eq!(
        v["detail"][0],
        serde_json::json!({
            "type": "literal_error",
            "loc": ["query", "status"],
            "msg": format!("Input should be {expected}"),
            "input": "pending",
            "ctx": {"expected": expected},
        })
    );
    let (status, _, v) = get(
        &c,
        v2_url(addr, &format!("/{BATCH_A}?project_id=%20{PROJECT_A}")),
        Some(TOKEN_A),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"][0],
        serde_json::json!({
            "type": "uuid_parsing",
            "loc": ["query", "project_id"],
            "msg": "Input should be a valid UUID, invalid character: found ` ` at 0",
            "input": format!(" {PROJECT_A}"),
            "ctx": {"error": "invalid character: found ` ` at 0"},
        })
    );
    let (status, _, v) = get(
        &c,
        v2_url(addr, "?created_at_on_or_after=yesterday&organization_id=1"),
        Some(TOKEN_A),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let kinds: Vec<&str> = v["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["uuid_parsing", "datetime_from_date_parsing"],
        "declaration order"
    );
    // Every spelling pydantic accepts names the tenant's own project.
    let spellings = [
        PROJECT_A.to_owned(),
        PROJECT_A.to_uppercase(),
        PROJECT_A.replace('-', ""),
        format!("%7B{PROJECT_A}%7D"),
        format!("urn:uuid:{PROJECT_A}"),
    ];
    for p in &spellings {
        let (status, _, v) = get(
            &c,
            v2_url(
                addr,
                &format!("/{BATCH_A}?project_id={p}&organization_id={ORG_A}"),
            ),
            Some(TOKEN_A),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{p}: {v}");
    }
    let (status, _, _) = get(
        &c,
        v2_url(addr, &format!("/{BATCH_A}?project_id=URN:UUID:{PROJECT_A}")),
        Some(TOKEN_A),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "pydantic refuses an upper-case URN prefix"
    );
    assert_eq!(sim.route_count(Route::V2Get), spellings.len() + 2);
}

#[tokio::test]
async fn v2_tenancy_and_scope() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();
    let (status, _, v) = get(&c, v2_url(addr, &format!("/{BATCH_A}")), None).await;
    assert_eq!(
        (status, v["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Not authenticated"))
    );
    let (status, _, _) = get(&c, v2_url(addr, ""), Some("sk-nobody")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, v) = get(&c, v2_url(addr, &format!("/{BATCH_A}")), Some(TOKEN_B)).await;
    assert_eq!(
        (status, v["detail"].as_str()),
        (StatusCode::NOT_FOUND, Some("Batch not found"))
    );
    let (status, _) = post(
        &c,
        v2_url(addr, &format!("/{BATCH_A}/cancel")),
        Some(TOKEN_B),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        sim.batch_status(BATCH_A),
        Some(BatchStatus::Running),
        "B cannot cancel A's batch"
    );
    let (ids, total) = walk(&c, addr, TOKEN_B, "").await;
    assert_eq!((ids, total), (vec![BATCH_B.to_owned()], 1));
    // Another project's UUID: nothing of A's is in it.
    let (status, _, _) = get(
        &c,
        v2_url(addr, &format!("/{BATCH_A}?project_id={PROJECT_B}")),
        Some(TOKEN_A),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, v) = get(
        &c,
        v2_url(addr, &format!("?organization_id={ORG_B}")),
        Some(TOKEN_A),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (v["items"].as_array().map(Vec::len), &v["total_size"]),
        (Some(0), &serde_json::json!(0))
    );
}

#[tokio::test]
async fn v2_create_then_cancel_and_cancel_of_a_finished_batch() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();
    let body = r#"{"source_directory_id":"dir-x","config":{"job":{"type":"extract_v2","configuration_id":"cfg-1"}}}"#;
    let (status, created) = post(&c, v2_url(addr, ""), Some(TOKEN_A), body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("bat-"));
    assert_eq!(created["status"], "PENDING");
    assert_eq!(created["config"]["job"]["type"], "extract_v2");
    assert_eq!(created["source_directory_id"], "dir-x");
    let (_, _, got) = get(
        &c,
        v2_url(addr, &format!("/{id}?expand=results")),
        Some(TOKEN_A),
    )
    .await;
    let results = got["results"].as_array().unwrap();
    assert_eq!(results.len(), CREATED_BATCH_FILES);
    assert!(
        results.iter().all(|r| r["job_reference"].is_null()),
        "pending: no jobs yet"
    );

    let (status, v) = post(&c, v2_url(addr, "?project_id=x"), Some(TOKEN_A), "{}").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let locs: Vec<String> = v["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["loc"].to_string())
        .collect();
    assert_eq!(
        locs,
        [
            r#"["query","project_id"]"#,
            r#"["body","source_directory_id"]"#,
            r#"["body","config"]"#
        ]
    );

    let (status, v) = post(
        &c,
        v2_url(addr, &format!("/{id}/cancel")),
        Some(TOKEN_A),
        "",
    )
    .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::OK, Some("CANCELLED"))
    );
    assert!(v["results"].is_null());
    let before = get(&c, v2_url(addr, &format!("/{BATCH_A_DONE}")), Some(TOKEN_A))
        .await
        .2;
    let (status, v) = post(
        &c,
        v2_url(addr, &format!("/{BATCH_A_DONE}/cancel")),
        Some(TOKEN_A),
        "",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "cancel of a finished batch answers it as it is"
    );
    assert_eq!(v, before);
    assert_eq!(sim.route_count(Route::V2Create), 2);
    assert_eq!(sim.route_count(Route::V2Cancel), 2);
}

#[tokio::test]
async fn v2_status_moves_only_under_control_by_default() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();
    sim.add_batch(TOKEN_A, "bat-ctl", 10, BatchStatus::Pending);
    let status_of = |v: &Value| v["status"].as_str().unwrap_or_default().to_owned();
    let url = v2_url(addr, "/bat-ctl?expand=results");
    let (_, _, v) = get(&c, url.clone(), Some(TOKEN_A)).await;
    assert_eq!(status_of(&v), "PENDING");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, _, again) = get(&c, url.clone(), Some(TOKEN_A)).await;
    assert_eq!(v, again, "nothing changes on its own");

    assert_eq!(sim.advance_batch("bat-ctl"), Some(BatchStatus::Running));
    let (_, _, running) = get(&c, url.clone(), Some(TOKEN_A)).await;
    assert_eq!(status_of(&running), "RUNNING");
    sim.mutate_batch("bat-ctl");
    let (_, _, mutated) = get(&c, url.clone(), Some(TOKEN_A)).await;
    assert_eq!(status_of(&mutated), "RUNNING");
    assert_ne!(mutated, running, "mutate changes the body");
    assert_ne!(mutated["updated_at"], running["updated_at"]);
    sim.set_batch_status("bat-ctl", BatchStatus::Throttled);
    assert_eq!(sim.batch_status("bat-ctl"), Some(BatchStatus::Throttled));
    assert_eq!(sim.advance_batch("bat-ctl"), Some(BatchStatus::Running));
    assert_eq!(sim.advance_batch("bat-ctl"), Some(BatchStatus::Completed));
    assert_eq!(
        sim.advance_batch("bat-ctl"),
        Some(BatchStatus::Completed),
        "finished stays"
    );
    assert_eq!(sim.advance_batch("bat-none"), None);

    // The same over HTTP, for out-of-process users.
    let control = |path: &str| format!("http://{addr}/_sim{path}");
    let (status, v) = post(
        &c,
        control("/batches?token=sk-tenant-a&id=bat-http&results=4&status=pending"),
        None,
        "",
    )
    .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::OK, Some("PENDING"))
    );
    let (_, v) = post(&c, control("/batches/bat-http/advance"), None, "").await;
    assert_eq!(v["status"], "RUNNING");
    let (_, v) = post(
        &c,
        control("/batches/bat-http/status?status=failed"),
        None,
        "",
    )
    .await;
    assert_eq!(v["status"], "FAILED");
    let (status, _) = post(&c, control("/batches/bat-none/mutate"), None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, failed) = get(&c, v2_url(addr, "/bat-http?expand=results"), Some(TOKEN_A)).await;
    assert!(
        failed["results"].is_null(),
        "a failed batch has no reliable results"
    );
    assert_eq!(sim.request_count(), 5, "control calls are not counted");
}

#[tokio::test]
async fn v2_status_moves_over_time_with_a_step() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();
    sim.add_batch(TOKEN_A, "bat-timed", 10, BatchStatus::Pending);
    sim.set_batch_step(Some(Duration::from_millis(100)));
    let url = v2_url(addr, "/bat-timed");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let (_, _, v) = get(&c, url.clone(), Some(TOKEN_A)).await;
        let status = v["status"].as_str().unwrap().to_owned();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status == "COMPLETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        seen.last().map(String::as_str),
        Some("COMPLETED"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|s| ["PENDING", "RUNNING", "COMPLETED"].contains(&s.as_str())),
        "{seen:?}"
    );
    // Over HTTP too: the step can be turned off.
    let (status, _) = post(&c, format!("http://{addr}/_sim/batch-step?ms=0"), None, "").await;
    assert_eq!(status, StatusCode::OK);
    sim.add_batch(TOKEN_A, "bat-still", 10, BatchStatus::Pending);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.batch_status("bat-still"), Some(BatchStatus::Pending));
}

#[tokio::test]
async fn fault_rules_can_target_the_polling_reads() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();
    sim.set_fault_on(
        RouteSet::POLLS,
        FaultRule {
            fault: Fault::Status {
                status: 429,
                retry_after: Some("1".into()),
                retry_after_ms: None,
            },
            remaining: None,
            only_token: None,
            only_item_lists: false,
        },
    );
    for url in [
        v2_url(addr, &format!("/{BATCH_A}")),
        v2_url(addr, ""),
        format!("http://{addr}/api/v1/beta/batch-processing/{JOB_A}"),
        items_url(addr, JOB_A, ""),
    ] {
        let (status, headers, _) = get(&c, url.clone(), Some(TOKEN_A)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{url}");
        assert_eq!(headers["retry-after"], "1");
    }
    let (status, _) = post(
        &c,
        v2_url(addr, &format!("/{BATCH_B}/cancel")),
        Some(TOKEN_B),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "writes are not polls");

    // The old rule still narrows to v1 item lists only.
    sim.set_fault(Some(FaultRule {
        fault: Fault::ResetBeforeResponse,
        remaining: Some(1),
        only_token: None,
        only_item_lists: true,
    }));
    let (status, _, _) = get(&c, v2_url(addr, &format!("/{BATCH_A}")), Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::OK);
    let r = send(
        &c,
        Method::GET,
        items_url(addr, JOB_A, ""),
        Some(TOKEN_A),
        Bytes::new(),
    )
    .await;
    assert!(r.is_err(), "item list reset");

    // Over HTTP: routes=v2_get only.
    let (status, _) = post(
        &c,
        format!("http://{addr}/_sim/fault?status=503&routes=v2_get&times=1"),
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(&c, v2_url(addr, ""), Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::OK, "list untouched");
    let (status, _, _) = get(&c, v2_url(addr, &format!("/{BATCH_A}")), Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, _) = get(&c, v2_url(addr, &format!("/{BATCH_A}")), Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::OK, "times=1 used up");
    let (status, v) = post(
        &c,
        format!("http://{addr}/_sim/fault?status=503&routes=v3"),
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    let (_, _, stats) = get(&c, format!("http://{addr}/_sim/stats"), None).await;
    assert_eq!(stats["routes"]["v2_get"], sim.route_count(Route::V2Get));
    assert_eq!(stats["routes"]["v1_items"], sim.item_list_count());
    assert_eq!(stats["item_lists"], sim.item_list_count());
    assert_eq!(sim.route_count(Route::V2Get), 4);
    assert_eq!(sim.route_count(Route::V2List), 2);
    assert_eq!(sim.route_count(Route::V1Status), 1);
    assert_eq!(sim.item_list_count(), 2);
}

#[tokio::test]
async fn v1_shapes_strict_queries_and_cancel() {
    let sim = SimUpstream::new(SimOptions::default());
    let addr = sim.clone().spawn().await;
    let c = client();
    let status_url =
        |job: &str, q: &str| format!("http://{addr}/api/v1/beta/batch-processing/{job}{q}");

    let (status, _, v) = get(&c, status_url(JOB_A, ""), Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::OK);
    for field in ["id", "job_type", "project_id", "status", "total_items"] {
        assert!(
            !v["job"][field].is_null(),
            "BatchJobResponse requires {field}: {v}"
        );
    }
    assert_eq!(v["job"]["project_id"], PROJECT_A);
    assert!(v["progress_percentage"].is_f64());

    // An item's job_id is its own processing job's id: one per started item, null before.
    let (_, _, page) = get(&c, items_url(addr, JOB_A, "?limit=1000"), Some(TOKEN_A)).await;
    let items = page["items"].as_array().unwrap();
    let started: Vec<&str> = items.iter().filter_map(|i| i["job_id"].as_str()).collect();
    let mut unique = started.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), started.len());
    assert!(items
        .iter()
        .filter(|i| i["status"] == "pending")
        .all(|i| i["job_id"].is_null()));

    // Lax integers as pydantic reads them; 1.5 refused; defaults 100/0.
    for (query, n) in [
        ("?limit=5.0", 5),
        ("?limit=%2B5", 5),
        ("?limit=%205%20", 5),
        ("?limit=1_000", 1000),
        ("", 100),
        ("?offset=0.0", 100),
    ] {
        let (status, _, v) = get(&c, items_url(addr, JOB_A, query), Some(TOKEN_A)).await;
        assert_eq!(status, StatusCode::OK, "{query}: {v}");
        assert_eq!(v["items"].as_array().unwrap().len(), n, "{query}");
        assert_eq!(v["total_size"], 2500);
    }
    let (status, _, v) = get(&c, items_url(addr, JOB_A, "?limit=1.5"), Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["type"], "int_parsing");
    let (status, _, v) = get(&c, status_url(JOB_A, "?organization_id=abc"), Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["detail"][0]["msg"],
        "Input should be a valid UUID, invalid length: found 3"
    );
    let (status, _, _) = get(
        &c,
        items_url(addr, JOB_A, &format!("?project_id={PROJECT_B}")),
        Some(TOKEN_A),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "outside the scope given");

    // Cancel answers BatchJobCancelResponse; a finished job stays as it is.
    let cancel = |job: &str| format!("http://{addr}/api/v1/beta/batch-processing/{job}/cancel");
    let (status, v) = post(&c, cancel(JOB_A), Some(TOKEN_A), r#"{"reason":"test"}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["job_id"], JOB_A);
    assert_eq!(v["status"], "cancelled");
    assert!(v["processed_items"].is_u64() && v["message"].is_string());
    let (status, v) = post(&c, cancel(JOB_A_DONE), Some(TOKEN_A), "{}").await;
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::OK, Some("completed"))
    );
    assert_eq!(
        v["message"],
        "Batch job is already completed; nothing to cancel"
    );
    assert_eq!(sim.route_count(Route::V1Cancel), 2);
    assert_eq!(sim.route_count(Route::V1Status), 2);
}
