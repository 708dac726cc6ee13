//! Names and filters of addressable resources (MQTT 5.0 section 4.7
//! syntax), shared by the native core and the MQTT front end.
//!
//! A name is what a message goes to (`room/42`); a filter names a set of
//! them with `+` (exactly one level, which it must fill) and `#` (any
//! number of trailing levels, including none; the whole last level). Two
//! callers apply the same rules, so they live here once:
//! - the core's token ACLs (`core::acl`) grant resources by filter, a room
//!   `n` being the name `room/{n}` ([`RoomName`]);
//! - the MQTT bridge matches inbox subscriptions against topic names
//!   (`mqtt::topic_matches` is [`topic_matches`]).

/// Level separator.
pub const LEVEL_SEPARATOR: char = '/';
/// Single-level wildcard.
pub const SINGLE_LEVEL: char = '+';
/// Multi-level wildcard.
pub const MULTI_LEVEL: char = '#';

/// What is wrong with a plain filter (not `$share/...`), if anything
/// ([MQTT-4.7.1-1], [MQTT-4.7.1-2], [MQTT-4.7.3-1]).
pub fn filter_error(filter: &str) -> Option<&'static str> {
    if filter.is_empty() {
        return Some("empty");
    }
    let mut levels = filter.split(LEVEL_SEPARATOR).peekable();
    while let Some(level) = levels.next() {
        if level.contains(MULTI_LEVEL) && (level.len() != 1 || levels.peek().is_some()) {
            return Some("'#' must be the whole last level");
        }
        if level.contains(SINGLE_LEVEL) && level.len() != 1 {
            return Some("'+' must be a whole level");
        }
    }
    None
}

/// Whether `topic` (a name) matches `filter` (a plain filter).
///
/// Per MQTT 5.0 section 4.7: `+` matches exactly one level (possibly
/// empty), `#` matches the parent level and any number below it (`a/#`
/// matches `a`), and a filter starting with a wildcard does not match a
/// topic starting with `$` ([MQTT-4.7.2-1]). An invalid filter or an empty
/// topic never matches.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.is_empty() || filter.is_empty() {
        return false;
    }
    if topic.starts_with('$') && filter.starts_with([SINGLE_LEVEL, MULTI_LEVEL]) {
        return false;
    }
    let mut filter_levels = filter.split(LEVEL_SEPARATOR).peekable();
    let mut topic_levels = topic.split(LEVEL_SEPARATOR);
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            // '#' also matches when the topic has run out: "a/#" matches "a".
            (Some("#"), _) => return filter_levels.peek().is_none(),
            (Some(f), Some(t)) => {
                let level_ok = f == "+" || (f == t && !f.contains([SINGLE_LEVEL, MULTI_LEVEL]));
                if !level_ok {
                    return false;
                }
            }
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
        }
    }
}

/// The name of room number `n`: `room/{n}`, `n` in decimal without sign or
/// leading zeros (the MQTT topic of the room, and its name in token ACLs).
/// Written into a fixed buffer: checking a grant allocates nothing.
#[derive(Clone, Copy)]
pub struct RoomName {
    buf: [u8; ROOM_NAME_MAX],
    len: usize,
}

/// The prefix of every room name.
pub const ROOM_PREFIX: &str = "room/";

/// `room/` and the 20 digits of the largest u64.
const ROOM_NAME_MAX: usize = ROOM_PREFIX.len() + 20;

impl RoomName {
    /// The name of room number `n` (the wire id without its room bit).
    pub fn new(n: u64) -> RoomName {
        let mut buf = [0u8; ROOM_NAME_MAX];
        buf[..ROOM_PREFIX.len()].copy_from_slice(ROOM_PREFIX.as_bytes());
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = n;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        let len = ROOM_PREFIX.len() + digits.len() - at;
        buf[ROOM_PREFIX.len()..len].copy_from_slice(&digits[at..]);
        RoomName { buf, len }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("ASCII digits and a prefix")
    }
}

impl std::fmt::Debug for RoomName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_decimal_without_leading_zeros() {
        for n in [0, 7, 10, 42, 1 << 40, (1 << 62) - 1, u64::MAX] {
            assert_eq!(RoomName::new(n).as_str(), format!("room/{n}"));
        }
    }

    #[test]
    fn filter_syntax() {
        for ok in ["room/+", "room/#", "#", "+", "room/42", "a//b", "/"] {
            assert_eq!(filter_error(ok), None, "{ok}");
        }
        for bad in ["", "room/#/x", "room/4#", "room/+4", "##", "a/b#"] {
            assert!(filter_error(bad).is_some(), "{bad}");
        }
    }
}
