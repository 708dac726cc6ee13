//! Room frames (read diffusion): SUBSCRIBE, SUBACK, UNSUBSCRIBE, ROOMPUSH,
//! ROOMACK, ROOMLAG. A room has its own sequence; every subscriber reads the
//! same messages, and the gateway encodes each ROOMPUSH once per shard.

use bytes::{BufMut, Bytes, BytesMut};

use crate::attrs;
use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::ProtoError;
use super::types::{Qos, Seq, UserId};

/// Ids with this bit set (and [`UserId::GROUP_BIT`] clear) name rooms.
pub const ROOM_BIT: u64 = 1 << 62;

/// True for a room id.
pub fn is_room(id: u64) -> bool {
    id & (ROOM_BIT | UserId::GROUP_BIT) == ROOM_BIT
}

/// Where a subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscribeFrom {
    /// After the room's current head: only new messages.
    Now,
    /// After `seq` (the last one this device processed): replay, then live.
    After(Seq),
}

/// SUBSCRIBE: follow a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// The room.
    pub room: u64,
    /// Where to start.
    pub from: SubscribeFrom,
    /// 0 (no ROOMACK expected) or 1 (ROOMACK bounds the messages in flight).
    pub qos: Qos,
}

/// SUBACK outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SubResult {
    /// Delivery starts right after the requested point.
    Ok = 0,
    /// The room's history no longer holds the requested point: delivery
    /// starts at `first`, messages before it are gone for this subscriber.
    Gap = 1,
    /// Not a room id, or QoS 2 asked (a malformed request).
    Refused = 2,
    /// The room does not allow this user to read it: no grant in the
    /// token, not a member, and the room is not open. Also sent, unasked,
    /// when a subscription in place loses that permission (its `first` is
    /// then the sequence it would have delivered next): it has ended.
    Forbidden = 3,
}

impl SubResult {
    /// True when the subscription is in place (`Ok` or `Gap`).
    pub fn subscribed(self) -> bool {
        matches!(self, SubResult::Ok | SubResult::Gap)
    }
}

/// SUBACK: the subscription is in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    /// The room.
    pub room: u64,
    /// The room's head when subscribing.
    pub head: Seq,
    /// First sequence that will be delivered.
    pub first: Seq,
    /// Outcome.
    pub result: SubResult,
}

