//! Retained messages of free-form topics (issue #21, docs/MQTT.md 2.6).
//!
//! Where they live: in the keyed state of the topic's stream, on the
//! stream's home shard (`StateKey::Retained` with the stream's id), the
//! place rooms keep theirs. Why there and not in the stream's history:
//! the history is bounded (`core.room_max_age_ms`, the log's retention)
//! and a retained message must outlive it; the keyed state is in the same
//! segment log, durable by the same group commit (so before the
//! PUBACK/PUBREC, and across a kill -9), folded by recovery, and already
//! read by the bridge for rooms. The value is a list of entries by topic
//! name (`surepush_proto::topic_stream::retained_entry`), merged by name
//! on the home shard (`core/keyed.rs`): two names sharing a stream id keep
//! one retained message each.
//!
//! Rules:
//! - A PUBLISH with RETAIN 1 to a free-form topic the session may publish
//!   to is stored in the stream as usual and, once stored, sets the name's
//!   retained message with its QoS, sender, receive time and v5 message
//!   properties ([`TopicRetained`]); an empty payload clears it.
//! - A new subscription gets the retained message of every name it
//!   matches, with RETAIN 1, after its SUBACK: an exact topic filter asks
//!   its stream once the core confirms the stream's subscription; a
//!   wildcard filter asks each stream the core names while registering it
//!   (the home shard walks its trie of names, `core/topic_filters.rs`),
//!   after the SUBACK, and in a cluster each stream another node names
//!   after the SUBACK, until the core says every node has answered (TOPIC
//!   room 0 `TOPIC_NODES_ANSWERED`; the keyed read crosses nodes). Each
//!   stream is asked once per filter. Retain Handling 0 sends them on every
//!   SUBSCRIBE, 1 only when the filter is new to the session, 2 never.
//!   Only names the session may subscribe to are sent; `$` names are never
//!   free-form.
//! - A retained message never follows a live message of its stream
//!   delivered to the session (that stream's retained message is then
//!   skipped: the live one is newer).
//! - Delivered at the lower of the message's QoS and the highest QoS the
//!   session's filters grant the name, with the remaining Message Expiry
//!   Interval; an expired one is not sent.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::outbound::Outgoing;
use super::state::{put_bytes32, Reader, Retained};
use super::streams::stream_room;
use super::{Bridge, Delivery};
use crate::{Packet, QoS, ReasonCode};
use surepush_proto::topic::topic_matches;
use surepush_proto::topic_stream::{is_topic_stream, retained_entries, retained_entry, stream_id};
use surepush_proto::{StateKey, UserId, ROOM_BIT};
use surepush_token::AclAction;

/// A retained-message change to make durable: the key and its new value
/// (`None` clears a room's; a topic's is an entry with an empty body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RetainChange {
    pub(super) key: StateKey,
    pub(super) value: Option<Bytes>,
    /// A free-form topic's change from a QoS 1 PUBLISH: its packet id
    /// (the PUBACK to mark if the change is refused).
    pub(super) ack: Option<u16>,
}

/// A free-form topic's retained message: the body of its entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRetained {
    /// Publisher.
    pub from: UserId,
    /// QoS it was published with.
    pub qos: QoS,
    /// Gateway receive time, ms since the epoch (the Message Expiry
    /// Interval counts from it).
    pub ts_ms: u64,
    /// The v5 publisher's message properties (as stored with messages).
    pub attrs: Bytes,
    /// Body (never empty: an empty retained PUBLISH clears).
    pub payload: Bytes,
}

/// Layout version of [`TopicRetained::encode`].
const TOPIC_RETAINED_V1: u8 = 1;

impl TopicRetained {
    /// `[version u8][qos u8][from u64][ts_ms u64][attrs len u32][attrs][payload]`,
    /// little-endian.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(22 + self.attrs.len() + self.payload.len());
        out.push(TOPIC_RETAINED_V1);
        out.push(self.qos as u8);
        out.extend_from_slice(&self.from.0.to_le_bytes());
        out.extend_from_slice(&self.ts_ms.to_le_bytes());
        put_bytes32(&mut out, &self.attrs);
        out.extend_from_slice(&self.payload);
        Bytes::from(out)
    }

    /// Parses [`TopicRetained::encode`]'s output; `None` if it is not that.
    pub fn decode(b: &[u8]) -> Option<TopicRetained> {
        let mut r = Reader(b);
        if r.u8()? != TOPIC_RETAINED_V1 {
            return None;
        }
        let qos = QoS::from_u8(r.u8()?)?;
        let from = UserId(r.u64()?);
        let ts_ms = r.u64()?;
        let attrs = r.bytes32()?;
        let payload = Bytes::copy_from_slice(r.0);
        (!payload.is_empty()).then_some(TopicRetained {
            from,
            qos,
            ts_ms,
            attrs,
            payload,
        })
    }
}

