//! Share groups on a node: MQTT 5 shared subscriptions
//! (`$share/{group}/{filter}`, issue #21, docs/MQTT.md 2.3,
//! docs/PROTOCOL.md "SHARE, SHAREPUSH and SHAREACK").
//!
//! A group is its name + filter ([`share_key`]). Its consumer state is kept
//! **per stream home shard**: each shard holds, for every group with
//! members on the node, a [`ShareGroup`] over the topic streams homed on
//! that shard whose names match the filter. That shard already has each
//! message the moment it is durable (`topic_published`), so the group needs
//! no subscription, no replay and no extra hop for its messages, and its
//! view of a stream's history is the stream's own. The price: members are
//! balanced per home shard, not across the node.
//!
//! - **Membership.** SHARE from a connection: its shard keeps the
//!   membership (`by_conn`) and sends [`ShareJoin`] to every shard of the
//!   node; each adds the member (shard, connection, granted QoS, Receive
//!   Maximum) and answers [`ShareJoined`]; when all have, the connection
//!   gets TOPIC room 0 naming `$share/{group}/{filter}` (its SUBACK may go).
//!   A closing connection sends `Disconnect` for a persistent member (its
//!   QoS 2 messages wait for it, MQTT-4.8.2-4) and `Leave` otherwise; SHARE
//!   with the leave flag sends `Leave`. A persistent member whose session
//!   expires before it comes back leaves then (`expiry.rs`), also after a
//!   restart (the session's expiry is in the group's durable state).
//! - **Delivery.** A stream message matched by a group's filter is offered
//!   to the home shard's [`ShareGroup`], which picks one member; the message
//!   goes to the member's shard as [`ShareDeliver`] and to the connection as
//!   SHAREPUSH, at the lower of its QoS and the member's granted QoS. The
//!   member's SHAREACK comes back as [`ShareDone`]; a connection gone before
//!   the SHAREPUSH left gives the message back (`returned`).
//! - **Bounds.** A group holds at most `core.room_history` messages
//!   waiting in memory (about half as many again while a page comes in);
//!   further ones of a stream wait in the log, where the stream's position
//!   in the group is all it keeps (`backlog.rs`), and are read back in
//!   pages as members take what the group holds: a group whose members
//!   are all gone or slow loses nothing to memory. How far back a group
//!   reaches is a subscriber's: `core.room_resume_limit` messages (if
//!   set), `core.room_max_age_ms`, the log's retention; older ones are
//!   dropped for the group. A member holds at most its Receive Maximum.
//! - **Durability.** Each group's [`DurableShare`] for the streams homed
//!   here (cursor per stream, messages finished above it, QoS 2 messages
//!   handed to a member) is keyed state of this shard
//!   (`StateKey::ShareGroup`), written whenever it changes, in the same
//!   group commit as the messages' own records around it. A QoS 2 message
//!   handed to a member goes to it only once that write is durable
//!   ([`AppendPurpose::ShareHandout`]; no write of its own). After a restart
//!   ([`Shard::load_share_groups`]) each group is restored without
//!   connected members (those holding QoS 2 messages are known, with
//!   their sessions' expiry: `expiry.rs` ends those that do not come back)
//!   and reads its streams again after its cursors, as a backlog: live
//!   messages of a stream being read again stay in the log until the
//!   reads reach them, so the cursor never passes a message not yet
//!   offered again.
//! - Share groups stay on one node, like wildcard filters.

use std::collections::{BTreeMap, BTreeSet};

use super::action::ConnId;
use super::shard::{AppendPurpose, Shard};
use crate::filter_trie::FilterTrie;
use crate::hashing::FastHashMap;
use crate::peer::{ShareDeliver, ShareDone, ShareJoin, ShareJoined, ShareOp};
use crate::router::ShardId;
use crate::share_group::{DurableShare, MemberId, MessageKey, ShareAction, ShareGroup};
use crate::{MessageRecord, StateKey};
use bytes::{BufMut, Bytes, BytesMut};
use surepush_proto::{
    share_key, Frame, Qos, RoomPush, Seq, ShareAck, SharePush, ShareReq, TopicSeen, UserId,
};

mod backlog;
mod expiry;

use backlog::Behind;
use expiry::Expiring;

