//! Wildcard topic filters over topic streams (issue #21 item 1,
//! docs/PROTOCOL.md "FILTER and TOPIC"): FILTER registers (or, with
//! [`FILTER_REMOVE`], drops) a topic filter for the connection; TOPIC tells
//! the connection of a topic stream whose name matches one of its filters,
//! so that it subscribes the stream as a room (SUBSCRIBE `After(seq - 1)`).
//!
//! FILTER body: the filter (UTF-8, a valid MQTT filter, at most
//! [`MAX_FILTER_LEN`] bytes). TOPIC body: `room u64, seq u64` then the name
//! (UTF-8). A TOPIC with `room` 0 says the filter `name` is registered on
//! every shard: stream messages stored from then on are matched against it
//! (`seq` 1; 0: refused), then, `seq` [`TOPIC_NODES_ANSWERED`], that every
//! other node of a cluster has named its matching streams.

use bytes::{BufMut, BytesMut};

use crate::error::ProtoError;
use crate::types::Seq;

/// FILTER flag: drop the filter instead of registering it.
pub const FILTER_REMOVE: u8 = 0x01;

/// Longest filter a FILTER may carry, in bytes.
pub const MAX_FILTER_LEN: usize = 1024;

/// TOPIC room 0 `seq` after the registration's answer (`seq` 1): every
/// other node of a cluster has named the streams it homes that match the
/// filter (or did not answer in time). Always sent, also on one node.
pub const TOPIC_NODES_ANSWERED: u64 = 2;

/// FILTER: register or drop a wildcard topic filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterReq {
    /// The filter.
    pub filter: String,
    /// Drop it instead.
    pub remove: bool,
}

/// TOPIC: a topic stream matching one of the connection's filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSeen {
    /// The stream's room id (with the room bit); 0: `name` is a filter
    /// now registered on every shard.
    pub room: u64,
    /// The first message the connection should read (a subscription
    /// starts after `seq - 1`); 0 for a QoS 0 message (not stored).
    pub seq: Seq,
    /// The stream's topic name (or the registered filter).
    pub name: String,
}

pub(crate) const TOPIC_FIXED_LEN: usize = 16;

pub(crate) fn decode_filter(flags: u8, body: &[u8]) -> Result<FilterReq, ProtoError> {
    let filter = std::str::from_utf8(body).map_err(|_| ProtoError::InvalidUtf8 {
        field: "FILTER filter",
    })?;
    if filter.len() > MAX_FILTER_LEN || crate::topic::filter_error(filter).is_some() {
        return Err(ProtoError::Malformed {
            frame: "FILTER",
            what: "not a valid topic filter",
        });
    }
    Ok(FilterReq {
        filter: filter.to_owned(),
        remove: flags & FILTER_REMOVE != 0,
    })
}

pub(crate) fn encode_topic(t: &TopicSeen, dst: &mut BytesMut) {
    dst.put_u64_le(t.room);
    dst.put_u64_le(t.seq.0);
    dst.put_slice(t.name.as_bytes());
}

pub(crate) fn decode_topic(body: &[u8]) -> Result<TopicSeen, ProtoError> {
    if body.len() < TOPIC_FIXED_LEN {
        return Err(ProtoError::Malformed {
            frame: "TOPIC",
            what: "body too short",
        });
    }
    let (fixed, name) = body.split_at(TOPIC_FIXED_LEN);
    let room = u64::from_le_bytes(fixed[..8].try_into().expect("8 bytes"));
    let seq = u64::from_le_bytes(fixed[8..].try_into().expect("8 bytes"));
    let name = std::str::from_utf8(name).map_err(|_| ProtoError::InvalidUtf8 {
        field: "TOPIC name",
    })?;
    Ok(TopicSeen {
        room,
        seq: Seq(seq),
        name: name.to_owned(),
    })
}
