//! The binary encoding of [`PeerMsg`], for messages that cross a process.
//!
//! ```text
//! message = version:u8 (PEER_WIRE_VERSION) | kind:u8 | body
//! body    = the struct's fields in declaration order:
//!           integers little-endian fixed width (as the client protocol),
//!           bool = u8 0|1, Option = u8 0|1 then the value,
//!           bytes = u32 length then the bytes, list = u32 count then items,
//!           enums = u8 tag then the variant's fields
//! ```
//!
//! Decoding takes untrusted bytes: every length is checked against what is
//! left before anything is allocated, unknown tags and trailing bytes are
//! typed errors, and payloads are slices of the input (no copy). Each
//! message has exactly one encoding (a decoded message re-encodes to its
//! input; the `peer_msg` fuzz target checks it). A new
//! field or message means a new version; a reader refuses versions it does
//! not know rather than guess.

use bytes::{BufMut, Bytes, BytesMut};

use super::messages::*;
use super::PeerMsg;
use crate::action::{ConnId, MembersOutcome, StoreOutcome};
use crate::keyed::StateReport;
use crate::router::ShardId;
use crate::{SendKey, StateKey};
use surepush_proto::{DeviceId, OnlineDevice, Qos, Seq, SubscribeFrom, UserId};

/// The version this build writes and the only one it reads (2: message
/// attributes next to every payload, issue #21).
pub const PEER_WIRE_VERSION: u8 = 2;

/// Why bytes are not a peer message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerWireError {
    /// The input ended inside the message.
    #[error("peer message truncated")]
    Truncated,
    /// Written by a version this build does not read.
    #[error("peer message version {0}, this build reads {PEER_WIRE_VERSION}")]
    Version(u8),
    /// No message has this kind.
    #[error("unknown peer message kind {0}")]
    Kind(u8),
    /// A field holds a value its type does not have.
    #[error("invalid {0} in a peer message")]
    Invalid(&'static str),
    /// Bytes left after the message.
    #[error("{0} bytes after the end of a peer message")]
    Trailing(usize),
}

