//! MQTT 5 Subscription Identifiers (sections 3.8.2.1.2 and 3.3.4).
//!
//! Rules:
//! - A SUBSCRIBE's identifier (at most one, MQTT-3.8.2-1 is the decoder's)
//!   belongs to every filter of it that the server accepts; a SUBSCRIBE
//!   of an existing filter without one takes the old one away (the
//!   subscription is replaced, MQTT-3.8.4-3), and so does UNSUBSCRIBE or a
//!   subscription the core ends.
//! - They are session state (`SessionState::sub_ids`, by filter): stored
//!   with the subscription and resumed with it, across a kill -9 too.
//! - Every PUBLISH to a v5 client carries the identifiers of the
//!   session's subscriptions whose filter matches its topic
//!   (MQTT-3.3.4-3, -4: several when several match), retained messages
//!   included. A 3.1.1 session never has any.
//! - A share group's message is a copy of its own (MQTT 5 4.8.2: a
//!   client with a shared and a non-shared subscription matching a topic
//!   gets a copy by each): it carries the identifier of that shared
//!   subscription only (MQTT-3.3.4-5), and the others never carry a
//!   shared subscription's identifier.
//! - Filters are kept as copies: a decoded filter is a slice of the
//!   receive buffer and would keep all of it alive (issue #21 item 5).

use std::num::NonZeroU32;

use super::persist::Change;
use super::shared::split_shared;
use super::streams::stream_room;
use super::topics::Target;
use super::Bridge;
use crate as mqtt;
use crate::{MqttString, ReasonCode};
use surepush_proto::share_key;

impl Bridge {
    /// After a SUBSCRIBE: `id` now names each of `filters` the server
    /// accepted so far (`reasons[i]` a granted QoS), and no other
    /// identifier does.
    pub(super) fn remember_subscription_ids(
        &mut self,
        filters: &[MqttString],
        reasons: &[ReasonCode],
        id: Option<NonZeroU32>,
    ) {
        let mut changed = false;
        for (filter, reason) in filters.iter().zip(reasons) {
            if reason.is_error() {
                continue;
            }
            let filter = filter.as_str();
            changed |= match id {
                Some(id) => self.state.sub_ids.insert(filter.to_string(), id) != Some(id),
                None => self.state.sub_ids.remove(filter).is_some(),
            };
        }
        if changed {
            self.changed(Change::Subscriptions);
        }
    }

    /// The filter `filter` is no longer subscribed.
    pub(super) fn forget_subscription_id(&mut self, filter: &str) {
        if self.state.sub_ids.remove(filter).is_some() {
            self.changed(Change::Subscriptions);
        }
    }

    /// Room (or topic stream) `n` left the session: the identifiers of the
    /// filters that named it go too.
    pub(super) fn forget_room_subscription_ids(&mut self, n: u64) {
        let room_topic = Target::Room(n).topic();
        self.state
            .sub_ids
            .retain(|f, _| *f != room_topic && stream_room(f) != Some(n));
    }

    /// The identifiers a PUBLISH to `topic` carries (empty for 3.1.1).
    pub(super) fn subscription_ids(&self, topic: &str) -> Vec<NonZeroU32> {
        if self.state.sub_ids.is_empty() {
            return Vec::new();
        }
        let mut ids: Vec<NonZeroU32> = self
            .state
            .sub_ids
            .iter()
            .filter(|(f, _)| !f.starts_with(mqtt::SHARED_PREFIX) && mqtt::topic_matches(f, topic))
            .map(|(_, &id)| id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The identifier a PUBLISH from share group `group` (its key)
    /// carries: that of the session's shared subscription of the group.
    pub(super) fn shared_subscription_id(&self, group: u64) -> Option<NonZeroU32> {
        self.state.sub_ids.iter().find_map(|(f, &id)| {
            let (name, filter) = split_shared(f)?;
            (share_key(name, filter) == group).then_some(id)
        })
    }
}
