//! The messages shards send each other, one named struct per message.
//!
//! The sender builds the struct and the receiver's handler takes it whole:
//! each field is spelled once, here, and a handler reads what it needs by
//! name. Every struct crosses the in-process mesh as it is and has a
//! binary encoding (`wire.rs`) for when it crosses a process (a cluster).

use bytes::Bytes;

use crate::action::{ConnId, MembersOutcome, StoreOutcome};
use crate::keyed::StateReport;
use crate::router::ShardId;
use crate::{SendKey, StateKey};
use surepush_cluster::NodeId;
use surepush_proto::{OnlineDevice, Qos, Seq, SubscribeFrom, UserId};

/// Store a copy of a send in `inbox` (owned by the receiving shard) and
/// answer `origin` with [`Stored`] once durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreCopy {
    /// Shard holding the sender's session (or the publish request).
    pub origin: ShardId,
    /// The send.
    pub key: SendKey,
    /// Inbox to store into.
    pub inbox: UserId,
    /// Addressee of the send.
    pub to: UserId,
    /// QoS (1 or 2).
    pub qos: Qos,
    /// Gateway receive time (ms since the epoch).
    pub ts_ms: u64,
    /// Message attributes (empty: none; docs/PROTOCOL.md "Message
    /// attributes").
    pub attrs: Bytes,
    /// Payload.
    pub payload: Bytes,
}

/// Answer to [`StoreCopy`], [`GroupStore`] and [`RoomPublish`]: the outcome
/// of the copy in `inbox` (the group or room for those).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The send.
    pub key: SendKey,
    /// The inbox stored into.
    pub inbox: UserId,
    /// Outcome.
    pub outcome: StoreOutcome,
}

/// A publish into a room, on its way to the room's home shard, which
/// decides with its own state whether the publisher may (`room_access.rs`);
/// QoS 1/2 is stored there, QoS 0 handed to the live subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomPublish {
    /// Shard awaiting the answer ([`Stored`] with `inbox: room`).
    pub origin: ShardId,
    /// The send.
    pub key: SendKey,
    /// The room.
    pub room: UserId,
    /// QoS of the send.
    pub qos: Qos,
    /// Receive time (ms since the epoch).
    pub ts_ms: u64,
    /// Message attributes (empty: none; docs/PROTOCOL.md "Message
    /// attributes").
    pub attrs: Bytes,
    /// Body.
    pub payload: Bytes,
    /// The publisher's token grants writing the room (the backend always
    /// does).
    pub granted: bool,
    /// Answer a QoS 0 publish too (SEND CONFIRM); QoS 1/2 always are.
    pub confirm: bool,
}

/// A QoS 0 message for the online devices of `inbox`; never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ephemeral {
    /// The send.
    pub key: SendKey,
    /// Inbox owner to push to.
    pub inbox: UserId,
    /// Addressee (a group for a member's copy).
    pub to: UserId,
    /// Receive time (ms since the epoch).
    pub ts_ms: u64,
    /// Message attributes (empty: none; docs/PROTOCOL.md "Message
    /// attributes").
    pub attrs: Bytes,
    /// Payload.
    pub payload: Bytes,
}

/// QoS 2 release of `key`: forget its dedup entries (on the addressee's
/// shard; on a group's home shard, expanded to [`ReleaseMany`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    /// The send.
    pub key: SendKey,
    /// Addressee of the send.
    pub to: UserId,
}

/// To a group's home shard: store `key` in every member's inbox, then
/// answer `origin` with one [`Stored`] (`inbox: group`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStore {
    /// Shard awaiting the answer.
    pub origin: ShardId,
    /// The send.
    pub key: SendKey,
    /// The group.
    pub group: UserId,
    /// QoS of the send.
    pub qos: Qos,
    /// Receive time (ms since the epoch).
    pub ts_ms: u64,
    /// Message attributes (empty: none; docs/PROTOCOL.md "Message
    /// attributes").
    pub attrs: Bytes,
    /// Body.
    pub payload: Bytes,
    /// Refuse senders that are not members (false for backend publishes).
    pub members_only: bool,
}

