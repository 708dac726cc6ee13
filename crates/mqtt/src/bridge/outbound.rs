//! Core → client: inbox pushes and replay pages become PUBLISHes, held
//! within the client's Receive Maximum; the client's PUBACK/PUBREC/PUBCOMP
//! complete them, and the acknowledged prefix goes to the core as one
//! cumulative ACK. Replay reads ahead (SYNC with `read_ahead`) while the
//! replay window has room, and keeps part of it waiting here for the next
//! PUBACK (issue #24; `window.rs`).

use bytes::Bytes;

use super::expiry::remaining_expiry;
use super::persist::Change;
use super::state::Retained;
use super::topics::Target;
use super::{mqtt_qos, Bridge, Delivery, Held, Mode, Outbound, Stage};
use crate::{MqttString, Packet, PacketId, Properties, PubReply, Publish, QoS};
use surepush_proto as proto;
use surepush_proto::{Frame, Push, RoomPush, Seq, SyncDirection, UserId};

/// An application message for the client: what its PUBLISH carries
/// besides the topic, QoS and flags.
#[derive(Clone, Debug)]
pub(super) struct Outgoing {
    /// The sender (v5: the `from` user property).
    pub(super) from: UserId,
    /// Gateway receive time (ms since the epoch): the Message Expiry
    /// Interval counts from it.
    pub(super) ts_ms: u64,
    /// Message attributes: the v5 sender's message properties.
    pub(super) attrs: Bytes,
    pub(super) payload: Bytes,
    /// Sent to this session before (a DUP re-send): onward delivery has
    /// started, so it no longer expires (MQTT-4.3.3-7).
    pub(super) sent_before: bool,
    /// The key of the share group that gave it (`shared.rs`): it carries
    /// that shared subscription's identifier only (`identifiers.rs`).
    pub(super) share: Option<u64>,
}

impl From<Push> for Outgoing {
    fn from(p: Push) -> Outgoing {
        Outgoing {
            from: p.from,
            ts_ms: p.ts_ms,
            attrs: p.attrs,
            payload: p.payload,
            sent_before: false,
            share: None,
        }
    }
}

impl From<RoomPush> for Outgoing {
    fn from(p: RoomPush) -> Outgoing {
        Outgoing {
            from: p.from,
            ts_ms: p.ts_ms,
            attrs: p.attrs,
            payload: p.payload,
            sent_before: false,
            share: None,
        }
    }
}

impl Bridge {
    /// Queues a cumulative acknowledgement (ACK, or ROOMACK of one room)
    /// for the core, replacing an earlier one of the same kind among the
    /// acknowledgements at the end of the queue.
    pub(super) fn ack_to_core(&mut self, ack: Frame) {
        let same = |f: &Frame| match (f, &ack) {
            (Frame::Ack(_), Frame::Ack(_)) => true,
            (Frame::RoomAck { room: a, .. }, Frame::RoomAck { room: b, .. }) => a == b,
            _ => false,
        };
        let trailing_acks = self
            .to_core
            .iter_mut()
            .rev()
            .take_while(|f| matches!(f, Frame::Ack(_) | Frame::RoomAck { .. }));
        for f in trailing_acks {
            if same(f) {
                *f = ack;
                return;
            }
        }
        self.to_core.push_back(ack);
    }

    /// Asks for up to `limit` inbox messages after `after`; `read_ahead`:
    /// without acknowledging `after` (the client has not acknowledged it
    /// yet).
    pub(super) fn ask_page(&mut self, after: Seq, read_ahead: bool, limit: u32) {
        self.next_request += 1;
        self.mode = Mode::Replay {
            request: self.next_request,
            last: after,
            asked: true,
        };
        self.to_core.push_back(Frame::Sync(proto::Sync {
            request_id: self.next_request,
            direction: SyncDirection::After(after),
            limit,
            read_ahead,
        }));
    }

    pub(super) fn deliver_inbox(&mut self, p: Push, dup: bool) {
        let topic = Target::from_wire(p.to.0).topic();
        // This device's own sends come back live as ECHO and in replay
        // pages as ordinary items: neither goes to the client.
        let own = p.echo || (p.from == self.user && p.from_device == self.device);
        let granted = if own { None } else { self.inbox_qos(&topic) };
        if p.seq == Seq::ZERO {
            // QoS 0: live devices only, nothing to acknowledge.
            if granted.is_some() {
                self.publish(&topic, QoS::AtMostOnce, p.into(), None, false);
            }
            return;
        }
        if p.seq <= self.seen {
            return; // a retransmission of something in flight or done
        }
        self.seen = p.seq;
        if self.state.done.contains(&p.seq.0) {
            // Acknowledged (out of order) before a restart: not again.
            self.hold(p.seq, 0);
            return;
        }
        let qos = granted.map(|g| g.min(mqtt_qos(p.qos)));
        match qos {
            None => self.hold(p.seq, 0),
            Some(QoS::AtMostOnce) => {
                self.hold(p.seq, 0);
                self.publish(&topic, QoS::AtMostOnce, p.into(), None, false);
            }
            Some(q) => {
                self.hold(p.seq, p.payload.len());
                let what = Delivery::Inbox(p.seq);
                let msg = Outgoing {
                    sent_before: dup,
                    ..p.into()
                };
                self.publish(&topic, q, msg, Some(what), dup);
            }
        }
    }