/// The share group state of one shard. See the module docs.
#[derive(Debug, Default)]
pub(super) struct Shares {
    /// The filters of the node's groups, matched against the names of the
    /// streams homed here.
    trie: FilterTrie<u64>,
    /// The node's groups as this shard sees them (its streams).
    groups: FastHashMap<u64, Homed>,
    /// The memberships of this shard's connections.
    by_conn: FastHashMap<ConnId, Vec<Membership>>,
    /// Joins waiting for shards' [`ShareJoined`]: how many.
    joining: FastHashMap<(ConnId, String), u16>,
    /// Persistent members of this shard whose connection is gone, until
    /// they come back or their session expires (`expiry.rs`).
    expiring: Expiring,
}

#[derive(Debug)]
struct Homed {
    group: String,
    filter: String,
    state: ShareGroup,
    /// Where each member is, and what it was granted.
    seats: FastHashMap<MemberId, Seat>,
    /// The messages waiting or handed out (a redelivery needs them).
    held: FastHashMap<MessageKey, MessageRecord>,
    /// Streams whose newer messages wait in the log (`backlog.rs`).
    behind: BTreeMap<u64, Behind>,
    /// Streams read again after a restart whose reads have not yet passed
    /// every message the group counts as handed to a member.
    replaying: BTreeSet<u64>,
    /// Messages to send again to a member that joined before they were
    /// read again after a restart: sent when they are.
    unread: Vec<MessageKey>,
    /// Joins answered once the streams are read again: a member learns
    /// its join is done only after it was given again what the group
    /// counts as its own (the MQTT bridge forgets completed messages then).
    joined_later: Vec<(ShardId, ShareJoined)>,
}

impl Homed {
    fn new(group: String, filter: String, state: ShareGroup) -> Homed {
        Homed {
            group,
            filter,
            state,
            seats: FastHashMap::default(),
            held: FastHashMap::default(),
            behind: BTreeMap::new(),
            replaying: BTreeSet::new(),
            unread: Vec::new(),
            joined_later: Vec::new(),
        }
    }

    /// The stored value: `[len u16][group][len u16][filter]` then the
    /// [`DurableShare`] bytes.
    fn value(&self) -> Bytes {
        let mut out = BytesMut::new();
        for s in [&self.group, &self.filter] {
            let len = u16::try_from(s.len()).expect("names and filters fit a SHARE frame");
            out.put_u16_le(len);
            out.put_slice(s.as_bytes());
        }
        out.put_slice(&self.state.durable().encode());
        out.freeze()
    }

    /// Reads [`Homed::value`]; `None` for bytes it did not write.
    fn from_value(value: &[u8]) -> Option<Homed> {
        let mut rest = value;
        let mut text = || -> Option<String> {
            let len = usize::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?));
            let s = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_string();
            rest = &rest[2 + len..];
            Some(s)
        };
        let (group, filter) = (text()?, text()?);
        let durable = DurableShare::decode(rest).ok()?;
        Some(Homed::new(group, filter, ShareGroup::restore(&durable)))
    }
}

#[derive(Clone, Copy, Debug)]
struct Seat {
    shard: ShardId,
    conn: ConnId,
    qos: Qos,
}

#[derive(Clone, Debug)]
struct Membership {
    key: u64,
    req: ShareReq,
}

/// `$share/{group}/{filter}`: how the connection named the subscription.
fn share_name(group: &str, filter: &str) -> String {
    format!("$share/{group}/{filter}")
}

impl Shard {
    // ----- member side --------------------------------------------------------

    /// SHARE from `conn`.
    pub(super) fn on_share(&mut self, conn: ConnId, req: ShareReq) {
        let Some((user, device)) = self.conn(conn).and_then(|c| c.session) else {
            return;
        };
        let mqtt = self
            .conn(conn)
            .is_some_and(|c| c.transport == crate::MQTT_TRANSPORT);
        if !mqtt && !req.leave {
            // Stream names and their permissions are the MQTT bridge's.
            let name = share_name(&req.group, &req.filter);
            let no = TopicSeen {
                room: 0,
                seq: Seq::ZERO,
                name,
            };
            return self.send_frame(conn, Frame::Topic(no));
        }
        let key = req.key();
        // Back (or gone for good): its session's expiry no longer counts.
        self.shares.expiring.remove(user, device, key);
        let held = self.shares.by_conn.entry(conn).or_default();
        held.retain(|m| m.key != key);
        let op = if req.leave {
            if held.is_empty() {
                self.shares.by_conn.remove(&conn);
            }
            ShareOp::Leave
        } else {
            held.push(Membership {
                key,
                req: req.clone(),
            });
            let name = share_name(&req.group, &req.filter);
            self.shares
                .joining
                .insert((conn, name), self.router.shards());
            ShareOp::Join
        };
        self.share_broadcast(conn, user, device, &req, op);
    }

