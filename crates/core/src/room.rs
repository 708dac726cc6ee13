//! Rooms: read diffusion with one shared buffer per shard.
//!
//! A room is an id with [`ROOM_BIT`] set. Its messages are stored once, in
//! the room's own sequence, on its home shard (`Router::owner(room)`): a QoS 1/2
//! SEND to a room is an ordinary copy whose "inbox" is the room, so dedup,
//! durability and replay reads are the inbox machinery's. Subscribers read
//! the same messages:
//!
//! - The home shard knows which shards have subscribers. When a room message
//!   is durable it encodes the ROOMPUSH frame **once** and sends the bytes
//!   to each of those shards (`RoomFanout`).
//! - Each such shard keeps a [`RoomReplica`]: the last `room_history`
//!   frames (a ring of `Bytes`, memory only) and its subscribers. A frame goes to every
//!   subscriber as the same `Bytes` ([`Action::SendShared`]): no
//!   per-subscriber encode or copy.
//!   In a cluster the home shard also sends each frame once to
//!   [`ShardId::ROOM_SUBJECTS`]: the driver publishes it on the room's NATS
//!   subject, and each other node with subscribers hands it to its shards
//!   as a `RoomFanout` (docs/CLUSTER.md "Rooms across nodes").
//! - Every subscription has a `next` sequence and receives only
//!   `seq == next`, so it sees the room in order without gaps or repeats.
//!   A ring that holds later frames but not `next` (a push lost between
//!   nodes) makes the subscription replay from the home shard (`resync`).
//!   A (re)subscription after `last_seq` is replayed by the home shard from
//!   the log in pages (`RoomPage`), then caught up from the ring, then live.
//!   A point older than the room's history (`room_resume_limit` messages
//!   if set, `room_max_age_ms`, the log's retention) starts at the oldest
//!   kept message with SUBACK `Gap`.
//! - A subscriber that cannot keep up (QoS 1: `room_window` unacknowledged;
//!   any QoS: its connection's write buffer over the limit, reported by the
//!   driver with [`Shard::handle_room_lagged`]) is dropped from live fan-out
//!   with ROOMLAG and re-subscribes from its last sequence: it never stalls
//!   the room, and memory per subscriber stays bounded.
//! - Every (re)subscription is checked by the home shard against the room's
//!   permissions (`room_access.rs`) before anything is replayed; one that
//!   is refused, or that a membership change later takes the permission
//!   from, gets SUBACK `Forbidden` and ends.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::action::{Action, ConnId};
use super::room_replicas::{CatchUp, Offer, PageFit};
use super::shard::{ReadPurpose, Shard};
use crate::peer::{RoomFanout, RoomLeave, RoomPage, RoomRefused, RoomRevoke, RoomSubscribe};
use crate::router::{PeerTarget, ShardId};
use crate::{InboxQuery, MessageRecord};
use surepush_proto::{
    is_room, Frame, Qos, RoomPush, Seq, SubAck, SubResult, Subscribe, SubscribeFrom, UserId,
};
use surepush_token::AclAction;

pub(super) use super::room_replicas::Frames;

/// Encodes a room message once, as the bytes every subscriber gets.
fn encode(room: u64, m: &MessageRecord) -> Bytes {
    Frame::RoomPush(RoomPush {
        room,
        seq: m.seq,
        from: m.from,
        ts_ms: m.ts_ms,
        qos: m.qos,
        attrs: m.attrs.clone(),
        payload: m.payload.clone(),
    })
    .to_bytes()
}

impl Shard {
    // ----- subscriber side ---------------------------------------------------

    pub(super) fn on_subscribe(&mut self, conn: ConnId, s: Subscribe) {
        if !is_room(s.room) || s.qos == Qos::ExactlyOnce {
            let ack = SubAck {
                room: s.room,
                head: Seq::ZERO,
                first: Seq::ZERO,
                result: SubResult::Refused,
            };
            self.send_frame(conn, Frame::SubAck(ack));
            return;
        }
        let Some((user, _)) = self.conn(conn).and_then(|c| c.session) else {
            return; // frames reach here only from sessions
        };
        let granted = self.token_grants(conn, AclAction::Subscribe, s.room);
        self.drop_sub(conn, s.room, false);
        let id = self.rooms.subscribe(s.room, conn, s.qos, granted);
        // Once per room: a SUBSCRIBE replacing the previous one (a resume
        // after ROOMLAG, a hole) must not grow the connection's list.
        if let Some(c) = self.conn_mut(conn).filter(|c| !c.rooms.contains(&s.room)) {
            c.rooms.push(s.room);
        }
        let msg = RoomSubscribe {
            room: s.room,
            shard: self.params.id,
            conn,
            sub: id,
            from: s.from,
            user,
            granted,
        };
        self.route_to_owner(UserId(s.room), msg);
    }

