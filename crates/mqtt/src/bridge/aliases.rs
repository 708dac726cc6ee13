//! MQTT 5 topic aliases (section 3.3.2.3.4), both directions. Aliases
//! belong to one network connection: a new connection starts with none
//! (MQTT-3.3.2-7), so none of this is session state.
//!
//! - Client → server: the client may set aliases 1..=[`TOPIC_ALIAS_MAX`]
//!   (advertised in CONNACK). A PUBLISH with a name and an alias sets the
//!   alias; one with an empty name uses it.
//! - Server → client: only when the client's CONNECT carries a Topic Alias
//!   Maximum above 0, at most that many and at most [`TOPIC_ALIAS_MAX`]
//!   (MQTT-3.3.2-9: never above the client's maximum). First come, first
//!   served: the first topics sent take the aliases and keep them for the
//!   connection; a PUBLISH to a topic that has one goes with an empty name
//!   (the name's bytes are saved on every later message), topics beyond
//!   the maximum go by name. Packets leave in the order aliases are
//!   assigned (the bridge assigns them as a packet is queued for the
//!   client, after its size check), so the client always learns an alias
//!   from the PUBLISH that sets it before one that uses it.
//!
//! Memory: the bridge holds this boxed, and only for a client that allows
//! aliases or has set one; both tables allocate at their first alias (an
//! idle connection holds none; issue #21 item 5).

use std::num::NonZeroU16;

use foldhash::HashMap as FastHashMap;

use crate::{MqttString, Publish};

/// Topic aliases per direction, at most: what the server accepts from a
/// client (its CONNACK Topic Alias Maximum) and uses toward one.
pub(super) const TOPIC_ALIAS_MAX: u16 = 32;

/// Why an inbound alias cannot be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AliasError {
    /// Above the maximum the server advertised (DISCONNECT 0x94).
    AboveMaximum,
    /// An empty topic name with an alias never set (protocol error).
    NotSet,
}

/// The aliases of one connection. See the module docs.
#[derive(Debug, Default)]
pub(super) struct TopicAliases {
    /// Client → server, index = alias - 1 (grown to the alias used).
    inbound: Vec<Option<MqttString>>,
    /// Server → client: topic → alias.
    outbound: FastHashMap<Box<str>, NonZeroU16>,
    /// Aliases the server may use toward the client.
    outbound_max: u16,
}

impl TopicAliases {
    /// The aliases of a connection whose CONNECT has Topic Alias Maximum
    /// `client_max`: `None` (nothing allocated) unless the server may send
    /// aliases; the bridge creates them at the first inbound alias then.
    pub(super) fn for_client(client_max: Option<u16>) -> Option<Box<TopicAliases>> {
        let outbound_max = client_max.unwrap_or(0).min(TOPIC_ALIAS_MAX);
        (outbound_max > 0).then(|| {
            Box::new(TopicAliases {
                outbound_max,
                ..TopicAliases::default()
            })
        })
    }

    /// Resolves the alias of an inbound PUBLISH (MQTT-3.3.2-7 .. -12):
    /// sets it from a named PUBLISH, fills in the name of an empty one.
    pub(super) fn resolve(&mut self, p: &mut Publish) -> Result<(), AliasError> {
        let Some(alias) = p.properties.topic_alias else {
            return Ok(());
        };
        let slot = usize::from(alias.get()) - 1;
        if slot >= usize::from(TOPIC_ALIAS_MAX) {
            return Err(AliasError::AboveMaximum);
        }
        if p.topic.is_empty() {
            p.topic = self
                .inbound
                .get(slot)
                .cloned()
                .flatten()
                .ok_or(AliasError::NotSet)?;
            return Ok(());
        }
        if self.inbound.len() <= slot {
            self.inbound.resize(slot + 1, None);
        }
        // Copied: the decoded name is a slice of the receive buffer, which
        // the alias would otherwise keep alive for the whole connection.
        let name = MqttString::from(p.topic.as_str());
        self.inbound[slot] = Some(name);
        Ok(())
    }

    /// Gives an outbound PUBLISH its alias: the topic's alias if it has
    /// one (the name is left out), else a new one while any is free (the
    /// name stays and sets it). Call it once per PUBLISH, in the order the
    /// packets are sent.
    pub(super) fn apply(&mut self, p: &mut Publish) {
        if self.outbound_max == 0 || p.topic.is_empty() {
            return;
        }
        let topic = p.topic.as_str();
        if let Some(&alias) = self.outbound.get(topic) {
            p.properties.topic_alias = Some(alias);
            p.topic = MqttString::default();
            return;
        }
        let used = self.outbound.len() as u16;
        if used < self.outbound_max {
            let alias = NonZeroU16::new(used + 1).expect("used + 1 > 0");
            self.outbound.insert(topic.into(), alias);
            p.properties.topic_alias = Some(alias);
        }
    }
}
