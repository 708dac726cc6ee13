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

/// Retained messages of a topic stream (issue #21: retained messages for
/// any topic): the value of its keyed state record (`StateKey::Retained`
/// with the stream's id) is a list of entries, one per topic name, each
/// `[name length u16 BE][name][body length u32 BE][body]`. A list because
/// two names may share a stream id: each keeps its own retained message.
/// The body is the MQTT bridge's; the core only merges entries by name
/// ([`merge_retained`]) and reads names back after a restart.
pub fn retained_entry(name: &str, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(6 + name.len() + body.len());
    put_retained_entry(&mut out, name, body);
    out.freeze()
}

fn put_retained_entry(out: &mut BytesMut, name: &str, body: &[u8]) {
    let len = u16::try_from(name.len()).expect("MQTT topic names are at most 65,535 bytes");
    let body_len = u32::try_from(body.len()).expect("retained bodies fit in a frame");
    out.put_u16(len);
    out.put_slice(name.as_bytes());
    out.put_u32(body_len);
    out.put_slice(body);
}

/// The entries of a retained value (name, body as a slice of `value`);
/// `None` when `value` is not such a list.
pub fn retained_entries(value: &Bytes) -> Option<Vec<(&str, Bytes)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < value.len() {
        let len = usize::from(u16::from_be_bytes(value.get(at..at + 2)?.try_into().ok()?));
        let name = std::str::from_utf8(value.get(at + 2..at + 2 + len)?).ok()?;
        at += 2 + len;
        let body_len = u32::from_be_bytes(value.get(at..at + 4)?.try_into().ok()?);
        let end = at + 4 + usize::try_from(body_len).ok()?;
        if end > value.len() {
            return None;
        }
        out.push((name, value.slice(at + 4..end)));
        at = end;
    }
    Some(out)
}

/// A retained write merged into the stream's current value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetainedMerge {
    /// The new value (`None`: no entry left, delete the record).
    pub value: Option<Bytes>,
    /// The write adds a name that had no retained message.
    pub added: bool,
    /// The write removes a name's retained message.
    pub removed: bool,
}

/// Merges `write` (one entry; an empty body deletes that name's retained
/// message) into `old`: the entry of the same name is replaced, the others
/// kept in order. `None` when either is not an entry list (an unreadable
/// old value is replaced, never appended to).
pub fn merge_retained(old: Option<&Bytes>, write: &Bytes) -> Option<RetainedMerge> {
    let new = retained_entries(write)?;
    let [(name, body)] = new.as_slice() else {
        return None;
    };
    let kept = old.and_then(retained_entries).unwrap_or_default();
    let mut out = BytesMut::new();
    let mut had = false;
    for (n, b) in &kept {
        if n == name {
            had = true;
        } else {
            put_retained_entry(&mut out, n, b);
        }
    }
    if !body.is_empty() {
        put_retained_entry(&mut out, name, body);
    }
    Some(RetainedMerge {
        value: (!out.is_empty()).then(|| out.freeze()),
        added: !had && !body.is_empty(),
        removed: had && body.is_empty(),
    })
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

    #[test]
    fn retained_entries_merge_by_name() {
        let a = retained_entry("a/b", b"one");
        let m = merge_retained(None, &a).unwrap();
        assert!(m.added && !m.removed);
        let v = m.value.unwrap();
        let b = retained_entry("x", b"two");
        let m = merge_retained(Some(&v), &b).unwrap();
        assert!(m.added);
        let v = m.value.unwrap();
        let names: Vec<_> = retained_entries(&v)
            .unwrap()
            .into_iter()
            .map(|(n, b)| (n.to_string(), b))
            .collect();
        assert_eq!(
            names,
            vec![
                ("a/b".into(), Bytes::from_static(b"one")),
                ("x".into(), Bytes::from_static(b"two"))
            ]
        );
        // Replacing keeps the count; deleting removes the name.
        let m = merge_retained(Some(&v), &retained_entry("a/b", b"three")).unwrap();
        assert!(!m.added && !m.removed);
        let v = m.value.unwrap();
        let m = merge_retained(Some(&v), &retained_entry("x", b"")).unwrap();
        assert!(m.removed);
        let v = m.value.unwrap();
        assert_eq!(
            retained_entries(&v).unwrap(),
            vec![("a/b", Bytes::from_static(b"three"))]
        );
        let m = merge_retained(Some(&v), &retained_entry("a/b", b"")).unwrap();
        assert_eq!(m.value, None);
        // Deleting what is not there changes nothing.
        let m = merge_retained(None, &retained_entry("a/b", b"")).unwrap();
        assert!(!m.removed && !m.added && m.value.is_none());
        // Not entry lists.
        assert!(retained_entries(&Bytes::from_static(b"\x00\x05ab")).is_none());
        assert!(merge_retained(None, &Bytes::from_static(b"\x01")).is_none());
    }
}