impl PeerMsg {
    /// Appends the encoding of this message to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(PEER_WIRE_VERSION);
        out.put_u8(self.kind());
        match self {
            PeerMsg::StoreCopy(m) => m.put(out),
            PeerMsg::Stored(m) => m.put(out),
            PeerMsg::RoomPublish(m) => m.put(out),
            PeerMsg::Ephemeral(m) => m.put(out),
            PeerMsg::Release(m) => m.put(out),
            PeerMsg::GroupStore(m) => m.put(out),
            PeerMsg::StoreMany(m) => m.put(out),
            PeerMsg::GroupStored(m) => m.put(out),
            PeerMsg::GroupEphemeral(m) => m.put(out),
            PeerMsg::ReleaseMany(m) => m.put(out),
            PeerMsg::MembersUpdate(m) => m.put(out),
            PeerMsg::MembersUpdated(m) => m.put(out),
            PeerMsg::RoomSubscribe(m) => m.put(out),
            PeerMsg::RoomRefused(m) => m.put(out),
            PeerMsg::RoomRevoke(m) => m.put(out),
            PeerMsg::RoomLeave(m) => m.put(out),
            PeerMsg::RoomPage(m) => m.put(out),
            PeerMsg::RoomFanout(m) => m.put(out),
            PeerMsg::StoreState(m) => m.put(out),
            PeerMsg::StateStored(m) => m.put(out),
            PeerMsg::QueryState(m) => m.put(out),
            PeerMsg::StateValue(m) => m.put(out),
            PeerMsg::PresenceWatch(m) => m.put(out),
            PeerMsg::PresenceUnwatch(m) => m.put(out),
            PeerMsg::PresenceChanged(m) => m.put(out),
            PeerMsg::MoveFetch(m) => m.put(out),
            PeerMsg::MovePage(m) => m.put(out),
            PeerMsg::MoveRoundFetch(m) => m.put(out),
            PeerMsg::FilterJoin(m) => m.put(out),
            PeerMsg::FilterLeave(m) => m.put(out),
            PeerMsg::TopicNotice(m) => m.put(out),
            PeerMsg::FilterJoined(m) => m.put(out),
            PeerMsg::NodeFilters(m) => m.put(out),
            PeerMsg::FilterQuery(m) => m.put(out),
            PeerMsg::TopicRelay(m) => m.put(out),
            PeerMsg::StreamsAnswered(m) => m.put(out),
            PeerMsg::ShareJoin(m) => m.put(out),
            PeerMsg::ShareJoined(m) => m.put(out),
            PeerMsg::ShareDeliver(m) => m.put(out),
            PeerMsg::ShareDone(m) => m.put(out),
            PeerMsg::ShareAway(m) => m.put(out),
            PeerMsg::PresenceNodeWatch(m) => m.put(out),
            PeerMsg::PresenceNodeUnwatch(m) => m.put(out),
            PeerMsg::PresenceUpdate(m) => m.put(out),
        }
    }

    /// The encoding of this message.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    /// Decodes one whole message; payloads share `bytes`' buffer.
    pub fn decode(bytes: &Bytes) -> Result<PeerMsg, PeerWireError> {
        let mut r = Reader {
            bytes: bytes.clone(),
        };
        let version = u8::get(&mut r)?;
        if version != PEER_WIRE_VERSION {
            return Err(PeerWireError::Version(version));
        }
        let msg = match u8::get(&mut r)? {
            kind::STORE_COPY => PeerMsg::StoreCopy(Wire::get(&mut r)?),
            kind::STORED => PeerMsg::Stored(Wire::get(&mut r)?),
            kind::ROOM_PUBLISH => PeerMsg::RoomPublish(Wire::get(&mut r)?),
            kind::EPHEMERAL => PeerMsg::Ephemeral(Wire::get(&mut r)?),
            kind::RELEASE => PeerMsg::Release(Wire::get(&mut r)?),
            kind::GROUP_STORE => PeerMsg::GroupStore(Wire::get(&mut r)?),
            kind::STORE_MANY => PeerMsg::StoreMany(Wire::get(&mut r)?),
            kind::GROUP_STORED => PeerMsg::GroupStored(Wire::get(&mut r)?),
            kind::GROUP_EPHEMERAL => PeerMsg::GroupEphemeral(Wire::get(&mut r)?),
            kind::RELEASE_MANY => PeerMsg::ReleaseMany(Wire::get(&mut r)?),
            kind::MEMBERS_UPDATE => PeerMsg::MembersUpdate(Wire::get(&mut r)?),
            kind::MEMBERS_UPDATED => PeerMsg::MembersUpdated(Wire::get(&mut r)?),
            kind::ROOM_SUBSCRIBE => PeerMsg::RoomSubscribe(Wire::get(&mut r)?),
            kind::ROOM_REFUSED => PeerMsg::RoomRefused(Wire::get(&mut r)?),
            kind::ROOM_REVOKE => PeerMsg::RoomRevoke(Wire::get(&mut r)?),
            kind::ROOM_LEAVE => PeerMsg::RoomLeave(Wire::get(&mut r)?),
            kind::ROOM_PAGE => PeerMsg::RoomPage(Wire::get(&mut r)?),
            kind::ROOM_FANOUT => PeerMsg::RoomFanout(Wire::get(&mut r)?),
            kind::STORE_STATE => PeerMsg::StoreState(Wire::get(&mut r)?),
            kind::STATE_STORED => PeerMsg::StateStored(Wire::get(&mut r)?),
            kind::QUERY_STATE => PeerMsg::QueryState(Wire::get(&mut r)?),
            kind::STATE_VALUE => PeerMsg::StateValue(Wire::get(&mut r)?),
            kind::PRESENCE_WATCH => PeerMsg::PresenceWatch(Wire::get(&mut r)?),
            kind::PRESENCE_UNWATCH => PeerMsg::PresenceUnwatch(Wire::get(&mut r)?),
            kind::PRESENCE_CHANGED => PeerMsg::PresenceChanged(Wire::get(&mut r)?),
            kind::MOVE_FETCH => PeerMsg::MoveFetch(Wire::get(&mut r)?),
            kind::MOVE_PAGE => PeerMsg::MovePage(Wire::get(&mut r)?),
            kind::MOVE_ROUND_FETCH => PeerMsg::MoveRoundFetch(Wire::get(&mut r)?),
            kind::FILTER_JOIN => PeerMsg::FilterJoin(Wire::get(&mut r)?),
            kind::FILTER_LEAVE => PeerMsg::FilterLeave(Wire::get(&mut r)?),
            kind::TOPIC_NOTICE => PeerMsg::TopicNotice(Wire::get(&mut r)?),
            kind::FILTER_JOINED => PeerMsg::FilterJoined(Wire::get(&mut r)?),
            kind::NODE_FILTERS => PeerMsg::NodeFilters(Wire::get(&mut r)?),
            kind::FILTER_QUERY => PeerMsg::FilterQuery(Wire::get(&mut r)?),
            kind::TOPIC_RELAY => PeerMsg::TopicRelay(Wire::get(&mut r)?),
            kind::STREAMS_ANSWERED => PeerMsg::StreamsAnswered(Wire::get(&mut r)?),
            kind::SHARE_JOIN => PeerMsg::ShareJoin(Wire::get(&mut r)?),
            kind::SHARE_JOINED => PeerMsg::ShareJoined(Wire::get(&mut r)?),
            kind::SHARE_DELIVER => PeerMsg::ShareDeliver(Wire::get(&mut r)?),
            kind::SHARE_DONE => PeerMsg::ShareDone(Wire::get(&mut r)?),
            kind::SHARE_AWAY => PeerMsg::ShareAway(Wire::get(&mut r)?),
            kind::PRESENCE_NODE_WATCH => PeerMsg::PresenceNodeWatch(Wire::get(&mut r)?),
            kind::PRESENCE_NODE_UNWATCH => PeerMsg::PresenceNodeUnwatch(Wire::get(&mut r)?),
            kind::PRESENCE_UPDATE => PeerMsg::PresenceUpdate(Wire::get(&mut r)?),
            other => return Err(PeerWireError::Kind(other)),
        };
        match r.bytes.len() {
            0 => Ok(msg),
            left => Err(PeerWireError::Trailing(left)),
        }
    }

    fn kind(&self) -> u8 {
        match self {
            PeerMsg::StoreCopy(_) => kind::STORE_COPY,
            PeerMsg::Stored(_) => kind::STORED,
            PeerMsg::RoomPublish(_) => kind::ROOM_PUBLISH,
            PeerMsg::Ephemeral(_) => kind::EPHEMERAL,
            PeerMsg::Release(_) => kind::RELEASE,
            PeerMsg::GroupStore(_) => kind::GROUP_STORE,
            PeerMsg::StoreMany(_) => kind::STORE_MANY,
            PeerMsg::GroupStored(_) => kind::GROUP_STORED,
            PeerMsg::GroupEphemeral(_) => kind::GROUP_EPHEMERAL,
            PeerMsg::ReleaseMany(_) => kind::RELEASE_MANY,
            PeerMsg::MembersUpdate(_) => kind::MEMBERS_UPDATE,
            PeerMsg::MembersUpdated(_) => kind::MEMBERS_UPDATED,
            PeerMsg::RoomSubscribe(_) => kind::ROOM_SUBSCRIBE,
            PeerMsg::RoomRefused(_) => kind::ROOM_REFUSED,
            PeerMsg::RoomRevoke(_) => kind::ROOM_REVOKE,
            PeerMsg::RoomLeave(_) => kind::ROOM_LEAVE,
            PeerMsg::RoomPage(_) => kind::ROOM_PAGE,
            PeerMsg::RoomFanout(_) => kind::ROOM_FANOUT,
            PeerMsg::StoreState(_) => kind::STORE_STATE,
            PeerMsg::StateStored(_) => kind::STATE_STORED,
            PeerMsg::QueryState(_) => kind::QUERY_STATE,
            PeerMsg::StateValue(_) => kind::STATE_VALUE,
            PeerMsg::PresenceWatch(_) => kind::PRESENCE_WATCH,
            PeerMsg::PresenceUnwatch(_) => kind::PRESENCE_UNWATCH,
            PeerMsg::PresenceChanged(_) => kind::PRESENCE_CHANGED,
            PeerMsg::MoveFetch(_) => kind::MOVE_FETCH,
            PeerMsg::MovePage(_) => kind::MOVE_PAGE,
            PeerMsg::MoveRoundFetch(_) => kind::MOVE_ROUND_FETCH,
            PeerMsg::FilterJoin(_) => kind::FILTER_JOIN,
            PeerMsg::FilterLeave(_) => kind::FILTER_LEAVE,
            PeerMsg::TopicNotice(_) => kind::TOPIC_NOTICE,
            PeerMsg::FilterJoined(_) => kind::FILTER_JOINED,
            PeerMsg::NodeFilters(_) => kind::NODE_FILTERS,
            PeerMsg::FilterQuery(_) => kind::FILTER_QUERY,
            PeerMsg::TopicRelay(_) => kind::TOPIC_RELAY,
            PeerMsg::StreamsAnswered(_) => kind::STREAMS_ANSWERED,
            PeerMsg::ShareJoin(_) => kind::SHARE_JOIN,
            PeerMsg::ShareJoined(_) => kind::SHARE_JOINED,
            PeerMsg::ShareDeliver(_) => kind::SHARE_DELIVER,
            PeerMsg::ShareDone(_) => kind::SHARE_DONE,
            PeerMsg::ShareAway(_) => kind::SHARE_AWAY,
            PeerMsg::PresenceNodeWatch(_) => kind::PRESENCE_NODE_WATCH,
            PeerMsg::PresenceNodeUnwatch(_) => kind::PRESENCE_NODE_UNWATCH,
            PeerMsg::PresenceUpdate(_) => kind::PRESENCE_UPDATE,
        }
    }
}

