//! Wildcard filters over free-form topics (issue #21 item 1, docs/MQTT.md
//! 2.3 and 3.1).
//!
//! A filter with `+` or `#` that can match a free-form topic name (its
//! first level is not `user`, `group`, `room` or `$…`) is a **topic
//! filter**. It stays among the session's filters (`SessionState::subs`:
//! it may match inbox topics too, as `#` does) and is registered with the
//! core (native FILTER), which tells the session of every topic stream
//! whose name matches (native TOPIC: at registration for the streams that
//! exist, and when a message is stored in one the session does not
//! subscribe yet). The session then subscribes the stream as a room
//! (`rooms.rs`: position, resume, lag) from the message the notice names,
//! and records the stream with its name (`SessionState::streams`), so a
//! persistent session resumes every stream it found after its position.
//!
//! Rules:
//! - A filter whose first level is a name needs a token grant covering it
//!   (a `sub` filter that matches every name it matches) or
//!   `mqtt.topics_open`: else SUBACK `0x87` (5.0) / `0x80` (3.1.1). A
//!   filter that starts with a wildcard (`#`, `+/…`) is always accepted
//!   (it matches inbox topics too) and reaches only the free-form topics
//!   the token grants by name.
//! - The SUBACK of a topic filter waits until the core has registered it on
//!   every shard (TOPIC room 0): a message stored after the SUBACK is
//!   matched. A registration the core refuses (`core.max_topic_filters`,
//!   `core.max_filters_per_conn`) gets `0x97` Quota exceeded (5.0) /
//!   `0x80`, and the filter leaves the session.
//! - Overlapping subscriptions (several filters, exact or wildcard, match a
//!   name): one copy per message, at the highest granted QoS among them
//!   (MQTT 3.1.1 section 3.3.5; MQTT 5.0 section 3.3.4 allows one copy
//!   when no subscription identifiers are in play). No Local holds if
//!   every matching filter asks for it.
//! - QoS 2 on topic streams: the packet id of a QoS 2 PUBLISH is durable
//!   before it leaves (`room_pids`), and a PUBREC above the room's
//!   position is durable before the PUBREL (`room_done`), so the client
//!   gets each message exactly once across reconnects and a kill -9.

use super::persist::Change;
use super::rooms::RoomSub;
use super::streams::stream_room;
use super::Bridge;
use crate::{Packet, Properties, QoS, ReasonCode, SubAck};
use surepush_proto::topic::{topic_matches, MULTI_LEVEL, SINGLE_LEVEL};
use surepush_proto::topic_stream::RESERVED_FIRST_LEVELS;
use surepush_proto::{FilterReq, Frame, Seq, TopicSeen, ROOM_BIT, TOPIC_NODES_ANSWERED};
use surepush_token::AclAction;

/// Whether `filter` (a valid plain filter) is a topic filter: it has a
/// wildcard and can match a free-form topic name.
pub(super) fn is_topic_wildcard(filter: &str) -> bool {
    let first = filter.split('/').next().unwrap_or_default();
    filter.contains([SINGLE_LEVEL, MULTI_LEVEL])
        && !first.starts_with('$')
        && !RESERVED_FIRST_LEVELS.contains(&first)
}

/// Whether every name `inner` matches, `outer` matches too (both valid
/// plain filters or names).
pub(super) fn covers(outer: &str, inner: &str) -> bool {
    let wild = |l: &str| l == "+" || l == "#";
    if inner.starts_with('$') && outer.split('/').next().is_some_and(wild) {
        return false; // [MQTT-4.7.2-1]
    }
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b && b != "+" => {}
            (Some(_), Some(_)) => return false,
            (None, None) => return true,
            // `a/#` covers `a`.
            (Some(_), None) => return false,
            (None, Some(_)) => return false,
        }
    }
}

impl Bridge {
    /// Whether the session may subscribe the topic filter `filter` (its
    /// first level a name): a token grant covers it.
    pub(super) fn topic_filter_allowed(&self, filter: &str) -> bool {
        let first = filter.split('/').next().unwrap_or_default();
        if first == "+" || first == "#" {
            return true; // checked per name (module docs)
        }
        self.params.topics_open
            || self
                .acl
                .filters(AclAction::Subscribe)
                .iter()
                .any(|g| covers(g, filter))
    }

