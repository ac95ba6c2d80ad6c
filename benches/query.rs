//! Query canonicalization + validation + cache-key building, typical and adversarial.
//!
//! Each `query/*` iteration is what the item route does before touching the cache:
//! `canonicalize`, then for a valid query the credential fingerprint
//! (`FingerprintKey::credential`, a keyed BLAKE3) and `CacheKey::new`; for an invalid
//! one the 422 body (`QueryRejection::to_json`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{header, HeaderMap, HeaderValue};
use pollgate::key::{CacheKey, FingerprintKey};
use pollgate::route::{canonicalize, ROUTES};

const JOB: &str = "job-a-running";

/// What the route does with one raw query; returns a size so nothing is optimized away.
fn route_query(fp: &FingerprintKey, headers: &HeaderMap, raw: &str) -> usize {
    match canonicalize(ROUTES[0].params, Some(raw)) {
        Ok(q) => {
            let cred = fp.credential(headers).expect("credential");
            CacheKey::new(&cred, "items", JOB, &q, &[], headers)
                .as_str()
                .len()
        }
        Err(rejection) => rejection.to_json().len(),
    }
}

fn cases() -> Vec<(&'static str, String)> {
    // 200 repeats of the same parameter: valid, the last one wins.
    let repeated: String = (0..200)
        .map(|i| format!("limit={}", i % 1000 + 1))
        .collect::<Vec<_>>()
        .join("&");
    // 8 unknown parameters with 1 KiB values (kept and forwarded, so re-encoded).
    let long_unknown: String = (0..8)
        .map(|i| format!("x_unknown_param_{i}={}", "a".repeat(1024)))
        .collect::<Vec<_>>()
        .join("&")
        + "&limit=10";
    // Percent-encoded junk in names and values: invalid UTF-8, NUL, bad escapes, '+'.
    let junk: String = (0..64)
        .map(|i| format!("%ff%fe{i}%00%zz=%E2%82%AC%F0%9F%92%A9%C3%28+%25%2G%{i:02x}"))
        .collect::<Vec<_>>()
        .join("&")
        + "&limit=10";
    // Invalid values: three errors reported at once, 422 body built.
    let invalid = "limit=0&offset=x&status=nope".to_owned();
    // One invalid value with a 2 KiB input echoed back in the 422 body.
    let invalid_long = format!("limit={}&status=completed", "9".repeat(2048));
    vec![
        ("typical/limit10", "limit=10".to_owned()),
        (
            "typical/limit_offset_status",
            "limit=100&offset=200&status=completed".to_owned(),
        ),
        ("adversarial/repeated_200", repeated),
        ("adversarial/long_unknown_8x1k", long_unknown),
        ("adversarial/percent_junk_64", junk),
        ("invalid_422/three_errors", invalid),
        ("invalid_422/long_input_2k", invalid_long),
    ]
}

fn bench_query(c: &mut Criterion) {
    let fp = FingerprintKey::random();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer sk-tenant-a"),
    );

    // Sanity, outside the timed loops: the cases are what their names say.
    let all = cases();
    for (name, raw) in &all {
        let valid = canonicalize(ROUTES[0].params, Some(raw)).is_ok();
        assert_eq!(valid, !name.starts_with("invalid_422"), "{name}");
    }

    let mut g = c.benchmark_group("query");
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, raw) in &all {
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| route_query(&fp, &headers, black_box(raw)))
        });
    }
    g.finish();

    // The pieces of the typical case, to see where its time goes.
    let mut g = c.benchmark_group("query_parts");
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let raw = "limit=100&offset=200&status=completed";
    g.bench_function("canonicalize", |b| {
        b.iter(|| canonicalize(ROUTES[0].params, Some(black_box(raw))).expect("valid"))
    });
    g.bench_function("credential_fingerprint", |b| {
        b.iter(|| fp.credential(black_box(&headers)).expect("credential"))
    });
    let q = canonicalize(ROUTES[0].params, Some(raw)).expect("valid");
    let cred = fp.credential(&headers).expect("credential");
    g.bench_function("cache_key_new", |b| {
        b.iter(|| CacheKey::new(black_box(&cred), "items", JOB, black_box(&q), &[], &headers))
    });
    g.finish();
}

criterion_group!(benches, bench_query);
criterion_main!(benches);
