//! Validation: an invalid item-list query is answered 422 at the edge, with the body the API
//! itself gives, and costs no upstream request; the bounds of `limit` are accepted.

use crate::common::*;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn invalid_queries_are_rejected_without_upstream_requests() {
    let h = Harness::start(|_| {}).await;
    let cases: [(&str, &str, &str); 9] = [
        ("limit=0", "limit", "0"),
        ("limit=1001", "limit", "1001"),
        ("limit=-1", "limit", "-1"),
        ("limit=abc", "limit", "abc"),
        ("limit=1.5", "limit", "1.5"),
        ("limit=", "limit", ""),
        ("status=unknown", "status", "unknown"),
        ("offset=-1", "offset", "-1"),
        ("offset=abc", "offset", "abc"),
    ];
    let mut ours = Vec::new();
    for (query, param, input) in cases {
        let r = h.get(&items_path(JOB_A, query), Some(TOKEN_A)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(r.header("cache-status").is_some(), "{query}: Cache-Status");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{query}"
        );
        let body = r.json();
        let d = &body["detail"][0];
        assert_eq!(d["loc"], json!(["query", param]), "{query}: {body}");
        assert!(
            d["type"].as_str().is_some_and(|t| !t.is_empty()),
            "{query}: {body}"
        );
        assert!(
            d["msg"].as_str().is_some_and(|t| !t.is_empty()),
            "{query}: {body}"
        );
        assert_eq!(d["input"], json!(input), "{query}: {body}");
        ours.push((query, body));
    }
    assert_eq!(
        h.sim.request_count(),
        0,
        "no upstream request for a rejected query"
    );
    assert!(h.metric("pollgate_validation_rejections_total").await >= 9.0);

    // The bodies are the ones the (simulated) API itself gives.
    let auth = bearer(TOKEN_A);
    for (query, body) in ours {
        let url = format!("http://{}{}", h.upstream, items_path(JOB_A, query));
        let direct = h
            .client
            .send(
                Method::GET,
                &url,
                &[("authorization", auth.as_str())],
                Bytes::new(),
            )
            .await;
        assert_eq!(direct.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(body, direct.json(), "{query}: gateway vs API 422 body");
    }
}

#[tokio::test]
async fn limit_bounds_are_accepted() {
    let h = Harness::start(|_| {}).await;
    for (query, n) in [("limit=1", 1), ("limit=1000", 1000)] {
        let r = h.get(&items_path(JOB_A, query), Some(TOKEN_A)).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text());
        assert_eq!(r.json()["items"].as_array().map(Vec::len), Some(n));
    }
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 2);
}
