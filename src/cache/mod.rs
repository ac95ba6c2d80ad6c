//! The response cache: the one interface the rest of pollgate uses to store and find pages.
//!
//! [`ResponseCache`] is the seam where tiers plug in. Today it has one tier, a
//! moka future cache bounded in bytes (a weigher) whose per-entry expiry keeps
//! entries for their stale windows; freshness itself is decided from the
//! entry's own timestamps, so a TTL, a terminal-job TTL and stale serving all
//! fit one store. A shared Redis tier for fleets of gateways becomes a second
//! field here, consulted on a local miss and filled on store, without any
//! caller changing.
//!
//! Purges use a generation counter as well as moka's predicates, so a fetch
//! that started before a purge can never store a page from before it.

pub mod entry;
pub mod flight;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use moka::Expiry;

pub use entry::{Compressed, Entry, Freshness};
pub use flight::{FlightOutcome, FlightResult, Flights, Role};

use crate::items::CacheKey;

/// Keeps each entry for its own retention (TTL plus stale windows), re-armed on replace.
struct RetainFor;

impl Expiry<CacheKey, Arc<Entry>> for RetainFor {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Entry>,
        _now: StdInstant,
    ) -> Option<Duration> {
        Some(value.retain_for)
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        value: &Arc<Entry>,
        _now: StdInstant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.retain_for)
    }
}

/// Size of the cache, for metrics and the admin listener.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub entries: u64,
    pub bytes: u64,
}

pub struct ResponseCache {
    memory: moka::future::Cache<CacheKey, Arc<Entry>>,
    /// Bumped by every purge; a fetch stores only if it is unchanged since the fetch began.
    generation: AtomicU64,
}

impl ResponseCache {
    pub fn new(capacity_bytes: u64) -> Self {
        let memory = moka::future::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|key: &CacheKey, entry: &Arc<Entry>| entry.weight(key.as_str().len()))
            .expire_after(RetainFor)
            .support_invalidation_closures()
            .build();
        ResponseCache {
            memory,
            generation: AtomicU64::new(0),
        }
    }

    /// The entry under `key`, fresh or stale, if it is still retained.
    pub async fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.memory.get(key).await
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Store `entry` unless a purge happened since `generation` was read. Returns whether it stays stored.
    pub async fn insert_if_current(
        &self,
        key: CacheKey,
        entry: Arc<Entry>,
        generation: u64,
    ) -> bool {
        if self.generation() != generation {
            return false;
        }
        self.memory.insert(key.clone(), entry).await;
        // A purge that raced the insert must win: drop what we just stored.
        if self.generation() != generation {
            self.memory.invalidate(&key).await;
            return false;
        }
        true
    }

    /// Forget every credential's pages of `job`.
    pub fn purge_job(&self, job: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let job: Arc<str> = Arc::from(job);
        if let Err(e) = self
            .memory
            .invalidate_entries_if(move |_key, entry| entry.job == job)
        {
            // Only fails when closures are not enabled at build time, which they are.
            tracing::error!(error = %e, "job purge failed; purging everything instead");
            self.memory.invalidate_all();
        }
    }

    pub fn purge_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.memory.invalidate_all();
    }

    pub fn usage(&self) -> Usage {
        Usage {
            entries: self.memory.entry_count(),
            bytes: self.memory.weighted_size(),
        }
    }

    /// Let moka apply pending evictions (its counts are eventually consistent).
    pub async fn sync(&self) {
        self.memory.run_pending_tasks().await;
    }
}
