//! Loading: the sources captured once at start-up (the file to read, the `POLLGATE_*`
//! variables, the flags) and [`load`], which turns them into a checked [`Config`].
//!
//! A reload runs [`load`] again on the same [`Sources`]: the same file re-read, with the
//! same environment and flags. Every bad value is reported at once: each source is parsed
//! (the file's parser stops at its first error, each variable and flag is parsed on its
//! own), and once all of them parse, every rule in `rules` is checked.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, KeyError};
use super::layers::Layers;
use super::origin::{ConfigFile, Origin, Provenance, CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE};
use super::overrides::{self, FlagValues, Override, OVERRIDES};
use super::render::Renderer;
use super::{file, keys, rules, Config};

/// Everything a load reads besides the file's contents, captured once.
#[derive(Clone)]
pub struct Sources {
    file: ConfigFile,
    /// Set variables of [`OVERRIDES`]: override, variable name, value.
    env: Vec<(&'static Override, &'static str, OsString)>,
    flags: FlagValues,
}

impl Sources {
    /// This process's sources: the file named by `--config` (`named`), else by
    /// [`CONFIG_FILE_ENV`], else `./config.toml` if it exists now; the `POLLGATE_*` variables
    /// of [`OVERRIDES`] as they are now; and `flags`. Empty variables count as unset.
    pub fn capture(named: Option<PathBuf>, flags: FlagValues) -> Sources {
        let file = ConfigFile::resolve(named, std::env::var_os(CONFIG_FILE_ENV));
        Sources::new(file, std::env::vars_os(), flags)
    }

    /// Sources from explicit parts. `env` may hold any variables: only those of
    /// [`OVERRIDES`] are kept, and an empty one counts as unset.
    pub fn new<K, V>(
        file: ConfigFile,
        env: impl IntoIterator<Item = (K, V)>,
        flags: FlagValues,
    ) -> Sources
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let env = env
            .into_iter()
            .filter_map(|(name, value)| {
                let (name, value) = (name.into(), value.into());
                let o = overrides::by_env(OVERRIDES, &name)?;
                let var = o.env?;
                (!value.is_empty()).then_some((o, var, value))
            })
            .collect();
        Sources { file, env, flags }
    }

    pub fn file(&self) -> &ConfigFile {
        &self.file
    }

    /// Each given value with the override it sets and where it came from.
    fn given(&self) -> impl Iterator<Item = (&'static Override, Origin, &OsStr)> {
        let env = self
            .env
            .iter()
            .map(|(o, var, value)| (*o, Origin::Env(var), value.as_os_str()));
        let flags = self
            .flags
            .iter()
            .map(|(flag, o, value)| (o, Origin::Flag(flag), OsStr::new(value)));
        env.chain(flags)
    }
}

/// Names and values, secrets redacted.
impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<_> = self
            .env
            .iter()
            .map(|(o, var, value)| {
                let value = value.to_string_lossy();
                format!("{var}={}", overrides::shown(o, &value))
            })
            .collect();
        f.debug_struct("Sources")
            .field("file", &self.file)
            .field("env", &env)
            .field("flags", &self.flags)
            .finish()
    }
}

/// A loaded configuration and where each of its values came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub file: ConfigFile,
    provenance: Provenance,
}

impl Loaded {
    /// Where the value of the dotted `key` came from.
    pub fn origin(&self, key: &str) -> Origin {
        self.provenance.origin(key)
    }

    /// How the loader adjusted `key`'s value (`raised to cache.ttl`), if it did.
    pub fn note(&self, key: &str) -> Option<&'static str> {
        self.provenance.note(key)
    }

    /// `check-config`'s output: the effective configuration as TOML, a comment naming the
    /// file, and each value followed by its origin.
    pub fn to_toml(&self) -> String {
        let loaded = match &self.file {
            ConfigFile::Absent => format!(
                "pollgate configuration: no config file ({DEFAULT_CONFIG_FILE} not found, \
                 neither --config nor {CONFIG_FILE_ENV} given), defaults apply."
            ),
            named_or_found => format!(
                "pollgate configuration, loaded from {}.",
                named_or_found.describe()
            ),
        };
        let legend =
            "After each value: where it came from (default, file, env VARIABLE, flag --name).";
        let mut r = Renderer::new(&[loaded, legend.into()], &self.provenance);
        keys::print(&mut r, &self.config);
        r.finish()
    }
}

/// Read the sources into a checked configuration: defaults, then the file, then the
/// variables, then the flags; then the adjustments and every rule of `rules`.
pub fn load(sources: &Sources) -> Result<Loaded, ConfigError> {
    let path = sources.file.path();
    let mut layers = Vec::new();
    let mut errors = Vec::new();
    if let Some(path) = path {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: sources.file.clone(),
            source,
        })?;
        match file::parse(&text) {
            Ok(layer) => layers.push((Origin::File, layer)),
            Err(e) => errors.push(e),
        }
    }
    for (o, origin, value) in sources.given() {
        match overrides::parse(o, origin, value) {
            Ok(layer) => layers.push((origin, layer)),
            Err(e) => errors.push(e),
        }
    }
    let invalid = |errors: Vec<KeyError>| ConfigError::Invalid {
        file: path.map(Path::to_path_buf),
        errors,
    };
    if !errors.is_empty() {
        return Err(invalid(errors));
    }

    let mut layers = Layers::new(layers);
    let mut config = Config::default();
    keys::apply(&mut layers, &mut config);
    let mut provenance = layers.into_provenance();
    for (key, note) in rules::adjust(&mut config) {
        provenance.annotate(key, note);
    }
    let errors: Vec<KeyError> = rules::check(&config)
        .into_iter()
        .map(|mut e| {
            e.origin = Some(provenance.origin(&e.key));
            e
        })
        .collect();
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    Ok(Loaded {
        config,
        file: sources.file.clone(),
        provenance,
    })
}