/// Message kinds on the wire: never renumber, only add.
mod basic;
mod moving;
mod presence;
mod share;
pub(crate) use moving::encoded_len;
mod topics;

mod kind {
    pub(super) const STORE_COPY: u8 = 1;
    pub(super) const STORED: u8 = 2;
    pub(super) const ROOM_PUBLISH: u8 = 3;
    pub(super) const EPHEMERAL: u8 = 4;
    pub(super) const RELEASE: u8 = 5;
    pub(super) const GROUP_STORE: u8 = 6;
    pub(super) const STORE_MANY: u8 = 7;
    pub(super) const GROUP_STORED: u8 = 8;
    pub(super) const GROUP_EPHEMERAL: u8 = 9;
    pub(super) const RELEASE_MANY: u8 = 10;
    pub(super) const MEMBERS_UPDATE: u8 = 11;
    pub(super) const MEMBERS_UPDATED: u8 = 12;
    pub(super) const ROOM_SUBSCRIBE: u8 = 13;
    pub(super) const ROOM_REFUSED: u8 = 14;
    pub(super) const ROOM_REVOKE: u8 = 15;
    pub(super) const ROOM_LEAVE: u8 = 16;
    pub(super) const ROOM_PAGE: u8 = 17;
    pub(super) const ROOM_FANOUT: u8 = 18;
    pub(super) const STORE_STATE: u8 = 19;
    pub(super) const STATE_STORED: u8 = 20;
    pub(super) const QUERY_STATE: u8 = 21;
    pub(super) const STATE_VALUE: u8 = 22;
    // 23: a node answered a new wildcard filter (`topic_nodes.rs`).
    pub(super) const STREAMS_ANSWERED: u8 = 23;
    // 40-42 presence; 43-45 wildcard filters across nodes
    // (`topic_nodes.rs`); 46-49 wildcard topic filters; 50-59 partition
    // moves (52-55 presence across nodes); 60-63 share groups.
    pub(super) const PRESENCE_WATCH: u8 = 40;
    pub(super) const PRESENCE_UNWATCH: u8 = 41;
    pub(super) const PRESENCE_CHANGED: u8 = 42;
    pub(super) const NODE_FILTERS: u8 = 43;
    pub(super) const FILTER_QUERY: u8 = 44;
    pub(super) const TOPIC_RELAY: u8 = 45;
    pub(super) const FILTER_JOIN: u8 = 46;
    pub(super) const FILTER_LEAVE: u8 = 47;
    pub(super) const TOPIC_NOTICE: u8 = 48;
    pub(super) const FILTER_JOINED: u8 = 49;
    pub(super) const MOVE_FETCH: u8 = 50;
    pub(super) const MOVE_PAGE: u8 = 51;
    pub(super) const PRESENCE_NODE_WATCH: u8 = 52;
    pub(super) const PRESENCE_NODE_UNWATCH: u8 = 53;
    pub(super) const PRESENCE_UPDATE: u8 = 54;
    pub(super) const MOVE_ROUND_FETCH: u8 = 56;
    pub(super) const SHARE_JOIN: u8 = 60;
    pub(super) const SHARE_JOINED: u8 = 61;
    pub(super) const SHARE_DELIVER: u8 = 62;
    pub(super) const SHARE_DONE: u8 = 63;
    pub(super) const SHARE_AWAY: u8 = 64;
}

