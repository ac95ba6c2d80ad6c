//! Request coalescing: one upstream fetch per key, however many ask at once.
//!
//! The fetch runs in its **own task**, not in the task of the request that
//! started it, so a client that disconnects (hyper drops its future) cannot
//! cancel the fetch or make another waiter start a second one. Waiters hold a
//! `watch` receiver and are woken the moment the result is sent, with no
//! polling interval. The map entry is removed by a `Drop` guard owned by the
//! fetch task, so even a panicking fetch frees the key, and its dropped sender
//! wakes every waiter with [`UpstreamError::Abandoned`] at once: no key can
//! stay stuck.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::{CacheError, Entry};
use crate::key::CacheKey;
use crate::upstream::UpstreamError;

/// What a fetch produced: the response (any status) and whether it was stored.
#[derive(Debug, Clone)]
pub struct FlightOutcome {
    pub entry: Arc<Entry>,
    pub stored: bool,
    /// Another gateway of the fleet fetched it; this one made no upstream request.
    pub shared: bool,
}

/// Shared by every waiter: the error is an `Arc` so all get the same one.
pub type FlightResult = Result<FlightOutcome, Arc<UpstreamError>>;

/// Whether this request started the fetch or joined one already running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Collapsed,
}

struct Flight {
    result: watch::Receiver<Option<FlightResult>>,
    waiters: AtomicUsize,
}

/// The in-flight fetches, by key. Locked only on misses, briefly, never across an await.
#[derive(Default)]
pub struct Flights {
    map: Mutex<HashMap<CacheKey, Arc<Flight>>>,
}

/// A place in a flight's queue of waiters; leaving it (even by cancellation) frees the place.
pub struct Ticket {
    flight: Arc<Flight>,
    pub role: Role,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.flight.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Ticket {
    /// Wait for the fetch's result, at most `timeout`.
    pub async fn wait(&self, timeout: Duration) -> Result<FlightResult, CacheError> {
        let mut rx = self.flight.result.clone();
        let waited = tokio::time::timeout(timeout, async {
            match rx.wait_for(Option::is_some).await {
                Ok(value) => value.clone(),
                Err(_closed) => None,
            }
        })
        .await;
        match waited {
            Err(_) => Err(CacheError::WaitTimeout(timeout)),
            // The sender went away without a result: the fill task died.
            Ok(None) => Ok(Err(Arc::new(UpstreamError::Abandoned))),
            Ok(Some(result)) => Ok(result),
        }
    }
}

/// Removes the flight from the map when the fetch task ends, however it ends.
struct Landing {
    flights: Arc<Flights>,
    key: CacheKey,
    flight: Arc<Flight>,
}

impl Drop for Landing {
    fn drop(&mut self) {
        let mut map = self
            .flights
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
    }
}

impl Flights {
    /// Number of fetches in flight.
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Is a fetch for `key` running now?
    pub fn contains(&self, key: &CacheKey) -> bool {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }

