//! Shielding shared by a fleet: one back-off, one probe and one budget per credential.

use std::time::Duration;

use crate::common::fleet::{eventually, Fleet};
use crate::common::*;
use http::StatusCode;

fn rate_limit_once(seconds: &str) -> FaultRule {
    FaultRule {
        fault: Fault::Status {
            status: 429,
            retry_after: Some(seconds.into()),
            retry_after_ms: None,
        },
        remaining: Some(1),
        only_token: Some(TOKEN_A.into()),
        only_item_lists: true,
    }
}

async fn backed_off(f: &Fleet) -> Vec<f64> {
    let mut out = Vec::new();
    for g in &f.gateways {
        out.push(g.metric("pollgate_backoffs_active").await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_via_one_gateway_backs_the_credential_off_on_all() {
    let f = Fleet::start(3, |_| {}).await;
    f.sim.set_fault(Some(rate_limit_once("30")));
    let first = f.gateways[0]
        .get(&items_path(JOB_A, "limit=1"), Some(TOKEN_A))
        .await;
    assert_eq!(first.status, StatusCode::TOO_MANY_REQUESTS);
    let everywhere = eventually(Duration::from_millis(250), || async {
        backed_off(&f).await == [1.0, 1.0, 1.0]
    })
    .await;
    assert!(everywhere, "back-offs: {:?}", backed_off(&f).await);
    let before = f.upstream_items(JOB_A);
    for (i, g) in f.gateways.iter().enumerate() {
        let res = g
            .get(
                &items_path(JOB_A, &format!("limit={}", i + 2)),
                Some(TOKEN_A),
            )
            .await;
        assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            res.cache_status().contains("detail=backoff"),
            "{}",
            res.cache_status()
        );
    }
    assert_eq!(
        f.upstream_items(JOB_A),
        before,
        "no request for the backed-off credential"
    );
    // Another credential is untouched on every gateway.
    for g in &f.gateways {
        let res = g.get(&items_path(JOB_B, "limit=1"), Some(TOKEN_B)).await;
        assert_eq!(res.status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_backoff_ends_one_request_probes_for_the_fleet() {
    let f = Fleet::start(3, |_| {}).await;
    f.sim.set_fault(Some(rate_limit_once("1")));
    let first = f.gateways[0]
        .get(&items_path(JOB_A, "limit=1"), Some(TOKEN_A))
        .await;
    assert_eq!(first.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        eventually(Duration::from_millis(250), || async {
            backed_off(&f).await == [1.0, 1.0, 1.0]
        })
        .await
    );
    // Wait out the back-off (1 s), then everyone asks at once while the probe is slow.
    assert!(
        eventually(Duration::from_secs(3), || async {
            backed_off(&f).await == [0.0, 0.0, 0.0]
        })
        .await
    );
    f.sim.set_latency(Duration::from_millis(300));
    let before = f.upstream_items(JOB_A);
    let tasks: Vec<_> = (0..9)
        .map(|i| {
            spawn_get(
                &f.gateways[i % 3],
                &items_path(JOB_A, &format!("limit={}", 10 + i)),
                TOKEN_A,
                &[],
            )
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let (res, _) = t.await.expect("task");
        match res.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}: {}", res.text()),
        }
    }
    assert_eq!(ok, 1, "one probe answered");
    assert_eq!(
        f.upstream_items(JOB_A) - before,
        1,
        "one probe reached the upstream"
    );
    // Its verdict opens the credential on every gateway.
    f.sim.set_latency(Duration::ZERO);
    for g in &f.gateways {
        let open = eventually(Duration::from_millis(500), || async {
            g.get(&items_path(JOB_A, "limit=1"), Some(TOKEN_A))
                .await
                .status
                == StatusCode::OK
        })
        .await;
        assert!(open, "the probe's success reached every gateway");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_budget_holds_for_the_fleet() {
    let f = Fleet::start(3, |c| {
        c.upstream.max_requests_per_second = Some(2.0);
        c.upstream.budget_wait = Duration::ZERO;
    })
    .await;
    // 15 distinct pages at once, 5 per gateway: three gateways with a budget of
    // 2/s each would send 6; the fleet's one budget lets 2 through.
    let tasks: Vec<_> = (0..15)
        .map(|i| {
            spawn_get(
                &f.gateways[i % 3],
                &items_path(JOB_A, &format!("limit={}", i + 1)),
                TOKEN_A,
                &[],
            )
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let (res, _) = t.await.expect("task");
        match res.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(
                    res.cache_status().contains("backoff"),
                    "{}",
                    res.cache_status()
                )
            }
            other => panic!("unexpected {other}"),
        }
    }
    let sent = f.upstream_items(JOB_A);
    assert_eq!(ok, sent);
    assert!(
        (2..=3).contains(&sent),
        "fleet budget: {sent} upstream requests"
    );
    // Another credential has its own budget.
    let b = f.gateways[1]
        .get(&items_path(JOB_B, "limit=1"), Some(TOKEN_B))
        .await;
    assert_eq!(b.status, StatusCode::OK);
}
