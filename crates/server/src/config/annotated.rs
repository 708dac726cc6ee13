//! `surepush config defaults`: every setting with its default value, each
//! preceded by its doc comment as a TOML comment, in the structs' order.
//! The comments come from the config structs' doc comments (through their
//! schema), so the printed file cannot drift from the code; a test reads
//! it back and requires exactly the defaults.

use serde_json::Value as Json;
use toml_edit::{DocumentMut, Item, Table};

use super::Config;

/// What the printed file says before the settings.
const PREAMBLE: &str = "\
# surepush configuration: every setting with its default (`surepush config
# defaults`). Keep only the lines you change; missing settings take these
# defaults.
#
# Durations are numbers in the unit their name ends in (_us, _ms, _s,
# _hours) or strings with units: \"250ms\", \"30s\", \"1h30m\", \"7d\".
# Environment variables override this file and flags override both:
# SUREPUSH_<SETTING>, levels joined by __ (SUREPUSH_LOG__SEGMENT_MIB=64
# sets segment_mib in [log]).
";

/// The default configuration as commented TOML.
pub fn defaults_toml() -> String {
    let mut doc = toml_edit::ser::to_document(&Config::default())
        .expect("the default config serialises to TOML");
    let schema = schemars::schema_for!(Config);
    let root = schema.as_value();
    expand_tables(doc.as_table_mut());
    comment_table(root, root, doc.as_table_mut());
    format!("{PREAMBLE}\n{}", render(&doc))
}

fn render(doc: &DocumentMut) -> String {
    doc.to_string()
}

/// The serialiser writes nested structs as inline tables (`core = { ..
/// }`); a config file reads better with `[core]` sections.
fn expand_tables(table: &mut Table) {
    for (_, item) in table.iter_mut() {
        if let Item::Value(toml_edit::Value::InlineTable(inline)) = item {
            *item = Item::Table(std::mem::take(inline).into_table());
        }
        if let Item::Table(sub) = item {
            expand_tables(sub);
        }
    }
}

/// Puts each field's description above its key; recurses into tables.
fn comment_table(root: &Json, schema: &Json, table: &mut Table) {
    let properties = schema.get("properties");
    for (mut key, item) in table.iter_mut() {
        let Some(field) = properties.and_then(|p| p.get(key.get())) else {
            continue;
        };
        let description = field
            .get("description")
            .and_then(Json::as_str)
            .unwrap_or_default();
        let comment = as_comment(description);
        match item {
            Item::Table(sub) => {
                sub.decor_mut().set_prefix(format!("\n{comment}"));
                let target = resolve(root, field);
                comment_table(root, target, sub);
            }
            _ => key.leaf_decor_mut().set_prefix(comment),
        }
    }
}

fn resolve<'a>(root: &'a Json, node: &'a Json) -> &'a Json {
    node.get("$ref")
        .and_then(Json::as_str)
        .and_then(|r| r.strip_prefix("#/"))
        .and_then(|path| path.split('/').try_fold(root, |n, k| n.get(k)))
        .unwrap_or(node)
}

/// `# ` before each line of the description.
fn as_comment(description: &str) -> String {
    description
        .lines()
        .map(|l| {
            if l.is_empty() {
                "#\n".to_string()
            } else {
                format!("# {l}\n")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22 item 6: the printed defaults are the defaults.
    #[test]
    fn the_printed_defaults_parse_back_to_the_defaults() {
        let text = defaults_toml();
        let parsed: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed, Config::default(), "{text}");
    }

    /// Every setting is printed, and with its doc comment.
    #[test]
    fn every_setting_is_printed_under_its_comment() {
        let text = defaults_toml();
        let lines: Vec<&str> = text.lines().collect();
        let mut settings = 0;
        for (i, line) in lines.iter().enumerate() {
            let is_setting = !line.is_empty() && !line.starts_with('#');
            if is_setting {
                settings += 1;
                assert!(
                    i > 0 && lines[i - 1].starts_with("# "),
                    "no comment above {line:?}:\n{text}"
                );
            }
        }
        // Every leaf of the defaults, plus a header per table.
        let value = toml::Value::try_from(Config::default()).unwrap();
        fn count(v: &toml::Value) -> (usize, usize) {
            match v {
                toml::Value::Table(t) => t.values().fold((0, 1), |(l, h), v| {
                    let (l2, h2) = count(v);
                    (l + l2, h + h2)
                }),
                _ => (1, 0),
            }
        }
        let (leaves, tables) = count(&value);
        assert_eq!(settings, leaves + tables - 1, "{text}");
        assert!(text.contains("\n[core.dedup]\n"), "{text}");
        assert!(
            text.contains("# Unacknowledged pushes kept in flight per connection;"),
            "{text}"
        );
    }
}
