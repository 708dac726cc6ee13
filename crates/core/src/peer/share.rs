//! Messages of share groups (MQTT 5 shared subscriptions, `share_groups.rs`):
//! a member's shard tells every shard of a join or loss ([`ShareJoin`]) and
//! hears back ([`ShareJoined`]); a stream's home shard hands a message to
//! the member's shard ([`ShareDeliver`]) and hears what became of it
//! ([`ShareDone`]). After a restart, a home shard tells a member's shard
//! when the session of a member it waits for ends ([`ShareAway`]).

use bytes::Bytes;

use crate::action::ConnId;
use crate::router::ShardId;
use surepush_proto::{DeviceId, Qos, Seq, UserId};

/// What a [`ShareJoin`] says about the member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareOp {
    /// It joined (or its session reconnected).
    Join,
    /// Its connection is gone; its session may come back.
    Disconnect,
    /// It is no member any more (UNSUBSCRIBE, or its session ended).
    Leave,
}

/// A member of share group `group` + `filter` joined, lost its connection
/// or left. Sent by the member's shard to every shard (each is home of some
/// streams), which answers a join with [`ShareJoined`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareJoin {
    /// The group name.
    pub group: String,
    /// The group's filter.
    pub filter: String,
    /// The member's user.
    pub user: UserId,
    /// The member's device.
    pub device: DeviceId,
    /// The member's shard.
    pub shard: ShardId,
    /// The member's connection.
    pub conn: ConnId,
    /// The QoS granted to the member.
    pub qos: Qos,
    /// Messages the member may hold unfinished.
    pub receive_max: u16,
    /// Join, disconnect or leave.
    pub op: ShareOp,
    /// The member's session ends this many seconds after its connection
    /// closes (0: with it); `None`: never.
    pub expiry_s: Option<u32>,
}

/// A restored group (home shard) waits for member (`user`, `device`), not
/// connected, whose session ends at `deadline_ms` (wall clock) unless it
/// joins again: sent to the member's shard, which ends its membership
/// then, as for a live expiry (`share_groups/expiry.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareAway {
    /// The group name.
    pub group: String,
    /// The group's filter.
    pub filter: String,
    /// The member's user.
    pub user: UserId,
    /// The member's device.
    pub device: DeviceId,
    /// When its session ends (ms since the epoch).
    pub deadline_ms: u64,
}

/// The sender registered `conn` in the group named `name`
/// (`$share/{group}/{filter}`); `ok` false: refused (another group has its
/// key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareJoined {
    /// The member's connection.
    pub conn: ConnId,
    /// `$share/{group}/{filter}`.
    pub name: String,
    /// Registered.
    pub ok: bool,
}

/// A message of group `key` for the member (`user`, `device`) on
/// connection `conn`, from the shard `home` of its stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareDeliver {
    /// The group's key (`surepush_proto::share_key`).
    pub key: u64,
    /// The member's connection.
    pub conn: ConnId,
    /// The member's user.
    pub user: UserId,
    /// The member's device.
    pub device: DeviceId,
    /// The shard that homes the stream (and the group's state for it).
    pub home: ShardId,
    /// The stream (a room id).
    pub room: u64,
    /// The message's sequence.
    pub seq: Seq,
    /// The sender.
    pub from: UserId,
    /// When it was stored (ms since the epoch).
    pub ts_ms: u64,
    /// The QoS to deliver at.
    pub qos: Qos,
    /// Message attributes.
    pub attrs: Bytes,
    /// The stored payload (topic name and body).
    pub payload: Bytes,
}

/// What became of a [`ShareDeliver`]: the member finished it, or (`returned`)
/// its connection was gone before it was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareDone {
    /// The group's key.
    pub key: u64,
    /// The member's user.
    pub user: UserId,
    /// The member's device.
    pub device: DeviceId,
    /// The stream.
    pub room: u64,
    /// The message's sequence.
    pub seq: Seq,
    /// Given back unsent.
    pub returned: bool,
}