/// From a group's home shard to a member shard: one copy per inbox (one
/// message per shard, not per member).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreMany {
    /// The group's home shard (gets a [`GroupStored`] per inbox).
    pub home: ShardId,
    /// The send.
    pub key: SendKey,
    /// The group (the copies' addressee).
    pub group: UserId,
    /// Member inboxes owned by the receiving shard.
    pub inboxes: Vec<UserId>,
    /// QoS of the send.
    pub qos: Qos,
    /// Receive time (ms since the epoch).
    pub ts_ms: u64,
    /// Message attributes (empty: none; docs/PROTOCOL.md "Message
    /// attributes").
    pub attrs: Bytes,
    /// Body.
    pub payload: Bytes,
}

/// Answer to [`StoreMany`], per member copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupStored {
    /// The send.
    pub key: SendKey,
    /// The group.
    pub group: UserId,
    /// The member inbox.
    pub inbox: UserId,
    /// Outcome.
    pub outcome: StoreOutcome,
}

/// QoS 0 to a group (to its home shard): pushed to the members' live
/// devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEphemeral {
    /// The send.
    pub key: SendKey,
    /// The group.
    pub group: UserId,
    /// Receive time (ms since the epoch).
    pub ts_ms: u64,
    /// Message attributes (empty: none; docs/PROTOCOL.md "Message
    /// attributes").
    pub attrs: Bytes,
    /// Body.
    pub payload: Bytes,
    /// Answer this shard with [`Stored`] (a SEND with CONFIRM).
    pub confirm_to: Option<ShardId>,
    /// Refuse senders that are not members (false for backend publishes).
    pub members_only: bool,
}

/// QoS 2 release of the member copies of `key` in `inboxes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseMany {
    /// The send.
    pub key: SendKey,
    /// Member inboxes owned by the receiving shard.
    pub inboxes: Vec<UserId>,
}

/// To a group's or room's home shard: change membership, answer `origin`
/// with [`MembersUpdated`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembersUpdate {
    /// Shard awaiting the answer.
    pub origin: ShardId,
    /// Echo for the answer.
    pub request: u64,
    /// The group or room.
    pub id: UserId,
    /// Users to add.
    pub add: Vec<UserId>,
    /// Users to remove.
    pub remove: Vec<UserId>,
}

/// Answer to [`MembersUpdate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembersUpdated {
    /// Echo of the request.
    pub request: u64,
    /// Outcome.
    pub outcome: MembersOutcome,
}

/// To a room's home shard: a subscriber on `shard` wants the room from
/// `from` (registers `shard` for fan-out, then replays).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomSubscribe {
    /// The room.
    pub room: u64,
    /// The subscriber's shard.
    pub shard: ShardId,
    /// The subscriber's connection there.
    pub conn: ConnId,
    /// The subscription (echoed in its pages).
    pub sub: u64,
    /// Where to start.
    pub from: SubscribeFrom,
    /// The subscribing user.
    pub user: UserId,
    /// The session's token grants reading the room.
    pub granted: bool,
}

/// To a subscriber's shard: the room refused subscription `sub`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomRefused {
    /// The room.
    pub room: u64,
    /// The subscriber's connection.
    pub conn: ConnId,
    /// The subscription.
    pub sub: u64,
}

/// To a shard with subscribers: a membership change took users'
/// permission to read the room away (`room_access.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomRevoke {
    /// The room.
    pub room: u64,
    /// Whose.
    pub revoked: Revoked,
}

/// Whose permission to read a room a membership change took away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// These users are no longer members (the room has members left, or
    /// is not open).
    Users(Vec<UserId>),
    /// The room was open to everyone and now has members: everyone but
    /// these (sorted).
    AllBut(Vec<UserId>),
}

impl Revoked {
    /// Whether `user` lost the permission.
    pub fn covers(&self, user: UserId) -> bool {
        match self {
            Revoked::Users(users) => users.contains(&user),
            Revoked::AllBut(members) => members.binary_search(&user).is_err(),
        }
    }
}

