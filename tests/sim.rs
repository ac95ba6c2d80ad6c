//! End-to-end checks of the simulated upstream over real loopback HTTP.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use pollgate_sim::{
    Fault, FaultRule, SimOptions, SimUpstream, JOB_A, JOB_A_DONE, JOB_B, TOKEN_A, TOKEN_B,
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
