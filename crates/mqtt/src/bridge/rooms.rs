//! Room subscriptions of an MQTT session (`room/{n}`, docs/MQTT.md).
//!
//! Each room subscription has a durable part ([`RoomSub`]: granted QoS,
//! No Local, and the **position**: the last room sequence the client
//! acknowledged with every earlier one) and a per-connection part
//! ([`RoomTrack`]: what was sent on this connection and not yet
//! acknowledged).
//!
//! Rules:
//! - The position is `None` until the first native SUBACK of the
//!   subscription says where delivery starts; `Some(Seq(0))` is a real
//!   position ("after 0": the start of a room that has no message yet).
//!   A (re)subscription goes `After(position)`, or from "now" when there is
//!   none (issue #16 item 2: 0 used to mean both, so a session subscribed to
//!   an empty room resumed from "now" and lost what came while it was away).
//! - While a subscription from "now" waits for its SUBACK, a second
//!   SUBSCRIBE of the room is sent only once that SUBACK gave the position,
//!   and after it: a second "now" could start after a message published in
//!   between, which the replaced first subscription would have delivered
//!   (the intermittent loss of issue #16 item 2, found by
//!   `tests::with_core`).
//! - A connection never sends the same room message twice: a
//!   re-subscription replays from the position, and what the connection
//!   already sent (up to `seen`) is skipped.
//! - A slow subscriber (ROOMLAG from the core: its unsent output passed the
//!   byte budget, or too many messages unacknowledged) is out of live
//!   fan-out until the server reports that the connection's output has
//!   drained ([`Bridge::on_output_drained`]) and the client has acknowledged
//!   at least half the room window; then it re-subscribes once and catches
//!   up from the log. One ROOMLAG is one episode, whatever arrives meanwhile.
//! - A room the core refuses (SUBACK `Refused` or `Forbidden`, also unasked
//!   when a membership change ends the subscription) leaves the session.

use std::collections::VecDeque;

use bytes::Bytes;

use super::outbound::Outgoing;
use super::persist::Change;
use super::{native_qos, Bridge, Delivery, Reader};
use crate::QoS;
use surepush_proto as proto;
use surepush_proto::topic_stream::is_topic_stream;
use surepush_proto::{Frame, RoomPush, Seq, SubResult, SubscribeFrom, ROOM_BIT};

/// Flag bit of a room entry in [`super::SessionState::encode`] (version 2
/// on): the position is known. Bits 0-1 hold the QoS, bit 2 No Local.
const POSITION_KNOWN: u8 = 1 << 3;
/// Flag of an encoded [`RoomSub`]: Retain As Published (0 in entries
/// written before it existed).
const RETAIN_AS_PUBLISHED: u8 = 1 << 4;

/// A room subscription of a session (the durable part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RoomSub {
    /// Granted QoS (at most 1 for rooms; topic streams up to 2, their
    /// native subscription being QoS 1).
    pub(super) qos: QoS,
    /// The last room sequence acknowledged, every earlier one included;
    /// `None` until the subscription's first SUBACK (see the module docs).
    pub(super) position: Option<Seq>,
    /// MQTT 5 No Local: skip messages this user published.
    pub(super) no_local: bool,
    /// MQTT 5 Retain As Published of a `room/{n}` filter (free-form
    /// topics keep theirs with the filter, `Bridge::retains_as_published`).
    pub(super) retain_as_published: bool,
}

impl RoomSub {
    /// Where a (re)subscription starts.
    fn from(&self) -> SubscribeFrom {
        self.position
            .map_or(SubscribeFrom::Now, SubscribeFrom::After)
    }

