//! The sidecar index of a sealed segment (`<base>.idx`): which messages
//! the segment holds, where, and their dedup keys, so a sealed segment is
//! listed without reading it.
//!
//! ```text
//! sidecar = [header][entries][crc32c][keys][crc32c]
//! ```
//! The first CRC covers the header and the entries, the second the keys, so
//! the index part can be read and verified alone.
#![forbid(unsafe_code)]

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::record::MessageRecord;

/// First bytes of a sidecar index file (`<base>.idx`).
pub const SIDECAR_MAGIC: [u8; 8] = *b"SPUSHIDX";

/// One message of a sealed segment, as listed in its sidecar.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct SidecarEntry {
    /// Inbox.
    pub inbox: U64,
    /// Sequence in the inbox.
    pub seq: U64,
    /// Record position minus the segment base.
    pub offset: U32,
    /// Framed record length.
    pub len: U32,
}

/// The dedup key of one message of a sealed segment (same order as the
/// [`SidecarEntry`] list): recovery rebuilds the QoS 1 dedup window from
/// these without reading the records.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct SidecarKey {
    /// Sending user.
    pub from: U64,
    /// Sending device.
    pub from_device: U64,
    /// The sender's id of the send.
    pub client_msg_id: U64,
    /// Gateway receive time.
    pub ts_ms: U64,
    /// QoS of the send.
    pub qos: u8,
}

impl SidecarKey {
    /// The key of `m`.
    pub fn of(m: &MessageRecord) -> SidecarKey {
        SidecarKey {
            from: m.from.0.into(),
            from_device: m.from_device.0.into(),
            client_msg_id: m.client_msg_id.into(),
            ts_ms: m.ts_ms.into(),
            qos: m.qos as u8,
        }
    }
}

/// Version of the sidecar layout (2: with the keys section).
pub const SIDECAR_VERSION: u32 = 2;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct SidecarHeader {
    magic: [u8; 8],
    version: U32,
    base: U64,
    end_offset: U64,
    max_ts_ms: U64,
    count: U32,
}

/// Size of a sidecar's header.
pub const SIDECAR_HEADER_LEN: usize = std::mem::size_of::<SidecarHeader>();

/// A sealed segment's summary: where its data ends, its newest message
/// time, and every message in it. Lets recovery skip scanning it.
#[derive(Debug, PartialEq, Eq)]
pub struct Sidecar {
    /// Data end minus the segment base.
    pub end_offset: u64,
    /// Newest message timestamp.
    pub max_ts_ms: u64,
    /// The messages, in log order.
    pub entries: Vec<SidecarEntry>,
    /// Their dedup keys (empty unless asked for).
    pub keys: Vec<SidecarKey>,
}

/// Writes a sidecar for the segment at `base` to `out`:
/// `[header][entries][crc32c][keys][crc32c]`, the first CRC over the header
/// and the entries, the second over the keys, so the index part can be
/// read and verified alone. Streams the lists as they lie in memory (no
/// copy of a sidecar that may run to tens of MiB).
pub fn write_sidecar_to(
    out: &mut impl std::io::Write,
    base: u64,
    end_offset: u64,
    max_ts_ms: u64,
    entries: &[SidecarEntry],
    keys: &[SidecarKey],
) -> std::io::Result<()> {
    assert_eq!(entries.len(), keys.len(), "a key per message");
    let header = SidecarHeader {
        magic: SIDECAR_MAGIC,
        version: SIDECAR_VERSION.into(),
        base: base.into(),
        end_offset: end_offset.into(),
        max_ts_ms: max_ts_ms.into(),
        count: (entries.len() as u32).into(),
    };
    let (header, entries, keys) = (header.as_bytes(), entries.as_bytes(), keys.as_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(header), entries);
    out.write_all(header)?;
    out.write_all(entries)?;
    out.write_all(&crc.to_le_bytes())?;
    out.write_all(keys)?;
    out.write_all(&crc32c::crc32c(keys).to_le_bytes())
}

/// [`write_sidecar_to`] into memory.
pub fn encode_sidecar(
    base: u64,
    end_offset: u64,
    max_ts_ms: u64,
    entries: &[SidecarEntry],
    keys: &[SidecarKey],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(sidecar_len(entries.len(), true));
    write_sidecar_to(&mut out, base, end_offset, max_ts_ms, entries, keys)
        .expect("writing to memory cannot fail");
    out
}

/// Bytes of a sidecar of `count` messages: the index part alone, or all.
pub fn sidecar_len(count: usize, with_keys: bool) -> usize {
    let index = SIDECAR_HEADER_LEN + count * std::mem::size_of::<SidecarEntry>() + 4;
    if with_keys {
        index + count * std::mem::size_of::<SidecarKey>() + 4
    } else {
        index
    }
}

/// The message count a sidecar's header announces (to size the read).
pub fn sidecar_count(header: &[u8]) -> Option<usize> {
    let (h, _) = SidecarHeader::read_from_prefix(header).ok()?;
    Some(h.count.get() as usize)
}

/// Decodes and verifies a sidecar of the segment at `base` (`bytes` holds
/// at least the index part; the keys too if `with_keys`).
pub fn decode_sidecar(bytes: &[u8], base: u64, with_keys: bool) -> Option<Sidecar> {
    let (h, _) = SidecarHeader::read_from_prefix(bytes).ok()?;
    if h.magic != SIDECAR_MAGIC || h.version.get() != SIDECAR_VERSION || h.base.get() != base {
        return None;
    }
    let count = h.count.get() as usize;
    let index_len = sidecar_len(count, false);
    let (index, crc) = bytes.get(..index_len)?.split_last_chunk::<4>()?;
    if crc32c::crc32c(index) != u32::from_le_bytes(*crc) {
        return None;
    }
    let entries = <[SidecarEntry]>::ref_from_bytes(&index[SIDECAR_HEADER_LEN..]).ok()?;
    let keys = if with_keys {
        let rest = bytes.get(index_len..sidecar_len(count, true))?;
        let (keys, crc) = rest.split_last_chunk::<4>()?;
        if crc32c::crc32c(keys) != u32::from_le_bytes(*crc) {
            return None;
        }
        <[SidecarKey]>::ref_from_bytes(keys).ok()?.to_vec()
    } else {
        Vec::new()
    };
    Some(Sidecar {
        end_offset: h.end_offset.get(),
        max_ts_ms: h.max_ts_ms.get(),
        entries: entries.to_vec(),
        keys,
    })
}