/// The unread rest of the input.
struct Reader {
    bytes: Bytes,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes, PeerWireError> {
        if self.bytes.len() < n {
            return Err(PeerWireError::Truncated);
        }
        Ok(self.bytes.split_to(n))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PeerWireError> {
        let taken = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&taken);
        Ok(out)
    }

    /// A list's length, bounded by what is left (each item takes a byte at
    /// least), so a forged count allocates nothing.
    fn count(&mut self) -> Result<usize, PeerWireError> {
        let n = u32::get(self)? as usize;
        if n > self.bytes.len() {
            return Err(PeerWireError::Truncated);
        }
        Ok(n)
    }
}

/// A value with an encoding.
trait Wire: Sized {
    fn put(&self, out: &mut BytesMut);
    fn get(r: &mut Reader) -> Result<Self, PeerWireError>;
}

impl Wire for UserId {
    fn put(&self, out: &mut BytesMut) {
        self.0.put(out);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        Ok(UserId(u64::get(r)?))
    }
}

impl Wire for DeviceId {
    fn put(&self, out: &mut BytesMut) {
        self.0.put(out);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        Ok(DeviceId(u64::get(r)?))
    }
}

impl Wire for Seq {
    fn put(&self, out: &mut BytesMut) {
        self.0.put(out);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        Ok(Seq(u64::get(r)?))
    }
}