    /// Appends room `n`'s entry (current version).
    pub(super) fn encode(&self, n: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&n.to_le_bytes());
        let known = if self.position.is_some() {
            POSITION_KNOWN
        } else {
            0
        };
        let rap = if self.retain_as_published {
            RETAIN_AS_PUBLISHED
        } else {
            0
        };
        out.push(self.qos as u8 | u8::from(self.no_local) << 2 | known | rap);
        out.extend_from_slice(&self.position.unwrap_or(Seq::ZERO).0.to_le_bytes());
    }

    /// Reads one entry written by `version` of the encoding. Version 1 had
    /// no flag for the position: 0 meant "none" there.
    pub(super) fn decode(r: &mut Reader<'_>, version: u8) -> Option<(u64, RoomSub)> {
        let n = r.u64()?;
        let flags = r.u8()?;
        let qos = QoS::from_u8(flags & 3)?;
        let seq = Seq(r.u64()?);
        let known = if version == 1 {
            seq != Seq::ZERO
        } else {
            flags & POSITION_KNOWN != 0
        };
        let sub = RoomSub {
            qos,
            position: known.then_some(seq),
            no_local: flags & 4 != 0,
            retain_as_published: flags & RETAIN_AS_PUBLISHED != 0,
        };
        Some((n, sub))
    }
}

/// A room subscription on this connection.
#[derive(Debug, Default)]
pub(super) struct RoomTrack {
    /// Sent and not yet acknowledged, in order: (seq, done).
    order: VecDeque<(Seq, bool)>,
    /// Highest seq sent (or skipped) on this connection.
    seen: Seq,
    /// Out of live fan-out since a ROOMLAG; re-subscribed when the output
    /// drained and enough is acknowledged.
    lagged: bool,
    /// A subscription from "now" is out: its SUBACK brings the position.
    starting: bool,
    /// A SUBSCRIBE came while `starting`: subscribe again once the
    /// position is known.
    again: bool,
}

impl RoomTrack {
    fn starting_at(position: Option<Seq>) -> RoomTrack {
        RoomTrack {
            seen: position.unwrap_or(Seq::ZERO),
            ..RoomTrack::default()
        }
    }

    /// Marks `seq` acknowledged by the client (or never to be sent).
    pub(super) fn complete(&mut self, seq: Seq) {
        if let Some(e) = self.order.iter_mut().find(|e| e.0 == seq) {
            e.1 = true;
        }
    }

    /// Drops the acknowledged prefix; returns its last seq, if any.
    fn advance(&mut self) -> Option<Seq> {
        let mut last = None;
        while let Some(&(seq, true)) = self.order.front() {
            self.order.pop_front();
            last = Some(seq);
        }
        last
    }
}

impl Bridge {
    /// A client SUBSCRIBE to room `n`: starts (or restarts) the native
    /// subscription from the session's position. Returns the granted QoS
    /// and whether the session had this subscription already.
    pub(super) fn subscribe_room(
        &mut self,
        n: u64,
        options: &crate::SubscriptionOptions,
    ) -> (QoS, bool) {
        // Rooms deliver at most QoS 1 (ROOMACK is cumulative); topic
        // streams up to QoS 2 (`wildcards.rs`).
        let qos = if is_topic_stream(n | ROOM_BIT) {
            options.qos
        } else {
            options.qos.min(QoS::AtLeastOnce)
        };
        let previous = self.state.rooms.get(&n).copied();
        let sub = RoomSub {
            qos,
            position: previous.and_then(|r| r.position),
            no_local: options.no_local,
            retain_as_published: options.retain_as_published,
        };
        self.state.rooms.insert(n, sub);
        // Keep what this connection sent already: not sent twice.
        let track = self
            .rooms
            .entry(n)
            .or_insert_with(|| RoomTrack::starting_at(sub.position));
        track.lagged = false;
        if track.starting && sub.position.is_none() {
            track.again = true; // see the module docs
        } else {
            track.starting = sub.position.is_none();
            self.to_core.push_back(room_subscribe(n, sub.from(), qos));
        }
        (qos, previous.is_some())
    }

    /// Starts the subscription `sub` of room `n` the session did not have
    /// (a topic stream found through a wildcard filter).
    pub(super) fn start_room(&mut self, n: u64, sub: RoomSub) {
        self.state.rooms.insert(n, sub);
        let mut track = RoomTrack::starting_at(sub.position);
        track.starting = sub.position.is_none();
        self.rooms.insert(n, track);
        self.to_core
            .push_back(room_subscribe(n, sub.from(), sub.qos));
    }