/// The change a retained PUBLISH to `room` (wire id) makes: `retained`
/// becomes its retained message, `None` clears it.
pub(super) fn room_change(room: UserId, retained: Option<&Retained>) -> RetainChange {
    RetainChange {
        key: StateKey::Retained { room },
        value: retained.map(Retained::encode),
        ack: None,
    }
}

/// The change a retained PUBLISH of `payload` to the free-form topic
/// `name` makes (an empty payload clears).
pub(super) fn topic_change(
    name: &str,
    retained: Option<TopicRetained>,
    ack: Option<u16>,
) -> RetainChange {
    let body = retained.map(|r| r.encode()).unwrap_or_default();
    RetainChange {
        key: StateKey::Retained {
            room: UserId(stream_id(name)),
        },
        value: Some(retained_entry(name, &body)),
        ack,
    }
}

/// A session's retained messages of free-form topics still to ask for or
/// to send (boxed in the bridge: most sessions never have any).
#[derive(Debug, Default)]
pub(super) struct TopicAsks {
    /// Exact topic filters waiting for their stream's subscription: stream
    /// → filters.
    wanted: BTreeMap<u64, Vec<String>>,
    /// Wildcard filters being registered that want retained messages.
    registering: BTreeSet<String>,
    /// Streams a registering filter matched: (stream, filter), asked once
    /// its SUBACK is out.
    held: Vec<(u64, String)>,
    /// Streams to ask for.
    queries: VecDeque<u64>,
    /// Streams asked for: stream → the filters whose names to send.
    asked: BTreeMap<u64, Vec<String>>,
    /// Filters whose SUBACK is out, still taking streams other nodes of a
    /// cluster name (until TOPIC room 0 `TOPIC_NODES_ANSWERED`).
    waiting: BTreeSet<String>,
    /// (stream, filter) asked for a filter of `waiting` (each once).
    named: BTreeSet<(u64, String)>,
    /// Streams held or asked of which a live message was delivered: their
    /// retained message is not sent.
    live: BTreeSet<u64>,
    /// Retained writes not reported yet: report id → the QoS 1 PUBLISH's
    /// packet id.
    writes: BTreeMap<u64, Option<u16>>,
}

impl TopicAsks {
    fn ask(&mut self, room: u64, filter: String) {
        let filters = self.asked.entry(room).or_default();
        if filters.is_empty() {
            self.queries.push_back(room);
        }
        if !filters.contains(&filter) {
            filters.push(filter);
        }
    }

    fn is_empty(&self) -> bool {
        self.wanted.is_empty()
            && self.registering.is_empty()
            && self.held.is_empty()
            && self.queries.is_empty()
            && self.asked.is_empty()
            && self.writes.is_empty()
            && self.waiting.is_empty()
    }

    /// Whether stream `room`'s retained message is still to come.
    fn pending(&self, room: u64) -> bool {
        self.asked.contains_key(&room) || self.held.iter().any(|(r, _)| *r == room)
    }
}

/// Whether a subscription with these options gets retained messages now
/// (`existed`: the filter was the session's already).
pub(super) fn wants_retained(options: &crate::SubscriptionOptions, existed: bool) -> bool {
    match options.retain_handling {
        crate::RetainHandling::SendAtSubscribe => true,
        crate::RetainHandling::SendIfNewSubscription => !existed,
        crate::RetainHandling::DoNotSend => false,
    }
}

impl Bridge {
    fn asks(&mut self) -> &mut TopicAsks {
        self.topic_asks.get_or_insert_with(Box::default)
    }

    /// The retained change `change` is written with report `id`.
    pub(super) fn retained_written(&mut self, id: u64, change: &RetainChange) {
        let StateKey::Retained { room } = change.key else {
            return;
        };
        if is_topic_stream(room.0) {
            self.asks().writes.insert(id, change.ack);
        }
    }

    /// Report `id` came: `Some` (with the PUBLISH's packet id, QoS 1) when
    /// it was a free-form topic's retained write.
    pub(super) fn topic_retained_reported(&mut self, id: u64) -> Option<Option<u16>> {
        let asks = self.topic_asks.as_deref_mut()?;
        let ack = asks.writes.remove(&id)?;
        if asks.is_empty() {
            self.topic_asks = None;
        }
        Some(ack)
    }