impl Wire for ShardId {
    fn put(&self, out: &mut BytesMut) {
        self.0.put(out);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        Ok(ShardId(u16::get(r)?))
    }
}

impl Wire for ConnId {
    fn put(&self, out: &mut BytesMut) {
        self.index.put(out);
        self.generation.put(out);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        Ok(ConnId {
            index: u32::get(r)?,
            generation: u32::get(r)?,
        })
    }
}

impl Wire for Qos {
    fn put(&self, out: &mut BytesMut) {
        out.put_u8(*self as u8);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        Qos::from_u8(u8::get(r)?).ok_or(PeerWireError::Invalid("qos"))
    }
}

impl Wire for SendKey {
    fn put(&self, out: &mut BytesMut) {
        self.from.put(out);
        self.from_device.put(out);
        self.client_msg_id.put(out);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        Ok(SendKey {
            from: Wire::get(r)?,
            from_device: Wire::get(r)?,
            client_msg_id: Wire::get(r)?,
        })
    }
}

impl Wire for StoreOutcome {
    fn put(&self, out: &mut BytesMut) {
        let (tag, seq) = match self {
            StoreOutcome::Stored(s) => (0u8, *s),
            StoreOutcome::Duplicate(s) => (1, *s),
            StoreOutcome::Failed => (2, Seq::ZERO),
            StoreOutcome::Rejected => (3, Seq::ZERO),
            StoreOutcome::Conflict => (4, Seq::ZERO),
        };
        tag.put(out);
        seq.put(out);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        let tag = u8::get(r)?;
        let seq = Seq::get(r)?;
        // One form per outcome: the outcomes without a sequence carry 0.
        match (tag, seq) {
            (0, seq) => Ok(StoreOutcome::Stored(seq)),
            (1, seq) => Ok(StoreOutcome::Duplicate(seq)),
            (2, Seq::ZERO) => Ok(StoreOutcome::Failed),
            (3, Seq::ZERO) => Ok(StoreOutcome::Rejected),
            (4, Seq::ZERO) => Ok(StoreOutcome::Conflict),
            _ => Err(PeerWireError::Invalid("store outcome")),
        }
    }
}