    fn share_broadcast(
        &mut self,
        conn: ConnId,
        user: UserId,
        device: surepush_proto::DeviceId,
        req: &ShareReq,
        op: ShareOp,
    ) {
        let me = self.params.id;
        // A session that is not persistent ends with its connection.
        let expiry_s = if req.persistent {
            req.expiry_s
        } else {
            Some(0)
        };
        for i in 0..self.router.shards() {
            let msg = ShareJoin {
                group: req.group.clone(),
                filter: req.filter.clone(),
                user,
                device,
                shard: me,
                conn,
                qos: req.qos,
                receive_max: req.receive_max,
                op,
                expiry_s,
            };
            self.route_to(ShardId(i), msg);
        }
    }

    pub(super) fn on_share_joined(&mut self, m: ShareJoined) {
        let ShareJoined { conn, name, ok } = m;
        let key = (conn, name);
        let Some(left) = self.shares.joining.get_mut(&key) else {
            return; // answered (refused) or left meanwhile
        };
        *left -= 1;
        if ok && *left > 0 {
            return;
        }
        self.shares.joining.remove(&key);
        let (conn, name) = key;
        if !ok {
            // Another group has this key here: the membership goes.
            let gone = self.shares.by_conn.get_mut(&conn).and_then(|held| {
                let i = held
                    .iter()
                    .position(|m| share_name(&m.req.group, &m.req.filter) == name)?;
                Some(held.swap_remove(i))
            });
            if let (Some(m), Some((user, device))) = (gone, self.conn(conn).and_then(|c| c.session))
            {
                self.share_broadcast(conn, user, device, &m.req, ShareOp::Leave);
            }
        }
        let answer = TopicSeen {
            room: 0,
            seq: Seq(u64::from(ok)),
            name,
        };
        self.send_frame(conn, Frame::Topic(answer));
    }

    /// SHAREACK from `conn`: the member finished a message.
    pub(super) fn on_share_ack(&mut self, conn: ConnId, ack: ShareAck) {
        let Some((user, device)) = self.conn(conn).and_then(|c| c.session) else {
            return;
        };
        let member = self
            .shares
            .by_conn
            .get(&conn)
            .is_some_and(|held| held.iter().any(|m| m.key == ack.group));
        if !member {
            return;
        }
        let done = ShareDone {
            key: ack.group,
            user,
            device,
            room: ack.room,
            seq: ack.seq,
            returned: false,
        };
        self.route_to_owner(UserId(ack.room), done);
    }

    /// Every membership of a closing connection.
    pub(super) fn drop_conn_shares(
        &mut self,
        conn: ConnId,
        session: Option<(UserId, surepush_proto::DeviceId)>,
    ) {
        self.shares.joining.retain(|(c, _), _| *c != conn);
        let Some(held) = self.shares.by_conn.remove(&conn) else {
            return;
        };
        let Some((user, device)) = session else {
            return;
        };
        for m in held {
            let op = if m.req.persistent {
                self.share_expire_later(conn, user, device, &m.req);
                ShareOp::Disconnect
            } else {
                ShareOp::Leave
            };
            self.share_broadcast(conn, user, device, &m.req, op);
        }
    }

