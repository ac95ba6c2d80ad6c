//! Where each effective value came from, for `check-config` and for error messages.

use std::collections::BTreeMap;
use std::fmt;

/// The source a value was taken from; later variants win over earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Built in ([`super::Config::default`]).
    Default,
    /// The configuration file.
    File,
    /// An environment variable, by name.
    Env(&'static str),
    /// A command-line flag, by long name without the dashes.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File => f.write_str("file"),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Flag(flag) => write!(f, "flag --{flag}"),
        }
    }
}

/// Each key's origin, and a note for values the loader adjusted, by dotted key.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Provenance {
    origins: BTreeMap<&'static str, Origin>,
    notes: BTreeMap<&'static str, &'static str>,
}

impl Provenance {
    /// Where `key`'s value came from; a key no source set is a default.
    pub(super) fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).copied().unwrap_or(Origin::Default)
    }

    /// How the loader changed `key`'s value, if it did.
    pub(super) fn note(&self, key: &str) -> Option<&'static str> {
        self.notes.get(key).copied()
    }

    pub(super) fn record(&mut self, key: &'static str, origin: Origin) {
        self.origins.insert(key, origin);
    }

    pub(super) fn annotate(&mut self, key: &'static str, note: &'static str) {
        self.notes.insert(key, note);
    }
}