    /// Subscribes every room of a resumed session (after CONNACK).
    pub(super) fn resubscribe_rooms(&mut self) {
        let rooms: Vec<(u64, RoomSub)> = self.state.rooms.iter().map(|(&n, &r)| (n, r)).collect();
        for (n, sub) in rooms {
            let mut track = RoomTrack::starting_at(sub.position);
            track.starting = sub.position.is_none();
            self.rooms.insert(n, track);
            self.to_core
                .push_back(room_subscribe(n, sub.from(), sub.qos));
        }
    }

    /// A client UNSUBSCRIBE of room `n`; whether it was subscribed.
    pub(super) fn unsubscribe_room(&mut self, n: u64) -> bool {
        self.rooms.remove(&n);
        let had = self.state.rooms.remove(&n).is_some();
        if had {
            self.to_core
                .push_back(proto::Frame::Unsubscribe { room: n | ROOM_BIT });
        }
        had
    }

    pub(super) fn deliver_room(&mut self, p: RoomPush) {
        let n = p.room & !ROOM_BIT;
        let Some(sub) = self.state.rooms.get(&n).copied() else {
            return;
        };
        // A topic stream carries its name (streams.rs): a name this
        // session does not subscribe (a hash collision) is skipped like
        // its own message.
        let stream = is_topic_stream(p.room);
        let (topic, payload, grant) = if stream {
            match self.stream_message(&p.payload, p.ts_ms) {
                Some((name, payload, grant)) => (name, payload, Some(grant)),
                None => (String::new(), Bytes::new(), None),
            }
        } else {
            let grant = (sub.qos, sub.no_local);
            (
                super::Target::Room(n).topic(),
                p.payload.clone(),
                Some(grant),
            )
        };
        let done = self.state.wild().room_done.contains(&(n, p.seq.0));
        let own = grant.is_none_or(|(_, no_local)| no_local && p.from == self.user) || done;
        let granted = grant.map_or(QoS::AtMostOnce, |(q, _)| q);
        let dup = self.state.wild().room_pids.contains_key(&(n, p.seq.0));
        let (seq, push_qos) = (p.seq, p.qos);
        let msg = Outgoing {
            payload,
            ..Outgoing::from(p)
        };
        let Some(track) = self.rooms.get_mut(&n) else {
            return;
        };
        if track.lagged {
            // Behind the ROOMLAG: comes again from the log on resume.
            return;
        }
        if seq == Seq::ZERO {
            if !own {
                if stream {
                    self.topic_live(n);
                }
                self.publish(&topic, QoS::AtMostOnce, msg, None, false);
            }
            return;
        }
        if seq <= track.seen {
            return; // sent already on this connection (a re-subscription)
        }
        track.seen = seq;
        let qos = granted.min(super::mqtt_qos(push_qos));
        if own {
            track.order.push_back((seq, true));
        } else if qos == QoS::AtMostOnce {
            track.order.push_back((seq, true));
            self.publish(&topic, qos, msg, None, false);
        } else {
            track.order.push_back((seq, false));
            let what = Some(Delivery::Room(n, seq));
            let msg = Outgoing {
                sent_before: dup,
                ..msg
            };
            self.publish(&topic, qos, msg, what, dup);
        }
        if stream && !own {
            // Its retained message, if still to come, is older.
            self.topic_live(n);
        }
    }

    /// ROOMLAG: the core dropped room `n` from live delivery to this
    /// connection. It waits (see the module docs) instead of re-subscribing
    /// at once into the same full socket.
    pub(super) fn on_room_lag(&mut self, n: u64) {
        if let Some(track) = self.rooms.get_mut(&n) {
            track.lagged = true;
            self.output_drained = false;
        }
    }

    /// Whether a room waits for the connection's output to drain.
    pub fn wants_drain(&self) -> bool {
        !self.output_drained && self.rooms.values().any(|t| t.lagged)
    }

