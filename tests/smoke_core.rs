mod common;
use common::*;

#[tokio::test]
async fn miss_then_hit() {
    let h = Harness::start(|_| {}).await;
    let p = items_path(JOB_A, "limit=10");
    let a = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.cache_status(), "pollgate; fwd=miss; stored");
    let b = h.get(&p, Some(TOKEN_A)).await;
    assert_eq!(b.status, 200);
    assert!(
        b.cache_status().starts_with("pollgate; hit; ttl="),
        "{}",
        b.cache_status()
    );
    assert_eq!(a.body, b.body);
    assert_eq!(upstream_item_requests(&h.sim, JOB_A).len(), 1);
    println!("{:?}", b.headers);
}