impl Wire for MembersOutcome {
    fn put(&self, out: &mut BytesMut) {
        match self {
            MembersOutcome::Members(members) => {
                out.put_u8(0);
                members.put(out);
            }
            MembersOutcome::Invalid(why) => {
                out.put_u8(1);
                let code = MembersOutcome::INVALID_REASONS
                    .iter()
                    .position(|r| r == why)
                    .expect("membership refusals name one of INVALID_REASONS");
                out.put_u8(code as u8);
            }
            MembersOutcome::Failed => out.put_u8(2),
        }
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        match u8::get(r)? {
            0 => Ok(MembersOutcome::Members(Wire::get(r)?)),
            1 => MembersOutcome::INVALID_REASONS
                .get(usize::from(u8::get(r)?))
                .map(|why| MembersOutcome::Invalid(why))
                .ok_or(PeerWireError::Invalid("membership refusal")),
            2 => Ok(MembersOutcome::Failed),
            _ => Err(PeerWireError::Invalid("members outcome")),
        }
    }
}

impl Wire for Revoked {
    fn put(&self, out: &mut BytesMut) {
        let (tag, users) = match self {
            Revoked::Users(users) => (0u8, users),
            Revoked::AllBut(users) => (1, users),
        };
        tag.put(out);
        users.put(out);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        match u8::get(r)? {
            0 => Ok(Revoked::Users(Wire::get(r)?)),
            1 => Ok(Revoked::AllBut(Wire::get(r)?)),
            _ => Err(PeerWireError::Invalid("revocation")),
        }
    }
}

impl Wire for SubscribeFrom {
    fn put(&self, out: &mut BytesMut) {
        match self {
            SubscribeFrom::Now => out.put_u8(0),
            SubscribeFrom::After(seq) => {
                out.put_u8(1);
                seq.put(out);
            }
        }
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        match u8::get(r)? {
            0 => Ok(SubscribeFrom::Now),
            1 => Ok(SubscribeFrom::After(Wire::get(r)?)),
            _ => Err(PeerWireError::Invalid("subscribe start")),
        }
    }
}

impl Wire for StateKey {
    fn put(&self, out: &mut BytesMut) {
        match self {
            StateKey::MqttSession { user, device } => {
                out.put_u8(0);
                user.put(out);
                device.put(out);
            }
            StateKey::Retained { room } => {
                out.put_u8(1);
                room.put(out);
            }
            StateKey::WebhookEvent { id } => {
                out.put_u8(2);
                id.put(out);
            }
            StateKey::WebhookCursor => out.put_u8(3),
            StateKey::ShareGroup { key } => (4u8, *key).put(out),
            StateKey::MqttWill { user, device } => {
                out.put_u8(5);
                user.put(out);
                device.put(out);
            }
        }
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        match u8::get(r)? {
            0 => Ok(StateKey::MqttSession {
                user: Wire::get(r)?,
                device: Wire::get(r)?,
            }),
            1 => Ok(StateKey::Retained {
                room: Wire::get(r)?,
            }),
            2 => Ok(StateKey::WebhookEvent { id: Wire::get(r)? }),
            3 => Ok(StateKey::WebhookCursor),
            4 => Ok(StateKey::ShareGroup { key: u64::get(r)? }),
            5 => Ok(StateKey::MqttWill {
                user: Wire::get(r)?,
                device: Wire::get(r)?,
            }),
            _ => Err(PeerWireError::Invalid("state key")),
        }
    }
}

