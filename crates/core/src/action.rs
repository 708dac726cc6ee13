//! What the core asks its driver to do, and what shards tell each other.

use bytes::Bytes;

use crate::router::ShardId;
use crate::{InboxQuery, PeerMsg, Record, SendKey, StateKey};
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

    /// The id [`ConnId::as_u64`] made this number of (an id that was never
    /// handed out matches no connection).
    pub fn from_u64(n: u64) -> ConnId {
        ConnId {
            index: n as u32,
            generation: (n >> 32) as u32,
        }
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
        shard: ShardId,
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
    /// The page [`super::Shard::handle_conversation_fetch`] `request`
    /// asked for; `None`: the log could not be read.
    ConversationMessages {
        /// Echo of the request id.
        request: u64,
        /// The page (ascending by seq, within `max_frame`).
        page: Option<surepush_proto::ConvMsgs>,
    },
    /// Deliver a webhook event (it is durable); report the outcome with
    /// [`super::Shard::handle_webhook_done`].
    Webhook(crate::WebhookEvent),
    /// Every page of `partition` is durable here (a move's target,
    /// `moving.rs`): flip the placement entry by CAS.
    MoveImported {
        /// The partition.
        partition: u32,
        /// Records copied.
        records: u64,
    },
    /// A move's import stopped (the partition stays where it was).
    MoveFailed {
        /// The partition.
        partition: u32,
        /// Why.
        why: &'static str,
    },
    /// A fenced partition's target went quiet (a move's source): reclaim
    /// the partition by CAS, then call `Shard::handle_move_reclaimed`.
    MoveStalled {
        /// The partition.
        partition: u32,
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

impl MembersOutcome {
    /// Every reason an [`MembersOutcome::Invalid`] gives (the peer wire
    /// format sends the index).
    pub const INVALID_REASONS: [&'static str; 2] = [
        "not a group or room id",
        "members must be user ids (below 2^62)",
    ];
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

/// A publish not made by a session ([`super::Shard::handle_publish`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Echoed in [`Action::Published`].
    pub request: u64,
    /// Identifies the message for dedup (the API's idempotency key).
    pub key: SendKey,
    /// Addressee: a user, a group or a room.
    pub to: UserId,
    /// QoS.
    pub qos: Qos,
    /// Message attributes stored with it (PROTOCOL.md "Message
    /// attributes"; an MQTT will's properties), empty for none.
    pub attrs: Bytes,
    /// Body.
    pub payload: Bytes,
    /// Who publishes.
    pub by: Publisher,
    /// QoS 0 to a room or group: answered once its home shard accepted it
    /// (its permissions), `Rejected` if it did not, like a SEND with
    /// CONFIRM; otherwise QoS 0 is answered `Stored` at once. Ignored for
    /// QoS 1/2 (answered when durable) and for a user's inbox (nothing
    /// refuses a message to a user).
    pub confirm: bool,
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