    pub(super) fn on_share_deliver(&mut self, m: ShareDeliver) {
        let here = self
            .conn(m.conn)
            .is_some_and(|c| c.session == Some((m.user, m.device)))
            && self
                .shares
                .by_conn
                .get(&m.conn)
                .is_some_and(|held| held.iter().any(|s| s.key == m.key));
        if !here {
            let back = ShareDone {
                key: m.key,
                user: m.user,
                device: m.device,
                room: m.room,
                seq: m.seq,
                returned: true,
            };
            return self.route_to(m.home, back);
        }
        self.stats.share_deliveries += 1;
        let push = SharePush {
            group: m.key,
            push: RoomPush {
                room: m.room,
                seq: m.seq,
                from: m.from,
                ts_ms: m.ts_ms,
                qos: m.qos,
                attrs: m.attrs,
                payload: m.payload,
            },
        };
        self.send_frame(m.conn, Frame::SharePush(push));
    }

    // ----- stream home side -----------------------------------------------------

    pub(super) fn on_share_join(&mut self, m: ShareJoin) {
        let key = share_key(&m.group, &m.filter);
        let member = MemberId {
            user: m.user,
            device: m.device,
        };
        let clash = self
            .shares
            .groups
            .get(&key)
            .map(|h| h.group != m.group || h.filter != m.filter);
        let wall_ms = self.wall_ms();
        let shares = &mut self.shares;
        if clash == Some(true) {
            if m.op == ShareOp::Join {
                let name = share_name(&m.group, &m.filter);
                let no = ShareJoined {
                    conn: m.conn,
                    name,
                    ok: false,
                };
                self.route_to(m.shard, no);
            }
            return;
        } else if clash.is_none() {
            if m.op != ShareOp::Join {
                return;
            }
            shares.trie.insert(&m.filter, key);
            let h = Homed::new(m.group.clone(), m.filter.clone(), ShareGroup::new());
            shares.groups.insert(key, h);
        }
        let h = shares.groups.get_mut(&key).expect("present or just made");
        match m.op {
            ShareOp::Join => {
                let seat = Seat {
                    shard: m.shard,
                    conn: m.conn,
                    qos: m.qos,
                };
                h.seats.insert(member, seat);
                h.state.join(member, m.receive_max, m.expiry_s);
            }
            ShareOp::Disconnect => h.state.disconnect(member, wall_ms),
            ShareOp::Leave => {
                h.seats.remove(&member);
                h.state.leave(member);
            }
        }
        self.share_drain(key);
        if m.op == ShareOp::Join {
            let name = share_name(&m.group, &m.filter);
            let yes = ShareJoined {
                conn: m.conn,
                name,
                ok: true,
            };
            let h = self.shares.groups.get_mut(&key).expect("still there");
            if h.replaying.is_empty() {
                self.route_to(m.shard, yes);
            } else {
                h.joined_later.push((m.shard, yes));
            }
        }
        let h = self.shares.groups.get(&key).expect("still there");
        if h.seats.is_empty() && h.held.is_empty() && h.behind.is_empty() {
            // The last member left and nothing waits: the group ends here.
            let filter = h.filter.clone();
            self.shares.groups.remove(&key);
            self.shares.trie.remove(&filter, key);
            self.store_state(StateKey::ShareGroup { key }, None, None);
        }
    }

    /// A topic stream message is durable (or, seq 0, a QoS 0 one is being
    /// fanned out) on its home shard: each matching group gets it, or
    /// leaves it in the log when it holds all it may (`backlog.rs`).
    pub(super) fn share_published(&mut self, record: &MessageRecord, name: &str) {
        let mut keys: Vec<u64> = Vec::new();
        self.shares.trie.matches(name, |k| {
            if !keys.contains(&k) {
                keys.push(k);
            }
        });
        let stream = record.inbox.0;
        let cap = self.share_cap();
        let resume = u64::from(self.config.room_resume_limit);
        for key in keys {
            let Some(h) = self.shares.groups.get_mut(&key) else {
                continue;
            };
            let mk = MessageKey {
                stream,
                seq: record.seq,
            };
            if record.seq != Seq::ZERO {
                if resume != 0 && record.seq.0 > resume {
                    // Older ones are out of a subscriber's reach too.
                    h.state.trim(stream, Seq(record.seq.0 - resume + 1));
                }
                if h.behind.contains_key(&stream) {
                    // Read back from the log in its turn.
                    self.share_drain(key);
                    continue;
                }
                if h.state.waiting() >= cap {
                    h.state.track(stream, record.seq);
                    h.behind
                        .insert(stream, Behind::after(Seq(record.seq.0 - 1)));
                    self.share_drain(key);
                    continue;
                }
            }
            h.held.insert(mk, record.clone());
            let qos = if record.seq == Seq::ZERO {
                Qos::AtMostOnce
            } else {
                record.qos
            };
            let kept = h.state.offer(mk, qos);
            self.share_drain(key);
            if !kept {
                // QoS 0 (handed out or dropped by now), or known already.
                if let Some(h) = self.shares.groups.get_mut(&key) {
                    h.held.remove(&mk);
                }
            }
        }
    }

