//! Room replicas: the rooms with subscribers on this shard (`room.rs`).
//!
//! Owns, privately: per room, the ring of its recent ROOMPUSH frames and
//! its subscriptions here (connection, QoS, next and acknowledged
//! sequence, replaying or live, granted by the token); and the counter
//! that numbers subscriptions.
//!
//! Invariants: a room has an entry exactly while it has a subscription
//! here (the last one leaving removes it, and the caller then tells the
//! home shard); a connection has at most one subscription per room; the
//! ring is ascending by seq and no longer than the history it is given;
//! a subscription receives only `seq == next`, so it sees the room in
//! order, without gaps or repeats.
//!
//! Called by the subscriber side of `room.rs`, which turns what these
//! methods return into frames, peer messages and lags.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::action::ConnId;
use crate::hashing::FastHashMap;
use surepush_proto::{Qos, Seq};

/// A page of replayed room frames, or the live fan-out of one frame.
pub(super) type Frames = Vec<(Seq, Bytes)>;

/// One room as seen by a shard that has subscribers to it.
#[derive(Debug, Default)]
struct RoomReplica {
    /// Recent ROOMPUSH frames, ascending by seq.
    ring: VecDeque<(Seq, Bytes)>,
    subs: Vec<RoomSub>,
    /// Where each connection's subscription is in `subs`: every frame is
    /// offered to each subscriber by connection, so finding it by a scan
    /// made a room message cost O(subscribers²) per shard (69% of the
    /// gateway's CPU at 10,000 subscribers, issue #17 goal 6).
    at: FastHashMap<ConnId, usize>,
}

#[derive(Debug)]
struct RoomSub {
    /// Tells this subscription's replay pages from those of an earlier
    /// one of the same connection (still in flight after a ROOMLAG).
    id: u64,
    conn: ConnId,
    qos: Qos,
    /// Next sequence to deliver (valid once the first page arrived).
    next: Seq,
    /// Highest sequence acknowledged (QoS 1).
    acked: Seq,
    /// Waiting for replay pages from the home shard.
    replaying: bool,
    /// The session's token grants reading the room: membership changes
    /// cannot end this subscription.
    granted: bool,
}

/// What to do with a frame offered to a subscription ([`RoomReplicas::offer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Offer {
    /// Not the frame it needs next (or no such subscription): nothing.
    Skip,
    /// Sent: `next` moved past it.
    Send,
    /// Too far ahead of the subscriber's acknowledgements: lag it.
    Lag,
}

/// What the ring holds for a subscription ([`RoomReplicas::catch_up`]).
#[derive(Debug)]
pub(super) enum CatchUp {
    /// No such subscription.
    Gone,
    /// The ring no longer reaches back to its next sequence: lag it.
    Lag,
    /// Later frames are here but not its next one: replay from the home.
    Hole,
    /// These frames, from its next sequence on (possibly none).
    Frames(Frames),
}

/// How a replay page fits its subscription ([`RoomReplicas::page_arrived`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PageFit {
    /// Unsubscribed meanwhile, or a page of an earlier subscription.
    Stale,
    /// A resync found what it missed older than the room's history: lag
    /// it, so the subscriber resumes and learns of the gap.
    Lag,
    /// The page continues the subscription; `first`: the subscription
    /// starts here, with a gap if `gap` (answer its SUBACK).
    Fits { first: Option<(Seq, bool)> },
}

/// A subscription to restart from its next sequence ([`RoomReplicas::restart_replay`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Restart {
    /// Its new id.
    pub(super) id: u64,
    /// The last sequence it delivered.
    pub(super) after: Seq,
    pub(super) granted: bool,
}

/// The room replicas of one shard (module docs).
#[derive(Debug, Default)]
pub(super) struct RoomReplicas {
    rooms: FastHashMap<u64, RoomReplica>,
    next_sub_id: u64,
}

impl RoomReplicas {
    /// Adds `conn`'s subscription to `room` (it has none: the caller drops
    /// the old one first), replaying from the home shard; returns its id.
    pub(super) fn subscribe(&mut self, room: u64, conn: ConnId, qos: Qos, granted: bool) -> u64 {
        self.next_sub_id += 1;
        let id = self.next_sub_id;
        let replica = self.rooms.entry(room).or_default();
        let old = replica.at.insert(conn, replica.subs.len());
        debug_assert!(old.is_none(), "one subscription per connection and room");
        replica.subs.push(RoomSub {
            id,
            conn,
            qos,
            next: Seq::ZERO,
            acked: Seq::ZERO,
            replaying: true,
            granted,
        });
        id
    }

