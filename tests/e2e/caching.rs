//! Caching: a miss is stored and hit until its TTL passes, equivalent queries share one key,
//! a page over the entry limit is delivered but not stored, large pages are gzipped for the
//! clients that accept it (and only for them), and ETags answer `If-None-Match` with 304.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn miss_then_hit_then_miss_after_ttl() {
    let h = Harness::start(|c| {
        c.cache.ttl = Duration::from_secs(1);
        c.cache.stale_while_revalidate = Duration::ZERO;
    })
    .await;
    let p = items_path(JOB_A, "limit=10");

    let miss = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(miss.status, StatusCode::OK, "{}", miss.text());
    assert_eq!(miss.cache_status(), "pollgate; fwd=miss; stored");
    let body: Value = miss.json();
    assert_eq!(body["items"].as_array().map(Vec::len), Some(10), "{body}");

    let hit = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(hit.status, StatusCode::OK);
    let cs = hit.cache_status();
    let ttl: u64 = cs
        .strip_prefix("pollgate; hit; ttl=")
        .unwrap_or_else(|| panic!("not a hit: {cs:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("ttl in {cs:?} is not a number: {e}"));
    assert!(ttl <= 1, "ttl {ttl} exceeds the configured 1s");
    let age: u64 = hit
        .header("age")
        .expect("a hit carries Age")
        .parse()
        .expect("Age is an integer");
    assert!(age <= 1, "age {age}");
    assert_eq!(hit.body, miss.body, "a hit returns the stored bytes");
    assert_eq!(hit.header("content-type"), miss.header("content-type"));
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 1);

    // The entry was fetched before `miss` arrived: a sleep just past the TTL expires it for
    // sure (the monotonic clock decides, there is no rounding to whole seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.cache_status(), "pollgate; fwd=miss; stored");
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 2);
}

#[tokio::test]
async fn equivalent_queries_share_one_key_and_upstream_sees_the_canonical_one() {
    let h = Harness::start(|_| {}).await;
    let variants = [
        "offset=0&limit=010",
        "limit=10&offset=0",
        "limit=5&limit=10&offset=00",
        "offset=0&limit=10",
    ];
    let mut bodies = Vec::new();
    for q in variants {
        let r = h.get(&items_path(JOB_A, q), Some(TOKEN_A)).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text());
        bodies.push(r.body);
    }
    assert!(bodies.iter().all(|b| b == &bodies[0]));
    let seen = upstream_item_requests(&h.sim, JOB_A);
    assert_eq!(seen.len(), 1, "one key for all variants");
    assert_eq!(seen[0].query.as_deref(), Some("limit=10&offset=0"));
    assert!(!bodies[0].is_empty(), "non-empty page");

    // Unknown parameters are kept (and so forwarded), in canonical order.
    let r = h
        .get(&items_path(JOB_A, "zeta=1&limit=3&alpha=x"), Some(TOKEN_A))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = upstream_item_requests(&h.sim, JOB_A);
    assert_eq!(seen.len(), 2, "an unknown parameter makes another key");
    assert_eq!(
        seen[1].query.as_deref(),
        Some("alpha=x&limit=3&offset=0&zeta=1")
    );
}

#[tokio::test]
async fn a_response_over_the_entry_limit_is_delivered_intact_and_not_stored() {
    let h = Harness::start(|c| c.cache.max_entry_bytes = 10_000).await;
    let direct = h.get(&items_path(JOB_A, "limit=1000"), Some(TOKEN_A)).await;
    assert_eq!(direct.status, StatusCode::OK);
    assert!(
        direct.body.len() > 10_000,
        "the page is larger than the limit"
    );
    assert_eq!(direct.json()["items"].as_array().map(Vec::len), Some(1000));
    assert_eq!(
        direct.cache_status(),
        "pollgate; fwd=miss; detail=not-stored"
    );
    let again = h.get(&items_path(JOB_A, "limit=1000"), Some(TOKEN_A)).await;
    assert_eq!(again.body, direct.body);
    assert!(
        again.cache_status().starts_with("pollgate; fwd=miss"),
        "{}",
        again.cache_status()
    );
    assert_eq!(
        upstream_item_requests(&h.sim, JOB_A).len(),
        2,
        "nothing was stored"
    );
    // A small page under the same limit is stored.
    let small = h.get(&items_path(JOB_A, "limit=5"), Some(TOKEN_A)).await;
    assert_eq!(small.cache_status(), "pollgate; fwd=miss; stored");
}

