//! The in-process tier: a moka cache bounded in bytes, with per-entry retention.
//!
//! moka's synchronous cache, not its `future` one: a lookup never waits on
//! anything, and the async form's 800-byte future would be created and moved
//! on every hit (its work is the same).
//!
//! Each entry is kept for its own retention (TTL plus the longest stale
//! window, decided by the policy when it is stored); freshness is judged at
//! read time from the entry's own timestamps. Purges bump a generation
//! counter as well as removing entries, so a fill that started before a
//! purge can never store a page from before it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use moka::Expiry;

use super::{Entry, Purge};
use crate::key::CacheKey;

/// What moka holds per key: the entry and how long to keep it.
#[derive(Clone)]
struct Stored {
    entry: Arc<Entry>,
    retain_for: Duration,
}

/// Keeps each entry for its own retention, re-armed on replace.
struct RetainFor;

impl Expiry<CacheKey, Stored> for RetainFor {
    fn expire_after_create(&self, _: &CacheKey, value: &Stored, _: StdInstant) -> Option<Duration> {
        Some(value.retain_for)
    }

    fn expire_after_update(
        &self,
        _: &CacheKey,
        value: &Stored,
        _: StdInstant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.retain_for)
    }
}

/// Size of the tier, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub entries: u64,
    pub bytes: u64,
}

pub struct Memory {
    cache: moka::sync::Cache<CacheKey, Stored, foldhash::quality::RandomState>,
    /// Bumped by every purge; a fill stores only if it is unchanged since the fill began.
    generation: AtomicU64,
}

impl Memory {
    pub fn new(capacity_bytes: u64) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|key: &CacheKey, stored: &Stored| stored.entry.weight(key.as_str().len()))
            .expire_after(RetainFor)
            .support_invalidation_closures()
            .build_with_hasher(foldhash::quality::RandomState::default());
        Memory {
            cache,
            generation: AtomicU64::new(0),
        }
    }

    /// The entry stored under a key's text ([`CacheKey::as_str`]).
    pub fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.cache.get(key).map(|s| s.entry)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Store `entry` unless a purge happened since `generation` was read.
    pub fn insert_if_current(
        &self,
        key: CacheKey,
        entry: Arc<Entry>,
        retain_for: Duration,
        generation: u64,
    ) -> bool {
        if self.generation() != generation {
            return false;
        }
        self.cache.insert(key.clone(), Stored { entry, retain_for });
        // A purge that raced the insert must win: drop what we just stored.
        if self.generation() != generation {
            self.cache.invalidate(&key);
            return false;
        }
        true
    }

    pub fn purge(&self, scope: &Purge) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let matches: Box<dyn Fn(&Entry) -> bool + Send + Sync> = match scope {
            Purge::All => {
                self.cache.invalidate_all();
                return;
            }
            Purge::Resource(resource) => {
                let resource = resource.clone();
                Box::new(move |e| e.resource.as_ref() == Some(&resource))
            }
            Purge::Route(route) => {
                let route = *route;
                Box::new(move |e| e.route == route)
            }
        };
        if let Err(e) = self
            .cache
            .invalidate_entries_if(move |_key, stored| matches(&stored.entry))
        {
            // Only fails when closures are not enabled at build time, which they are.
            tracing::error!(error = %e, "scoped purge failed; purging everything instead");
            self.cache.invalidate_all();
        }
    }

    /// Size now, after letting moka apply pending evictions (its counts are eventually consistent).
    pub fn usage(&self) -> Usage {
        self.cache.run_pending_tasks();
        Usage {
            entries: self.cache.entry_count(),
            bytes: self.cache.weighted_size(),
        }
    }
}