    pub(super) fn on_share_done(&mut self, m: ShareDone) {
        let Some(h) = self.shares.groups.get_mut(&m.key) else {
            return;
        };
        let member = MemberId {
            user: m.user,
            device: m.device,
        };
        let mk = MessageKey {
            stream: m.room,
            seq: m.seq,
        };
        if m.returned {
            h.state.returned(member, mk);
        } else if h.state.finished(member, mk) {
            h.held.remove(&mk);
        }
        self.share_drain(m.key);
    }

    /// Carries out what group `key` decided. A QoS 2 hand-out leaves only
    /// once the state write recording it is durable (it rides the write of
    /// this call, in the shard's next group commit): a restart never finds
    /// a message a member may hold waiting for another member.
    fn share_drain(&mut self, key: u64) {
        let me = self.params.id;
        let mut persist = false;
        let mut after_write: Vec<(ShardId, ShareDeliver)> = Vec::new();
        while let Some(h) = self.shares.groups.get_mut(&key) {
            let Some(action) = h.state.poll_action() else {
                break;
            };
            match action {
                ShareAction::Deliver {
                    member,
                    key: mk,
                    qos,
                    dup,
                } => {
                    let seat = h.seats.get(&member).copied();
                    let unread = !h.held.contains_key(&mk) && h.behind.contains_key(&mk.stream);
                    if dup && seat.is_some() && unread {
                        h.unread.push(mk);
                    }
                    let (Some(seat), Some(record)) = (seat, h.held.get(&mk)) else {
                        continue;
                    };
                    let first_qos2 = qos == Qos::ExactlyOnce && !dup;
                    let qos = qos.min(seat.qos);
                    let msg = ShareDeliver {
                        key,
                        conn: seat.conn,
                        user: member.user,
                        device: member.device,
                        home: me,
                        room: mk.stream,
                        seq: mk.seq,
                        from: record.from,
                        ts_ms: record.ts_ms,
                        qos,
                        attrs: record.attrs.clone(),
                        payload: record.payload.clone(),
                    };
                    let shard = seat.shard;
                    if qos == Qos::AtMostOnce && mk.seq != Seq::ZERO {
                        // Delivered at QoS 0: no answer will come.
                        h.state.finished(member, mk);
                        h.held.remove(&mk);
                    }
                    // A first QoS 2 hand-out waits for its record (a DUP
                    // one was recorded before it was first sent). QoS 1
                    // does not: a restart that forgets the hand-out sends
                    // it again, which at least once allows.
                    if first_qos2 && qos != Qos::AtMostOnce {
                        after_write.push((shard, msg));
                    } else {
                        self.route_to(shard, msg);
                    }
                }
                ShareAction::Dropped { key: mk, .. } => {
                    h.held.remove(&mk);
                    self.stats.share_dropped += 1;
                }
                ShareAction::Persist => persist = true,
            }
        }
        let value = self.shares.groups.get(&key).filter(|_| persist);
        if let Some(value) = value.map(Homed::value) {
            // One write for everything this call changed.
            let purpose = AppendPurpose::ShareHandout(after_write);
            self.store_state_for(StateKey::ShareGroup { key }, Some(value), purpose);
        } else {
            // Every first QoS 2 hand-out changes the state: nothing here.
            self.share_handout_stored(after_write, true);
        }
        self.share_refill(key);
    }

    /// The write recording these QoS 2 hand-outs is durable (`ok`), or
    /// failed: then they are not sent, and the restart from the log that
    /// follows a storage failure (MQTT.md 2.13) finds them waiting.
    pub(super) fn share_handout_stored(&mut self, sends: Vec<(ShardId, ShareDeliver)>, ok: bool) {
        if !ok {
            return;
        }
        for (shard, msg) in sends {
            self.route_to(shard, msg);
        }
    }
}
