//! Topic streams: free-form MQTT topic names stored as rooms (issue #21).
//!
//! A topic name outside the reserved forms (`user/…`, `group/…`, `room/…`,
//! `$…`) is a **topic stream**: a room whose number has [`TOPIC_BIT`] set
//! and whose low 61 bits are a fixed hash of the name ([`stream_id`]).
//! Everything a room has (own sequence, bounded durable history, home
//! shard by the router, read fan-out from one shared buffer, resume after a
//! position) a topic stream has too, with no registry to keep.
//!
//! The id is a hash, so two names may share a stream. The name therefore
//! travels with every message: the stored payload is
//! `[name length u16 BE][name UTF-8][application payload]`
//! ([`frame_payload`], [`split_payload`]), and a reader delivers a message
//! only to subscriptions whose name it carries. A collision costs the
//! colliding topics some shared bandwidth and sequence, never a message on
//! the wrong topic. The hash is part of the durable format: changing it
//! orphans every stored stream.

use bytes::{BufMut, Bytes, BytesMut};

use crate::room::ROOM_BIT;

/// Room numbers with this bit set are topic streams (so `room/{n}` names
/// rooms below 2^61 only).
pub const TOPIC_BIT: u64 = 1 << 61;

/// The first levels a free-form topic name may not use: they name inboxes,
/// groups and rooms.
pub const RESERVED_FIRST_LEVELS: [&str; 3] = ["user", "group", "room"];

/// True for the wire id of a topic stream.
pub fn is_topic_stream(id: u64) -> bool {
    crate::is_room(id) && id & TOPIC_BIT != 0
}

/// Whether `name` (a valid MQTT topic name) is a free-form topic: not
/// `$`-prefixed and its first level not reserved.
pub fn is_free_form(name: &str) -> bool {
    let first = name.split('/').next().unwrap_or_default();
    !name.is_empty()
        && !name.starts_with('$')
        && !name.contains(['+', '#', '\0'])
        && !RESERVED_FIRST_LEVELS.contains(&first)
}

/// The wire id of the topic stream named `name`: FNV-1a (64 bit) of the
/// name's bytes, folded to 61 bits, with the room and topic bits set.
pub fn stream_id(name: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let h = name
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    let folded = (h ^ (h >> 61)) & (TOPIC_BIT - 1);
    ROOM_BIT | TOPIC_BIT | folded
}

/// The stored payload of a message on topic `name`.
pub fn frame_payload(name: &str, payload: &[u8]) -> Bytes {
    let len = u16::try_from(name.len()).expect("MQTT topic names are at most 65,535 bytes");
    let mut out = BytesMut::with_capacity(2 + name.len() + payload.len());
    out.put_u16(len);
    out.put_slice(name.as_bytes());
    out.put_slice(payload);
    out.freeze()
}

/// Splits a stored topic-stream payload into its name and the application
/// payload (a slice of the same buffer); `None` when it is not one.
pub fn split_payload(stored: &Bytes) -> Option<(&str, Bytes)> {
    let len = usize::from(u16::from_be_bytes(stored.get(..2)?.try_into().ok()?));
    let name = std::str::from_utf8(stored.get(2..2 + len)?).ok()?;
    Some((name, stored.slice(2 + len..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_form_names_exclude_reserved_levels_and_system_topics() {
        for ok in [
            "a",
            "sensors/1/temp",
            "chat/general",
            "users/1",
            "/x",
            "a//b",
        ] {
            assert!(is_free_form(ok), "{ok}");
        }
        for reserved in [
            "user/1", "group/x", "room/7", "room", "$SYS/x", "a/+", "a/#", "",
        ] {
            assert!(!is_free_form(reserved), "{reserved}");
        }
    }

    #[test]
    fn stream_ids_are_rooms_with_the_topic_bit_and_stable() {
        let id = stream_id("sensors/1/temp");
        assert!(crate::is_room(id) && is_topic_stream(id));
        assert!(!is_topic_stream(ROOM_BIT | 7));
        // Part of the durable format: this value must never change.
        assert_eq!(stream_id(""), ROOM_BIT | TOPIC_BIT | 0x0bf2_9ce4_8422_2323);
        assert_ne!(stream_id("a/b"), stream_id("a/c"));
    }

    #[test]
    fn payload_framing_round_trips_and_refuses_short_input() {
        let stored = frame_payload("chat/general", b"hello");
        let (name, payload) = split_payload(&stored).expect("framed");
        assert_eq!((name, &payload[..]), ("chat/general", &b"hello"[..]));
        assert_eq!(split_payload(&Bytes::from_static(b"\x00\x05ab")), None);
        assert_eq!(split_payload(&Bytes::from_static(b"\x00")), None);
    }
}
