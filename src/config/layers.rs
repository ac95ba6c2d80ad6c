//! Precedence: flag > environment variable > file > default, with each value's origin.
//!
//! Every source is a mirror (`file::FileConfig`) with only the keys it sets; the
//! highest-precedence source that sets a key wins, and its origin is recorded for
//! `check-config` and for error messages.

use super::file::FileConfig;
use super::origin::{Origin, Provenance};

pub(super) struct Layers {
    /// Highest precedence first.
    layers: Vec<(Origin, FileConfig)>,
    provenance: Provenance,
}

/// Rank of an origin; higher wins.
fn precedence(origin: Origin) -> u8 {
    match origin {
        Origin::Default => 0,
        Origin::File => 1,
        Origin::Env(_) => 2,
        Origin::Flag(_) => 3,
    }
}

impl Layers {
    /// The sources, in any order; each `(origin, mirror)` sets only what it gives.
    pub(super) fn new(mut layers: Vec<(Origin, FileConfig)>) -> Layers {
        layers.sort_by_key(|(origin, _)| std::cmp::Reverse(precedence(*origin)));
        Layers {
            layers,
            provenance: Provenance::default(),
        }
    }

    /// The winning value for `key`, if any source gives one (its origin is recorded).
    pub(super) fn pick<T: Clone>(
        &mut self,
        key: &'static str,
        get: impl Fn(&FileConfig) -> Option<&T>,
    ) -> Option<T> {
        let (origin, value) = self
            .layers
            .iter()
            .find_map(|(origin, layer)| get(layer).map(|v| (*origin, v.clone())))?;
        self.provenance.record(key, origin);
        Some(value)
    }

    /// Overwrite `slot` (holding the default) with the winning value, if any.
    pub(super) fn set<T: Clone>(
        &mut self,
        key: &'static str,
        slot: &mut T,
        get: impl Fn(&FileConfig) -> Option<&T>,
    ) {
        if let Some(value) = self.pick(key, get) {
            *slot = value;
        }
    }

    pub(super) fn into_provenance(self) -> Provenance {
        self.provenance
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ttl(secs: u64) -> FileConfig {
        let mut f = FileConfig::default();
        f.cache.ttl = Some(Duration::from_secs(secs));
        f
    }

    #[test]
    fn highest_precedence_wins_whatever_the_order_given() {
        let mut l = Layers::new(vec![
            (Origin::File, ttl(5)),
            (Origin::Flag("ttl"), ttl(3)),
            (Origin::Env("POLLGATE_TTL"), ttl(7)),
        ]);
        let mut slot = Duration::from_secs(2);
        l.set("cache.ttl", &mut slot, |f| f.cache.ttl.as_ref());
        assert_eq!(slot, Duration::from_secs(3));
        assert_eq!(l.into_provenance().origin("cache.ttl"), Origin::Flag("ttl"));
    }

    #[test]
    fn unset_everywhere_keeps_the_default_and_says_so() {
        let mut l = Layers::new(vec![(Origin::File, FileConfig::default())]);
        let mut slot = Duration::from_secs(2);
        l.set("cache.ttl", &mut slot, |f| f.cache.ttl.as_ref());
        assert_eq!(slot, Duration::from_secs(2));
        assert_eq!(l.into_provenance().origin("cache.ttl"), Origin::Default);
    }
}
