//! Freshness policy: how long a page is fresh, how long it may stand in when stale.
//!
//! Every freshness rule of pollgate lives here, so changing one is one edit:
//! - the TTL of a page, and the longer `terminal_ttl` of a page whose job or
//!   batch is finished (its content no longer changes);
//! - stale-while-revalidate: serve the stale page at once and refresh it in
//!   the background;
//! - stale-if-error: serve the stale page when the upstream fails or the
//!   credential is backed off;
//! - how long an entry is retained at all (its TTL plus the longest stale window).
//!
//! Entries carry only facts (when they were fetched, whether their job was
//! finished); the policy turns facts into verdicts at read time, so a TTL
//! changed by a configuration reload applies to pages already cached.

use std::time::Duration;

use tokio::time::Instant;

use super::Entry;
use crate::config::CacheConfig;

/// The freshness rules in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    ttl: Duration,
    terminal_ttl: Duration,
    stale_while_revalidate: Duration,
    stale_if_error: Duration,
}

/// How an entry stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Servable as a hit; this much freshness left.
    Fresh(Duration),
    /// Past its TTL.
    Stale(Staleness),
}

/// A stale entry, and what it may still be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    /// How far past its TTL.
    pub by: Duration,
    /// Within stale-while-revalidate: serve it now, refresh in the background.
    pub revalidate: bool,
    /// Within stale-if-error: may stand in when the upstream fails or is backed off.
    pub usable: bool,
}

impl Policy {
    pub fn new(config: &CacheConfig) -> Self {
        Policy {
            ttl: config.ttl,
            terminal_ttl: config.terminal_ttl,
            stale_while_revalidate: config.stale_while_revalidate,
            stale_if_error: config.stale_if_error,
        }
    }

    /// Freshness lifetime of a page; `terminal` when its job or batch is finished.
    pub fn fresh_for(&self, terminal: bool) -> Duration {
        if terminal {
            // Never shorter than `ttl`: the config loader raises it (see config::rules).
            self.terminal_ttl
        } else {
            self.ttl
        }
    }

    /// How long an entry is kept at all: its TTL plus the longest stale window.
    pub fn retain_for(&self, terminal: bool) -> Duration {
        self.fresh_for(terminal) + self.stale_while_revalidate.max(self.stale_if_error)
    }

    /// The verdict on `entry` at `now`.
    pub fn judge(&self, entry: &Entry, now: Instant) -> Freshness {
        let age = entry.age(now);
        let fresh_for = self.fresh_for(entry.terminal);
        if age < fresh_for {
            return Freshness::Fresh(fresh_for - age);
        }
        let by = age - fresh_for;
        Freshness::Stale(Staleness {
            by,
            revalidate: by <= self.stale_while_revalidate,
            usable: by <= self.stale_if_error,
        })
    }

    /// Whether `entry` may be served at `now`, fresh or as a stand-in for a failed fetch.
    pub fn usable(&self, entry: &Entry, now: Instant) -> bool {
        match self.judge(entry, now) {
            Freshness::Fresh(_) => true,
            Freshness::Stale(s) => s.usable,
        }
    }

    /// When `entry` stops being fresh.
    pub fn fresh_until(&self, entry: &Entry) -> Instant {
        entry.fetched_at + self.fresh_for(entry.terminal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn policy() -> Policy {
        let mut c = Config::default().cache;
        c.ttl = Duration::from_secs(2);
        c.terminal_ttl = Duration::from_secs(300);
        c.stale_while_revalidate = Duration::from_secs(10);
        c.stale_if_error = Duration::from_secs(60);
        Policy::new(&c)
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_ages_through_fresh_revalidate_usable_and_gone() {
        let p = policy();
        let e = Entry::for_tests(b"x", false);
        assert_eq!(
            p.judge(&e, Instant::now()),
            Freshness::Fresh(Duration::from_secs(2))
        );
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(
            p.judge(&e, Instant::now()),
            Freshness::Fresh(Duration::from_millis(500))
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        let Freshness::Stale(s) = p.judge(&e, Instant::now()) else {
            panic!("stale at exactly the TTL");
        };
        assert!(s.revalidate && s.usable && s.by.is_zero());
        tokio::time::advance(Duration::from_secs(11)).await;
        let Freshness::Stale(s) = p.judge(&e, Instant::now()) else {
            panic!("stale");
        };
        assert!(!s.revalidate && s.usable, "past SWR, within SIE");
        assert!(p.usable(&e, Instant::now()));
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(!p.usable(&e, Instant::now()), "past every window");
        assert_eq!(p.retain_for(false), Duration::from_secs(62));
    }

    #[tokio::test(start_paused = true)]
    async fn finished_jobs_keep_the_longer_ttl() {
        let p = policy();
        let done = Entry::for_tests(b"x", true);
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(matches!(
            p.judge(&done, Instant::now()),
            Freshness::Fresh(left) if left == Duration::from_secs(1)
        ));
        assert_eq!(
            p.fresh_until(&done),
            done.fetched_at + Duration::from_secs(300)
        );
        assert_eq!(p.fresh_for(false), Duration::from_secs(2));
    }

    /// Stale `by` exactly: past the TTL by this much.
    fn staleness(p: &Policy, e: &Entry) -> Staleness {
        match p.judge(e, Instant::now()) {
            Freshness::Stale(s) => s,
            Freshness::Fresh(left) => panic!("still fresh for {left:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_stale_window_ends_exactly_where_configured() {
        let p = policy();
        let e = Entry::for_tests(b"x", false);
        // TTL 2 s + stale-while-revalidate 10 s: its last moment is still inside.
        tokio::time::advance(Duration::from_secs(12)).await;
        let s = staleness(&p, &e);
        assert_eq!(s.by, Duration::from_secs(10));
        assert!(s.revalidate && s.usable);
        tokio::time::advance(Duration::from_millis(1)).await;
        let s = staleness(&p, &e);
        assert!(!s.revalidate && s.usable, "past SWR, within SIE: {s:?}");
        // Stale-if-error 60 s: the same, inclusive at its end.
        tokio::time::advance(Duration::from_millis(49_999)).await;
        assert!(staleness(&p, &e).usable);
        assert!(p.usable(&e, Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!staleness(&p, &e).usable);
        assert!(!p.usable(&e, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn without_stale_windows_an_expired_page_can_only_be_refetched() {
        let mut c = Config::default().cache;
        c.ttl = Duration::from_secs(1);
        c.stale_while_revalidate = Duration::ZERO;
        c.stale_if_error = Duration::ZERO;
        let p = Policy::new(&c);
        let e = Entry::for_tests(b"x", false);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(
            p.judge(&e, Instant::now()),
            Freshness::Fresh(Duration::from_millis(1))
        );
        tokio::time::advance(Duration::from_millis(2)).await;
        let s = staleness(&p, &e);
        assert!(!s.revalidate && !s.usable, "{s:?}");
        assert_eq!(p.retain_for(false), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_jobs_page_is_kept_for_its_ttl_plus_the_longest_window() {
        let p = policy();
        assert_eq!(p.retain_for(true), Duration::from_secs(360));
        let done = Entry::for_tests(b"x", true);
        tokio::time::advance(Duration::from_secs(300)).await;
        let s = staleness(&p, &done);
        assert!(s.by.is_zero() && s.revalidate && s.usable);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!p.usable(&done, Instant::now()), "past every window");
    }
}