    fn sub_mut(&mut self, room: u64, conn: ConnId) -> Option<&mut RoomSub> {
        let replica = self.rooms.get_mut(&room)?;
        let i = *replica.at.get(&conn)?;
        replica.subs.get_mut(i)
    }

    fn sub(&self, room: u64, conn: ConnId) -> Option<&RoomSub> {
        let replica = self.rooms.get(&room)?;
        replica.subs.get(*replica.at.get(&conn)?)
    }

    /// The sequence `conn`'s subscription to `room` delivers next, if it
    /// has one.
    pub(super) fn next_of(&self, room: u64, conn: ConnId) -> Option<Seq> {
        self.sub(room, conn).map(|s| s.next)
    }

    /// Whether `conn`'s subscription to `room` is the one numbered `id`.
    pub(super) fn is_current(&self, room: u64, conn: ConnId, id: u64) -> bool {
        self.sub(room, conn).is_some_and(|s| s.id == id)
    }

    /// The subscriber acknowledged up to `seq` (capped at what it got).
    pub(super) fn ack(&mut self, room: u64, conn: ConnId, seq: Seq) {
        if let Some(sub) = self.sub_mut(room, conn) {
            let top = Seq(sub.next.0.saturating_sub(1));
            sub.acked = sub.acked.max(seq.min(top));
        }
    }