    /// Registers the topic filter `filter` with the core.
    pub(super) fn register_filter(&mut self, filter: &str) {
        self.to_core.push_back(Frame::Filter(FilterReq {
            filter: filter.to_string(),
            remove: false,
        }));
    }

    /// Registers every topic filter of a resumed session (after CONNACK),
    /// and forgets the QoS 2 bookkeeping its room positions passed.
    pub(super) fn register_filters(&mut self) {
        let rooms = &self.state.rooms;
        let ahead = |&(n, seq): &(u64, u64)| {
            rooms
                .get(&n)
                .is_some_and(|r| r.position.is_none_or(|p| seq > p.0))
        };
        if let Some(w) = self.state.wild.as_deref_mut() {
            w.room_pids.retain(|k, _| ahead(k));
            w.room_done.retain(ahead);
        }
        let filters: Vec<String> = self
            .state
            .subs
            .iter()
            .map(|s| s.filter.as_str())
            .filter(|f| is_topic_wildcard(f))
            .map(str::to_string)
            .collect();
        for f in filters {
            self.register_filter(&f);
        }
    }

    /// The subscription a message of the topic `name` (stored at `ts`,
    /// ms since the epoch; `None`: any time) is delivered under: the
    /// highest QoS among the session's filters matching it, and No Local
    /// if every one of them has it; `None` when none matches (a wildcard
    /// filter matches only names the token grants, and only messages
    /// stored since it was subscribed).
    pub(super) fn stream_grant(&self, name: &str, ts: Option<u64>) -> Option<(QoS, bool)> {
        let mut allowed = None;
        let mut out: Option<(QoS, bool)> = None;
        for s in &self.state.subs {
            let f = s.filter.as_str();
            let hit = if f == name {
                true
            } else if is_topic_wildcard(f)
                && topic_matches(f, name)
                && ts.is_none_or(|ts| {
                    self.state
                        .wild()
                        .filter_since
                        .get(f)
                        .is_none_or(|&s| s <= ts)
                })
            {
                *allowed.get_or_insert_with(|| self.topic_allowed(AclAction::Subscribe, name))
            } else {
                false
            };
            if hit {
                let (q, nl) = out.unwrap_or((QoS::AtMostOnce, true));
                out = Some((q.max(s.options.qos), nl && s.options.no_local));
            }
        }
        out
    }

    /// TOPIC from the core: a filter's registration (room 0), or a topic
    /// stream whose name matches one of the session's filters.
    pub(super) fn on_topic(&mut self, t: TopicSeen) {
        if t.room == 0 && t.seq == Seq(TOPIC_NODES_ANSWERED) {
            return self.filter_nodes_answered(&t.name);
        }
        if t.room == 0 {
            return self.filter_registered(&t.name, t.seq != Seq::ZERO);
        }
        let n = t.room & !ROOM_BIT;
        if stream_room(&t.name) == Some(n) {
            // A filter being registered may want its retained message.
            self.topic_seen_for_retained(n, &t.name);
        }
        if stream_room(&t.name) != Some(n) || self.state.rooms.contains_key(&n) {
            return; // not this name's stream, or subscribed already
        }
        let Some((qos, no_local)) = self.stream_grant(&t.name, None) else {
            return;
        };
        // A filter this session had before this connection: the stream may
        // hold messages stored while the session was away, so it is read
        // from its oldest kept message (those older than the filter are
        // skipped, `stream_grant`). Else from the message the notice names
        // (QoS 0: from now).
        let resumed = self
            .state
            .wild()
            .filter_since
            .iter()
            .any(|(f, &since)| since < self.started_ms && topic_matches(f, &t.name));
        let position = if resumed {
            Some(Seq::ZERO)
        } else {
            (t.seq != Seq::ZERO).then(|| Seq(t.seq.0 - 1))
        };
        let sub = RoomSub {
            qos,
            position,
            no_local,
            retain_as_published: false, // kept with the filter
        };
        self.state.wild_mut().streams.insert(n, vec![t.name]);
        self.start_room(n, sub);
        self.changed(Change::Subscriptions);
    }

