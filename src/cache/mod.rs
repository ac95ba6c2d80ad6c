//! The response cache: storing, finding, purging and coalescing, behind one interface.
//!
//! The request flow sees only [`Cache`]: `get`, `store_if_current`, the
//! purges, and `join_or_start` a fill. How pages are kept (a moka tier bounded
//! in bytes, [`memory`]), how concurrent fills of one key become one
//! ([`flight`]), and how a purge stops an older fill from storing (a
//! generation, captured in a [`Fence`]) stay in here, so a second tier shared
//! by a fleet of gateways is a second implementation behind this facade,
//! not an edit in the flow. Freshness rules live in [`policy`].
//!
//! With `[fleet]`, that second implementation is [`fleet`]: Redis as L2,
//! with fleet-wide fill leases, fenced stores and epoch purges. The flow
//! does not change: `get` reads L2 when L1 has nothing fresh, the flight
//! task of `join_or_start` takes the fleet lease (or waits for the gateway
//! holding it), and `store_if_current` stores in both tiers.

pub mod entry;
pub mod fleet;
mod flight;
mod memory;
pub mod policy;

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::Duration;

pub use entry::{Compressed, Entry};
pub use flight::{FlightOutcome, FlightResult, Role, Ticket};
pub use memory::Usage;
pub use policy::{Freshness, Policy, Staleness};

use crate::config::CacheConfig;
use crate::fleet::Fleet;
use crate::key::{CacheKey, ResourceId};
use crate::metrics::Metrics;
use fleet::Shared;
use flight::Flights;
use memory::Memory;

/// Why the cache could not give a request what it asked for.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    #[error("still waiting for the upstream after {0:?}")]
    WaitTimeout(Duration),
    #[error("too many clients waiting on one fetch")]
    TooManyWaiters,
}

/// Which pages a purge removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    All,
    /// Every credential's pages of one job or batch, on every route.
    Resource(ResourceId),
    /// Every page of one route (e.g. every v2 list page).
    Route(&'static str),
}

/// Taken when a fill starts; storing with a fence from before a purge is refused,
/// so a page fetched before a purge can never be stored after it.
#[derive(Debug, Clone, Copy)]
pub struct Fence {
    generation: u64,
}

/// What a configuration reload may change in the cache, swapped as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    pub policy: Policy,
    /// Longest a fill waits on another gateway's lease (`cache.wait_timeout`).
    pub wait_timeout: std::time::Duration,
}

impl Tuning {
    pub fn new(config: &CacheConfig) -> Self {
        Tuning {
            policy: Policy::new(config),
            wait_timeout: config.wait_timeout,
        }
    }
}

pub struct Cache {
    memory: Arc<Memory>,
    flights: Arc<Flights>,
    /// Shared with the fleet tier; swapped by a reload.
    tuning: Arc<ArcSwap<Tuning>>,
    /// The fleet's shared tier, with `[fleet]`.
    shared: Option<Arc<Shared>>,
}

impl Cache {
    /// A cache of this process alone.
    pub fn new(config: &CacheConfig) -> Self {
        Cache {
            memory: Arc::new(Memory::new(config.capacity_bytes)),
            flights: Arc::new(Flights::default()),
            tuning: Arc::new(ArcSwap::from_pointee(Tuning::new(config))),
            shared: None,
        }
    }

    /// A cache that shares pages and fills with the fleet through `fleet`
    /// (inside a tokio runtime: it listens to the fleet's purges).
    pub fn with_fleet(config: &CacheConfig, fleet: Arc<Fleet>, metrics: Arc<Metrics>) -> Self {
        let mut cache = Cache::new(config);
        cache.shared = Some(Shared::new(
            fleet,
            cache.memory.clone(),
            cache.tuning.clone(),
            metrics,
        ));
        cache
    }

    /// The freshness rules entries are judged by, as of now.
    pub fn policy(&self) -> Policy {
        self.tuning.load().policy
    }