    /// The connections subscribed to `room` by membership (not granted by
    /// their token).
    pub(super) fn ungranted(&self, room: u64) -> impl Iterator<Item = ConnId> + '_ {
        self.rooms
            .get(&room)
            .into_iter()
            .flat_map(|r| r.subs.iter())
            .filter(|s| !s.granted)
            .map(|s| s.conn)
    }

    /// Removes `conn`'s subscription to `room`. `None`: there was none;
    /// `Some(true)`: it was the room's last here (the room is forgotten).
    pub(super) fn unsubscribe(&mut self, room: u64, conn: ConnId) -> Option<bool> {
        let replica = self.rooms.get_mut(&room)?;
        let i = replica.at.remove(&conn)?;
        replica.subs.swap_remove(i);
        if let Some(moved) = replica.subs.get(i) {
            replica.at.insert(moved.conn, i);
        }
        let last = replica.subs.is_empty();
        if last {
            self.rooms.remove(&room);
        }
        Some(last)
    }

    /// Offers the frame `seq` to `conn`'s subscription; QoS 1 ones may be
    /// at most `window` ahead of their acknowledgements.
    pub(super) fn offer(&mut self, room: u64, conn: ConnId, seq: Seq, window: u64) -> Offer {
        let Some(sub) = self.sub_mut(room, conn) else {
            return Offer::Skip;
        };
        if sub.next != seq {
            return Offer::Skip;
        }
        if sub.qos == Qos::AtLeastOnce && seq.0.saturating_sub(sub.acked.0) > window {
            return Offer::Lag;
        }
        sub.next = seq.next();
        Offer::Send
    }

    /// What the ring holds for `conn`'s subscription to `room`.
    pub(super) fn catch_up(&self, room: u64, conn: ConnId) -> CatchUp {
        let (Some(replica), Some(next)) = (self.rooms.get(&room), self.next_of(room, conn)) else {
            return CatchUp::Gone;
        };
        if replica
            .ring
            .front()
            .is_some_and(|(oldest, _)| *oldest > next)
        {
            return CatchUp::Lag;
        }
        let from = replica.ring.partition_point(|(s, _)| *s < next);
        if replica.ring.get(from).is_some_and(|(s, _)| *s > next) {
            // A hole: later messages are here but `next` is not (a push
            // lost between nodes, or a room subject joined late).
            return CatchUp::Hole;
        }
        CatchUp::Frames(replica.ring.iter().skip(from).cloned().collect())
    }

    /// Renumbers `conn`'s subscription to `room` and makes it replay again
    /// from its next sequence (it keeps its position).
    pub(super) fn restart_replay(&mut self, room: u64, conn: ConnId) -> Option<Restart> {
        self.sub(room, conn)?;
        self.next_sub_id += 1;
        let id = self.next_sub_id;
        let sub = self.sub_mut(room, conn).expect("checked above");
        sub.id = id;
        sub.replaying = true;
        Some(Restart {
            id,
            after: Seq(sub.next.0.saturating_sub(1)),
            granted: sub.granted,
        })
    }

    /// A replay page for subscription `id` arrived: sets its position
    /// (`first`, `gap`: where the page starts; `skip_to`: sequences
    /// before it no longer exist) and says how the page fits.
    pub(super) fn page_arrived(
        &mut self,
        room: u64,
        conn: ConnId,
        id: u64,
        first: Seq,
        gap: bool,
        skip_to: Seq,
    ) -> PageFit {
        let Some(sub) = self.sub_mut(room, conn) else {
            return PageFit::Stale; // unsubscribed meanwhile
        };
        if sub.id != id || !sub.replaying {
            return PageFit::Stale; // a page of an earlier subscription
        }
        // Sequences before `skip_to` no longer exist: start or move past them.
        let (first, gap) = if skip_to > first {
            (skip_to, true)
        } else {
            (first, gap)
        };
        if sub.next != Seq::ZERO && gap && first > sub.next {
            return PageFit::Lag;
        }
        if sub.next != Seq::ZERO && skip_to > sub.next {
            sub.next = skip_to;
        }
        if sub.next != Seq::ZERO {
            return PageFit::Fits { first: None };
        }
        sub.next = first;
        sub.acked = Seq(first.0.saturating_sub(1));
        PageFit::Fits {
            first: Some((first, gap)),
        }
    }

    /// The replay of `conn`'s subscription to `room` is done: it is live.
    pub(super) fn replay_done(&mut self, room: u64, conn: ConnId) {
        if let Some(sub) = self.sub_mut(room, conn) {
            sub.replaying = false;
        }
    }

    /// A room frame arrived from the home shard: keeps it in the ring
    /// (`history` frames at most; a QoS 0 frame, `seq` 0, is not kept)
    /// and returns the live subscriptions with their next sequence, or
    /// `None` if the room has no subscriber here.
    pub(super) fn fanout(
        &mut self,
        room: u64,
        seq: Seq,
        frame: &Bytes,
        history: usize,
    ) -> Option<Vec<(ConnId, Seq)>> {
        let replica = self.rooms.get_mut(&room)?;
        if seq != Seq::ZERO {
            replica.ring.push_back((seq, frame.clone()));
            while replica.ring.len() > history {
                replica.ring.pop_front();
            }
        }
        Some(
            replica
                .subs
                .iter()
                .filter(|s| !s.replaying)
                .map(|s| (s.conn, s.next))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(index: u32) -> ConnId {
        ConnId {
            index,
            generation: 1,
        }
    }

    /// Live subscriptions of `room` with their next sequence, by connection.
    fn live(r: &mut RoomReplicas, room: u64, seq: u64) -> Vec<(u32, u64)> {
        let frame = Bytes::from_static(b"f");
        let mut got: Vec<(u32, u64)> = r
            .fanout(room, Seq(seq), &frame, 8)
            .unwrap_or_default()
            .into_iter()
            .map(|(c, s)| (c.index, s.0))
            .collect();
        got.sort_unstable();
        got
    }

    #[test]
    fn subscriptions_are_found_by_connection_after_any_unsubscribe() {
        let mut r = RoomReplicas::default();
        let room = 7;
        for c in 0..5 {
            r.subscribe(room, conn(c), Qos::AtLeastOnce, true);
            assert_eq!(
                r.page_arrived(room, conn(c), u64::from(c) + 1, Seq(1), false, Seq::ZERO),
                PageFit::Fits {
                    first: Some((Seq(1), false))
                }
            );
            r.replay_done(room, conn(c));
        }
        // The first, a middle one and the last go, in that order: each
        // removal moves another subscription in the list.
        for gone in [0, 2, 4] {
            assert_eq!(r.unsubscribe(room, conn(gone)), Some(false));
            assert_eq!(r.unsubscribe(room, conn(gone)), None);
            assert_eq!(r.next_of(room, conn(gone)), None);
        }
        assert_eq!(live(&mut r, room, 1), [(1, 1), (3, 1)]);
        // Each remaining one is still its own: offering moves only its own
        // position, acknowledgements stay apart.
        assert_eq!(r.offer(room, conn(3), Seq(1), 4), Offer::Send);
        assert_eq!(r.next_of(room, conn(3)), Some(Seq(2)));
        assert_eq!(r.next_of(room, conn(1)), Some(Seq(1)));
        assert_eq!(r.offer(room, conn(3), Seq(1), 4), Offer::Skip);
        assert_eq!(r.offer(room, conn(2), Seq(1), 4), Offer::Skip);
        r.ack(room, conn(3), Seq(1));
        for seq in 2..=5 {
            assert_eq!(r.offer(room, conn(3), Seq(seq), 4), Offer::Send);
        }
        assert_eq!(r.offer(room, conn(3), Seq(6), 4), Offer::Lag);
        assert_eq!(r.unsubscribe(room, conn(1)), Some(false));
        assert_eq!(r.next_of(room, conn(3)), Some(Seq(6)));
        assert_eq!(r.unsubscribe(room, conn(3)), Some(true));
        assert!(r.fanout(room, Seq(2), &Bytes::new(), 8).is_none());
    }
}