/// To a room's home shard: `shard` has no subscribers left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomLeave {
    /// The room.
    pub room: u64,
    /// The shard.
    pub shard: ShardId,
}

/// Replay page for one subscriber (the first one answers SUBSCRIBE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomPage {
    /// The room.
    pub room: u64,
    /// The subscriber.
    pub conn: ConnId,
    /// The subscription the page is for.
    pub sub: u64,
    /// Room head at subscription.
    pub head: Seq,
    /// First sequence delivered.
    pub first: Seq,
    /// History did not reach back to the requested point.
    pub gap: bool,
    /// Encoded ROOMPUSH frames, ascending.
    pub frames: Vec<(Seq, Bytes)>,
    /// Sequences below this are gone (age or retention); 0: none.
    pub skip_to: Seq,
    /// The replay reached `head`: go live.
    pub done: bool,
}

/// One room message, encoded once, for a subscribed shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomFanout {
    /// The room.
    pub room: u64,
    /// Its sequence (0: a QoS 0 publish, outside the sequence).
    pub seq: Seq,
    /// The encoded ROOMPUSH frame.
    pub frame: Bytes,
}

/// To a key's owner shard: append this state write
/// ([`crate::Shard::handle_state`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreState {
    /// The key.
    pub key: StateKey,
    /// Its new value, or `None` to delete it.
    pub value: Option<Bytes>,
    /// Who hears when it is durable.
    pub report: Option<StateReport>,
}

/// Answer to [`StoreState`], for the asking connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateStored {
    /// The asking connection.
    pub conn: ConnId,
    /// The id it gave.
    pub id: u64,
    /// Durable (false: the owner's log failed).
    pub ok: bool,
}

/// To a key's owner shard: what is its value?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryState {
    /// The asking connection's shard.
    pub origin: ShardId,
    /// The asking connection.
    pub conn: ConnId,
    /// The key.
    pub key: StateKey,
}

/// Answer to [`QueryState`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateValue {
    /// The asking connection.
    pub conn: ConnId,
    /// The key.
    pub key: StateKey,
    /// Its value (`None`: not set).
    pub value: Option<Bytes>,
}

/// To a user's owner shard: `shard` has connections watching `user`'s
/// presence; answer with [`PresenceChanged`] now and after each
/// (coalesced) change until [`PresenceUnwatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresenceWatch {
    /// The watched user.
    pub user: UserId,
    /// The watchers' shard.
    pub shard: ShardId,
}

/// To a user's owner shard: `shard` has no watchers of `user` left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresenceUnwatch {
    /// The watched user.
    pub user: UserId,
    /// The watchers' shard.
    pub shard: ShardId,
}

/// To a watching shard: `user`'s online devices (all of them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceChanged {
    /// The watched user.
    pub user: UserId,
    /// Its online devices, by device id (empty: offline).
    pub devices: Vec<OnlineDevice>,
}

/// A shard's connection registered a wildcard topic filter (issue #21
/// item 1): the receiver (every shard of the node) matches the topic
/// streams homed there against it from now on, tells `conn` of those that
/// already exist ([`TopicNotice`]), then answers [`FilterJoined`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterJoin {
    /// The filter (a valid MQTT topic filter).
    pub filter: String,
    /// The shard of the connection.
    pub shard: ShardId,
    /// The connection.
    pub conn: ConnId,
}

/// `shard` holds one registration of `filter` fewer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterLeave {
    /// The filter.
    pub filter: String,
    /// The shard.
    pub shard: ShardId,
}

/// A topic stream homed on the sender has message `seq` (0: a QoS 0
/// message, whose ROOMPUSH is `frame`), and its name `name` matches a
/// filter the receiver registered; or (`conn` set) it exists and matches
/// the filter `conn` just registered (`seq` is the stream's head + 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicNotice {
    /// The stream's room id.
    pub room: u64,
    /// The first message to read.
    pub seq: Seq,
    /// The stream's topic name.
    pub name: String,
    /// Only this connection (an answer to its [`FilterJoin`]).
    pub conn: Option<ConnId>,
    /// The encoded ROOMPUSH of a QoS 0 message (empty otherwise).
    pub frame: Bytes,
}