    pub(super) fn on_unsubscribe(&mut self, conn: ConnId, room: u64) {
        self.drop_sub(conn, room, true);
    }

    pub(super) fn on_room_ack(&mut self, conn: ConnId, room: u64, seq: Seq) {
        self.rooms.ack(room, conn, seq);
    }

    /// The driver could not queue a room frame for `conn` (its write buffer
    /// is full): drop the subscription from live delivery.
    pub fn handle_room_lagged(&mut self, conn: ConnId, room: u64, now: u64) {
        self.set_now(now);
        self.lag(conn, room);
    }

    fn lag(&mut self, conn: ConnId, room: u64) {
        if self.end_sub(conn, room, |room, next| Frame::RoomLag { room, next }) {
            self.stats.room_lags += 1;
        }
    }

    /// Ends `conn`'s subscription to `room` and tells the client with
    /// `notice(room, next)`, `next` being the sequence it would have
    /// delivered next; false if there was none.
    fn end_sub(&mut self, conn: ConnId, room: u64, notice: fn(u64, Seq) -> Frame) -> bool {
        let Some(next) = self.rooms.next_of(room, conn) else {
            return false;
        };
        self.drop_sub(conn, room, true);
        self.send_frame(conn, notice(room, next));
        true
    }

    /// The room's home shard refused subscription `sub` (`room_access.rs`).
    pub(super) fn on_room_refused(&mut self, m: RoomRefused) {
        let RoomRefused { room, conn, sub } = m;
        if self.rooms.is_current(room, conn, sub) {
            self.forbid(conn, room);
        }
    }

    /// A membership change took `revoked`'s permission to read `room`:
    /// their subscriptions here end, except those their token grants.
    pub(super) fn on_room_revoke(&mut self, m: RoomRevoke) {
        let RoomRevoke { room, revoked } = m;
        let ending: Vec<ConnId> = self
            .rooms
            .ungranted(room)
            .filter(|conn| {
                let user = self.conn(*conn).and_then(|c| c.session).map(|(u, _)| u);
                user.is_some_and(|u| revoked.covers(u))
            })
            .collect();
        for conn in ending {
            self.forbid(conn, room);
        }
    }

    /// Ends `conn`'s subscription to `room` with SUBACK `Forbidden`; its
    /// `first` is the sequence it would have delivered next (0 if none).
    fn forbid(&mut self, conn: ConnId, room: u64) {
        let notice = |room, next| {
            Frame::SubAck(SubAck {
                room,
                head: Seq::ZERO,
                first: next,
                result: SubResult::Forbidden,
            })
        };
        if self.end_sub(conn, room, notice) {
            self.stats.room_forbidden += 1;
        }
    }

    /// Removes `conn`'s subscription to `room`; the last one on this shard
    /// tells the home shard to stop sending here.
    fn drop_sub(&mut self, conn: ConnId, room: u64, forget_on_conn: bool) {
        let Some(last) = self.rooms.unsubscribe(room, conn) else {
            return;
        };
        if forget_on_conn {
            if let Some(c) = self.conn_mut(conn) {
                c.rooms.retain(|r| *r != room);
            }
        }
        if last {
            let msg = RoomLeave {
                room,
                shard: self.params.id,
            };
            self.route_to_owner(UserId(room), msg);
        }
    }

    /// Every subscription of a closing connection.
    pub(super) fn drop_room_subs(&mut self, conn: ConnId, rooms: Vec<u64>) {
        for room in rooms {
            self.drop_sub(conn, room, false);
        }
    }

    /// Sends `frame` (seq `seq`) to `conn` if it is the next one it needs.
    fn deliver(&mut self, room: u64, conn: ConnId, seq: Seq, frame: &Bytes) {
        let window = u64::from(self.config.room_window);
        match self.rooms.offer(room, conn, seq, window) {
            Offer::Skip => return,
            Offer::Lag => return self.lag(conn, room),
            Offer::Send => {}
        }
        self.stats.room_pushes += 1;
        self.actions.push_back(Action::SendShared {
            conn,
            room,
            bytes: frame.clone(),
        });
    }

    /// Delivers from the ring what `conn` still needs; lags it if the ring
    /// no longer reaches back to its next sequence.
    fn catch_up(&mut self, room: u64, conn: ConnId) {
        let frames = match self.rooms.catch_up(room, conn) {
            CatchUp::Gone => return,
            CatchUp::Lag => return self.lag(conn, room),
            CatchUp::Hole => return self.resync(room, conn),
            CatchUp::Frames(frames) => frames,
        };
        for (seq, frame) in frames {
            self.deliver(room, conn, seq, &frame);
        }
    }

