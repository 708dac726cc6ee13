//! Shared subscriptions (MQTT 5 `$share/{group}/{filter}`, issue #21;
//! docs/PROTOCOL.md "SHARE, SHAREPUSH and SHAREACK").
//!
//! SHARE makes the session a member of a share group (or, with
//! [`SHARE_LEAVE`], no longer one); the gateway answers with TOPIC room 0
//! naming `$share/{group}/{filter}` (seq 1 registered, 0 refused), like a
//! FILTER. Each message of a topic stream matching the group's filter then
//! goes to one member as SHAREPUSH; the member answers SHAREACK once it has
//! finished with it (QoS 1 PUBACK, QoS 2 PUBREC, or a refusal).
//!
//! SHARE body: `qos u8, receive_max u16, group_len u16`, the group name,
//! then the filter (UTF-8), then, with [`SHARE_EXPIRES`], `expiry_s u32`. SHAREPUSH body: `group u64` then a ROOMPUSH
//! body. SHAREACK body: `group u64, room u64, seq u64`.

use bytes::{BufMut, BytesMut};

use crate::error::ProtoError;
use crate::room::{decode_room_push, RoomPush};
use crate::types::{Qos, Seq};

/// SHARE flag: leave the group (UNSUBSCRIBE, or the session ended).
pub const SHARE_LEAVE: u8 = 0x01;
/// SHARE flag: the member's session outlives its connection, so a lost
/// connection keeps its QoS 2 messages for it (docs/MQTT.md 2.3).
pub const SHARE_PERSISTENT: u8 = 0x02;
/// SHARE flag: the body ends with the persistent member's Session Expiry
/// Interval (`expiry_s u32`, seconds): once its connection has been gone
/// that long, its session has ended and it leaves the group.
pub const SHARE_EXPIRES: u8 = 0x04;
/// Longest share group name, in bytes.
pub const MAX_SHARE_NAME_LEN: usize = 256;

/// SHARE: join or leave a share group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareReq {
    /// The group name (no `/`, `+` or `#`).
    pub group: String,
    /// The topic filter (a valid MQTT filter).
    pub filter: String,
    /// The granted QoS: a message goes out at the lower of its own and this.
    pub qos: Qos,
    /// Messages the member may hold unfinished (its Receive Maximum).
    pub receive_max: u16,
    /// Leave instead of join.
    pub leave: bool,
    /// The session outlives the connection.
    pub persistent: bool,
    /// A persistent session's Session Expiry Interval (seconds), if it
    /// ever expires ([`SHARE_EXPIRES`]).
    pub expiry_s: Option<u32>,
}

impl ShareReq {
    /// The group's key: [`share_key`] of its name and filter.
    pub fn key(&self) -> u64 {
        share_key(&self.group, &self.filter)
    }
}

/// SHAREPUSH: a message of the group for this member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharePush {
    /// The group's key ([`share_key`]).
    pub group: u64,
    /// The message, as a room subscriber would get it.
    pub push: RoomPush,
}

/// SHAREACK: the member finished a message of the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareAck {
    /// The group's key.
    pub group: u64,
    /// The message's topic stream.
    pub room: u64,
    /// The message's sequence in it.
    pub seq: Seq,
}