/// The sender registered `filter` for `conn` ([`FilterJoin`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterJoined {
    /// The connection.
    pub conn: ConnId,
    /// The filter.
    pub filter: String,
}

/// The wildcard filters of node `node` (issue #21/#20, `topic_nodes.rs`):
/// its shard 0 sends each change of the node's set of distinct filters to
/// every other node (`full` false: `joined` and `left` since `version -
/// 1`), and the whole set (`full` true: `joined` is the set, `left` empty)
/// when it starts and when a node asks ([`FilterSync`]). `epoch` names
/// the sender's process (its start time, ms): a newer epoch replaces
/// everything an older one said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFilters {
    /// The node whose filters these are.
    pub node: NodeId,
    /// Its process (start time, ms since the Unix epoch).
    pub epoch: u64,
    /// The set's version after this message (1, 2, ... per epoch; a full
    /// set carries the version it is current at).
    pub version: u64,
    /// `joined` is the whole set.
    pub full: bool,
    /// Filters new to the node (or the whole set).
    pub joined: Vec<String>,
    /// Filters the node no longer holds.
    pub left: Vec<String>,
    /// Sent across nodes: the receiving shard hands a copy (`relay`
    /// false) to every shard of its node.
    pub relay: bool,
}

/// Node `node` asks the receiver node about its filters or streams
/// (`topic_nodes.rs`). Whichever shard receives it hands it on: to shard
/// 0 for the whole filter set, to every shard for streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterQuery {
    /// The node asking.
    pub node: NodeId,
    /// What it wants.
    pub want: FilterWant,
    /// Sent across nodes: the receiving shard hands it on (`relay` false).
    pub relay: bool,
}

/// What a [`FilterQuery`] asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterWant {
    /// The receiver node's whole filter set (a [`NodeFilters`] with
    /// `full`): the asking node started, or saw a gap in the versions.
    WholeSet,
    /// The streams homed on the receiver node whose names match `filter`,
    /// which connection `conn` of shard `shard` of the asking node just
    /// registered: one [`TopicRelay`] each, addressed to it.
    Streams {
        /// The filter.
        filter: String,
        /// The connection's shard.
        shard: ShardId,
        /// The connection.
        conn: ConnId,
    },
}

/// A topic stream homed on the sender node has message `seq` (0: a QoS 0
/// message, whose ROOMPUSH is `frame`) and its name matches a filter of
/// the receiver node (or, `to` set, it exists and matches the filter
/// that connection registered): the receiving shard tells each shard of its node
/// with a matching filter ([`TopicNotice`]). Sent once per message per
/// node, whatever the number of subscribers there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRelay {
    /// The stream's room id.
    pub room: u64,
    /// The message.
    pub seq: Seq,
    /// The stream's topic name.
    pub name: String,
    /// The encoded ROOMPUSH of a QoS 0 message (empty otherwise).
    pub frame: Bytes,
    /// Only this connection of this shard (an answer to its
    /// [`FilterWant::Streams`]; `seq` is the stream's head + 1).
    pub to: Option<(ShardId, ConnId)>,
}

/// One shard of node `node` has sent its answers ([`TopicRelay`] with
/// `to`) to the [`FilterWant::Streams`] of connection `conn` of shard
/// `shard` for `filter`; `shards`: how many shards `node` has (so the
/// asking shard knows when the whole node has answered, and the MQTT
/// bridge stops asking the named streams' retained messages). Sent after
/// the answers, on the same path, so it arrives after them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamsAnswered {
    /// The filter asked about.
    pub filter: String,
    /// The asking connection's shard.
    pub shard: ShardId,
    /// The asking connection.
    pub conn: ConnId,
    /// The answering node.
    pub node: NodeId,
    /// Its number of shards.
    pub shards: u16,
}
