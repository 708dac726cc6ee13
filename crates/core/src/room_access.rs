//! Room permissions: who may read (subscribe to) and write (publish into) a
//! room.
//!
//! ```text
//! allowed(user, action, room) = the session's token grants it   (acl.rs)
//!                            || the user is a member of the room (members.rs)
//!                            || the room has no members and `rooms_open` is set
//! ```
//!
//! One place per rule: the token's grant is decided where the token is, on
//! the subscriber's or sender's shard ([`Shard::token_grants`]), and carried
//! to the room's home shard in the request (`RoomSubscribe::granted`,
//! [`RoomPublish::granted`]); the home shard adds membership and openness,
//! which it alone holds, in [`Shard::room_allows`]. Backend publishes are
//! always granted; an MQTT will carries its session's grant.
//!
//! Refusals are typed: SUBSCRIBE gets SUBACK `Forbidden`; a QoS 1/2 SEND
//! (or QoS 0 with CONFIRM) gets SENDACK `Forbidden`; a QoS 0 SEND without
//! CONFIRM is dropped. A retry of a message stored while it was allowed is
//! still recognised as a duplicate.
//!
//! Revocation: a membership change that takes users' permission away (they
//! left the members, or the first members closed an open room) is sent by
//! the home shard to every shard with subscribers ([`RoomRevoke`]);
//! each ends those users' subscriptions that their token does not grant
//! (`room.rs`, an unasked SUBACK `Forbidden`). A token grant lasts as long
//! as its session, like the token itself.

use super::action::{ConnId, StoreOutcome};
use super::group::Reply;
use super::send::NewCopy;
use super::shard::Shard;
use crate::peer::{Revoked, RoomPublish, RoomRevoke};
use crate::router::ShardId;
use crate::MessageRecord;
use surepush_proto::topic_stream::is_topic_stream;
use surepush_proto::{Qos, Seq, UserId};
use surepush_token::AclAction;

impl Shard {
    /// Whether `conn`'s token grants `action` on the room `room` (false
    /// once the connection is gone: a grant lives as long as its session).
    ///
    /// A topic stream's grant is by topic name, which only the MQTT bridge
    /// knows: it checks the name (token ACL, `mqtt.topics_open`) before it
    /// sends anything for a stream, so an MQTT connection's request is
    /// granted here. A native connection cannot name a topic: it reaches a
    /// stream only through the stream's members.
    pub(super) fn token_grants(&self, conn: ConnId, action: AclAction, room: u64) -> bool {
        self.conn(conn).is_some_and(|c| {
            c.acl.grants_room(action, room)
                || (is_topic_stream(room) && c.transport == crate::MQTT_TRANSPORT)
        })
    }

    /// The policy, on the room's home shard: `granted` is the token's (or
    /// backend's) part, decided where the request came from.
    pub(super) fn room_allows(&self, room: u64, user: UserId, granted: bool) -> bool {
        if granted {
            return true;
        }
        if self.members.has_any(UserId(room)) {
            self.members.contains(UserId(room), user)
        } else {
            // Topic streams are opened by the MQTT bridge (`token_grants`).
            self.config.rooms_open && !is_topic_stream(room)
        }
    }

    /// True for a room (homed here) that everyone may read and write.
    pub(super) fn room_open_to_all(&self, room: UserId) -> bool {
        surepush_proto::is_room(room.0)
            && !is_topic_stream(room.0)
            && self.config.rooms_open
            && !self.members.has_any(room)
    }

    /// A publish reaching the room's home shard.
    pub(super) fn on_room_publish(&mut self, p: RoomPublish) {
        let room = p.room;
        let allowed = self.room_allows(room.0, p.key.from, p.granted);
        let reply = Reply::Send(p.origin);
        if p.qos == Qos::AtMostOnce {
            if allowed {
                let record = MessageRecord {
                    inbox: room,
                    seq: Seq::ZERO,
                    from: p.key.from,
                    from_device: p.key.from_device,
                    to: room,
                    client_msg_id: p.key.client_msg_id,
                    qos: Qos::AtMostOnce,
                    ts_ms: p.ts_ms,
                    attrs: p.attrs,
                    payload: p.payload,
                };
                self.room_fan_out(&record);
            } else {
                self.stats.room_forbidden += 1;
            }
            if p.confirm {
                let outcome = if allowed {
                    StoreOutcome::Stored(Seq::ZERO)
                } else {
                    StoreOutcome::Rejected
                };
                self.answer(reply, p.key, room, outcome);
            }
            return;
        }
        // A retry of a message stored while it was allowed is answered as
        // the duplicate it is, whatever the permission is now.
        let known = self.sends.knows_copy(&p.key, room);
        if !allowed && !known {
            self.stats.room_forbidden += 1;
            self.answer(reply, p.key, room, StoreOutcome::Rejected);
            return;
        }
        let copy = NewCopy {
            key: p.key,
            inbox: room,
            to: room,
            qos: p.qos,
            ts_ms: p.ts_ms,
            attrs: p.attrs,
            payload: p.payload,
        };
        self.store_copy(reply, copy);
    }

    /// After a membership change of `room` (homed here; `was_open`: open to
    /// everyone before it; `left`: users removed by it): tells the shards
    /// with subscribers whose permission is gone.
    pub(super) fn room_members_changed(&mut self, room: u64, was_open: bool, left: Vec<UserId>) {
        let revoked = if self.room_open_to_all(UserId(room)) {
            return; // everyone may read it now
        } else if was_open {
            Revoked::AllBut(self.members.of(UserId(room)).to_vec())
        } else if left.is_empty() {
            return;
        } else {
            Revoked::Users(left)
        };
        let mut shards = self.room_shards.of(room);
        if self.router.cluster().is_some() {
            shards.push(ShardId::ROOM_SUBJECTS); // other nodes' subscribers
        }
        for shard in shards {
            let revoked = revoked.clone();
            self.route_to(shard, RoomRevoke { room, revoked });
        }
    }
}