    /// Asks the room's home shard again for what `conn` misses, from its
    /// next sequence: a new replay of the live subscription, which keeps
    /// its position (no new SUBACK) and continues live when it is done.
    fn resync(&mut self, room: u64, conn: ConnId) {
        let Some((user, _)) = self.conn(conn).and_then(|c| c.session) else {
            return;
        };
        let Some(restart) = self.rooms.restart_replay(room, conn) else {
            return;
        };
        let msg = RoomSubscribe {
            room,
            shard: self.params.id,
            conn,
            sub: restart.id,
            from: SubscribeFrom::After(restart.after),
            user,
            granted: restart.granted,
        };
        self.stats.room_resyncs += 1;
        self.route_to_owner(UserId(room), msg);
    }

    pub(super) fn on_room_page(&mut self, page: RoomPage) {
        let RoomPage {
            room,
            conn,
            sub: sub_id,
            head,
            first,
            gap,
            frames,
            skip_to,
            done,
        } = page;
        match self
            .rooms
            .page_arrived(room, conn, sub_id, first, gap, skip_to)
        {
            PageFit::Stale => return,
            // A resync (above) found the messages it missed older than the
            // room's history: the subscriber resumes and learns of the gap.
            PageFit::Lag => return self.lag(conn, room),
            PageFit::Fits { first: None } => {}
            PageFit::Fits {
                first: Some((first, gap)),
            } => {
                let result = if gap { SubResult::Gap } else { SubResult::Ok };
                let ack = SubAck {
                    room,
                    head,
                    first,
                    result,
                };
                self.send_frame(conn, Frame::SubAck(ack));
            }
        }
        if frames.is_empty() && !done && skip_to == Seq::ZERO {
            self.lag(conn, room); // the home shard could not read the log
            return;
        }
        for (seq, frame) in &frames {
            self.deliver(room, conn, *seq, frame);
        }
        if done {
            self.rooms.replay_done(room, conn);
            self.catch_up(room, conn);
        }
    }

    pub(super) fn on_room_fanout(&mut self, m: RoomFanout) {
        let RoomFanout { room, seq, frame } = m;
        let history = self.config.room_history as usize;
        let Some(live) = self.rooms.fanout(room, seq, &frame, history) else {
            return; // the last subscriber left
        };
        for (conn, next) in live {
            if seq == Seq::ZERO {
                // QoS 0 publish: outside the sequence, live subscribers only.
                self.stats.room_pushes += 1;
                let bytes = frame.clone();
                self.actions
                    .push_back(Action::SendShared { conn, room, bytes });
            } else if next == seq {
                self.deliver(room, conn, seq, &frame);
            } else if next < seq {
                self.catch_up(room, conn);
            }
        }
    }

    // ----- home side ---------------------------------------------------------

    pub(super) fn on_room_subscribe(&mut self, m: RoomSubscribe) {
        let RoomSubscribe {
            room,
            shard,
            conn,
            sub,
            from,
            user,
            granted,
        } = m;
        if !self.room_allows(room, user, granted) {
            // Counted where the subscription ends (`forbid`).
            self.route_to(shard, RoomRefused { room, conn, sub });
            return;
        }
        if !matches!(shard.target(), PeerTarget::Ticket(_)) {
            // Another node's subscribers get every push on the room's
            // subject (`room_fan_out`); the ticket only names this replay.
            self.room_shards.join(room, shard);
        }
        let head = self.sessions.durable_head(UserId(room));
        // Older messages are read from the log in pages: only the count
        // bound asked for (if any) limits how far back; age and the log's
        // retention are applied as the pages are read.
        let oldest = match self.config.room_resume_limit {
            0 => Seq(1),
            limit => Seq(head.0.saturating_sub(u64::from(limit)).saturating_add(1)),
        };
        let wanted = match from {
            SubscribeFrom::Now => head.next(),
            SubscribeFrom::After(s) => s.next().min(head.next()),
        };
        let gap = wanted < oldest;
        let first = wanted.max(oldest);
        let target = ReplayTarget {
            room,
            shard,
            conn,
            sub,
            head,
            first,
            gap,
            at: first,
            skip_to: Seq::ZERO,
        };
        self.room_page(target, first);
    }

    /// Reads the next replay page (from `at`), or says replay is done.
    fn room_page(&mut self, mut t: ReplayTarget, at: Seq) {
        t.at = at;
        if at > t.head {
            self.send_page(t, Vec::new(), Seq::ZERO, true);
            return;
        }
        let query = InboxQuery::After {
            after: Seq(at.0 - 1),
            limit: self.config.room_page,
        };
        self.read(UserId(t.room), query, ReadPurpose::RoomReplay(t));
    }

