//! Configuration errors: an unreadable file, or every bad key at once, each with the source
//! of its value (file position, environment variable or flag) so the operator knows what to edit.

use std::fmt;
use std::path::PathBuf;

use super::origin::{ConfigFile, Origin};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", file.describe())]
    Read {
        file: ConfigFile,
        source: std::io::Error,
    },
    /// Every bad key found, not just the first. `file` is the file that was read, if any.
    #[error("{}", Listing { file: file.as_ref(), errors })]
    Invalid {
        file: Option<PathBuf>,
        errors: Vec<KeyError>,
    },
}

impl ConfigError {
    /// The bad keys (empty for an unreadable file).
    pub fn key_errors(&self) -> &[KeyError] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { errors, .. } => errors,
        }
    }
}

/// One bad key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The dotted key (`cache.ttl`); empty when the file is not TOML at all.
    pub key: String,
    /// Where the bad value came from; `None` for a [`super::Config`] built in code.
    pub origin: Option<Origin>,
    /// Line and column (from 1) in the file, when the TOML parser located the error.
    pub position: Option<(usize, usize)>,
    pub reason: String,
}

impl KeyError {
    /// An error about `key` whose origin the loader fills in.
    pub(super) fn new(key: impl Into<String>, reason: impl Into<String>) -> KeyError {
        KeyError {
            key: key.into(),
            origin: None,
            position: None,
            reason: reason.into(),
        }
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, file: Option<&PathBuf>) -> fmt::Result {
        let mut at = match (self.origin, file) {
            (Some(Origin::File), Some(path)) => path.display().to_string(),
            (Some(origin), _) => origin.to_string(),
            (None, _) => String::new(),
        };
        if let Some((line, column)) = self.position {
            at = format!("{at}, line {line}, column {column}");
        }
        match (self.key.is_empty(), at.is_empty()) {
            (false, false) => write!(f, "`{}` ({at}): {}", self.key, self.reason),
            (false, true) => write!(f, "`{}`: {}", self.key, self.reason),
            (true, _) => write!(f, "{at}: {}", self.reason),
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, None)
    }
}

/// "N invalid settings:" and one indented line per error.
struct Listing<'a> {
    file: Option<&'a PathBuf>,
    errors: &'a [KeyError],
}

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(f, "{n} invalid setting{}:", if n == 1 { "" } else { "s" })?;
        for e in self.errors {
            f.write_str("\n  ")?;
            e.write(f, self.file)?;
        }
        Ok(())
    }
}