/// The key of share group `group` with filter `filter`: FNV-1a (64 bit)
/// of `group`, a 0 byte and `filter`. Two groups with one key on a node
/// cannot both exist (the second SHARE is refused).
pub fn share_key(group: &str, filter: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    group
        .bytes()
        .chain([0])
        .chain(filter.bytes())
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

pub(crate) const SHARE_FIXED_LEN: usize = 5;
pub(crate) const SHAREPUSH_GROUP_LEN: usize = 8;
pub(crate) const SHAREACK_LEN: usize = 24;
/// Bytes of the trailing `expiry_s` ([`SHARE_EXPIRES`]).
const SHARE_EXPIRY_LEN: usize = size_of::<u32>();

fn malformed(frame: &'static str, what: &'static str) -> ProtoError {
    ProtoError::Malformed { frame, what }
}

pub(crate) fn share_len(s: &ShareReq) -> usize {
    let expiry = if s.expiry_s.is_some() {
        SHARE_EXPIRY_LEN
    } else {
        0
    };
    SHARE_FIXED_LEN + s.group.len() + s.filter.len() + expiry
}

pub(crate) fn share_flags(s: &ShareReq) -> u8 {
    (if s.leave { SHARE_LEAVE } else { 0 })
        | (if s.persistent { SHARE_PERSISTENT } else { 0 })
        | (if s.expiry_s.is_some() {
            SHARE_EXPIRES
        } else {
            0
        })
}

pub(crate) fn encode_share(s: &ShareReq, dst: &mut BytesMut) {
    dst.put_u8(s.qos as u8);
    dst.put_u16_le(s.receive_max);
    let len = u16::try_from(s.group.len()).expect("group names are at most 256 bytes");
    dst.put_u16_le(len);
    dst.put_slice(s.group.as_bytes());
    dst.put_slice(s.filter.as_bytes());
    if let Some(expiry_s) = s.expiry_s {
        dst.put_u32_le(expiry_s);
    }
}

pub(crate) fn decode_share(flags: u8, body: &[u8]) -> Result<ShareReq, ProtoError> {
    const NAME: &str = "SHARE";
    if body.len() < SHARE_FIXED_LEN {
        return Err(malformed(NAME, "body too short"));
    }
    let qos = Qos::from_u8(body[0]).ok_or(malformed(NAME, "unknown qos"))?;
    let receive_max = u16::from_le_bytes([body[1], body[2]]);
    let group_len = usize::from(u16::from_le_bytes([body[3], body[4]]));
    let mut rest = &body[SHARE_FIXED_LEN..];
    let mut expiry_s = None;
    if flags & SHARE_EXPIRES != 0 {
        let Some(at) = rest.len().checked_sub(SHARE_EXPIRY_LEN) else {
            return Err(malformed(NAME, "no expiry at the end"));
        };
        let (head, tail) = rest.split_at(at);
        expiry_s = Some(u32::from_le_bytes(tail.try_into().expect("4 bytes")));
        rest = head;
    }
    if group_len > rest.len() {
        return Err(malformed(NAME, "group name past the end"));
    }
    let (group, filter) = rest.split_at(group_len);
    let group = std::str::from_utf8(group).map_err(|_| ProtoError::InvalidUtf8 {
        field: "SHARE group",
    })?;
    let filter = std::str::from_utf8(filter).map_err(|_| ProtoError::InvalidUtf8 {
        field: "SHARE filter",
    })?;
    if group.is_empty() || group.len() > MAX_SHARE_NAME_LEN || group.contains(['/', '+', '#']) {
        return Err(malformed(NAME, "not a valid share name"));
    }
    if filter.len() > crate::MAX_FILTER_LEN || crate::topic::filter_error(filter).is_some() {
        return Err(malformed(NAME, "not a valid topic filter"));
    }
    Ok(ShareReq {
        group: group.to_owned(),
        filter: filter.to_owned(),
        qos,
        receive_max,
        leave: flags & SHARE_LEAVE != 0,
        persistent: flags & SHARE_PERSISTENT != 0,
        expiry_s,
    })
}

pub(crate) fn encode_share_push_group(p: &SharePush, dst: &mut BytesMut) {
    dst.put_u64_le(p.group);
}

pub(crate) fn decode_share_push(body: &bytes::Bytes) -> Result<SharePush, ProtoError> {
    if body.len() < SHAREPUSH_GROUP_LEN {
        return Err(malformed("SHAREPUSH", "body too short"));
    }
    let group = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
    let push = decode_room_push(&body.slice(SHAREPUSH_GROUP_LEN..))?;
    Ok(SharePush { group, push })
}

pub(crate) fn encode_share_ack(a: &ShareAck, dst: &mut BytesMut) {
    dst.put_u64_le(a.group);
    dst.put_u64_le(a.room);
    dst.put_u64_le(a.seq.0);
}

pub(crate) fn decode_share_ack(body: &[u8]) -> Result<ShareAck, ProtoError> {
    if body.len() != SHAREACK_LEN {
        return Err(malformed(
            "SHAREACK",
            "body length differs from its fixed size",
        ));
    }
    let word = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().expect("8 bytes"));
    Ok(ShareAck {
        group: word(0),
        room: word(8),
        seq: Seq(word(16)),
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{decode_shared, Frame, UserId};

    fn round_trip(f: Frame) {
        assert_eq!(decode_shared(&f.to_bytes()), Ok(f));
    }

    #[test]
    fn share_frames_round_trip() {
        for (leave, persistent, expiry_s) in [
            (false, false, None),
            (true, false, None),
            (false, true, None),
            (false, true, Some(1)),
            (false, true, Some(u32::MAX - 1)),
        ] {
            round_trip(Frame::Share(ShareReq {
                group: "workers".into(),
                filter: "jobs/+/new".into(),
                qos: Qos::ExactlyOnce,
                receive_max: 20,
                leave,
                persistent,
                expiry_s,
            }));
        }
        round_trip(Frame::SharePush(SharePush {
            group: share_key("g", "a/#"),
            push: RoomPush {
                room: 0x6000_0000_0000_0007,
                seq: Seq(9),
                from: UserId(3),
                ts_ms: 5,
                qos: Qos::AtLeastOnce,
                attrs: Bytes::new(),
                payload: Bytes::from_static(b"x"),
            },
        }));
        round_trip(Frame::ShareAck(ShareAck {
            group: 1,
            room: 2,
            seq: Seq(3),
        }));
    }

    #[test]
    fn bad_share_bodies_are_errors() {
        let good = ShareReq {
            group: "g".into(),
            filter: "a/b".into(),
            qos: Qos::AtLeastOnce,
            receive_max: 1,
            leave: false,
            persistent: false,
            expiry_s: None,
        };
        let mut body = BytesMut::new();
        encode_share(&good, &mut body);
        for cut in 0..SHARE_FIXED_LEN + 1 {
            assert!(decode_share(0, &body[..cut]).is_err(), "cut {cut}");
        }
        for (group, filter) in [
            ("", "a"),
            ("a/b", "c"),
            ("g+", "c"),
            ("g", "a/#/b"),
            ("g", ""),
        ] {
            let mut b = BytesMut::new();
            encode_share(
                &ShareReq {
                    group: group.into(),
                    filter: filter.into(),
                    ..good.clone()
                },
                &mut b,
            );
            assert!(decode_share(0, &b).is_err(), "{group} {filter}");
        }
        let mut b = body.clone();
        b[0] = 3;
        assert!(decode_share(0, &b).is_err(), "qos 3");
        // The expiry flag without room for it.
        for cut in 0..SHARE_EXPIRY_LEN {
            assert!(decode_share(SHARE_EXPIRES, &body[..SHARE_FIXED_LEN + cut]).is_err());
        }
        assert!(decode_share_ack(&[0; 23]).is_err());
        assert!(decode_share_push(&Bytes::from_static(&[0; 7])).is_err());
    }

    /// The key depends on where the group name ends.
    #[test]
    fn keys_tell_name_from_filter() {
        assert_ne!(share_key("ab", "c"), share_key("a", "bc"));
        assert_eq!(share_key("g", "a/+"), share_key("g", "a/+"));
    }
}
