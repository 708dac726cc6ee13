//! Topic names, topic filters and matching (MQTT 5.0 section 4.7).
//!
//! A topic name is what a PUBLISH is sent to: at least one character, no
//! wildcards. A topic filter is what a SUBSCRIBE asks for: `+` stands for
//! exactly one level and must fill it, `#` for any number of trailing levels
//! (including none) and must be the whole last level. In MQTT 5 a filter
//! `$share/{name}/{filter}` is a shared subscription; [`topic_matches`] takes
//! the plain `{filter}` part. The level rules and matching themselves live in
//! `proto::topic`, shared with the core's token ACLs.

use super::error::MqttError;

pub use surepush_proto::topic::{topic_matches, LEVEL_SEPARATOR, MULTI_LEVEL, SINGLE_LEVEL};

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
    match surepush_proto::topic::filter_error(filter) {
        Some(why) => Err(MqttError::InvalidTopicFilter(why)),
        None => Ok(shared),
    }
}