impl Wire for StateReport {
    fn put(&self, out: &mut BytesMut) {
        self.origin.put(out);
        self.conn.put(out);
        self.id.put(out);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        Ok(StateReport {
            origin: Wire::get(r)?,
            conn: Wire::get(r)?,
            id: Wire::get(r)?,
        })
    }
}

impl Wire for OnlineDevice {
    fn put(&self, out: &mut BytesMut) {
        self.device.put(out);
        self.since_ms.put(out);
        self.shard.put(out);
        Bytes::copy_from_slice(self.transport.as_bytes()).put(out);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        Ok(OnlineDevice {
            device: Wire::get(r)?,
            since_ms: Wire::get(r)?,
            shard: Wire::get(r)?,
            transport: std::str::from_utf8(&Bytes::get(r)?)
                .map_err(|_| PeerWireError::Invalid("transport name"))?
                .to_owned(),
        })
    }
}

/// `Wire` for a message struct: its fields in order (the order is the
/// format; the struct literal in `get` checks every field is named).
macro_rules! wire_struct {
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl Wire for $name {
            fn put(&self, out: &mut BytesMut) {
                $(self.$field.put(out);)*
            }
            fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
                Ok($name { $($field: Wire::get(r)?,)* })
            }
        }
    };
}

use wire_struct;

wire_struct!(StoreCopy {
    origin,
    key,
    inbox,
    to,
    qos,
    ts_ms,
    attrs,
    payload
});
wire_struct!(Stored {
    key,
    inbox,
    outcome
});
wire_struct!(RoomPublish {
    origin,
    key,
    room,
    qos,
    ts_ms,
    attrs,
    payload,
    granted,
    confirm
});
wire_struct!(Ephemeral {
    key,
    inbox,
    to,
    ts_ms,
    attrs,
    payload
});
wire_struct!(Release { key, to });
wire_struct!(GroupStore {
    origin,
    key,
    group,
    qos,
    ts_ms,
    attrs,
    payload,
    members_only
});
wire_struct!(StoreMany {
    home,
    key,
    group,
    inboxes,
    qos,
    ts_ms,
    attrs,
    payload
});
wire_struct!(GroupStored {
    key,
    group,
    inbox,
    outcome
});
wire_struct!(GroupEphemeral {
    key,
    group,
    ts_ms,
    attrs,
    payload,
    confirm_to,
    members_only
});
wire_struct!(ReleaseMany { key, inboxes });
wire_struct!(MembersUpdate {
    origin,
    request,
    id,
    add,
    remove
});
wire_struct!(MembersUpdated { request, outcome });
wire_struct!(RoomSubscribe {
    room,
    shard,
    conn,
    sub,
    from,
    user,
    granted
});
wire_struct!(RoomRefused { room, conn, sub });
wire_struct!(RoomRevoke { room, revoked });
wire_struct!(RoomLeave { room, shard });
wire_struct!(RoomPage {
    room,
    conn,
    sub,
    head,
    first,
    gap,
    frames,
    skip_to,
    done
});
wire_struct!(RoomFanout { room, seq, frame });
wire_struct!(StoreState { key, value, report });
wire_struct!(StateStored { conn, id, ok });
wire_struct!(QueryState { origin, conn, key });
wire_struct!(StateValue { conn, key, value });
wire_struct!(PresenceWatch { user, shard });
wire_struct!(PresenceUnwatch { user, shard });
wire_struct!(PresenceChanged { user, devices });
wire_struct!(FilterJoin {
    filter,
    shard,
    conn
});
wire_struct!(FilterLeave { filter, shard });
wire_struct!(TopicNotice {
    room,
    seq,
    name,
    conn,
    frame
});
wire_struct!(FilterJoined { conn, filter });