    fn send_page(&mut self, t: ReplayTarget, frames: Frames, skip_to: Seq, done: bool) {
        let msg = RoomPage {
            room: t.room,
            conn: t.conn,
            sub: t.sub,
            head: t.head,
            first: t.first,
            gap: t.gap,
            frames,
            skip_to,
            done,
        };
        self.route_to(t.shard, msg);
    }

    pub(super) fn on_room_read(
        &mut self,
        mut t: ReplayTarget,
        result: Result<Vec<MessageRecord>, ()>,
    ) {
        let Ok(mut records) = result else {
            // No frames and not done: the subscriber gets ROOMLAG and
            // subscribes again.
            self.send_page(t, Vec::new(), Seq::ZERO, false);
            return;
        };
        let last = records.last().map(|m| m.seq);
        // History is bounded by age too: older messages are not replayed.
        let max_age = self.config.room_max_age_ms;
        let cutoff = if max_age == 0 {
            0
        } else {
            self.wall_ms().saturating_sub(max_age)
        };
        let young = records.partition_point(|m| m.ts_ms < cutoff);
        records.drain(..young);
        // What the page does not start with is gone (too old, or deleted
        // by retention): the subscriber moves past it.
        let skip_to = match (records.first(), last) {
            (Some(m), _) if m.seq > t.at => m.seq,
            (None, Some(l)) => l.next(),
            _ => Seq::ZERO,
        }
        .max(t.skip_to);
        let frames: Frames = records.iter().map(|m| (m.seq, encode(t.room, m))).collect();
        let done = last.is_none_or(|l| l >= t.head);
        if let (true, false, Some(last)) = (frames.is_empty(), done, last) {
            // Nothing left of this page: read on before telling the
            // subscriber, so that its SUBACK names the first message it
            // will really get (an empty page with a skip would leave it
            // waiting before sequences that no longer exist, with nothing
            // coming to show it the hole).
            t.skip_to = skip_to;
            self.room_page(t, last.next());
            return;
        }
        self.send_page(t, frames, skip_to, done);
        t.skip_to = Seq::ZERO;
        if let (false, Some(last)) = (done, last) {
            self.room_page(t, last.next());
        }
    }

    pub(super) fn on_room_leave(&mut self, m: RoomLeave) {
        let RoomLeave { room, shard } = m;
        self.room_shards.leave(room, shard);
    }

    /// Hands a room message to every shard with subscribers (on the room's
    /// home shard): one encode, one message per shard. A message that became
    /// durable, or a QoS 0 publish (seq 0, nothing stored).
    pub(super) fn room_fan_out(&mut self, record: &MessageRecord) {
        let room = record.inbox.0;
        if surepush_proto::topic_stream::is_topic_stream(room) {
            // Wildcard filters may not know the stream yet.
            self.topic_published(record);
        }
        let mut shards = self.room_shards.of(room);
        if self.router.cluster().is_some() {
            // Once for every other node: those with subscribers listen on
            // the room's subject (nobody may be listening: NATS drops it).
            shards.push(ShardId::ROOM_SUBJECTS);
        }
        if shards.is_empty() {
            return;
        }
        let frame = encode(room, record);
        for shard in shards {
            let msg = RoomFanout {
                room,
                seq: record.seq,
                frame: frame.clone(),
            };
            self.route_to(shard, msg);
        }
    }
}

/// Who a replay is for, and what its SUBACK says.
#[derive(Clone, Copy, Debug)]
pub(super) struct ReplayTarget {
    room: u64,
    shard: ShardId,
    conn: ConnId,
    sub: u64,
    head: Seq,
    first: Seq,
    gap: bool,
    /// Where the page being read starts.
    at: Seq,
    /// Where the subscriber must move to: found in pages read but not
    /// sent (every message in them gone), zero if none.
    skip_to: Seq,
}

/// Which shards have subscribers, per room homed here.
///
/// Invariant: a room has an entry only while some shard has subscribers.
#[derive(Debug, Default)]
pub(super) struct RoomShards {
    by_room: crate::hashing::FastHashMap<u64, BTreeSet<ShardId>>,
}

impl RoomShards {
    /// `shard` has a subscriber to `room`.
    fn join(&mut self, room: u64, shard: ShardId) {
        self.by_room.entry(room).or_default().insert(shard);
    }

    /// `shard` has no subscribers to `room` left.
    fn leave(&mut self, room: u64, shard: ShardId) {
        if let Some(shards) = self.by_room.get_mut(&room) {
            shards.remove(&shard);
            if shards.is_empty() {
                self.by_room.remove(&room);
            }
        }
    }

    /// The shards with subscribers to `room`, ascending.
    pub(super) fn of(&self, room: u64) -> Vec<ShardId> {
        self.by_room
            .get(&room)
            .map_or_else(Vec::new, |s| s.iter().copied().collect())
    }
}
