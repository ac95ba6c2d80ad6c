//! Waiting in tests: on a condition, on tasks, on a future, always with a bound, so a broken
//! gateway fails a test instead of hanging it, and no test passes by sleeping long enough.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Serializes the CPU-heavy tests of a test binary (hundreds of concurrent clients, the 50 MiB
/// upload) so that on a 2-core machine one cannot starve another past a time bound.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns whether it held.
/// (Waiting for a condition, never asserting on elapsed time.)
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    wait_for(limit, || std::future::ready(cond())).await
}

/// Like [`wait_until`], for a condition that must await (a request, a metric).
pub async fn wait_for<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(super::ms(10)).await;
    }
}

/// Wait for every task, all within `limit` (a bound against hangs, not a speed claim).
pub async fn join_all_within<T: Send + 'static>(
    limit: Duration,
    tasks: Vec<JoinHandle<T>>,
) -> Vec<T> {
    let all = async {
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await.expect("client task"));
        }
        out
    };
    timeout(limit, all)
        .await
        .unwrap_or_else(|_| panic!("not every client was answered within {limit:?}"))
}

/// `fut`'s output, or a panic naming `what` when it takes longer than `limit`.
pub async fn bounded<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {limit:?}"))
}