    /// Records inbox message `seq` as held until acknowledged; `bytes` of
    /// payload, 0: done already (the client never gets it).
    fn hold(&mut self, seq: Seq, bytes: usize) {
        self.busy.inbox_bytes += bytes;
        self.busy.inbox.push_back(Held {
            seq,
            done: bytes == 0,
            bytes,
        });
    }

    /// Queues a PUBLISH; QoS 1/2 ones wait while the send window (the
    /// client's Receive Maximum, `window.rs`) is full. A message whose
    /// Message Expiry Interval has passed is not sent (MQTT-3.3.2-5): it
    /// counts as acknowledged, and as expired.
    pub(super) fn publish(
        &mut self,
        topic: &str,
        qos: QoS,
        msg: Outgoing,
        what: Option<Delivery>,
        dup: bool,
    ) {
        let retain = what == Some(Delivery::Retained);
        let Some(mut p) = self.make_publish(topic, qos, msg, retain) else {
            self.expired += 1;
            if let Some(what) = what {
                self.complete(what);
            }
            return;
        };
        match what {
            None => self.send_publish(p),
            Some(what) => {
                p.dup = dup;
                self.busy.waiting_bytes += p.payload.len();
                self.busy.waiting.push_back((p, what));
            }
        }
    }

    /// A PUBLISH without packet id. v5: with the sender's message
    /// properties (the Message Expiry Interval less the time the message
    /// waited, MQTT-3.3.2-6) and the sender as the last user property, and
    /// RETAIN 1 also for a message published with it when a subscription
    /// matching `topic` has Retain As Published (MQTT-3.3.1-13); `None`
    /// once that interval has passed. v3.1.1: the payload only.
    pub(super) fn make_publish(
        &self,
        topic: &str,
        qos: QoS,
        msg: Outgoing,
        retain: bool,
    ) -> Option<Publish> {
        let mut properties = Properties::default();
        let mut retain = retain;
        if self.level.is_v5() {
            if !msg.attrs.is_empty() {
                match Properties::decode_message_block(msg.attrs) {
                    Ok(p) => properties = p,
                    // Another sender's attributes that are no MQTT
                    // properties: the message goes without them.
                    Err(e) => tracing::debug!(error = %e, "message attributes not forwarded"),
                }
            }
            if take_retain_mark(&mut properties) && !retain {
                retain = self.retains_as_published(topic);
            }
            if let Some(expiry) = properties.message_expiry_interval {
                let left = remaining_expiry(expiry, msg.ts_ms, self.now_ms)
                    .or(msg.sent_before.then_some(1))?;
                properties.message_expiry_interval = Some(left);
            }
            properties.subscription_identifiers = match msg.share {
                Some(group) => self.shared_subscription_id(group).into_iter().collect(),
                None => self.subscription_ids(topic),
            };
            properties.user_properties.push((
                MqttString::from_static("from"),
                MqttString::from(msg.from.0.to_string()),
            ));
        }
        Some(Publish {
            dup: false,
            qos,
            retain,
            topic: MqttString::from(topic),
            packet_id: None,
            payload: msg.payload,
            properties,
        })
    }

