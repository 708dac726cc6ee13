//! The process's log output (tracing-subscriber on stderr): text or JSON
//! lines ([`LogFormat`]), and a filter that can be replaced while running
//! ([`LogControl::set_level`], used by SIGHUP).
//!
//! `RUST_LOG`, when set, is the filter and pins it: the config's
//! `logging.level` is then neither used nor reloaded (a developer's
//! `RUST_LOG=debug` wins, as everywhere in Rust).

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use super::config::{LogFormat, LoggingSettings};

/// Why logging could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The filter does not parse.
    #[error("log filter {filter:?}: {message}")]
    Filter {
        /// The filter text.
        filter: String,
        /// The parser's complaint.
        message: String,
    },
    /// A global subscriber was installed already.
    #[error("logging is set up already: {0}")]
    Installed(String),
    /// The running subscriber is gone (cannot happen while the process runs).
    #[error("the log filter cannot be replaced: {0}")]
    Reload(String),
}

/// Changes the running process's log filter.
#[derive(Clone, Debug)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` set the filter: reloads leave it alone.
    pinned_by_env: bool,
}

/// What a [`LogControl::set_level`] call did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LevelChange {
    /// The filter now is the given one.
    Applied,
    /// `RUST_LOG` pins the filter; nothing changed.
    PinnedByEnv,
}

fn parse(filter: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::try_new(filter).map_err(|e| LoggingError::Filter {
        filter: filter.to_string(),
        message: e.to_string(),
    })
}

/// Installs the process's subscriber: `settings.format` on stderr, filtered
/// by `RUST_LOG` if set, else by `settings.level`.
pub fn init(settings: &LoggingSettings) -> Result<LogControl, LoggingError> {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = parse(from_env.as_deref().unwrap_or(&settings.level))?;
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match settings.format {
        // Colours only for a terminal: journald and log files would keep
        // the escape codes.
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    installed.map_err(|e| LoggingError::Installed(e.to_string()))?;
    Ok(LogControl {
        handle,
        pinned_by_env: from_env.is_some(),
    })
}

impl LogControl {
    /// Replaces the filter with `level` (unless `RUST_LOG` pins it).
    pub fn set_level(&self, level: &str) -> Result<LevelChange, LoggingError> {
        if self.pinned_by_env {
            return Ok(LevelChange::PinnedByEnv);
        }
        let filter = parse(level)?;
        self.handle
            .reload(filter)
            .map_err(|e| LoggingError::Reload(e.to_string()))?;
        Ok(LevelChange::Applied)
    }
}