    /// A free-form topic's retained write was refused by its home shard
    /// (`core.max_retained_topics`, or its log failed): the message itself
    /// is stored and the session goes on (its own state is elsewhere); a
    /// 5.0 QoS 1 publisher's PUBACK says `0x97` Quota exceeded. 3.1.1 and
    /// QoS 0/2 cannot be told (a PUBREC error would end a QoS 2 exchange
    /// whose message is stored).
    pub(super) fn topic_retained_refused(&mut self, ack: Option<u16>) {
        tracing::warn!(
            user = self.user.0,
            "retained message of a free-form topic not set (core.max_retained_topics, or the log failed)"
        );
        let (Some(pid), true) = (ack, self.level.is_v5()) else {
            return;
        };
        let held = self.gate.q.client.iter_mut().map(|(_, p)| p);
        for p in held.chain(self.to_client.iter_mut()) {
            if let Packet::PubAck(a) = p {
                if a.packet_id.get() == pid {
                    a.reason = ReasonCode::QUOTA_EXCEEDED;
                }
            }
        }
    }

    /// The exact topic filter `name` (stream `room`) wants its retained
    /// message once the stream is subscribed.
    pub(super) fn want_topic_retained(&mut self, room: u64, name: &str) {
        self.asks()
            .wanted
            .entry(room)
            .or_default()
            .push(name.to_string());
    }

    /// Stream `room`'s subscription was confirmed (`ok`) or refused.
    pub(super) fn topic_stream_confirmed(&mut self, room: u64, ok: bool) {
        let Some(asks) = self.topic_asks.as_deref_mut() else {
            return;
        };
        let Some(filters) = asks.wanted.remove(&room) else {
            return;
        };
        if ok {
            for f in filters {
                asks.ask(room, f);
            }
        }
    }

    /// The wildcard filter `filter` is being registered and wants the
    /// retained messages of the names it matches. A filter the session
    /// holds already (`existed`) is registered on the core already: the
    /// core answers at once and names no stream, so the streams the
    /// session found for it (`SessionState` wildcard streams, every name
    /// the home shards knew when it was first registered or learnt since)
    /// are asked instead.
    pub(super) fn want_filter_retained(&mut self, filter: &str, existed: bool) {
        let known: Vec<(u64, String)> = if existed {
            let found = self.state.wild().streams.iter();
            let exact = self
                .state
                .subs
                .iter()
                .filter_map(|s| Some((stream_room(s.filter.as_str())?, s.filter.as_str())));
            found
                .flat_map(|(&n, names)| names.iter().map(move |name| (n, name.as_str())))
                .chain(exact)
                .filter(|(_, name)| topic_matches(filter, name))
                .map(|(n, _)| (n, filter.to_string()))
                .collect()
        } else {
            Vec::new()
        };
        let asks = self.asks();
        asks.registering.insert(filter.to_string());
        for k in known {
            if !asks.held.contains(&k) {
                asks.held.push(k);
            }
        }
    }

    /// The core named stream `room` with the topic `name`: a filter being
    /// registered that wants retained messages may match it.
    pub(super) fn topic_seen_for_retained(&mut self, room: u64, name: &str) {
        let Some(asks) = self.topic_asks.as_deref_mut() else {
            return;
        };
        let matching: Vec<String> = asks
            .registering
            .iter()
            .filter(|f| topic_matches(f, name))
            .cloned()
            .collect();
        for f in matching {
            if !asks.held.contains(&(room, f.clone())) {
                asks.held.push((room, f));
            }
        }
        // Another node's answer to a filter whose SUBACK is out.
        let after: Vec<String> = asks
            .waiting
            .iter()
            .filter(|f| topic_matches(f, name))
            .cloned()
            .collect();
        for f in after {
            if asks.named.insert((room, f.clone())) {
                asks.ask(room, f);
            }
        }
    }

    /// TOPIC room 0 `TOPIC_NODES_ANSWERED` (every other node has named its
    /// streams matching `filter`), or `filter` left the session: the
    /// filter takes no more.
    pub(super) fn filter_nodes_answered(&mut self, filter: &str) {
        let Some(asks) = self.topic_asks.as_deref_mut() else {
            return;
        };
        if asks.waiting.remove(filter) {
            asks.named.retain(|(_, f)| f != filter);
            if asks.is_empty() {
                self.topic_asks = None;
            }
        }
    }

    /// A live message of stream `room` went to the client: a retained
    /// message of it still to come would be older.
    pub(super) fn topic_live(&mut self, room: u64) {
        if let Some(asks) = self.topic_asks.as_deref_mut() {
            if asks.pending(room) {
                asks.live.insert(room);
            }
        }
    }