    /// Sends waiting PUBLISHes while the send window has room for them.
    pub(super) fn pump(&mut self) {
        // The reserve matters while replaying (`window.rs`); live pushes
        // come within the core's push window, room pushes within the
        // room window.
        let send_max = match self.mode {
            Mode::Replay { .. } => self.window.send_max(usize::from(self.client_receive_max)),
            _ => usize::from(self.client_receive_max),
        };
        while self.busy.inflight.len() < send_max {
            let Some((mut p, what)) = self.busy.made_mut().and_then(|b| b.waiting.pop_front())
            else {
                break;
            };
            self.busy.waiting_bytes -= p.payload.len();
            let reused = match what {
                Delivery::Inbox(seq) => self.state.out_pids.get(&seq.0).copied(),
                Delivery::Room(n, seq) => self.state.wild().room_pids.get(&(n, seq.0)).copied(),
                Delivery::Shared(g, n, seq) => {
                    self.state.wild().shared_pids.get(&(g, n, seq.0)).copied()
                }
                Delivery::Retained => None,
            };
            let pid = match reused.and_then(PacketId::new) {
                Some(pid) if !self.busy.inflight.contains_key(&pid.get()) => pid,
                _ => self.alloc_pid(),
            };
            if let Delivery::Inbox(seq) = what {
                if self.state.out_pids.insert(seq.0, pid.get()) != Some(pid.get()) {
                    self.changed(if p.qos == QoS::ExactlyOnce {
                        Change::OutboundQos2Sent
                    } else {
                        Change::Bookkeeping
                    });
                }
            }
            if let (Delivery::Room(n, seq), QoS::ExactlyOnce) = (what, p.qos) {
                // A resend after a crash must carry this id (wildcards.rs).
                if self
                    .state
                    .wild_mut()
                    .room_pids
                    .insert((n, seq.0), pid.get())
                    != Some(pid.get())
                {
                    self.changed(Change::OutboundQos2Sent);
                }
            }
            if let (Delivery::Shared(g, n, seq), QoS::ExactlyOnce) = (what, p.qos) {
                // The same for a share group's message (shared.rs).
                let pids = &mut self.state.wild_mut().shared_pids;
                if pids.insert((g, n, seq.0), pid.get()) != Some(pid.get()) {
                    self.changed(Change::OutboundQos2Sent);
                }
            }
            p.packet_id = Some(pid);
            let stage = if p.qos == QoS::ExactlyOnce {
                Stage::Rec
            } else {
                Stage::Ack
            };
            if !self.fits(&Packet::Publish(p.clone())) {
                // Too big for the client (MQTT-3.1.2-25): dropped as if
                // acknowledged.
                self.complete(what);
                continue;
            }
            self.busy
                .inflight
                .insert(pid.get(), Outbound { what, stage });
            if let Some(a) = &mut self.aliases {
                a.apply(&mut p);
            }
            self.to_client.push_back(Packet::Publish(p));
        }
        self.advance();
    }

    pub(super) fn send_publish(&mut self, p: Publish) {
        let mut packet = Packet::Publish(p);
        if self.fits(&packet) {
            if let Packet::Publish(p) = &mut packet {
                // After the size check: a packet too big is never sent, so
                // it must not take an alias (`aliases.rs`).
                if let Some(a) = &mut self.aliases {
                    a.apply(p);
                }
            }
            self.to_client.push_back(packet);
        }
    }

    fn alloc_pid(&mut self) -> PacketId {
        loop {
            self.next_pid = self.next_pid.wrapping_add(1);
            let Some(pid) = PacketId::new(self.next_pid) else {
                continue;
            };
            let id = pid.get();
            let w = self.state.wild();
            let reserved = self.busy.inflight.contains_key(&id)
                || self.state.rel_pending.contains(&id)
                || self.state.out_pids.values().any(|&p| p == id)
                || w.room_pids.values().any(|&p| p == id)
                || w.shared_pids.values().any(|&p| p == id)
                || w.shared_done.values().any(|&p| p == id);
            if !reserved {
                return pid;
            }
        }
    }

    /// The client has (or will never get) the message.
    fn complete(&mut self, what: Delivery) {
        match what {
            Delivery::Inbox(seq) => {
                self.state.out_pids.remove(&seq.0);
                if seq > self.state.inbox_acked {
                    // Until the prefix passes it: never sent again.
                    self.state.done.insert(seq.0);
                }
                self.changed(Change::Bookkeeping);
                // `inbox` is in seq order.
                if let Ok(i) = self.busy.inbox.binary_search_by_key(&seq, |e| e.seq) {
                    let e = &mut self.busy.inbox[i];
                    if !e.done {
                        e.done = true;
                        self.busy.inbox_bytes -= std::mem::take(&mut e.bytes);
                    }
                }
            }
            Delivery::Room(n, seq) => {
                if let Some(w) = self.state.wild.as_deref_mut() {
                    if w.room_pids.remove(&(n, seq.0)).is_some() {
                        // QoS 2 received: never again, even after a
                        // restart, until the room's position passes it.
                        w.room_done.insert((n, seq.0));
                        self.changed(Change::Bookkeeping);
                    }
                }
                if let Some(t) = self.rooms.get_mut(&n) {
                    t.complete(seq);
                }
            }
            Delivery::Retained => {}
            Delivery::Shared(group, room, seq) => {
                // Refused, expired or too big: forgotten with the group's
                // record (received ones left `shared_pids` in on_pubrec).
                let w = self.state.wild.as_deref_mut();
                if w.is_some_and(|w| w.shared_pids.remove(&(group, room, seq.0)).is_some()) {
                    self.changed(Change::Bookkeeping);
                }
                self.shared_done(group, room, seq);
            }
        }
    }

