//! The command line: `pollgate [serve] [flags]`, each flag also a `POLLGATE_*` variable.
//!
//! These names are a contract that users and tests script against. clap gives
//! flag-over-environment precedence; [`ServeArgs::overrides`] hands both to
//! the config loader, which puts them over the file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{LogFormat, Overrides};

/// The config file used when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG: &str = "config.toml";

#[derive(Debug, Parser)]
#[command(
    name = "pollgate",
    version,
    about = "Caching, coalescing, rate-limit-shielding gateway for LlamaCloud batch-processing item lists",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve(ServeArgs),
    /// Load and validate the configuration, print it, and exit.
    CheckConfig(ServeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Config file (default: ./config.toml when it exists, else built-in defaults).
    #[arg(long, env = "POLLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address for client traffic (server.listen).
    #[arg(long, env = "POLLGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Upstream base URL, path prefix allowed (upstream.url).
    #[arg(long, env = "POLLGATE_UPSTREAM")]
    pub upstream: Option<String>,
    /// Address of the admin API: health, metrics, purge (admin.listen).
    #[arg(long, env = "POLLGATE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Freshness of cached item lists, e.g. `2s`, `750ms` (cache.ttl).
    #[arg(long, env = "POLLGATE_TTL", value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
    /// Log line format (log.format).
    #[arg(long, env = "POLLGATE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Redis shared by a fleet of gateways, `redis://` or `rediss://`; turns the fleet tier on
    /// (fleet.redis_url). The fleet secret comes from fleet.secret_file or POLLGATE_FLEET_SECRET.
    #[arg(long, env = "POLLGATE_REDIS_URL")]
    pub redis_url: Option<String>,
}

impl Cli {
    /// The command to run and its arguments (`serve` when none was named).
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

impl ServeArgs {
    /// The config file to read: the flag's, else `./config.toml` if present, else none.
    pub fn config_path(&self) -> Option<PathBuf> {
        match &self.config {
            Some(p) => Some(p.clone()),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG);
                default.is_file().then_some(default)
            }
        }
    }

    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            upstream: self.upstream.clone(),
            admin_listen: self.admin_listen,
            ttl: self.ttl,
            log_format: self.log_format,
            redis_url: self.redis_url.clone(),
            // Read here, not through clap: a secret must never be a flag (flags show in `ps`).
            fleet_secret: std::env::var_os("POLLGATE_FLEET_SECRET").map(|v| v.into_encoded_bytes()),
        }
    }
}
