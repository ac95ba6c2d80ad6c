//! Logging setup: a filter (`log.filter`, or `RUST_LOG` when set), text or JSON lines on stdout.
//!
//! Log lines never carry a credential: requests are identified by path and
//! credential fingerprint only. Colour codes only reach a terminal: a file, a pipe
//! or a log collector gets plain text. The filter sits behind a reload handle, so a
//! configuration reload changes it without restarting.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::LogFormat;

/// The running filter; [`LogFilter::set`] changes it.
#[derive(Clone)]
pub struct LogFilter {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set at start: it wins over `log.filter`, on reloads too.
    from_env: bool,
}

impl LogFilter {
    /// Filter with `directives` from now on (ignored, with a note, while `RUST_LOG` rules).
    pub fn set(&self, directives: &str) {
        if self.from_env {
            tracing::info!(
                "RUST_LOG is set: it keeps deciding what is logged (log.filter not applied)"
            );
            return;
        }
        match EnvFilter::try_new(directives) {
            Ok(filter) => {
                if let Err(e) = self.handle.reload(filter) {
                    tracing::warn!(error = %e, "cannot change the log filter");
                }
            }
            Err(e) => tracing::warn!(filter = directives, error = %e, "not a log filter"),
        }
    }
}

/// Install the global subscriber: `RUST_LOG` when set, else `filter` (`log.filter`).
/// `None` when a subscriber was already installed (tests).
pub fn init(format: LogFormat, filter: &str) -> Option<LogFilter> {
    let from_env = std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty());
    let initial = if from_env {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
    } else {
        EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"))
    };
    let (filter_layer, handle) = reload::Layer::new(initial);
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(true)
        .with_ansi(colour_wanted());
    let registry = tracing_subscriber::registry().with(filter_layer);
    let result = match format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
    match result {
        Ok(()) => Some(LogFilter { handle, from_env }),
        Err(e) => {
            eprintln!("pollgate: logging already initialised: {e}");
            None
        }
    }
}

/// Colour when the log output (stdout) is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>); setting `with_ansi` explicitly would otherwise ignore `NO_COLOR`.
fn colour_wanted() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
