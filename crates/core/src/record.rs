//! Logical records stored in the segment log.
//!
//! This file holds the in-memory model shared with the delivery core; the
//! byte layout lives next to it in the log's format code.

use bytes::Bytes;

pub use surepush_proto::StateKey;
use surepush_proto::{DeviceId, Qos, Seq, UserId};

/// One message as stored in one user's inbox.
///
/// A 1:1 send is stored twice: in the receiver's inbox (`inbox == to`) and,
/// so the sender's other devices see it, in the sender's own inbox
/// (`inbox == from`). Each copy has its own `seq` in its own inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    /// Owner of the inbox this entry belongs to.
    pub inbox: UserId,
    /// Position in `inbox`.
    pub seq: Seq,
    /// Sending user.
    pub from: UserId,
    /// Sending device.
    pub from_device: DeviceId,
    /// Addressee of the send (a user id; later also a group id).
    pub to: UserId,
    /// The sender's id for this send; (from, from_device, client_msg_id) is
    /// the dedup key.
    pub client_msg_id: u64,
    /// Delivery guarantee asked for by the sender (1 or 2; QoS 0 is never stored).
    pub qos: Qos,
    /// Gateway receive time, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Message attributes the sender gave, opaque to the gateway (empty:
    /// none; e.g. MQTT 5 message properties, docs/PROTOCOL.md "Message
    /// attributes").
    pub attrs: Bytes,
    /// Application payload, opaque to the gateway.
    pub payload: Bytes,
}

/// Everything the log stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A message in one inbox.
    Message(MessageRecord),
    /// A device acknowledged everything in `user`'s inbox up to `seq`.
    Cursor {
        /// Inbox owner.
        user: UserId,
        /// The acknowledging device.
        device: DeviceId,
        /// Highest acknowledged sequence (cumulative).
        seq: Seq,
    },
    /// The sender released a QoS 2 dedup entry (REL); a later SEND with the
    /// same key is a new message.
    Release {
        /// Sending user.
        from: UserId,
        /// Sending device.
        from_device: DeviceId,
        /// The released client message id.
        client_msg_id: u64,
        /// Addressee of the released send.
        to: UserId,
    },
    /// A group membership change, on the group's home shard.
    Member {
        /// The group (an id with [`UserId::GROUP_BIT`] set).
        group: UserId,
        /// The member.
        user: UserId,
        /// Joined (true) or left (false).
        joined: bool,
    },
    /// Snapshot of the delivery state (opaque to the log) that lets recovery
    /// start here instead of at the first segment.
    Checkpoint(Bytes),
    /// A piece of keyed state a layer above the core keeps in the log (the
    /// MQTT bridge's sessions and retained messages): the newest record of
    /// a key wins, `None` deletes it (a tombstone). Folded into checkpoints
    /// like heads and cursors, so retention never drops a live value.
    State {
        /// Whose state.
        key: StateKey,
        /// The value (opaque to the log), or `None`: deleted.
        value: Option<Bytes>,
    },
}

/// Which part of one inbox a read wants. Results are always in ascending
/// sequence order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboxQuery {
    /// Up to `limit` messages with `seq > after`, oldest first (replay).
    After {
        /// Exclusive lower bound.
        after: Seq,
        /// Page size.
        limit: u32,
    },
    /// The newest `limit` messages (a device with no cursor).
    Latest {
        /// Page size.
        limit: u32,
    },
    /// Up to `limit` messages with `seq < before`, the newest of those (paging back).
    Before {
        /// Exclusive upper bound.
        before: Seq,
        /// Page size.
        limit: u32,
    },
    /// Exactly these sequences (ascending; a page of one conversation):
    /// those stored and durable, skipping any that are gone.
    Seqs(Vec<Seq>),
}
