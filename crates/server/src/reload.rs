//! SIGHUP: read the configuration again, apply what can change while the
//! node runs, and name every other changed setting as needing a restart.
//!
//! The new configuration is loaded from the same sources as at start
//! ([`ConfigSources`]: file, environment, flags) and validated; if it is
//! invalid nothing changes and the error is logged. Otherwise each
//! [`LivePart`] gets it: a part owns some settings (dotted paths; a table's
//! path covers its fields) and applies them. A part is called on every
//! reload, changed settings or not, so a part that reads files (TLS
//! certificates, a JWKS document, when those exist) reloads them on SIGHUP
//! even when their paths did not change. Changed settings that no part
//! owns keep their running values, and the log names them.
//!
//! Parts today: the log filter (`logging.level`) and the limits the core
//! checks per connection ([`LiveLimits`]).

use std::sync::Arc;

use surepush_core::LiveLimits;

use super::config::{Config, ConfigError, ConfigSources};
use super::logging::{LevelChange, LogControl};
use super::runtime::NodeShared;

/// A part of the node that applies some settings while running.
pub trait LivePart: Send {
    /// The settings it applies (dotted paths, e.g. `logging.level`).
    fn settings(&self) -> &'static [&'static str];
    /// Applies its settings from `config`; says what it did, if anything
    /// worth saying.
    fn apply(&self, config: &Config) -> Result<Option<String>, String>;
}

/// What one reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Changed settings now in force.
    pub applied: Vec<String>,
    /// Changed settings that keep their running value until a restart.
    pub needs_restart: Vec<String>,
    /// What the parts said (including failures).
    pub notes: Vec<String>,
}

/// Reloads a running node's configuration.
pub struct Reloader {
    sources: ConfigSources,
    /// The settings in force: the start's, with every applied change.
    running: Config,
    parts: Vec<Box<dyn LivePart>>,
}

impl Reloader {
    /// A reloader for a node started with `running`, read from `sources`.
    pub fn new(sources: ConfigSources, running: Config) -> Reloader {
        Reloader {
            sources,
            running,
            parts: Vec::new(),
        }
    }

    /// Adds a part.
    pub fn with(mut self, part: Box<dyn LivePart>) -> Reloader {
        self.parts.push(part);
        self
    }

    /// Loads, validates and applies the configuration; an invalid one
    /// changes nothing.
    pub fn reload(&mut self) -> Result<ReloadReport, ConfigError> {
        let new = self.sources.load()?.config;
        new.validate()?;
        let mut report = ReloadReport::default();
        let mut running = as_value(&self.running);
        let wanted = as_value(&new);
        for path in changed_paths(&running, &wanted) {
            let owned = self
                .parts
                .iter()
                .any(|p| p.settings().iter().any(|s| covers(s, &path)));
            if owned {
                set_path(&mut running, &path, get_path(&wanted, &path));
                report.applied.push(path);
            } else {
                report.needs_restart.push(path);
            }
        }
        self.running = running.try_into().expect("a mix of two valid configs");
        for part in &self.parts {
            match part.apply(&self.running) {
                Ok(Some(note)) => report.notes.push(note),
                Ok(None) => {}
                Err(e) => report.notes.push(format!("failed: {e}")),
            }
        }
        Ok(report)
    }

    /// The settings in force.
    pub fn running(&self) -> &Config {
        &self.running
    }
}

fn as_value(config: &Config) -> toml::Value {
    toml::Value::try_from(config).expect("a config serialises to TOML")
}

/// Whether setting `owned` (a path or a table's path) covers `path`.
fn covers(owned: &str, path: &str) -> bool {
    path == owned
        || path
            .strip_prefix(owned)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Dotted paths of the leaves that differ.
fn changed_paths(old: &toml::Value, new: &toml::Value) -> Vec<String> {
    fn walk(prefix: &str, old: &toml::Value, new: &toml::Value, out: &mut Vec<String>) {
        match (old, new) {
            (toml::Value::Table(a), toml::Value::Table(b)) => {
                for (key, value) in b {
                    let path = match prefix {
                        "" => key.clone(),
                        p => format!("{p}.{key}"),
                    };
                    match a.get(key) {
                        Some(before) => walk(&path, before, value, out),
                        None => out.push(path),
                    }
                }
            }
            (a, b) if a != b => out.push(prefix.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

fn get_path(value: &toml::Value, path: &str) -> toml::Value {
    path.split('.')
        .try_fold(value, |v, key| v.get(key))
        .cloned()
        .expect("the path came from this value")
}

fn set_path(value: &mut toml::Value, path: &str, new: toml::Value) {
    let mut at = value;
    for key in path.split('.') {
        at = at
            .as_table_mut()
            .and_then(|t| t.get_mut(key))
            .expect("both configs have the same shape");
    }
    *at = new;
}

/// `logging.level`: the log filter.
pub struct LogLevelPart(pub LogControl);

impl LivePart for LogLevelPart {
    fn settings(&self) -> &'static [&'static str] {
        &["logging.level"]
    }

    fn apply(&self, config: &Config) -> Result<Option<String>, String> {
        match self.0.set_level(&config.logging.level) {
            Ok(LevelChange::Applied) => Ok(None),
            Ok(LevelChange::PinnedByEnv) => Ok(Some(
                "logging.level not applied: RUST_LOG is set and pins the log filter".into(),
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// [`LiveLimits`]: handed to every shard through [`NodeShared`].
pub struct LimitsPart(pub Arc<NodeShared>);

impl LivePart for LimitsPart {
    fn settings(&self) -> &'static [&'static str] {
        LiveLimits::SETTINGS
    }

    fn apply(&self, config: &Config) -> Result<Option<String>, String> {
        self.0.set_live_limits(LiveLimits::of(&config.core));
        Ok(None)
    }
}

/// Runs reloads on SIGHUP on a thread of its own until the returned
/// handle is closed (the node stopped).
pub fn on_sighup(mut reloader: Reloader) -> std::io::Result<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("surepush-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                log_report(reloader.reload());
            }
        })?;
    Ok(handle)
}

fn log_report(result: Result<ReloadReport, ConfigError>) {
    match result {
        Err(e) => tracing::error!(
            error = %e,
            "SIGHUP: configuration not reloaded (invalid); the running settings stay"
        ),
        Ok(report) => {
            for note in &report.notes {
                tracing::warn!("SIGHUP: {note}");
            }
            if !report.needs_restart.is_empty() {
                tracing::warn!(
                    settings = report.needs_restart.join(", "),
                    "SIGHUP: changed settings need a restart to take effect"
                );
            }
            tracing::info!(
                applied = report.applied.join(", "),
                "SIGHUP: configuration reloaded"
            );
        }
    }
}

#[cfg(test)]
mod tests;
