//! The fixed frame header and the fixed-size parts of frame bodies.
//!
//! Every struct here is `Unaligned` and made of little-endian integers, so
//! it is read in place from any offset of a receive buffer
//! (`ref_from_prefix`) without copying or alignment concerns.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// First byte of every frame.
pub const MAGIC: u8 = 0xB5;
/// Protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Size of [`FrameHeader`] on the wire.
pub const HEADER_LEN: usize = std::mem::size_of::<FrameHeader>();
/// Default and upper bound of the maximum frame size (header included).
pub const DEFAULT_MAX_FRAME: u32 = 1 << 20;

/// The 8-byte header in front of every frame.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct FrameHeader {
    /// Always [`MAGIC`].
    pub magic: u8,
    /// Always [`VERSION`].
    pub version: u8,
    /// Frame type (see `FrameKind`).
    pub kind: u8,
    /// Type-specific flag bits; unknown bits must be zero.
    pub flags: u8,
    /// Body length in bytes (the header is not counted).
    pub len: U32,
}

/// CONNECT fixed part; the token follows.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct ConnectFixed {
    pub(crate) device: U64,
    pub(crate) last_seq: U64,
    pub(crate) keepalive_ms: U32,
}

/// CONNACK body.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct ConnAckFixed {
    pub(crate) user: U64,
    pub(crate) device: U64,
    pub(crate) head: U64,
    pub(crate) cursor: U64,
    pub(crate) max_frame: U32,
    pub(crate) push_window: U32,
    pub(crate) max_pending_sends: U32,
    pub(crate) keepalive_ms: U32,
    pub(crate) max_sync_limit: U32,
}

/// SEND fixed part; the payload follows.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct SendFixed {
    pub(crate) client_msg_id: U64,
    pub(crate) to: U64,
    pub(crate) qos: u8,
}

/// SENDACK body.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct SendAckFixed {
    pub(crate) client_msg_id: U64,
    pub(crate) seq: U64,
    pub(crate) own_seq: U64,
    pub(crate) result: u8,
}

/// PUSH fixed part (also each SYNCPAGE item's fixed part); the payload follows.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct PushFixed {
    pub(crate) seq: U64,
    pub(crate) prev_seq: U64,
    pub(crate) from: U64,
    pub(crate) from_device: U64,
    pub(crate) to: U64,
    pub(crate) client_msg_id: U64,
    pub(crate) ts_ms: U64,
    pub(crate) qos: u8,
}

/// SYNC body.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct SyncFixed {
    pub(crate) request_id: U32,
    pub(crate) anchor: U64,
    pub(crate) limit: U32,
    pub(crate) direction: u8,
}

/// SYNCPAGE fixed part; `count` items follow.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct SyncPageFixed {
    pub(crate) request_id: U32,
    pub(crate) head: U64,
    pub(crate) count: U32,
}

/// REL body (QoS 2 release of a send).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct RelFixed {
    pub(crate) client_msg_id: U64,
    pub(crate) to: U64,
}

/// Bodies that are a single u64 (ACK, COMP, PING, PONG).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct U64Body {
    pub(crate) value: U64,
}

/// ERROR and DISCONNECT fixed part; UTF-8 text follows.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct CodeFixed {
    pub(crate) code: U16,
}

/// Byte size of a fixed part, for docs and bounds checks.
pub const fn fixed_len<T>() -> usize {
    std::mem::size_of::<T>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes are part of the wire contract (docs/PROTOCOL.md).
    #[test]
    fn fixed_sizes_match_the_protocol_document() {
        assert_eq!(HEADER_LEN, 8);
        assert_eq!(fixed_len::<ConnectFixed>(), 20);
        assert_eq!(fixed_len::<ConnAckFixed>(), 52);
        assert_eq!(fixed_len::<SendFixed>(), 17);
        assert_eq!(fixed_len::<SendAckFixed>(), 25);
        assert_eq!(fixed_len::<PushFixed>(), 57);
        assert_eq!(fixed_len::<SyncFixed>(), 17);
        assert_eq!(fixed_len::<SyncPageFixed>(), 16);
        assert_eq!(fixed_len::<RelFixed>(), 16);
        assert_eq!(fixed_len::<U64Body>(), 8);
        assert_eq!(fixed_len::<CodeFixed>(), 2);
    }
}
