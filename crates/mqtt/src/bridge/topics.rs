//! How MQTT topic names map onto surepush addressees (docs/MQTT.md).
//!
//! | topic        | addressee                           |
//! |--------------|-------------------------------------|
//! | `user/{id}`  | user `id`'s inbox                   |
//! | `group/{n}`  | group `n` (wire id `n \| 1 << 63`)  |
//! | `room/{n}`   | room `n` (wire id `n \| 1 << 62`)   |
//!
//! Numbers are decimal without sign or leading zeros and below 2^62 (2^61
//! for rooms: room numbers with bit 61 are topic streams), so every
//! addressee has exactly one topic name. Every other name not starting
//! with `$` is a free-form topic (`streams.rs`).

use surepush_proto::topic::RoomName;
use surepush_proto::topic_stream::TOPIC_BIT;
use surepush_proto::{is_room, UserId, ROOM_BIT};

/// Largest user or group number (exclusive).
const ID_LIMIT: u64 = 1 << 62;

/// Largest room number (exclusive): those above are topic streams.
const ROOM_LIMIT: u64 = TOPIC_BIT;

/// What a topic name addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A user's inbox.
    User(u64),
    /// A group.
    Group(u64),
    /// A room.
    Room(u64),
}

impl Target {
    /// Parses a topic name; `None` for anything outside the three forms.
    pub fn parse(topic: &str) -> Option<Target> {
        let (kind, number) = topic.split_once('/')?;
        let n = parse_number(number)?;
        match kind {
            "user" => Some(Target::User(n)),
            "group" => Some(Target::Group(n)),
            "room" if n < ROOM_LIMIT => Some(Target::Room(n)),
            _ => None,
        }
    }

    /// The native wire id (`to` of a SEND).
    pub fn wire_id(self) -> UserId {
        match self {
            Target::User(n) => UserId(n),
            Target::Group(n) => UserId(n | UserId::GROUP_BIT),
            Target::Room(n) => UserId(n | ROOM_BIT),
        }
    }

    /// The target a native id names.
    pub fn from_wire(id: u64) -> Target {
        if UserId(id).is_group() {
            Target::Group(id & !UserId::GROUP_BIT)
        } else if is_room(id) {
            Target::Room(id & !ROOM_BIT)
        } else {
            Target::User(id)
        }
    }

    /// The topic name.
    pub fn topic(self) -> String {
        match self {
            Target::User(n) => format!("user/{n}"),
            Target::Group(n) => format!("group/{n}"),
            Target::Room(n) => RoomName::new(n).as_str().to_string(),
        }
    }
}

fn parse_number(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    let n: u64 = if canonical { s.parse().ok()? } else { None? };
    (n < ID_LIMIT).then_some(n)
}

/// A room subscription filter: exactly `room/{n}` (no wildcard).
pub fn room_filter(filter: &str) -> Option<u64> {
    match Target::parse(filter)? {
        Target::Room(n) => Some(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_round_trips_through_its_topic_and_wire_id() {
        for t in [
            Target::User(0),
            Target::User(42),
            Target::Group(7),
            Target::Room(ROOM_LIMIT - 1),
        ] {
            assert_eq!(Target::parse(&t.topic()), Some(t));
            assert_eq!(Target::from_wire(t.wire_id().0), t);
        }
    }

    #[test]
    fn non_canonical_or_unknown_topics_are_refused() {
        for bad in [
            "user/",
            "user/01",
            "user/+1",
            "user/1/x",
            "users/1",
            "room/4611686018427387904",
            "room/2305843009213693952",
            "user/18446744073709551616",
            "user",
            "/user/1",
        ] {
            assert_eq!(Target::parse(bad), None, "{bad}");
        }
        assert_eq!(room_filter("room/3"), Some(3));
        assert_eq!(room_filter("room/+"), None);
        assert_eq!(room_filter("user/3"), None);
    }
}