    /// The core answered the registration of `filter`.
    fn filter_registered(&mut self, filter: &str, ok: bool) {
        self.shared_joined(filter);
        let v5 = self.level.is_v5();
        for pending in self.busy.subacks.iter_mut() {
            if let Some(i) = pending.filters.iter().position(|(f, _)| f == filter) {
                let (_, index) = pending.filters.swap_remove(i);
                if !ok {
                    pending.reasons[index] = if v5 {
                        ReasonCode::QUOTA_EXCEEDED
                    } else {
                        ReasonCode::UNSPECIFIED_ERROR
                    };
                }
                break;
            }
        }
        if !ok {
            self.state.subs.retain(|s| s.filter.as_str() != filter);
            self.state.wild_mut().filter_since.remove(filter);
            self.changed(Change::Subscriptions);
        }
        self.flush_subacks();
        self.filter_registered_for_retained(filter, ok);
    }

    /// Drops the topic filter `filter` (UNSUBSCRIBE) and the streams no
    /// filter of the session matches any more.
    pub(super) fn drop_topic_filter(&mut self, filter: &str) {
        self.to_core.push_back(Frame::Filter(FilterReq {
            filter: filter.to_string(),
            remove: true,
        }));
        self.state.wild_mut().filter_since.remove(filter);
        // The core ends its wait for other nodes unanswered.
        self.filter_nodes_answered(filter);
        let orphans: Vec<u64> = self
            .state
            .wild()
            .streams
            .iter()
            .filter(|(_, names)| names.iter().all(|n| self.stream_grant(n, None).is_none()))
            .map(|(&n, _)| n)
            .collect();
        for n in orphans {
            self.state.wild_mut().streams.remove(&n);
            self.unsubscribe_room(n);
        }
    }

    /// Whether a stream found through a wildcard filter is still wanted
    /// by the session's filters.
    pub(super) fn stream_still_wanted(&self, room: u64) -> bool {
        self.state
            .wild()
            .streams
            .get(&room)
            .is_some_and(|names| names.iter().any(|n| self.stream_grant(n, None).is_some()))
    }

    /// Sends the SUBACKs at the front whose rooms and filters are all
    /// confirmed, in order.
    pub(super) fn flush_subacks(&mut self) {
        while self
            .busy
            .subacks
            .front()
            .is_some_and(|p| p.rooms.is_empty() && p.filters.is_empty())
        {
            let p = self.busy.subacks.pop_front().expect("checked");
            self.queue_after_writes(Packet::SubAck(SubAck {
                packet_id: p.packet_id,
                reasons: p.reasons,
                properties: Properties::default(),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_wildcards_are_filters_that_can_match_free_form_names() {
        for yes in ["#", "+", "a/+", "+/x", "sensors/+/temp", "a/#"] {
            assert!(is_topic_wildcard(yes), "{yes}");
        }
        for no in ["a/b", "user/+", "room/#", "group/+", "$SYS/#", "$share/g/#"] {
            assert!(!is_topic_wildcard(no), "{no}");
        }
    }

    #[test]
    fn a_filter_covers_what_it_matches_all_of() {
        for (outer, inner) in [
            ("#", "a/+"),
            ("#", "#"),
            ("a/#", "a/+/c"),
            ("a/#", "a/#"),
            ("a/+", "a/+"),
            ("a/+", "a/b"),
            ("+/+", "a/+"),
            ("a/+/#", "a/b/#"),
        ] {
            assert!(covers(outer, inner), "{outer} covers {inner}");
        }
        for (outer, inner) in [
            ("a/+", "a/#"),
            ("a/b", "a/+"),
            ("a/+", "+/+"),
            ("a/+", "a/b/c"),
            ("#", "$SYS/#"),
            ("+/x", "$a/x"),
            ("a/+/c", "a/+"),
        ] {
            assert!(!covers(outer, inner), "{outer} does not cover {inner}");
        }
    }
}