    /// The server wrote everything queued for this connection: lagged
    /// rooms may catch up.
    pub fn on_output_drained(&mut self) {
        self.output_drained = true;
        self.pump();
    }

    /// Re-subscribes lagged rooms once the output drained and at most half
    /// the room window is unacknowledged (else the replay would lag again
    /// at once).
    fn resume_lagged_rooms(&mut self) {
        if !self.output_drained {
            return;
        }
        let half = (self.params.room_window / 2) as usize;
        let ready: Vec<u64> = self
            .rooms
            .iter()
            .filter(|(_, t)| t.lagged && t.order.len() <= half)
            .map(|(&n, _)| n)
            .collect();
        for n in ready {
            let Some(sub) = self.state.rooms.get(&n).copied() else {
                continue;
            };
            if let Some(t) = self.rooms.get_mut(&n) {
                t.lagged = false;
            }
            self.to_core
                .push_back(room_subscribe(n, sub.from(), sub.qos));
        }
    }

    /// Tells the core (QoS 1) and the session state (every QoS) what the
    /// client now holds in each room; resumes lagged rooms that may.
    pub(super) fn advance_rooms(&mut self) {
        let mut acks = Vec::new();
        let mut moved = false;
        let mut passed = Vec::new();
        for (&n, track) in self.rooms.iter_mut() {
            let Some(seq) = track.advance() else { continue };
            if let Some(entry) = self.state.rooms.get_mut(&n) {
                entry.position = Some(seq);
                moved = true;
                passed.push((n, seq));
                if entry.qos != QoS::AtMostOnce {
                    acks.push(proto::Frame::RoomAck {
                        room: n | ROOM_BIT,
                        seq,
                    });
                }
            }
        }
        if moved {
            self.changed(Change::RoomProgress);
        }
        if let Some(w) = self.state.wild.as_deref_mut() {
            for (n, seq) in passed {
                w.room_done.retain(|&(r, s)| r != n || s > seq.0);
            }
        }
        for ack in acks {
            self.ack_to_core(ack);
        }
        self.resume_lagged_rooms();
    }

    pub(super) fn on_room_suback(&mut self, a: proto::SubAck) {
        let n = a.room & !ROOM_BIT;
        if let Some(sub) = self.state.rooms.get_mut(&n) {
            if !a.result.subscribed() {
                // Refused, or not (any more) allowed: the room leaves the
                // session, as after an UNSUBSCRIBE. MQTT cannot tell the
                // client of an ended subscription (Forbidden unasked): its
                // messages just stop.
                self.state.rooms.remove(&n);
                self.rooms.remove(&n);
                self.forget_room_subscription_ids(n);
                self.forget_stream(n);
                self.state.wild_mut().streams.remove(&n);
                self.changed(Change::Subscriptions);
            } else if sub.position.is_none() || a.result == SubResult::Gap {
                // Started from "now" (or history is gone): the position is
                // just before the first message that will come (0 for an
                // empty room); stored so a restart resumes there.
                let position = Some(Seq(a.first.0.saturating_sub(1)));
                sub.position = position;
                let (qos, from) = (sub.qos, sub.from());
                if let Some(t) = self.rooms.get_mut(&n) {
                    t.seen = t.seen.max(Seq(a.first.0.saturating_sub(1)));
                    t.starting = false;
                    if std::mem::take(&mut t.again) {
                        self.to_core.push_back(room_subscribe(n, from, qos));
                    }
                }
                self.changed(Change::RoomStart);
            }
        }
        self.room_suback_arrived(n, a.result);
    }
}

fn room_subscribe(n: u64, from: SubscribeFrom, qos: QoS) -> Frame {
    Frame::Subscribe(proto::Subscribe {
        room: n | ROOM_BIT,
        from,
        // QoS 2 is the bridge's (`wildcards.rs`): ROOMACK is cumulative.
        qos: native_qos(qos.min(QoS::AtLeastOnce)),
    })
}
