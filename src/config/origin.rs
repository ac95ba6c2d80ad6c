//! Where the configuration came from: which file (and what chose it), and each effective
//! value's source, for `check-config`, log lines and error messages.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The file read when none is named, if it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "config.toml";

/// The variable that names the config file when `--config` does not.
pub const CONFIG_FILE_ENV: &str = "POLLGATE_CONFIG";

/// The configuration file, as chosen at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigFile {
    /// Named by `--config` or [`CONFIG_FILE_ENV`] (`by` says which): it must be readable.
    Named { path: PathBuf, by: Origin },
    /// [`DEFAULT_CONFIG_FILE`], which existed at start-up.
    Found(PathBuf),
    /// No file: defaults, environment and flags only.
    Absent,
}

impl ConfigFile {
    /// `--config`'s path, else the variable's (empty counts as unset), else
    /// [`DEFAULT_CONFIG_FILE`] if it exists now, else none.
    pub fn resolve(flag: Option<PathBuf>, env: Option<OsString>) -> ConfigFile {
        if let Some(path) = flag {
            return ConfigFile::Named {
                path,
                by: Origin::Flag("config"),
            };
        }
        if let Some(path) = env.filter(|v| !v.is_empty()) {
            return ConfigFile::Named {
                path: path.into(),
                by: Origin::Env(CONFIG_FILE_ENV),
            };
        }
        let default = PathBuf::from(DEFAULT_CONFIG_FILE);
        if default.is_file() {
            ConfigFile::Found(default)
        } else {
            ConfigFile::Absent
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigFile::Named { path, .. } | ConfigFile::Found(path) => Some(path),
            ConfigFile::Absent => None,
        }
    }

    /// The path and what chose it: `a.toml (env POLLGATE_CONFIG)`.
    pub fn describe(&self) -> String {
        match self {
            ConfigFile::Named { path, by } => format!("{} ({by})", path.display()),
            ConfigFile::Found(path) => {
                format!("{} (found in the working directory)", path.display())
            }
            ConfigFile::Absent => "none".into(),
        }
    }
}

/// The path, or `none`: a value for log fields.
impl fmt::Display for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path() {
            Some(path) => write!(f, "{}", path.display()),
            None => f.write_str("none"),
        }
    }
}

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
