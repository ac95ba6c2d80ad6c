//! The circuit breaker in front of Redis: fail fast instead of waiting on a dead or hung server.
//!
//! After `failures` consecutive failed calls the breaker opens: for the
//! cool-off no call reaches Redis and the gateway runs alone. When the
//! cool-off ends, exactly one call is let through as a trial; its success
//! closes the breaker, its failure opens it for another cool-off. A trial
//! that never reports (its caller was cancelled) lapses after `trial_for`, so
//! the breaker cannot stick half-open.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A change of state worth one log line and a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Closed,
}

#[derive(Debug)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    trial_until: Option<Instant>,
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    failures: u32,
    cooloff: Duration,
    trial_for: Duration,
}

impl Breaker {
    pub fn new(failures: u32, cooloff: Duration, trial_for: Duration) -> Self {
        Breaker {
            state: Mutex::new(State {
                consecutive_failures: 0,
                open_until: None,
                trial_until: None,
            }),
            failures: failures.max(1),
            cooloff,
            trial_for,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// May a call go to Redis now? (Taking the trial slot when the cool-off has ended.)
    pub fn admit(&self) -> bool {
        let now = Instant::now();
        let mut s = self.lock();
        let Some(until) = s.open_until else {
            return true;
        };
        if now < until {
            return false;
        }
        match s.trial_until {
            Some(t) if now < t => false,
            _ => {
                s.trial_until = Some(now + self.trial_for);
                true
            }
        }
    }

    /// Is the breaker keeping Redis out right now (open, or half-open with its trial out)?
    pub fn is_open(&self) -> bool {
        self.lock().open_until.is_some()
    }

    pub fn success(&self) -> Option<Transition> {
        let mut s = self.lock();
        s.consecutive_failures = 0;
        s.trial_until = None;
        s.open_until.take().map(|_| Transition::Closed)
    }

    pub fn failure(&self) -> Option<Transition> {
        let now = Instant::now();
        let mut s = self.lock();
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        s.trial_until = None;
        let was_open = s.open_until.is_some();
        if was_open || s.consecutive_failures >= self.failures {
            s.open_until = Some(now + self.cooloff);
        }
        (!was_open && s.open_until.is_some()).then_some(Transition::Opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_cools_off_and_trials_once() {
        let b = Breaker::new(2, Duration::from_secs(2), Duration::from_millis(500));
        assert!(b.admit());
        assert_eq!(b.failure(), None, "one failure is not enough");
        assert_eq!(b.success(), None);
        assert_eq!(b.failure(), None);
        assert_eq!(b.failure(), Some(Transition::Opened));
        assert!(b.is_open() && !b.admit(), "open: nothing goes through");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(b.admit(), "the trial");
        assert!(!b.admit(), "only one trial at a time");
        assert_eq!(
            b.failure(),
            None,
            "a failed trial reopens, no new transition"
        );
        assert!(!b.admit());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(b.admit());
        // The trial's caller vanished: the slot lapses.
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(b.admit(), "a lapsed trial frees the slot");
        assert_eq!(b.success(), Some(Transition::Closed));
        assert!(!b.is_open() && b.admit() && b.admit());
    }
}
