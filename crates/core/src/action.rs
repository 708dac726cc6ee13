//! What the core asks its driver to do, and what shards tell each other.

use bytes::Bytes;

use crate::{InboxQuery, Record, SendKey, StateKey};
use surepush_proto::{Frame, Qos, Seq, UserId};

/// A connection on this shard. Allocated by [`super::Shard::handle_open`];
/// the generation makes a reused slot distinguishable from its predecessor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// A compact number for logs and maps in the driver.
    pub fn as_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }
}

/// Identifies an append until its durability is reported back.
pub type AppendToken = u64;
/// Identifies a read until its result is reported back.
pub type ReadId = u64;

/// One instruction for the driver. Actions come out in the order they must
/// take effect: frames for one connection in order, `Close` after the frames
/// queued before it, appends in log order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Write `frame` to `conn`.
    Send {
        /// Target connection.
        conn: ConnId,
        /// The frame.
        frame: Frame,
    },
    /// Flush what was queued for `conn`, then close it. The core has
    /// already forgotten it; do not report `handle_closed` for it.
    Close {
        /// Target connection.
        conn: ConnId,
    },
    /// Append `record` to this shard's log; report durability with
    /// [`super::Shard::handle_appended`] in token order.
    Append {
        /// Echo in `handle_appended`.
        token: AppendToken,
        /// The record.
        record: Record,
    },
    /// Read part of an inbox from this shard's log (durable records only);
    /// report with [`super::Shard::handle_read`].
    Read {
        /// Echo in `handle_read`.
        id: ReadId,
        /// Inbox owner.
        user: UserId,
        /// Which records.
        query: InboxQuery,
    },
    /// A backend publish ([`super::Shard::handle_publish`]) finished:
    /// `Stored(seq)`, `Duplicate(seq)` (seq 0 for QoS 0) or `Failed`.
    Published {
        /// Echo of the request id.
        request: u64,
        /// Outcome.
        outcome: StoreOutcome,
    },
    /// Write `bytes` (an encoded frame shared by many connections) to
    /// `conn`. If the connection's write buffer is over its limit, drop it
    /// and report [`super::Shard::handle_room_lagged`] instead.
    SendShared {
        /// Destination.
        conn: ConnId,
        /// The room the frame belongs to.
        room: u64,
        /// The encoded frame.
        bytes: Bytes,
    },
    /// A membership request ([`super::Shard::handle_members_update`])
    /// finished.
    MembersUpdated {
        /// Echo of the request id.
        request: u64,
        /// The members after the change.
        outcome: MembersOutcome,
    },
    /// Deliver `msg` to shard `shard` ([`super::Shard::handle_peer`] there).
    Peer {
        /// Destination shard.
        shard: u16,
        /// The message.
        msg: PeerMsg,
    },
    /// A state write `conn` asked to hear about
    /// ([`super::StateDurability::Report`]) is durable (`ok`), or failed.
    StateStored {
        /// The asking connection.
        conn: ConnId,
        /// The id it gave.
        id: u64,
        /// Durable (false: the log failed; the write may be lost).
        ok: bool,
    },
    /// The answer to [`super::Shard::handle_state_query`].
    StateValue {
        /// The asking connection.
        conn: ConnId,
        /// The key asked for.
        key: StateKey,
        /// Its newest value (`None`: not set).
        value: Option<Bytes>,
    },
}

/// Result of storing one copy of a send in one inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored durably now at this sequence.
    Stored(Seq),
    /// Already stored at this sequence (a retry).
    Duplicate(Seq),
    /// Not stored: the log failed.
    Failed,
    /// Not stored and never will be: a group that does not exist, a
    /// sender that is not a member of it, or a room the sender may not
    /// publish into.
    Rejected,
    /// Not stored: the id was used before for a different message (another
    /// addressee, QoS or payload).
    Conflict,
}

/// Result of a membership request (a group's or a room's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembersOutcome {
    /// Done (durable): the members now, sorted.
    Members(Vec<UserId>),
    /// Refused: not a group or room id, or such an id given as a member.
    Invalid(&'static str),
    /// The home shard's log failed.
    Failed,
}