    /// Join the fetch for `key`, or start one by spawning `fetch()` in its own task.
    ///
    /// `fetch` must store its result in the cache itself before returning, so
    /// that a request arriving after the flight lands finds the cache filled.
    /// At most `max_waiters` may wait on one flight; past that, `TooManyWaiters`.
    ///
    /// `landed` is asked, under the lock and only when no fetch is running, for a fresh page
    /// stored since the caller looked: a caller whose lookup missed just before a fetch
    /// landed joins that fetch's page instead of starting a second upstream request (50 SDK
    /// pollers on 2 busy cores cost 2 requests now and then without it).
    pub fn join_or_start<F, Fut>(
        self: &Arc<Self>,
        key: &CacheKey,
        max_waiters: usize,
        landed: impl FnOnce() -> Option<Arc<Entry>>,
        fetch: F,
    ) -> Result<Ticket, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = FlightResult> + Send + 'static,
    {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = map.get(key) {
            if flight.waiters.fetch_add(1, Ordering::AcqRel) >= max_waiters {
                flight.waiters.fetch_sub(1, Ordering::AcqRel);
                return Err(CacheError::TooManyWaiters);
            }
            return Ok(Ticket {
                flight: flight.clone(),
                role: Role::Collapsed,
            });
        }
        if let Some(entry) = landed() {
            // A flight that has already landed: its result is there, its sender gone.
            let (_, result) = watch::channel(Some(Ok(FlightOutcome {
                entry,
                stored: true,
                shared: false,
            })));
            return Ok(Ticket {
                flight: Arc::new(Flight {
                    result,
                    waiters: AtomicUsize::new(1),
                }),
                role: Role::Collapsed,
            });
        }
        let (tx, rx) = watch::channel(None);
        let flight = Arc::new(Flight {
            result: rx,
            waiters: AtomicUsize::new(1),
        });
        map.insert(key.clone(), flight.clone());
        drop(map);

        let landing = Landing {
            flights: self.clone(),
            key: key.clone(),
            flight: flight.clone(),
        };
        let fut = fetch();
        tokio::spawn(async move {
            let result = fut.await;
            // Leave the map first (the cache is already filled), then wake everyone.
            drop(landing);
            let _ = tx.send(Some(result));
        });
        Ok(Ticket {
            flight,
            role: Role::Leader,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::FingerprintKey;
    use http::{HeaderMap, HeaderValue};
    use std::sync::atomic::AtomicUsize;

    fn key(q: &str) -> CacheKey {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        let cred = FingerprintKey::random().credential(&h).expect("cred");
        CacheKey::new(&cred, "items", "job", q, &[], &h)
    }

    fn outcome() -> FlightResult {
        Ok(FlightOutcome {
            entry: Arc::new(Entry::for_tests(b"x", false)),
            stored: true,
            shared: false,
        })
    }

    #[tokio::test]
    async fn one_fetch_many_waiters_and_the_key_is_freed() {
        let flights = Arc::new(Flights::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let k = key("limit=1");
        let c = calls.clone();
        let leader = flights
            .join_or_start(
                &k,
                10,
                || None,
                move || async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    let _ = go_rx.await;
                    outcome()
                },
            )
            .expect("start");
        assert_eq!(leader.role, Role::Leader);
        let mut followers = Vec::new();
        for _ in 0..9 {
            let t = flights
                .join_or_start(&k, 10, || None, || async { unreachable!("second fetch") })
                .expect("join");
            assert_eq!(t.role, Role::Collapsed);
            followers.push(t);
        }
        assert!(matches!(
            flights.join_or_start(&k, 10, || None, || async { unreachable!() }),
            Err(CacheError::TooManyWaiters)
        ));
        // The leader's client goes away: the fetch goes on.
        drop(leader);
        let _ = go_tx.send(());
        for t in &followers {
            let r = t.wait(Duration::from_secs(5)).await.expect("in time");
            assert!(r.is_ok());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn a_panicking_fetch_wakes_waiters_with_an_error() {
        let flights = Arc::new(Flights::default());
        let k = key("limit=2");
        let t = flights
            .join_or_start(&k, 10, || None, || async { panic!("fetch blew up") })
            .expect("start");
        let r = t
            .wait(Duration::from_secs(5))
            .await
            .expect("woken, not timed out");
        assert!(matches!(r, Err(e) if matches!(*e, UpstreamError::Abandoned)));
        assert!(!flights.contains(&k));
    }

    #[tokio::test]
    async fn a_page_that_landed_since_the_lookup_is_joined_not_fetched_again() {
        let flights = Arc::new(Flights::default());
        let k = key("limit=3");
        let page = Arc::new(Entry::for_tests(b"landed", false));
        let t = flights
            .join_or_start(
                &k,
                10,
                || Some(page.clone()),
                || async { unreachable!("a second fetch") },
            )
            .expect("joined");
        assert_eq!(t.role, Role::Collapsed);
        let r = t.wait(Duration::from_secs(5)).await.expect("at once");
        assert!(matches!(r, Ok(o) if Arc::ptr_eq(&o.entry, &page)));
        assert!(flights.is_empty(), "nothing started");
        // A running fetch is joined before `landed` is asked.
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let leader = flights
            .join_or_start(
                &k,
                10,
                || None,
                move || async move {
                    let _ = go_rx.await;
                    outcome()
                },
            )
            .expect("start");
        let follower = flights
            .join_or_start(
                &k,
                10,
                || unreachable!("not asked"),
                || async { unreachable!("a second fetch") },
            )
            .expect("join");
        assert_eq!(
            (leader.role, follower.role),
            (Role::Leader, Role::Collapsed)
        );
        let _ = go_tx.send(());
    }
}
