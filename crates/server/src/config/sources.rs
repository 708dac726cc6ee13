//! Layering a node's settings: the defaults, then the TOML file, then
//! `SUREPUSH_*` environment variables, then command-line flags; each layer
//! overrides the ones before it. Start-up and SIGHUP load the same way.
//!
//! Environment variables name a setting by its path in the TOML file, upper
//! case, `__` between levels: `SUREPUSH_SHARDS=4` sets `shards`,
//! `SUREPUSH_LOG__SEGMENT_MIB=64` sets `segment_mib` in `[log]`,
//! `SUREPUSH_CORE__DEDUP__MAX_AGE_MS=10m` sets `[core.dedup] max_age_ms`.
//! A value is read as TOML (`64`, `true`, `[1, 2]`) unless the setting is
//! a string (addresses, paths, secrets), where it is taken as it stands;
//! what TOML cannot read is a string (`10m`, a duration). Variables with
//! the prefix that name no setting (for example the load generator's
//! `SUREPUSH_SECRET`) are ignored and reported in [`Loaded::notes`]: the
//! prefix is shared with other tools, and their variables must not stop a
//! node. A value a setting cannot take stops the start with the
//! variable's name.
//!
//! Which settings exist, and which are strings, comes from the config
//! structs' schema (schemars), so a new field is settable at once.

use std::path::PathBuf;

use schemars::Schema;
use serde_json::Value as Json;
use toml::{Table, Value};

use super::{Config, ConfigError};

/// The prefix of the variables that set settings.
pub const ENV_PREFIX: &str = "SUREPUSH_";
/// Between the levels of a setting's path in a variable's name.
const ENV_LEVEL_SEPARATOR: &str = "__";

/// Where a node's settings come from.
#[derive(Clone, Debug, Default)]
pub struct ConfigSources {
    /// The TOML file (`--config`), if any.
    pub file: Option<PathBuf>,
    /// Environment variables; those starting with [`ENV_PREFIX`] are read.
    pub env: Vec<(String, String)>,
    /// Flag overrides: a dotted setting path (`log.segment_mib`) and its value.
    pub flags: Vec<(String, Value)>,
}

/// A loaded configuration and what the loader has to say about it.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The settings.
    pub config: Config,
    /// Variables with the prefix that set nothing (to log once logging is up).
    pub notes: Vec<String>,
}

impl ConfigSources {
    /// The file and this process's environment (captured now: a reload
    /// reads the same variables).
    pub fn from_process(file: Option<PathBuf>) -> ConfigSources {
        ConfigSources {
            file,
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            flags: Vec::new(),
        }
    }

    /// Adds a flag's value for the setting at `path` (dotted).
    pub fn flag(mut self, path: &str, value: impl Into<Value>) -> ConfigSources {
        self.flags.push((path.to_string(), value.into()));
        self
    }

    /// Reads every layer into one [`Config`] (not yet validated: see
    /// [`Config::validate`]).
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let mut table = match &self.file {
            Some(path) => read_file(path)?,
            None => Table::new(),
        };
        if let Some(path) = &self.file {
            settle(&table).map_err(|source| ConfigError::Parse {
                path: path.clone(),
                source,
            })?;
        }
        let schema = schemars::schema_for!(Config);
        let mut notes = Vec::new();
        let mut vars: Vec<&(String, String)> = self
            .env
            .iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (var, raw) in vars {
            let env_error = |message: String| ConfigError::Env {
                var: var.clone(),
                message,
            };
            let path = env_path(var).map_err(env_error)?;
            let Some(setting) = find_setting(&schema, &path) else {
                notes.push(format!("{var} names no setting; ignored"));
                continue;
            };
            let value = setting.value_of(raw).map_err(env_error)?;
            set(&mut table, &path, value).map_err(env_error)?;
            settle(&table).map_err(|e| env_error(e.message().to_string()))?;
        }
        for (setting, value) in &self.flags {
            let flag_error = |message: String| ConfigError::Flag {
                setting: setting.clone(),
                message,
            };
            let path: Vec<String> = setting.split('.').map(str::to_string).collect();
            set(&mut table, &path, value.clone()).map_err(flag_error)?;
            settle(&table).map_err(|e| flag_error(e.message().to_string()))?;
        }
        Ok(Loaded {
            config: settle(&table).expect("every layer was checked"),
            notes,
        })
    }
}

fn read_file(path: &std::path::Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<Table>().map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// The settings the layers so far make (missing keys: defaults).
fn settle(table: &Table) -> Result<Config, toml::de::Error> {
    Value::Table(table.clone()).try_into()
}

/// `SUREPUSH_LOG__SEGMENT_MIB` -> `["log", "segment_mib"]`.
fn env_path(var: &str) -> Result<Vec<String>, String> {
    let rest = &var[ENV_PREFIX.len()..];
    let path: Vec<String> = rest
        .split(ENV_LEVEL_SEPARATOR)
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(format!(
            "an empty level in the name (levels are separated by {ENV_LEVEL_SEPARATOR})"
        ));
    }
    Ok(path)
}

/// What kind of value a setting takes, from the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setting {
    /// A table (`[core]`): set its fields, not the table.
    Table,
    /// A string: the variable's text as it stands.
    Text,
    /// Anything else: the variable's text read as a TOML value.
    Value,
}

impl Setting {
    fn value_of(self, raw: &str) -> Result<Value, String> {
        match self {
            Setting::Table => Err(format!(
                "names a table; set its fields ({ENV_LEVEL_SEPARATOR}FIELD)"
            )),
            Setting::Text => Ok(Value::String(raw.to_string())),
            Setting::Value => Ok(format!("v = {raw}")
                .parse::<Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| Value::String(raw.to_string()))),
        }
    }
}

/// The setting at `path` in the config schema, if there is one.
fn find_setting(schema: &Schema, path: &[String]) -> Option<Setting> {
    let root = schema.as_value();
    let mut node = root;
    for key in path {
        node = resolve(root, node.get("properties")?.get(key)?)?;
    }
    Some(if node.get("properties").is_some() {
        Setting::Table
    } else if is_text(root, node) {
        Setting::Text
    } else {
        Setting::Value
    })
}

/// Follows a local `$ref` (`#/$defs/CoreConfig`).
fn resolve<'a>(root: &'a Json, node: &'a Json) -> Option<&'a Json> {
    match node.get("$ref").and_then(Json::as_str) {
        Some(target) => target
            .strip_prefix("#/")?
            .split('/')
            .try_fold(root, |n, key| n.get(key)),
        None => Some(node),
    }
}

/// A string, or a choice among strings (an enum such as `recovery`).
fn is_text(root: &Json, node: &Json) -> bool {
    let Some(node) = resolve(root, node) else {
        return false;
    };
    let alternatives = ["oneOf", "anyOf"]
        .iter()
        .find_map(|k| node.get(*k).and_then(Json::as_array));
    match (node.get("type"), alternatives) {
        (Some(Json::String(t)), _) => t == "string",
        (_, Some(alts)) => !alts.is_empty() && alts.iter().all(|a| is_text(root, a)),
        _ => node
            .get("enum")
            .and_then(Json::as_array)
            .is_some_and(|e| e.iter().all(Json::is_string)),
    }
}

/// Sets `path` in `table`, making the tables on the way.
fn set(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("an empty setting name")?;
    let mut at = table;
    for key in parents {
        let next = at
            .entry(key.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        at = match next {
            Value::Table(t) => t,
            _ => return Err(format!("{key} is not a table")),
        };
    }
    at.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests;