    /// Judge every entry, stored or not, by `tuning` from now on (a reload): entries keep
    /// only facts, so nothing cached is dropped or rewritten.
    pub fn retune(&self, tuning: Tuning) {
        self.tuning.store(Arc::new(tuning));
    }

    /// The entry under `key`, fresh or stale, if it is still retained. A fresh
    /// L1 entry costs no Redis call; otherwise the fleet's copy is read, and
    /// kept in L1 when it is newer than ours.
    pub async fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.get_after(key, self.get_local(key.as_str())).await
    }

    /// The first, synchronous half of [`Cache::get`]: this gateway's memory (L1) only, by
    /// the key's text (the hit path never owns a [`CacheKey`]).
    pub fn get_local(&self, key: &str) -> Option<Arc<Entry>> {
        self.memory.get(key)
    }

    /// The second half of [`Cache::get`], given what [`Cache::get_local`] found: in a
    /// fleet, the shared tier (L2) when L1 had nothing fresh.
    pub async fn get_after(&self, key: &CacheKey, local: Option<Arc<Entry>>) -> Option<Arc<Entry>> {
        let Some(shared) = &self.shared else {
            return local;
        };
        if let Some(entry) = &local {
            if matches!(
                self.policy().judge(entry, tokio::time::Instant::now()),
                Freshness::Fresh(_)
            ) {
                return local;
            }
        }
        // Boxed: the Redis read's state must not size the future of every L1 hit.
        Box::pin(self.read_shared(shared, key, local)).await
    }

    /// An L1 miss (or stale copy) in a fleet: the fleet's copy, kept in L1 when newer.
    async fn read_shared(
        &self,
        shared: &Shared,
        key: &CacheKey,
        local: Option<Arc<Entry>>,
    ) -> Option<Arc<Entry>> {
        let generation = self.memory.generation();
        match shared.read(key).await {
            Some(remote)
                if local
                    .as_ref()
                    .is_none_or(|l| remote.fetched_wall > l.fetched_wall) =>
            {
                shared.keep_locally(key, remote.clone(), generation).await;
                Some(remote)
            }
            _ => local,
        }
    }

    /// The fleet's copy of `key`, skipping L1 and keeping nothing: what an L1
    /// miss costs in a fleet (benches and diagnostics). `None` without `[fleet]`.
    pub async fn get_shared(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.shared.as_ref()?.read(key).await
    }

    /// Taken by a fill when it starts (see [`Fence`]).
    pub fn fence(&self) -> Fence {
        Fence {
            generation: self.memory.generation(),
        }
    }

    /// Store `entry` unless a purge happened since `fence` was taken. Returns whether it stays stored.
    /// In a fleet, a fill holding the page's lease also stores it in L2 (fenced there too).
    pub async fn store_if_current(&self, key: CacheKey, entry: Arc<Entry>, fence: Fence) -> bool {
        let retain_for = self.policy().retain_for(entry.terminal);
        let stored =
            self.memory
                .insert_if_current(key.clone(), entry.clone(), retain_for, fence.generation);
        if let (true, Some(shared)) = (stored, &self.shared) {
            shared.store(&key, &entry).await;
        }
        stored
    }

    /// Forget the pages `scope` names, and refuse stores of fills that started
    /// before; in a fleet, on every gateway.
    pub async fn purge(&self, scope: &Purge) {
        self.memory.purge(scope);
        if let Some(shared) = &self.shared {
            shared.purge(scope).await;
        }
    }

    /// Join the fill of `key`, or start one by spawning `fetch()` in its own task.
    ///
    /// `fetch` stores its result itself (through [`store_if_current`](Self::store_if_current))
    /// before returning, so a request arriving after the fill lands finds the page.
    /// At most `max_waiters` wait on one fill; past that, [`CacheError::TooManyWaiters`].
    pub fn join_or_start<F, Fut>(
        &self,
        key: &CacheKey,
        max_waiters: usize,
        fetch: F,
    ) -> Result<Ticket, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = FlightResult> + Send + 'static,
    {
        // A fill stores in L1 before it leaves the flights: a fresh L1 page is one that landed.
        let landed = || {
            self.memory.get(key.as_str()).filter(|e| {
                matches!(
                    self.policy().judge(e, tokio::time::Instant::now()),
                    Freshness::Fresh(_)
                )
            })
        };
        match &self.shared {
            None => self.flights.join_or_start(key, max_waiters, landed, fetch),
            Some(shared) => {
                let (shared, owned) = (shared.clone(), key.clone());
                self.flights
                    .join_or_start(key, max_waiters, landed, move || {
                        shared.fill(owned, fetch())
                    })
            }
        }
    }

    /// Is a fill of `key` running now?
    pub fn is_filling(&self, key: &CacheKey) -> bool {
        self.flights.contains(key)
    }

    /// Fills running now.
    pub fn fills_in_flight(&self) -> usize {
        self.flights.len()
    }

    pub async fn usage(&self) -> Usage {
        // Applying moka's pending evictions can take a moment: off the async workers' hot loop
        // is not needed for a scrape, which is rare.
        self.memory.usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::key::{FingerprintKey, ResourceKind};
    use http::{HeaderMap, HeaderValue};

    fn key(route: &str, job: &str) -> CacheKey {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        let cred = FingerprintKey::random().credential(&h).expect("cred");
        CacheKey::new(&cred, route, job, "limit=1", &[], &h)
    }

    fn entry(route: &'static str, job: &str) -> Arc<Entry> {
        let mut e = Entry::for_tests(b"page", false);
        e.route = route;
        e.resource = Some(ResourceId::new(ResourceKind::Job, job));
        Arc::new(e)
    }

    fn job(id: &str) -> Purge {
        Purge::Resource(ResourceId::new(ResourceKind::Job, id))
    }

    async fn store(cache: &Cache, k: &CacheKey, e: Arc<Entry>, fence: Fence) -> bool {
        cache.store_if_current(k.clone(), e, fence).await
    }

    #[tokio::test]
    async fn purges_remove_their_scope_only() {
        let cache = Cache::new(&Config::default().cache);
        let (a_items, a_job, b_items) = (key("items", "a"), key("job", "a"), key("items", "b"));
        assert!(store(&cache, &a_items, entry("items", "a"), cache.fence()).await);
        assert!(store(&cache, &a_job, entry("job", "a"), cache.fence()).await);
        assert!(store(&cache, &b_items, entry("items", "b"), cache.fence()).await);
        cache.purge(&job("a")).await;
        assert!(cache.get(&a_items).await.is_none());
        assert!(cache.get(&a_job).await.is_none());
        assert!(cache.get(&b_items).await.is_some(), "another job stays");
        assert!(store(&cache, &a_job, entry("job", "a"), cache.fence()).await);
        cache.purge(&Purge::Route("items")).await;
        assert!(cache.get(&b_items).await.is_none());
        assert!(cache.get(&a_job).await.is_some(), "another route stays");
        // The same id naming a batch is another resource.
        let batch = Purge::Resource(ResourceId::new(ResourceKind::Batch, "a"));
        cache.purge(&batch).await;
        assert!(cache.get(&a_job).await.is_some());
    }

    #[tokio::test]
    async fn a_fill_from_before_a_purge_cannot_store() {
        let cache = Cache::new(&Config::default().cache);
        let (a, b) = (key("items", "a"), key("items", "b"));
        let before = cache.fence();
        assert!(store(&cache, &a, entry("items", "a"), before).await);
        cache.purge(&job("a")).await;
        assert!(cache.get(&a).await.is_none(), "purged");
        assert!(
            !store(&cache, &a, entry("items", "a"), before).await,
            "the old fence is refused"
        );
        assert!(store(&cache, &b, entry("items", "b"), cache.fence()).await);
        let fence = cache.fence();
        cache.purge(&Purge::All).await;
        assert!(cache.get(&b).await.is_none());
        assert!(!store(&cache, &b, entry("items", "b"), fence).await);
        assert!(store(&cache, &b, entry("items", "b"), cache.fence()).await);
        assert!(cache.get(&b).await.is_some());
    }
}
