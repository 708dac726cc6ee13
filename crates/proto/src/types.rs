//! Identifiers and small value types shared by every layer.
//!
//! These are plain integers on the wire (little-endian) and in the log; the
//! newtypes keep a user id from being passed where a sequence is expected.

use std::fmt;

/// A user (an account). Chosen by the application backend; opaque here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct UserId(pub u64);

impl UserId {
    /// Ids with this bit set name groups (write diffusion: a SEND to one is
    /// stored in every member's inbox), never users.
    pub const GROUP_BIT: u64 = 1 << 63;

    /// True for a group id.
    pub fn is_group(self) -> bool {
        self.0 & Self::GROUP_BIT != 0
    }
}

/// One device (installation) of a user. Each device keeps its own cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DeviceId(pub u64);

/// Position in one user's inbox. Sequences start at 1 and are contiguous;
/// `Seq(0)` means "nothing" (an empty inbox, or a device that holds nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Seq(pub u64);

impl Seq {
    /// The "holds nothing" position.
    pub const ZERO: Seq = Seq(0);

    /// The sequence after this one.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "u{}", self.0)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "d{}", self.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Delivery guarantee of one message, as in MQTT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Qos {
    /// At most once: not stored, not acknowledged, not retransmitted.
    AtMostOnce = 0,
    /// At least once: stored before SENDACK, retransmitted until ACK.
    AtLeastOnce = 1,
    /// Exactly once: as QoS 1, and the send dedup entry is kept until the
    /// sender releases it (REL/COMP), so a retry at any time is recognised.
    ExactlyOnce = 2,
}

impl Qos {
    /// Parses the wire byte; `None` for values other than 0, 1, 2.
    pub fn from_u8(v: u8) -> Option<Qos> {
        match v {
            0 => Some(Qos::AtMostOnce),
            1 => Some(Qos::AtLeastOnce),
            2 => Some(Qos::ExactlyOnce),
            _ => None,
        }
    }
}