impl StoreOutcome {
    /// The sequence, 0 when failed.
    pub fn seq(self) -> Seq {
        match self {
            StoreOutcome::Stored(s) | StoreOutcome::Duplicate(s) => s,
            StoreOutcome::Failed | StoreOutcome::Rejected | StoreOutcome::Conflict => Seq::ZERO,
        }
    }
}

/// Messages between shards (through the channel mesh in the server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMsg {
    /// Store a copy of a send in `inbox` (owned by the receiving shard) and
    /// answer `origin` with [`PeerMsg::Stored`] once durable.
    Store {
        /// Shard holding the sender's session.
        origin: u16,
        /// The send.
        key: SendKey,
        /// Inbox to store into.
        inbox: UserId,
        /// Addressee of the send.
        to: UserId,
        /// QoS (1 or 2).
        qos: Qos,
        /// Gateway receive time (ms since the epoch).
        ts_ms: u64,
        /// Payload.
        payload: Bytes,
    },
    /// Answer to `Store`.
    Stored {
        /// The send.
        key: SendKey,
        /// The inbox stored into.
        inbox: UserId,
        /// Outcome.
        outcome: StoreOutcome,
    },
    /// A message into a room, to the room's home shard (QoS 1/2: stored
    /// there; QoS 0: handed to the live subscribers).
    RoomPublish(RoomPublish),
    /// A QoS 0 message for the online devices of `inbox`; never stored.
    Ephemeral {
        /// The send.
        key: SendKey,
        /// Inbox owner to push to.
        inbox: UserId,
        /// Addressee.
        to: UserId,
        /// Receive time.
        ts_ms: u64,
        /// Payload.
        payload: Bytes,
    },
    /// QoS 2 release of `key` for the copy in `inbox`.
    Release {
        /// The send.
        key: SendKey,
        /// Addressee of the send.
        to: UserId,
    },
    /// To a group's home shard: store `key` in every member's inbox, then
    /// answer `origin` with one `Stored { inbox: group }`.
    GroupStore {
        /// Shard awaiting the answer.
        origin: u16,
        /// The send.
        key: SendKey,
        /// The group.
        group: UserId,
        /// QoS of the send.
        qos: Qos,
        /// Receive time (ms since the epoch).
        ts_ms: u64,
        /// Body.
        payload: Bytes,
        /// Refuse senders that are not members (false for backend publishes).
        members_only: bool,
    },
    /// From a group's home shard to a member shard: one copy per inbox
    /// (one message per shard, not per member).
    StoreMany {
        /// The group's home shard (gets a `GroupStored` per inbox).
        home: u16,
        /// The send.
        key: SendKey,
        /// The group (the copies' addressee).
        group: UserId,
        /// Member inboxes owned by the receiving shard.
        inboxes: Vec<UserId>,
        /// QoS of the send.
        qos: Qos,
        /// Receive time (ms since the epoch).
        ts_ms: u64,
        /// Body.
        payload: Bytes,
    },
    /// Answer to `StoreMany`, per member copy.
    GroupStored {
        /// The send.
        key: SendKey,
        /// The group.
        group: UserId,
        /// The member inbox.
        inbox: UserId,
        /// Outcome.
        outcome: StoreOutcome,
    },
    /// QoS 0 to a group: pushed to the members' live devices.
    GroupEphemeral {
        /// The send.
        key: SendKey,
        /// The group.
        group: UserId,
        /// Receive time (ms since the epoch).
        ts_ms: u64,
        /// Body.
        payload: Bytes,
        /// Answer this shard with `Stored` (a SEND with CONFIRM).
        confirm_to: Option<u16>,
        /// Refuse senders that are not members (false for backend publishes).
        members_only: bool,
    },
    /// QoS 2 release of the member copies of `key` in `inboxes`.
    ReleaseMany {
        /// The send.
        key: SendKey,
        /// Member inboxes owned by the receiving shard.
        inboxes: Vec<UserId>,
    },
    /// To a group's or room's home shard: change membership, answer
    /// `origin`.
    MembersUpdate {
        /// Shard awaiting the answer.
        origin: u16,
        /// Echo for the answer.
        request: u64,
        /// The group or room.
        id: UserId,
        /// Users to add.
        add: Vec<UserId>,
        /// Users to remove.
        remove: Vec<UserId>,
    },
    /// Answer to `MembersUpdate`.
    MembersUpdated {
        /// Echo of the request.
        request: u64,
        /// Outcome.
        outcome: MembersOutcome,
    },
    /// To a room's home shard: a subscriber on `shard` wants the room from
    /// `from` (registers `shard` for fan-out, then replays).
    RoomSubscribe {
        /// The room.
        room: u64,
        /// The subscriber's shard.
        shard: u16,
        /// The subscriber's connection there.
        conn: ConnId,
        /// The subscription (echoed in its pages).
        sub: u64,
        /// Where to start.
        from: surepush_proto::SubscribeFrom,
        /// The subscribing user.
        user: UserId,
        /// The session's token grants reading the room.
        granted: bool,
    },
    /// To a subscriber's shard: the room refused subscription `sub`.
    RoomRefused {
        /// The room.
        room: u64,
        /// The subscriber's connection.
        conn: ConnId,
        /// The subscription.
        sub: u64,
    },
    /// To a shard with subscribers: a membership change took users'
    /// permission to read the room away (`room_access.rs`).
    RoomRevoke {
        /// The room.
        room: u64,
        /// Whose.
        revoked: Revoked,
    },
    /// To a room's home shard: `shard` has no subscribers left.
    RoomLeave {
        /// The room.
        room: u64,
        /// The shard.
        shard: u16,
    },
    /// Replay page for one subscriber (the first one answers SUBSCRIBE).
    RoomPage {
        /// The room.
        room: u64,
        /// The subscriber.
        conn: ConnId,
        /// The subscription the page is for.
        sub: u64,
        /// Room head at subscription.
        head: Seq,
        /// First sequence delivered.
        first: Seq,
        /// History did not reach back to the requested point.
        gap: bool,
        /// Encoded ROOMPUSH frames, ascending.
        frames: Vec<(Seq, Bytes)>,
        /// Sequences below this are gone (age or retention); 0: none.
        skip_to: Seq,
        /// The replay reached `head`: go live.
        done: bool,
    },
    /// One durable room message, encoded once, for a subscribed shard.
    RoomFanout {
        /// The room.
        room: u64,
        /// Its sequence (0: a QoS 0 publish, outside the sequence).
        seq: Seq,
        /// The encoded ROOMPUSH frame.
        frame: Bytes,
    },
    /// To a key's owner shard: append this state write
    /// ([`super::Shard::handle_state`]).
    StoreState {
        /// The key.
        key: StateKey,
        /// Its new value, or `None` to delete it.
        value: Option<Bytes>,
        /// Who hears when it is durable.
        report: Option<super::StateReport>,
    },
    /// Answer to `StoreState`, for the asking connection.
    StateStored {
        /// The asking connection.
        conn: ConnId,
        /// The id it gave.
        id: u64,
        /// Durable (false: the owner's log failed).
        ok: bool,
    },
    /// To a key's owner shard: what is its value?
    QueryState {
        /// The asking connection's shard.
        origin: u16,
        /// The asking connection.
        conn: ConnId,
        /// The key.
        key: StateKey,
    },
    /// Answer to `QueryState`.
    StateValue {
        /// The asking connection.
        conn: ConnId,
        /// The key.
        key: StateKey,
        /// Its value (`None`: not set).
        value: Option<Bytes>,
    },
}

/// Who publishes through [`super::Shard::handle_publish`] (not a session).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publisher {
    /// The application backend (admin API): trusted, so neither room
    /// permissions nor group membership apply.
    Backend,
    /// A user whose session is gone (an MQTT will): a group must have it
    /// as a member, a room must allow it; `room_grant` is what the
    /// session's token granted for the addressee (publish).
    User {
        /// The token's grant for the addressee (rooms).
        room_grant: bool,
    },
}

/// A publish into a room, on its way to the room's home shard, which
/// decides with its own state whether the publisher may (`room_access.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomPublish {
    /// Shard awaiting the answer (`Stored { inbox: room }`).
    pub origin: u16,
    /// The send.
    pub key: SendKey,
    /// The room.
    pub room: UserId,
    /// QoS of the send.
    pub qos: Qos,
    /// Receive time (ms since the epoch).
    pub ts_ms: u64,
    /// Body.
    pub payload: Bytes,
    /// The publisher's token grants writing the room (the backend always
    /// does).
    pub granted: bool,
    /// Answer a QoS 0 publish too (SEND CONFIRM); QoS 1/2 always are.
    pub confirm: bool,
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