/// ROOMPUSH: one room message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomPush {
    /// The room.
    pub room: u64,
    /// Position in the room (0 for a QoS 0 publish, outside the sequence).
    pub seq: Seq,
    /// Publisher.
    pub from: UserId,
    /// Gateway receive time (ms since the Unix epoch).
    pub ts_ms: u64,
    /// QoS of the publish.
    pub qos: Qos,
    /// Message attributes the publisher gave (empty: none).
    pub attrs: Bytes,
    /// Opaque payload.
    pub payload: Bytes,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct SubscribeFixed {
    room: U64,
    last_seq: U64,
    qos: u8,
    mode: u8,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct SubAckFixed {
    room: U64,
    head: U64,
    first: U64,
    result: u8,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct RoomPushFixed {
    room: U64,
    seq: U64,
    from: U64,
    ts_ms: U64,
    qos: u8,
}

/// ROOMACK and ROOMLAG body.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct RoomSeqFixed {
    room: U64,
    seq: U64,
}

/// Encoded sizes of the fixed parts (the wire contract).
pub(crate) const SUBSCRIBE_LEN: usize = std::mem::size_of::<SubscribeFixed>();
pub(crate) const SUBACK_LEN: usize = std::mem::size_of::<SubAckFixed>();
pub(crate) const ROOMPUSH_FIXED_LEN: usize = std::mem::size_of::<RoomPushFixed>();
pub(crate) const ROOM_SEQ_LEN: usize = std::mem::size_of::<RoomSeqFixed>();

pub(crate) fn encode_subscribe(s: &Subscribe, dst: &mut BytesMut) {
    let (mode, last) = match s.from {
        SubscribeFrom::Now => (0, Seq::ZERO),
        SubscribeFrom::After(seq) => (1, seq),
    };
    let f = SubscribeFixed {
        room: s.room.into(),
        last_seq: last.0.into(),
        qos: s.qos as u8,
        mode,
    };
    dst.put_slice(f.as_bytes());
}

pub(crate) fn encode_suback(a: &SubAck, dst: &mut BytesMut) {
    let f = SubAckFixed {
        room: a.room.into(),
        head: a.head.0.into(),
        first: a.first.0.into(),
        result: a.result as u8,
    };
    dst.put_slice(f.as_bytes());
}

pub(crate) fn encode_room_push(p: &RoomPush, dst: &mut BytesMut) {
    let f = RoomPushFixed {
        room: p.room.into(),
        seq: p.seq.0.into(),
        from: p.from.0.into(),
        ts_ms: p.ts_ms.into(),
        qos: attrs::qos_byte(p.qos, &p.attrs),
    };
    dst.put_slice(f.as_bytes());
    attrs::put(&p.attrs, dst);
    dst.put_slice(&p.payload);
}

pub(crate) fn encode_room_seq(room: u64, seq: Seq, dst: &mut BytesMut) {
    let f = RoomSeqFixed {
        room: room.into(),
        seq: seq.0.into(),
    };
    dst.put_slice(f.as_bytes());
}

fn malformed(frame: &'static str, what: &'static str) -> ProtoError {
    ProtoError::Malformed { frame, what }
}

pub(crate) fn decode_subscribe(body: &[u8]) -> Result<Subscribe, ProtoError> {
    let f = SubscribeFixed::ref_from_bytes(body)
        .map_err(|_| malformed("SUBSCRIBE", "body length differs from its fixed size"))?;
    let from = match f.mode {
        0 => SubscribeFrom::Now,
        1 => SubscribeFrom::After(Seq(f.last_seq.get())),
        _ => return Err(malformed("SUBSCRIBE", "unknown mode")),
    };
    Ok(Subscribe {
        room: f.room.get(),
        from,
        qos: Qos::from_u8(f.qos).ok_or(ProtoError::InvalidQos(f.qos))?,
    })
}

pub(crate) fn decode_suback(body: &[u8]) -> Result<SubAck, ProtoError> {
    let f = SubAckFixed::ref_from_bytes(body)
        .map_err(|_| malformed("SUBACK", "body length differs from its fixed size"))?;
    let result = match f.result {
        0 => SubResult::Ok,
        1 => SubResult::Gap,
        2 => SubResult::Refused,
        3 => SubResult::Forbidden,
        _ => return Err(malformed("SUBACK", "unknown result")),
    };
    Ok(SubAck {
        room: f.room.get(),
        head: Seq(f.head.get()),
        first: Seq(f.first.get()),
        result,
    })
}

pub(crate) fn decode_room_push(body: &Bytes) -> Result<RoomPush, ProtoError> {
    let (f, rest) = RoomPushFixed::ref_from_prefix(body)
        .map_err(|_| malformed("ROOMPUSH", "body shorter than its fixed part"))?;
    let field = body.slice(body.len() - rest.len()..);
    let (qos, attrs, payload) = attrs::split(f.qos, field, "ROOMPUSH")?;
    Ok(RoomPush {
        room: f.room.get(),
        seq: Seq(f.seq.get()),
        from: UserId(f.from.get()),
        ts_ms: f.ts_ms.get(),
        qos,
        attrs,
        payload,
    })
}

pub(crate) fn decode_room_seq(body: &[u8], frame: &'static str) -> Result<(u64, Seq), ProtoError> {
    let f = RoomSeqFixed::ref_from_bytes(body)
        .map_err(|_| malformed(frame, "body length differs from its fixed size"))?;
    Ok((f.room.get(), Seq(f.seq.get())))
}
