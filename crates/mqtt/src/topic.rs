//! Topic names, topic filters and matching (MQTT 5.0 section 4.7).
//!
//! A topic name is what a PUBLISH is sent to: at least one character, no
//! wildcards. A topic filter is what a SUBSCRIBE asks for: `+` stands for
//! exactly one level and must fill it, `#` for any number of trailing levels
//! (including none) and must be the whole last level. In MQTT 5 a filter
//! `$share/{name}/{filter}` is a shared subscription; [`topic_matches`] takes
//! the plain `{filter}` part.

use super::error::MqttError;

/// Level separator.
pub const LEVEL_SEPARATOR: char = '/';
/// Single-level wildcard.
pub const SINGLE_LEVEL: char = '+';
/// Multi-level wildcard.
pub const MULTI_LEVEL: char = '#';
/// Prefix of an MQTT 5 shared subscription filter.
pub const SHARED_PREFIX: &str = "$share/";

/// Checks a topic name ([MQTT-4.7.3-1], [MQTT-3.3.2-2]). An empty name is
/// [`MqttError::EmptyTopicName`]; the caller decides whether a topic alias
/// makes it acceptable.
pub fn validate_topic_name(topic: &str) -> Result<(), MqttError> {
    if topic.is_empty() {
        return Err(MqttError::EmptyTopicName);
    }
    match topic
        .chars()
        .find(|c| *c == SINGLE_LEVEL || *c == MULTI_LEVEL)
    {
        Some(c) => Err(MqttError::WildcardInTopicName(c)),
        None => Ok(()),
    }
}

/// Checks a topic filter ([MQTT-4.7.1-1], [MQTT-4.7.1-2], [MQTT-4.7.3-1]);
/// with `shared_allowed` (MQTT 5) also the `$share/{name}/` form
/// ([MQTT-4.8.2-1], [MQTT-4.8.2-2]). Returns whether it is shared.
pub fn validate_topic_filter(filter: &str, shared_allowed: bool) -> Result<bool, MqttError> {
    let (filter, shared) = match filter.strip_prefix(SHARED_PREFIX) {
        Some(rest) if shared_allowed => {
            let (name, inner) =
                rest.split_once(LEVEL_SEPARATOR)
                    .ok_or(MqttError::InvalidTopicFilter(
                        "shared subscription without a filter",
                    ))?;
            if name.is_empty() || name.contains([SINGLE_LEVEL, MULTI_LEVEL]) {
                return Err(MqttError::InvalidTopicFilter("invalid share name"));
            }
            (inner, true)
        }
        _ => (filter, false),
    };
    if filter.is_empty() {
        return Err(MqttError::InvalidTopicFilter("empty"));
    }
    let mut levels = filter.split(LEVEL_SEPARATOR).peekable();
    while let Some(level) = levels.next() {
        if level.contains(MULTI_LEVEL) && (level.len() != 1 || levels.peek().is_some()) {
            return Err(MqttError::InvalidTopicFilter(
                "'#' must be the whole last level",
            ));
        }
        if level.contains(SINGLE_LEVEL) && level.len() != 1 {
            return Err(MqttError::InvalidTopicFilter("'+' must be a whole level"));
        }
    }
    Ok(shared)
}

/// Whether `topic` (a topic name) matches `filter` (a plain topic filter,
/// not `$share/...`).
///
/// Per MQTT 5.0 section 4.7: `+` matches exactly one level (possibly
/// empty), `#` matches the parent level and any number below it (`a/#`
/// matches `a`), and a filter starting with a wildcard does not match a
/// topic starting with `$` ([MQTT-4.7.2-1]). An invalid filter or an empty
/// topic never matches.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.is_empty() || filter.is_empty() {
        return false;
    }
    if topic.starts_with('$') && filter.starts_with([SINGLE_LEVEL, MULTI_LEVEL]) {
        return false;
    }
    let mut filter_levels = filter.split(LEVEL_SEPARATOR).peekable();
    let mut topic_levels = topic.split(LEVEL_SEPARATOR);
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            // '#' also matches when the topic has run out: "a/#" matches "a".
            (Some("#"), _) => return filter_levels.peek().is_none(),
            (Some(f), Some(t)) => {
                let level_ok = f == "+" || (f == t && !f.contains([SINGLE_LEVEL, MULTI_LEVEL]));
                if !level_ok {
                    return false;
                }
            }
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
        }
    }
}
