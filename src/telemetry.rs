//! Logging setup: `RUST_LOG` filtering, text or JSON lines on stdout.
//!
//! Log lines never carry a credential: requests are identified by path and
//! credential fingerprint only. Colour codes only reach a terminal: a file, a pipe
//! or a log collector gets plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber. `RUST_LOG` wins; the default is `info`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(colour_wanted());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("pollgate: logging already initialised: {e}");
    }
}

/// Colour when the log output (stdout) is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>); setting `with_ansi` explicitly would otherwise ignore `NO_COLOR`.
fn colour_wanted() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
