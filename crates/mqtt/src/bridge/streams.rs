//! Free-form topics (issue #21): every topic name outside `user/…`,
//! `group/…`, `room/…` and `$…` is a **topic stream**, a room whose id is a
//! hash of the name (`surepush_proto::topic_stream`, docs/MQTT.md 2.2).
//!
//! Rules:
//! - Permission is by name and decided here, where the name is known: the
//!   token's `acl` claim (`sub`/`pub` filters) or `mqtt.topics_open`. The
//!   core grants an MQTT connection's request for a stream (it cannot see
//!   names) and refuses native connections unless they are members.
//! - A PUBLISH stores `[name][payload]` in the stream (the name travels
//!   with the message, so a hash collision is detected by the reader).
//! - An exact SUBSCRIBE (no wildcard) keeps its filter among the session's
//!   filters (`SessionState::subs`, durable: it names the subscription)
//!   and subscribes the stream as a room (`rooms.rs`: position, resume,
//!   lag). A message is delivered only when the session holds a filter
//!   equal to the name it carries; others (a colliding name) are
//!   acknowledged unseen.
//! - Delivery is up to QoS 2 (`wildcards.rs`). The RETAIN flag of a PUBLISH
//!   to a free-form topic makes its retained message (`retained.rs`) and
//!   is kept with the stored message only as a mark for Retain As
//!   Published (`outbound.rs`).

use bytes::Bytes;

use super::Bridge;
use crate::{MqttString, Publish, QoS, Subscription};
use surepush_proto::topic_stream::{frame_payload, is_free_form, split_payload, stream_id};
use surepush_proto::ROOM_BIT;
use surepush_token::AclAction;

/// A PUBLISH to a free-form topic, rewritten for its stream.
#[derive(Clone, Copy, Debug)]
pub(super) struct StreamPublish {
    /// The stream's room number (wire id without the room bit).
    pub(super) room: u64,
    /// The session may publish to the topic.
    pub(super) allowed: bool,
}

/// The room number of a free-form topic's stream, if `name` is one.
pub(super) fn stream_room(name: &str) -> Option<u64> {
    is_free_form(name).then(|| stream_id(name) & !ROOM_BIT)
}

impl Bridge {
    /// Whether this session may `action` the free-form topic (or exact
    /// filter) `name`.
    pub(super) fn topic_allowed(&self, action: AclAction, name: &str) -> bool {
        self.params.topics_open || self.acl.grants(action, name)
    }

    /// A PUBLISH to a free-form topic: frames its payload with the name and
    /// clears RETAIN; `None` for the reserved forms.
    pub(super) fn stream_publish(&self, p: &mut Publish) -> Option<StreamPublish> {
        let name = p.topic.as_str();
        let room = stream_room(name)?;
        let allowed = self.topic_allowed(AclAction::Publish, name);
        p.payload = frame_payload(name, &p.payload);
        p.retain = false;
        Some(StreamPublish { room, allowed })
    }

    /// Keeps `sub` among the session's filters, replacing the options of
    /// an equal filter (inbox filters and exact free-form topics alike).
    pub(super) fn keep_filter(&mut self, mut sub: Subscription) {
        // Copied: a decoded filter is a slice of the receive buffer, which
        // it would keep alive for as long as the session (issue #21 item 5).
        sub.filter = MqttString::from(sub.filter.as_str());
        match self
            .state
            .subs
            .iter_mut()
            .find(|e| e.filter.as_str() == sub.filter.as_str())
        {
            Some(existing) => existing.options = sub.options,
            None => self.state.subs.push(sub),
        }
    }

    /// Drops the exact free-form filter `name`; returns whether the stream
    /// is still wanted by another name of the session (a hash collision).
    pub(super) fn drop_stream_filter(&mut self, name: &str, room: u64) -> bool {
        self.state.subs.retain(|s| s.filter.as_str() != name);
        self.state
            .subs
            .iter()
            .any(|s| stream_room(s.filter.as_str()) == Some(room))
            || self.stream_grant(name, None).is_some()
            || self.stream_still_wanted(room)
    }

    /// The stream `room` ended for this session (refused by the core):
    /// its names leave the session's filters.
    pub(super) fn forget_stream(&mut self, room: u64) {
        self.state
            .subs
            .retain(|s| stream_room(s.filter.as_str()) != Some(room));
    }

    /// A stream message's topic and application payload, and the QoS and
    /// No Local it is delivered with, when one of the session's filters
    /// matches the name it carries (`wildcards.rs`).
    pub(super) fn stream_message(
        &self,
        stored: &Bytes,
        ts_ms: u64,
    ) -> Option<(String, Bytes, (QoS, bool))> {
        let (name, payload) = split_payload(stored)?;
        let grant = self.stream_grant(name, Some(ts_ms))?;
        Some((name.to_string(), payload, grant))
    }
}