    /// Tells the core what the client now holds, in order.
    fn advance(&mut self) {
        let mut last = None;
        while let Some(&Held {
            seq, done: true, ..
        }) = self.busy.inbox.front()
        {
            self.busy.inbox.pop_front();
            last = Some(seq);
        }
        if let Some(seq) = last.filter(|s| *s > self.state.inbox_acked) {
            self.state.inbox_acked = seq;
            self.state.done.retain(|&s| s > seq.0);
            self.changed(Change::Bookkeeping);
        }
        if let Some(seq) = last.filter(|_| self.mode != Mode::Connecting) {
            self.ack_to_core(Frame::Ack(seq));
        }
        if let Mode::Replay {
            last, asked: false, ..
        } = self.mode
        {
            // Read ahead while the window has room: the client's PUBACKs
            // need not come first.
            if let Some(limit) = self
                .window
                .next_page(self.busy.inbox.len(), self.busy.inbox_bytes)
            {
                self.ask_page(last, true, limit);
            }
        }
        self.advance_rooms();
    }

    pub(super) fn on_puback(&mut self, pid: PacketId) {
        match self.busy.inflight.get(&pid.get()) {
            Some(o) if o.stage == Stage::Ack => {
                let what = o.what;
                self.busy.inflight.remove(&pid.get());
                self.complete(what);
            }
            _ => tracing::debug!(pid = pid.get(), "PUBACK for no QoS 1 PUBLISH in flight"),
        }
    }

    pub(super) fn on_pubrec(&mut self, r: PubReply) {
        let pid = r.packet_id;
        match self.busy.inflight.get_mut(&pid.get()) {
            Some(o) if o.stage == Stage::Rec => {
                let what = o.what;
                if r.reason.is_error() {
                    self.busy.inflight.remove(&pid.get());
                } else {
                    o.stage = Stage::Comp;
                    self.state.rel_pending.insert(pid.get());
                    self.changed(Change::OutboundReceived);
                    if let Delivery::Shared(g, n, seq) = what {
                        self.shared_received((g, n, seq.0), pid.get());
                    }
                    self.to_client
                        .push_back(Packet::PubRel(PubReply::success(pid)));
                }
                self.complete(what);
            }
            Some(o) if o.stage == Stage::Comp => {
                self.to_client
                    .push_back(Packet::PubRel(PubReply::success(pid)));
            }
            _ => tracing::debug!(pid = pid.get(), "PUBREC for no QoS 2 PUBLISH in flight"),
        }
    }

    pub(super) fn on_pubcomp(&mut self, pid: PacketId) {
        if matches!(self.busy.inflight.get(&pid.get()), Some(o) if o.stage == Stage::Comp) {
            self.busy.inflight.remove(&pid.get());
        }
        if self.state.rel_pending.remove(&pid.get()) {
            self.changed(Change::Bookkeeping);
        }
        self.shared_completed(pid.get());
    }

    /// Sends room `room`'s retained message (RETAIN set) to the client.
    pub fn deliver_retained(&mut self, room: u64, msg: Retained) {
        let Some(sub) = self.state.rooms.get(&room).copied() else {
            return;
        };
        let qos = sub.qos.min(msg.qos);
        let topic = Target::Room(room).topic();
        let out = Outgoing {
            from: msg.from,
            ts_ms: 0,
            attrs: Bytes::new(),
            payload: msg.payload,
            sent_before: false,
            share: None,
        };
        self.send_retained(&topic, qos, out);
    }
}

/// The user property the bridge appends last to the stored attributes of a
/// message published with RETAIN 1 (docs/MQTT.md 2.4): the flag is not
/// otherwise kept with a message. Never forwarded to an MQTT client.
const RETAIN_MARK: &str = "surepush:retain";

/// [`RETAIN_MARK`] as the user property stored.
pub(super) fn retain_mark() -> (MqttString, MqttString) {
    (
        MqttString::from_static(RETAIN_MARK),
        MqttString::from_static("1"),
    )
}

/// Removes [`RETAIN_MARK`] from the end of a stored message's properties;
/// `true`: the message was published with RETAIN 1.
fn take_retain_mark(p: &mut Properties) -> bool {
    let marked = p
        .user_properties
        .last()
        .is_some_and(|(k, v)| k.as_str() == RETAIN_MARK && v.as_str() == "1");
    if marked {
        p.user_properties.pop();
    }
    marked
}

impl Bridge {
    /// Does a subscription matching `topic` have Retain As Published?
    fn retains_as_published(&self, topic: &str) -> bool {
        if let Some(n) = super::topics::room_filter(topic) {
            return self
                .state
                .rooms
                .get(&n)
                .is_some_and(|r| r.retain_as_published);
        }
        self.state.subs.iter().any(|s| {
            s.options.retain_as_published && crate::topic_matches(s.filter.as_str(), topic)
        })
    }
}