    /// The registration of `filter` is answered (`ok`) and its SUBACK
    /// queued: the streams it found are asked for their retained messages.
    pub(super) fn filter_registered_for_retained(&mut self, filter: &str, ok: bool) {
        let Some(asks) = self.topic_asks.as_deref_mut() else {
            return;
        };
        if !asks.registering.remove(filter) {
            return;
        }
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut asks.held)
            .into_iter()
            .partition(|(_, f)| f == filter);
        asks.held = rest;
        if ok {
            for (room, f) in mine {
                asks.named.insert((room, f.clone()));
                asks.ask(room, f);
            }
            asks.waiting.insert(filter.to_string());
        }
    }

    /// The next stream whose retained messages the session wants.
    pub(super) fn poll_topic_query(&mut self) -> Option<StateKey> {
        let asks = self.topic_asks.as_deref_mut()?;
        let room = asks.queries.pop_front()?;
        Some(StateKey::Retained {
            room: UserId(room | ROOM_BIT),
        })
    }

    /// The retained messages of stream `room` (its keyed value): sends
    /// those whose names the filters that asked match.
    pub(super) fn on_topic_retained(&mut self, room: u64, value: Option<Bytes>) {
        let Some(asks) = self.topic_asks.as_deref_mut() else {
            return;
        };
        let filters = asks.asked.remove(&room).unwrap_or_default();
        let live = asks.live.contains(&room);
        if !asks.pending(room) {
            asks.live.remove(&room);
        }
        if asks.is_empty() {
            self.topic_asks = None;
        }
        if live {
            return; // a newer message of it was delivered already
        }
        let Some(value) = value else { return };
        let Some(entries) = retained_entries(&value) else {
            tracing::warn!(room, "unreadable retained messages ignored");
            return;
        };
        for (name, body) in entries {
            if !filters.iter().any(|f| topic_matches(f, name))
                || !self.topic_allowed(AclAction::Subscribe, name)
            {
                continue;
            }
            match TopicRetained::decode(&body) {
                Some(msg) => self.deliver_topic_retained(name, msg),
                None => tracing::warn!(name, "unreadable retained message ignored"),
            }
        }
    }

    /// Sends the retained message of the topic `name` (RETAIN set).
    fn deliver_topic_retained(&mut self, name: &str, msg: TopicRetained) {
        let Some((granted, _)) = self.stream_grant(name, None) else {
            return; // unsubscribed meanwhile
        };
        let qos = granted.min(msg.qos);
        let out = Outgoing {
            from: msg.from,
            ts_ms: msg.ts_ms,
            attrs: msg.attrs,
            payload: msg.payload,
            sent_before: false,
            share: None,
        };
        self.send_retained(name, qos, out);
    }

    /// Queues a retained PUBLISH (RETAIN 1) of `topic` at `qos`.
    pub(super) fn send_retained(&mut self, topic: &str, qos: QoS, out: Outgoing) {
        if qos == QoS::AtMostOnce {
            match self.make_publish(topic, qos, out, true) {
                Some(p) => self.send_publish(p),
                None => self.expired += 1,
            }
        } else {
            self.publish(topic, qos, out, Some(Delivery::Retained), false);
        }
        self.pump();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_retained_round_trips_and_refuses_other_layouts() {
        let r = TopicRetained {
            from: UserId(7),
            qos: QoS::ExactlyOnce,
            ts_ms: 1_700_000_000_123,
            attrs: Bytes::from_static(&[1, 1]),
            payload: Bytes::from_static(b"21.5"),
        };
        assert_eq!(TopicRetained::decode(&r.encode()), Some(r.clone()));
        // A room's layout, an empty payload, a cut value: not one.
        let mut room = vec![1u8];
        room.extend_from_slice(&7u64.to_le_bytes());
        room.extend_from_slice(b"x");
        assert_eq!(TopicRetained::decode(&room), None);
        let empty = TopicRetained {
            payload: Bytes::new(),
            ..r.clone()
        };
        assert_eq!(TopicRetained::decode(&empty.encode()), None);
        let full = r.encode();
        assert_eq!(TopicRetained::decode(&full[..12]), None);
    }

    #[test]
    fn a_change_is_one_entry_of_the_topics_stream() {
        let c = topic_change("a/b", None, None);
        let StateKey::Retained { room } = c.key else {
            panic!("{c:?}");
        };
        assert_eq!(room.0, stream_id("a/b"));
        let v = c.value.expect("an entry");
        let e = retained_entries(&v).expect("entries");
        assert_eq!(e, vec![("a/b", Bytes::new())]);
    }
}
