//! The command line: `pollgate [serve|check-config] [flags]`.
//!
//! The configuration flags are built from `config::OVERRIDES`, the one list of flag and
//! `POLLGATE_*` variable names (a contract users and tests script against). Their values
//! stay strings here: the config loader parses them, so an error names the flag or the
//! variable it came from, and applies the precedence flag > env > file > default.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches, Parser, Subcommand};

use crate::config::{FlagValues, Sources, OVERRIDES};

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
    /// Load and validate the configuration, print it as TOML with each value's origin, and exit.
    CheckConfig(ServeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Config file (default: ./config.toml when it exists, else built-in defaults) [env: POLLGATE_CONFIG]
    // Read by `Sources::capture`, not by clap, so an empty variable counts as unset and
    // a problem with it is not reported as one with `--config`.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: FlagValues,
}

impl Cli {
    /// The command to run and its arguments (`serve` when none was named).
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

impl ServeArgs {
    /// The configuration's sources, captured now (the file choice, the environment, the
    /// flags) for this load and every reload.
    pub fn sources(&self) -> Sources {
        Sources::capture(self.config.clone(), self.flags.clone())
    }
}

/// One `--flag VALUE` per entry of `OVERRIDES` that has a flag, taken as a string.
impl Args for FlagValues {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        OVERRIDES.iter().fold(cmd, |cmd, o| {
            let Some(flag) = o.flag else {
                return cmd;
            };
            let env = o.env.map(|v| format!(" [env: {v}]")).unwrap_or_default();
            cmd.arg(
                Arg::new(flag)
                    .long(flag)
                    .value_name(o.value_name)
                    .action(ArgAction::Set)
                    .help(format!("{} ({}){env}", o.help, o.key)),
            )
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for FlagValues {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = FlagValues::default();
        for flag in OVERRIDES.iter().filter_map(|o| o.flag) {
            if let Some(value) = matches.get_one::<String>(flag) {
                flags.insert(flag, value.clone());
            }
        }
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_are_kept_as_given_strings() {
        let cli =
            Cli::try_parse_from(["pollgate", "check-config", "--ttl", "abc", "--listen", "x"])
                .expect("clap does not parse values");
        let Command::CheckConfig(args) = cli.into_command() else {
            panic!("check-config expected")
        };
        let given: Vec<_> = args
            .flags
            .iter()
            .map(|(f, _, v)| (f, v.to_owned()))
            .collect();
        assert_eq!(
            given,
            [("listen", "x".to_owned()), ("ttl", "abc".to_owned())]
        );
    }

    #[test]
    fn serve_is_the_default_command() {
        let cli = Cli::try_parse_from(["pollgate", "--log-format", "json"]).expect("parses");
        let Command::Serve(args) = cli.into_command() else {
            panic!("serve expected")
        };
        assert_eq!(args.flags.iter().count(), 1);
    }
}
