//! Room subscriptions of a [`ClientSession`]: SUBSCRIBE/ROOMPUSH/ROOMACK,
//! resuming after the last sequence processed on every reconnect and after
//! a ROOMLAG (see docs/PROTOCOL.md, rooms).

use std::collections::BTreeMap;

use super::session::{ClientSession, Event};
use surepush_proto::{Frame, Qos, RoomPush, Seq, SubAck, SubResult, Subscribe, SubscribeFrom};

/// Room messages between two ROOMACKs of a QoS 1 subscription (well under
/// the gateway's window).
const ROOM_ACK_EVERY: u64 = 32;

/// One followed room.
#[derive(Clone, Copy, Debug)]
pub(super) struct Follow {
    qos: Qos,
    /// Last sequence handed to the application.
    last: Option<Seq>,
    /// Last sequence acknowledged to the gateway.
    acked: Seq,
}

/// The rooms a session follows.
pub(super) type Follows = BTreeMap<u64, Follow>;

impl ClientSession {
    /// Follows `room` (QoS 0 or 1) from now on; the session resumes it
    /// after the last message it delivered whenever it reconnects.
    pub fn subscribe(&mut self, room: u64, qos: Qos, now: u64) {
        self.set_now(now);
        let follow = Follow {
            qos,
            last: None,
            acked: Seq::ZERO,
        };
        self.rooms.insert(room, follow);
        if self.is_connected() {
            self.send_subscribe(room);
        }
    }

    /// Follows `room` from just after `last` (a sequence the application
    /// processed earlier, e.g. persisted across restarts).
    pub fn resume(&mut self, room: u64, qos: Qos, last: Seq, now: u64) {
        self.set_now(now);
        let follow = Follow {
            qos,
            last: Some(last),
            acked: last,
        };
        self.rooms.insert(room, follow);
        if self.is_connected() {
            self.send_subscribe(room);
        }
    }

    /// Stops following `room`.
    pub fn unsubscribe(&mut self, room: u64, now: u64) {
        self.set_now(now);
        if self.rooms.remove(&room).is_some() && self.is_connected() {
            self.queue_frame(Frame::Unsubscribe { room });
        }
    }

    pub(super) fn send_subscribe(&mut self, room: u64) {
        let Some(f) = self.rooms.get(&room) else {
            return;
        };
        let from = f.last.map_or(SubscribeFrom::Now, SubscribeFrom::After);
        let qos = f.qos;
        self.queue_frame(Frame::Subscribe(Subscribe { room, from, qos }));
    }

    /// After CONNACK: every followed room again, from where it stopped.
    pub(super) fn resubscribe_all(&mut self) {
        let rooms: Vec<u64> = self.rooms.keys().copied().collect();
        for room in rooms {
            self.send_subscribe(room);
        }
    }

    pub(super) fn on_suback(&mut self, ack: SubAck) {
        if ack.result == SubResult::Forbidden {
            // Refused, or ended by the gateway (permission taken away): no
            // longer followed; `last` lets the application resume later.
            if let Some(f) = self.rooms.remove(&ack.room) {
                let room = ack.room;
                self.push_event(Event::RoomForbidden { room, last: f.last });
            }
            return;
        }
        if ack.result == SubResult::Refused {
            self.rooms.remove(&ack.room);
        } else if let Some(f) = self.rooms.get_mut(&ack.room) {
            // Delivery starts at `first` when subscribing from now, or
            // continues there after a gap (earlier ones are gone). An `Ok`
            // never moves a known position: one that starts later answers
            // an earlier SUBSCRIBE from now (a duplicate, or one replaced);
            // the pushes that follow show a hole and are asked for again.
            let skip = f
                .last
                .is_none_or(|l| ack.result == SubResult::Gap && l.next() < ack.first);
            if skip {
                f.last = Some(Seq(ack.first.0.saturating_sub(1)));
            }
        }
        self.push_event(Event::Subscribed(ack));
    }

    pub(super) fn on_room_push(&mut self, p: RoomPush) {
        let Some(f) = self.rooms.get_mut(&p.room) else {
            return; // unsubscribed meanwhile
        };
        if p.seq == Seq::ZERO {
            self.push_event(Event::RoomMessage(p));
            return;
        }
        let Some(last) = f.last else {
            // Subscribed from now, SUBACK not seen: where the subscription
            // starts is unknown, so a hole before this push could not be
            // seen. On a stream the SUBACK comes first; if it was lost,
            // nothing is delivered until the SUBACK of the next SUBSCRIBE
            // says where the subscription starts.
            return;
        };
        if p.seq <= last {
            return; // seen already (a resume overlapping what was delivered)
        }
        if p.seq != last.next() {
            // A hole cannot happen on one TCP connection; if it does, do
            // not skip it: subscribe again from the last one delivered.
            self.send_subscribe(p.room);
            return;
        }
        f.last = Some(p.seq);
        let ack = (f.qos == Qos::AtLeastOnce && p.seq.0 - f.acked.0 >= ROOM_ACK_EVERY).then(|| {
            f.acked = p.seq;
            Frame::RoomAck {
                room: p.room,
                seq: p.seq,
            }
        });
        if let Some(ack) = ack {
            self.queue_frame(ack);
        }
        self.push_event(Event::RoomMessage(p));
    }

    pub(super) fn on_room_lag(&mut self, room: u64) {
        if self.rooms.contains_key(&room) {
            self.push_event(Event::RoomLagged(room));
            self.send_subscribe(room);
        }
    }

    /// Acknowledges everything delivered in every QoS 1 room (call when
    /// the application has processed what it received).
    pub fn ack_rooms(&mut self) {
        let acks: Vec<Frame> = self
            .rooms
            .iter_mut()
            .filter(|(_, f)| f.qos == Qos::AtLeastOnce)
            .filter_map(|(room, f)| {
                let last = f.last.filter(|l| *l > f.acked)?;
                f.acked = last;
                Some(Frame::RoomAck {
                    room: *room,
                    seq: last,
                })
            })
            .collect();
        for a in acks {
            self.queue_frame(a);
        }
    }
}