#[tokio::test]
async fn large_pages_are_served_gzipped_only_to_clients_that_accept_it() {
    use std::io::Read;
    let h = Harness::start(|_| {}).await;
    let auth = bearer(TOKEN_A);
    let large = items_path(JOB_A, "limit=1000");
    let get = |accept: &'static str, extra: Option<(&'static str, String)>| {
        let h = &h;
        let auth = auth.clone();
        let large = large.clone();
        async move {
            let mut headers = vec![
                ("authorization", auth.as_str()),
                ("accept-encoding", accept),
            ];
            if let Some((k, v)) = &extra {
                headers.push((k, v.as_str()));
            }
            h.request(Method::GET, &large, &headers, Bytes::new()).await
        }
    };
    let plain = get("identity", None).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(plain.header("content-encoding").is_none());
    assert_eq!(plain.header("vary"), Some("accept-encoding"));
    let zipped = get("gzip, deflate", None).await;
    assert!(
        zipped.cache_status().starts_with("pollgate; hit"),
        "{}",
        zipped.cache_status()
    );
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert!(
        zipped.body.len() * 4 < plain.body.len(),
        "compressed: {} vs {}",
        zipped.body.len(),
        plain.body.len()
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped.body[..])
        .read_to_end(&mut unzipped)
        .expect("valid gzip");
    assert_eq!(
        unzipped, plain.body,
        "the gzip representation holds the same bytes"
    );
    let (tag_plain, tag_zip) = (
        plain.header("etag").expect("etag"),
        zipped.header("etag").expect("etag"),
    );
    assert_ne!(
        tag_plain, tag_zip,
        "each representation has its own strong ETag"
    );
    // Refused explicitly, or not offered: identity.
    assert!(get("gzip;q=0, br", None)
        .await
        .header("content-encoding")
        .is_none());
    assert!(get("br", None).await.header("content-encoding").is_none());
    // Conditional requests work with either tag.
    let not_modified = get("gzip", Some(("if-none-match", tag_zip.to_owned()))).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.header("etag"), Some(tag_zip));
    assert!(not_modified.body.is_empty());
    // Small pages stay plain (and carry no Vary).
    let small = h
        .request(
            Method::GET,
            &items_path(JOB_A, "limit=10"),
            &[
                ("authorization", auth.as_str()),
                ("accept-encoding", "gzip"),
            ],
            Bytes::new(),
        )
        .await;
    assert!(small.header("content-encoding").is_none() && small.header("vary").is_none());
    assert_eq!(
        upstream_item_requests(&h.sim, JOB_A).len(),
        2,
        "one fill per page, whatever the encoding"
    );
}

#[tokio::test]
async fn no_content_encoding_the_client_did_not_ask_for() {
    let h = Harness::start(|_| {}).await;
    let auth = bearer(TOKEN_A);
    let p = items_path(JOB_A, "limit=10");
    for accept in ["gzip", "br, gzip, deflate", "identity"] {
        let r = h
            .get_with(
                &p,
                &[
                    ("authorization", auth.as_str()),
                    ("accept-encoding", accept),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.header("content-encoding").is_none(), "{:?}", r.headers);
        let _: Value = r.json(); // plain JSON
    }
    let seen = upstream_item_requests(&h.sim, JOB_A);
    assert_eq!(seen.len(), 1, "encoding is normalized, not keyed");
    assert_eq!(
        seen[0]
            .headers
            .get("accept-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("identity")
    );
}

#[tokio::test]
async fn etag_and_if_none_match_including_head() {
    let h = Harness::start(|c| c.cache.ttl = secs(60)).await;
    let p = items_path(JOB_A, "limit=3");
    let r = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(r.status, 200);
    let etag = r.header("etag").expect("200 carries an ETag").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "strong ETag expected, got {etag}"
    );

    let nm = h
        .request_as(Method::GET, &p, TOKEN_A, &[("if-none-match", &etag)])
        .await;
    assert_eq!(nm.status, 304, "{}", nm.text());
    assert!(nm.body.is_empty(), "304 has no body");
    assert_eq!(nm.header("etag"), Some(etag.as_str()));

    let head = h
        .request_as(Method::HEAD, &p, TOKEN_A, &[("if-none-match", &etag)])
        .await;
    assert_eq!(head.status, 304);
    assert!(head.body.is_empty());
    assert_eq!(head.header("etag"), Some(etag.as_str()));

    let list = format!("\"nope\", {etag}");
    let in_list = h
        .request_as(Method::GET, &p, TOKEN_A, &[("if-none-match", &list)])
        .await;
    assert_eq!(in_list.status, 304, "a matching tag inside a list");

    let other = h
        .request_as(Method::GET, &p, TOKEN_A, &[("if-none-match", "\"other\"")])
        .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.body, r.body);
    assert_eq!(other.header("etag"), Some(etag.as_str()));
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 1);
}
