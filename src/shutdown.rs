//! Shutdown: one signal that every long-lived task of the process watches.
//!
//! `main` (or a test) triggers it once; the accept loops stop accepting and
//! start draining, held long-polls answer at once, and readiness turns to
//! "draining", all from the same signal, so no component needs to know who
//! else is shutting down. It wraps tokio-util's `CancellationToken`, which
//! wakes every waiter the moment it is cancelled and never misses a trigger
//! that happened before someone started waiting.

use tokio_util::sync::CancellationToken;

/// A cloneable shutdown signal. All clones see the same trigger.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Start shutting down. Idempotent.
    pub fn trigger(&self) {
        self.0.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once [`trigger`](Self::trigger) has been called (at once if it already was).
    pub async fn triggered(&self) {
        self.0.cancelled().await;
    }

    /// Trigger this signal when `signal` resolves (a SIGTERM, a test's channel), from a spawned task.
    pub fn trigger_on(&self, signal: impl std::future::Future<Output = ()> + Send + 'static) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = signal => this.trigger(),
                _ = this.triggered() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger_even_after_the_fact() {
        let s = Shutdown::new();
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.triggered().await })
        };
        assert!(!s.is_triggered());
        s.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        // A late waiter resolves at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), s.clone().triggered())
            .await
            .expect("already triggered");
    }
}
