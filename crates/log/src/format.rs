//! Byte layout of the segment log: segment header, record framing, record
//! bodies, and the checkpoint snapshot.
//!
//! ```text
//! segment file = [segment header, SEGMENT_HEADER_LEN bytes][record]*[zeros]
//! record       = [len u32][crc32c u32][kind u8][body: len - 1 bytes]
//! crc32c       = over the len field, the kind byte and the body
//! ```
//! All integers are little-endian. A record never spans two segments. A
//! `len` of 0 marks the end of the written part (files are preallocated
//! with zeros); anything else that fails to parse or verify is damage,
//! which recovery (`recovery.rs`) tells apart from a torn tail.
//!
//! Two kinds are the log's own and never reach the delivery core
//! ([`Internal`]): the commit marker, which says how far the log was durable
//! when it was written, and the filler that salvage writes over damaged
//! bytes.
#![forbid(unsafe_code)]

use bytes::{BufMut, Bytes, BytesMut};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::record::{MessageRecord, Record, StateKey};
use super::state::{DedupConfig, DedupEntry, RecoveredState, SendKey};
use super::window::WindowStart;
use surepush_proto::{DeviceId, Qos, Seq, UserId};

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SPUSHLOG";
/// Format version written by this build.
pub const FORMAT_VERSION: u32 = 1;
/// Segment header size: one O_DIRECT block, so records start aligned.
pub const SEGMENT_HEADER_LEN: u64 = 4096;
/// Size of [`RecordHeader`].
pub const RECORD_HEADER_LEN: usize = std::mem::size_of::<RecordHeader>();
/// Largest record body accepted when reading (guards against a corrupt length).
pub const MAX_RECORD_LEN: u32 = 64 << 20;

/// The fixed start of a segment file.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct SegmentHeader {
    /// [`SEGMENT_MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub version: U32,
    /// Log position of the first record in this segment.
    pub base_lsn: U64,
    /// CRC32C of the fields above.
    pub crc: U32,
}

impl SegmentHeader {
    /// A header for a segment starting at `base_lsn`.
    pub fn new(base_lsn: u64) -> SegmentHeader {
        let mut h = SegmentHeader {
            magic: SEGMENT_MAGIC,
            version: FORMAT_VERSION.into(),
            base_lsn: base_lsn.into(),
            crc: 0.into(),
        };
        h.crc = h.compute_crc().into();
        h
    }

    fn compute_crc(&self) -> u32 {
        let b = self.as_bytes();
        crc32c::crc32c(&b[..b.len() - 4])
    }

    /// Parses and verifies a header from the start of a segment file.
    pub fn parse(bytes: &[u8]) -> Option<SegmentHeader> {
        let (h, _) = SegmentHeader::read_from_prefix(bytes).ok()?;
        (h.magic == SEGMENT_MAGIC
            && h.version.get() == FORMAT_VERSION
            && h.crc.get() == h.compute_crc())
        .then_some(h)
    }
}

/// The framing in front of every record.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct RecordHeader {
    /// Bytes after this header (the kind byte and the body).
    pub len: U32,
    /// CRC32C of `len`, the kind byte and the body.
    pub crc: U32,
}

/// Record kind byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// [`Record::Message`].
    Message = 1,
    /// [`Record::Cursor`].
    Cursor = 2,
    /// [`Record::Release`].
    Release = 3,
    /// [`Record::Checkpoint`].
    Checkpoint = 4,
    /// [`Record::Member`].
    Member = 5,
    /// [`Internal::Durable`]: a commit marker.
    Durable = 6,
    /// [`Internal::Filler`]: written by salvage over damaged bytes.
    Filler = 7,
    /// [`Record::State`] with a value.
    State = 8,
    /// [`Record::State`] without a value: the key is deleted.
    StateDeleted = 9,
}

/// Records the log writes for itself; the delivery core never sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Internal {
    /// A commit marker: every byte of the log before `up_to` was durable
    /// (fdatasync completed) when this record was appended. It claims
    /// nothing about the bytes written with it, so it stays true whatever
    /// order a crash lets those reach the disk in.
    Durable {
        /// End of the durable part when the marker was made.
        up_to: u64,
    },
    /// Padding that salvage wrote over damaged bytes (moved aside to a
    /// file next to the segment); recovery skips it.
    Filler,
}

/// Framed size of a commit marker.
pub const MARKER_LEN: usize = RECORD_HEADER_LEN + 1 + 8;
/// Smallest framed filler record (no body).
pub const MIN_FILLER_LEN: usize = RECORD_HEADER_LEN + 1;

/// Appends a commit marker claiming everything before `up_to`.
pub fn encode_marker(up_to: u64, out: &mut BytesMut) {
    let start = out.len();
    out.put_u32_le((MARKER_LEN - RECORD_HEADER_LEN) as u32);
    out.put_u32_le(0);
    out.put_u8(Kind::Durable as u8);
    out.put_u64_le(up_to);
    seal_crc(out, start);
}

/// Appends filler records covering exactly `len` bytes (at least
/// [`MIN_FILLER_LEN`]): as few as fit under [`MAX_RECORD_LEN`], the last
/// never shorter than a record header.
pub fn encode_filler(mut len: usize, out: &mut BytesMut) {
    assert!(
        len >= MIN_FILLER_LEN,
        "a filler needs {MIN_FILLER_LEN} bytes"
    );
    let largest = RECORD_HEADER_LEN + MAX_RECORD_LEN as usize;
    while len > 0 {
        let mut this = len.min(largest);
        if len - this != 0 && len - this < MIN_FILLER_LEN {
            this -= MIN_FILLER_LEN;
        }
        let start = out.len();
        out.put_u32_le((this - RECORD_HEADER_LEN) as u32);
        out.put_u32_le(0);
        out.put_u8(Kind::Filler as u8);
        out.put_bytes(0, this - MIN_FILLER_LEN);
        seal_crc(out, start);
        len -= this;
    }
}

/// Fills in the CRC of the record framed at `out[start..]`.
fn seal_crc(out: &mut BytesMut, start: usize) {
    let crc = record_crc(&out[start..start + 4], &out[start + RECORD_HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct MessageBody {
    inbox: U64,
    seq: U64,
    from: U64,
    from_device: U64,
    to: U64,
    client_msg_id: U64,
    ts_ms: U64,
    qos: u8,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct CursorBody {
    user: U64,
    device: U64,
    seq: U64,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct MemberBody {
    group: U64,
    user: U64,
    joined: u8,
}

/// The key of a [`Record::State`], in front of its value:
/// `tag` 1 = MQTT session (`a` user, `b` device), 2 = retained message
/// (`a` room wire id, `b` 0).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct StateKeyBody {
    tag: u8,
    a: U64,
    b: U64,
}

const STATE_TAG_MQTT_SESSION: u8 = 1;
const STATE_TAG_RETAINED: u8 = 2;

impl StateKeyBody {
    fn of(key: StateKey) -> StateKeyBody {
        let (tag, a, b) = match key {
            StateKey::MqttSession { user, device } => (STATE_TAG_MQTT_SESSION, user.0, device.0),
            StateKey::Retained { room } => (STATE_TAG_RETAINED, room.0, 0),
        };
        StateKeyBody {
            tag,
            a: a.into(),
            b: b.into(),
        }
    }

    /// The key, `None` for an unknown tag or a field it cannot hold.
    fn key(&self) -> Option<StateKey> {
        let (a, b) = (self.a.get(), self.b.get());
        match self.tag {
            STATE_TAG_MQTT_SESSION => Some(StateKey::MqttSession {
                user: UserId(a),
                device: DeviceId(b),
            }),
            STATE_TAG_RETAINED if b == 0 && surepush_proto::is_room(a) => {
                Some(StateKey::Retained { room: UserId(a) })
            }
            _ => None,
        }
    }
}

/// Size of a state record's key.
const STATE_KEY_LEN: usize = std::mem::size_of::<StateKeyBody>();

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct ReleaseBody {
    from: U64,
    from_device: U64,
    client_msg_id: U64,
    to: U64,
}

/// Encoded size of `record`, framing included.
pub fn encoded_len(record: &Record) -> usize {
    RECORD_HEADER_LEN
        + 1
        + match record {
            Record::Message(m) => std::mem::size_of::<MessageBody>() + m.payload.len(),
            Record::Cursor { .. } => std::mem::size_of::<CursorBody>(),
            Record::Release { .. } => std::mem::size_of::<ReleaseBody>(),
            Record::Member { .. } => std::mem::size_of::<MemberBody>(),
            Record::Checkpoint(b) => b.len(),
            Record::State { value, .. } => STATE_KEY_LEN + value.as_ref().map_or(0, Bytes::len),
        }
}

/// Appends the framed record to `out`.
pub fn encode(record: &Record, out: &mut BytesMut) {
    let start = out.len();
    let len = (encoded_len(record) - RECORD_HEADER_LEN) as u32;
    out.put_u32_le(len);
    out.put_u32_le(0); // crc, filled below
    match record {
        Record::Message(m) => {
            out.put_u8(Kind::Message as u8);
            let b = MessageBody {
                inbox: m.inbox.0.into(),
                seq: m.seq.0.into(),
                from: m.from.0.into(),
                from_device: m.from_device.0.into(),
                to: m.to.0.into(),
                client_msg_id: m.client_msg_id.into(),
                ts_ms: m.ts_ms.into(),
                qos: m.qos as u8,
            };
            // The CRC over the sources, not the bytes just copied: a large
            // copy may bypass the cache, and reading it back would miss.
            let crc = crc32c::crc32c_append(
                crc32c::crc32c_append(
                    crc32c::crc32c_append(
                        crc32c::crc32c(&len.to_le_bytes()),
                        &[Kind::Message as u8],
                    ),
                    b.as_bytes(),
                ),
                &m.payload,
            );
            out.put_slice(b.as_bytes());
            out.put_slice(&m.payload);
            out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
            return;
        }
        Record::Cursor { user, device, seq } => {
            out.put_u8(Kind::Cursor as u8);
            let b = CursorBody {
                user: user.0.into(),
                device: device.0.into(),
                seq: seq.0.into(),
            };
            out.put_slice(b.as_bytes());
        }
        Record::Release {
            from,
            from_device,
            client_msg_id,
            to,
        } => {
            out.put_u8(Kind::Release as u8);
            let b = ReleaseBody {
                from: from.0.into(),
                from_device: from_device.0.into(),
                client_msg_id: (*client_msg_id).into(),
                to: to.0.into(),
            };
            out.put_slice(b.as_bytes());
        }
        Record::Member {
            group,
            user,
            joined,
        } => {
            out.put_u8(Kind::Member as u8);
            let b = MemberBody {
                group: group.0.into(),
                user: user.0.into(),
                joined: u8::from(*joined),
            };
            out.put_slice(b.as_bytes());
        }
        Record::Checkpoint(snapshot) => {
            out.put_u8(Kind::Checkpoint as u8);
            out.put_slice(snapshot);
        }
        Record::State { key, value } => {
            let kind = match value {
                Some(_) => Kind::State,
                None => Kind::StateDeleted,
            };
            out.put_u8(kind as u8);
            out.put_slice(StateKeyBody::of(*key).as_bytes());
            if let Some(v) = value {
                out.put_slice(v);
            }
        }
    }
    seal_crc(out, start);
}

fn record_crc(len_field: &[u8], rest: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_field), rest)
}

/// What is found at one position of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A valid record and its total framed size.
    Record(Record, usize),
    /// A valid log-internal record and its total framed size.
    Internal(Internal, usize),
    /// Zeros: the end of the written part.
    End,
    /// Not enough bytes for the framed length (read more, or a torn tail).
    Truncated,
    /// Bad CRC, impossible length or unknown kind: torn or damaged.
    Corrupt(&'static str),
}

/// Decodes the record at the start of `buf` (payloads slice `buf`).
pub fn decode(buf: &Bytes) -> Decoded {
    let Ok((h, _)) = RecordHeader::read_from_prefix(&buf[..]) else {
        return if buf.iter().all(|b| *b == 0) {
            Decoded::End
        } else {
            Decoded::Truncated
        };
    };
    let len = h.len.get();
    if len == 0 {
        return if h.crc.get() == 0 {
            Decoded::End
        } else {
            Decoded::Corrupt("zero length with a crc")
        };
    }
    if len > MAX_RECORD_LEN {
        return Decoded::Corrupt("length beyond the maximum record size");
    }
    let total = RECORD_HEADER_LEN + len as usize;
    if buf.len() < total {
        return Decoded::Truncated;
    }
    if record_crc(&buf[..4], &buf[RECORD_HEADER_LEN..total]) != h.crc.get() {
        return Decoded::Corrupt("crc mismatch");
    }
    let kind = buf[RECORD_HEADER_LEN];
    let body = buf.slice(RECORD_HEADER_LEN + 1..total);
    let record = match kind {
        k if k == Kind::Message as u8 => {
            let Ok((b, _)) = MessageBody::read_from_prefix(&body[..]) else {
                return Decoded::Corrupt("short message body");
            };
            let Some(qos) = Qos::from_u8(b.qos) else {
                return Decoded::Corrupt("bad qos");
            };
            Record::Message(MessageRecord {
                inbox: UserId(b.inbox.get()),
                seq: Seq(b.seq.get()),
                from: UserId(b.from.get()),
                from_device: DeviceId(b.from_device.get()),
                to: UserId(b.to.get()),
                client_msg_id: b.client_msg_id.get(),
                qos,
                ts_ms: b.ts_ms.get(),
                payload: body.slice(std::mem::size_of::<MessageBody>()..),
            })
        }
        k if k == Kind::Cursor as u8 => {
            let Ok(b) = CursorBody::read_from_bytes(&body[..]) else {
                return Decoded::Corrupt("bad cursor body");
            };
            Record::Cursor {
                user: UserId(b.user.get()),
                device: DeviceId(b.device.get()),
                seq: Seq(b.seq.get()),
            }
        }
        k if k == Kind::Release as u8 => {
            let Ok(b) = ReleaseBody::read_from_bytes(&body[..]) else {
                return Decoded::Corrupt("bad release body");
            };
            Record::Release {
                from: UserId(b.from.get()),
                from_device: DeviceId(b.from_device.get()),
                client_msg_id: b.client_msg_id.get(),
                to: UserId(b.to.get()),
            }
        }
        k if k == Kind::Member as u8 => {
            let Ok(b) = MemberBody::read_from_bytes(&body[..]) else {
                return Decoded::Corrupt("bad member body");
            };
            if b.joined > 1 {
                return Decoded::Corrupt("bad member flag");
            }
            Record::Member {
                group: UserId(b.group.get()),
                user: UserId(b.user.get()),
                joined: b.joined == 1,
            }
        }
        k if k == Kind::Checkpoint as u8 => Record::Checkpoint(body),
        k if k == Kind::State as u8 || k == Kind::StateDeleted as u8 => {
            let Ok((b, _)) = StateKeyBody::read_from_prefix(&body[..]) else {
                return Decoded::Corrupt("short state key");
            };
            let Some(key) = b.key() else {
                return Decoded::Corrupt("bad state key");
            };
            let value = if k == Kind::State as u8 {
                Some(body.slice(STATE_KEY_LEN..))
            } else if body.len() == STATE_KEY_LEN {
                None
            } else {
                return Decoded::Corrupt("a state deletion with a value");
            };
            Record::State { key, value }
        }
        k if k == Kind::Durable as u8 => {
            let Some(up_to) = body.first_chunk::<8>().filter(|_| body.len() == 8) else {
                return Decoded::Corrupt("bad marker body");
            };
            let up_to = u64::from_le_bytes(*up_to);
            return Decoded::Internal(Internal::Durable { up_to }, total);
        }
        k if k == Kind::Filler as u8 => return Decoded::Internal(Internal::Filler, total),
        _ => return Decoded::Corrupt("unknown record kind"),
    };
    Decoded::Record(record, total)
}

// ----- sidecar index of a sealed segment ---------------------------------------

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

// ----- checkpoint pointer ------------------------------------------------------

/// Name of the file that says where the newest durable checkpoint is.
pub const CHECKPOINT_POINTER: &str = "checkpoint";

/// What the pointer file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pointer {
    /// Position of the checkpoint record.
    pub lsn: u64,
    /// Where the QoS 1 dedup window began then; `None` for a version 1
    /// pointer, whose checkpoint holds the whole window.
    pub window: Option<WindowStart>,
}

/// Text of the pointer file:
/// `surepush-checkpoint v2 <lsn> <window lsn> <window clock ms> <crc32c hex>`,
/// the CRC over the three numbers as written, space-separated.
pub fn encode_pointer(lsn: u64, window: WindowStart) -> String {
    let numbers = format!("{lsn} {} {}", window.lsn, window.newest_ts_ms);
    format!(
        "surepush-checkpoint v2 {numbers} {:08x}\n",
        crc32c::crc32c(numbers.as_bytes())
    )
}

/// The pointer in a pointer file (version 1 or 2), `None` if it is damaged.
pub fn parse_pointer(text: &str) -> Option<Pointer> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let (numbers, crc) = match parts.as_slice() {
        ["surepush-checkpoint", "v1", lsn, crc] => (vec![*lsn], crc),
        ["surepush-checkpoint", "v2", lsn, wlsn, wts, crc] => (vec![*lsn, *wlsn, *wts], crc),
        _ => return None,
    };
    let crc = u32::from_str_radix(crc, 16).ok()?;
    if crc32c::crc32c(numbers.join(" ").as_bytes()) != crc {
        return None;
    }
    let n: Vec<u64> = numbers
        .iter()
        .map(|d| d.parse().ok())
        .collect::<Option<_>>()?;
    Some(Pointer {
        lsn: n[0],
        window: (n.len() == 3).then(|| WindowStart {
            lsn: n[1],
            newest_ts_ms: n[2],
        }),
    })
}

// ----- checkpoint snapshot ---------------------------------------------------

/// First word of a version 2 checkpoint body (a version 1 body starts
/// with its head count, which is never this).
const CHECKPOINT_MARK: u32 = u32::MAX;
/// Checkpoint body version written by this build (3: with keyed state;
/// version 2 bodies, without it, still load).
const CHECKPOINT_VERSION: u32 = 3;

/// A decoded checkpoint.
#[derive(Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The state as of the checkpoint.
    pub state: RecoveredState,
    /// Version 1: `state.dedup` is the whole window. Version 2 holds the
    /// QoS 2 part only (recovery rebuilds the rest from the log).
    pub whole_window: bool,
}

/// Encodes the log's [`RecoveredState`] (its `dedup` the QoS 2 part of the
/// window) as a checkpoint body, version 3:
/// `[0xFFFFFFFF u32][3 u32][newest message ms u64]
///  [n_heads u32][(user u64, seq u64)]* [n_cursors u32][(user, device, seq)]*
///  [n_dedup u32][(from, device, cmid, inbox, seq, ts u64; qos u8; released u8)]*
///  [n_groups u32][(group u64, n u32, members u64 * n)]*
///  [n_keyed u32][(key: tag u8, a u64, b u64; len u32; value)]*`.
/// Version 2 (still read) has no keyed section. Version 1 (still read) is
/// version 2 without the first three fields, with the whole window in the
/// dedup section, and the groups section optional.
pub fn encode_checkpoint(state: &RecoveredState) -> Bytes {
    let mut out = BytesMut::with_capacity(
        28 + state.heads.len() * 16 + state.cursors.len() * 24 + state.dedup.len() * 50,
    );
    out.put_u32_le(CHECKPOINT_MARK);
    out.put_u32_le(CHECKPOINT_VERSION);
    out.put_u64_le(state.dedup.newest_ts_ms());
    encode_state(state, &mut out);
    encode_keyed(state, &mut out);
    out.freeze()
}

fn encode_state(state: &RecoveredState, out: &mut BytesMut) {
    out.put_u32_le(state.heads.len() as u32);
    for (u, s) in &state.heads {
        out.put_u64_le(u.0);
        out.put_u64_le(s.0);
    }
    out.put_u32_le(state.cursors.len() as u32);
    for ((u, d), s) in &state.cursors {
        out.put_u64_le(u.0);
        out.put_u64_le(d.0);
        out.put_u64_le(s.0);
    }
    out.put_u32_le(state.dedup.len() as u32);
    for e in state.dedup.entries() {
        out.put_u64_le(e.key.from.0);
        out.put_u64_le(e.key.from_device.0);
        out.put_u64_le(e.key.client_msg_id);
        out.put_u64_le(e.inbox.0);
        out.put_u64_le(e.seq.0);
        out.put_u64_le(e.ts_ms);
        out.put_u8(e.qos as u8);
        out.put_u8(u8::from(e.released));
    }
    out.put_u32_le(state.groups.len() as u32);
    for (group, members) in &state.groups {
        out.put_u64_le(group.0);
        out.put_u32_le(members.len() as u32);
        for m in members {
            out.put_u64_le(m.0);
        }
    }
}

/// The keyed section of a version 3 checkpoint.
fn encode_keyed(state: &RecoveredState, out: &mut BytesMut) {
    out.put_u32_le(state.keyed.len() as u32);
    for (key, value) in &state.keyed {
        out.put_slice(StateKeyBody::of(*key).as_bytes());
        out.put_u32_le(value.len() as u32);
        out.put_slice(value);
    }
}

/// Decodes a checkpoint body of either version; `None` if malformed.
pub fn decode_checkpoint(body: &[u8], config: &DedupConfig) -> Option<Checkpoint> {
    let mut r = Reader(body);
    let v2 = body.get(..4) == Some(&CHECKPOINT_MARK.to_le_bytes()[..]);
    let mut version = 1;
    let newest = if v2 {
        r.u32()?;
        version = r.u32()?;
        if !(2..=CHECKPOINT_VERSION).contains(&version) {
            return None;
        }
        Some(r.u64()?)
    } else {
        None
    };
    let mut state = RecoveredState::default();
    for _ in 0..r.u32()? {
        state.heads.insert(UserId(r.u64()?), Seq(r.u64()?));
    }
    for _ in 0..r.u32()? {
        state
            .cursors
            .insert((UserId(r.u64()?), DeviceId(r.u64()?)), Seq(r.u64()?));
    }
    let mut entries = Vec::new();
    for _ in 0..r.u32()? {
        let key = SendKey {
            from: UserId(r.u64()?),
            from_device: DeviceId(r.u64()?),
            client_msg_id: r.u64()?,
        };
        entries.push(DedupEntry {
            key,
            inbox: UserId(r.u64()?),
            seq: Seq(r.u64()?),
            ts_ms: r.u64()?,
            qos: Qos::from_u8(r.u8()?)?,
            released: r.u8()? != 0,
        });
    }
    // Version 1 checkpoints written before groups existed have no section.
    if v2 || !r.0.is_empty() {
        for _ in 0..r.u32()? {
            let group = UserId(r.u64()?);
            let n = r.u32()? as usize;
            let mut members = Vec::with_capacity(n.min(r.0.len() / 8));
            for _ in 0..n {
                members.push(UserId(r.u64()?));
            }
            if !members.windows(2).all(|w| w[0] < w[1]) {
                return None; // members are kept sorted and unique
            }
            state.groups.insert(group, members);
        }
    }
    if version >= 3 {
        for _ in 0..r.u32()? {
            let key = StateKeyBody::read_from_bytes(&r.take::<STATE_KEY_LEN>()?)
                .ok()?
                .key()?;
            let len = r.u32()? as usize;
            let value = r.bytes(len)?;
            if state
                .keyed
                .insert(key, Bytes::copy_from_slice(value))
                .is_some()
            {
                return None; // each key once
            }
        }
    }
    if !r.0.is_empty() {
        return None;
    }
    // Re-insert oldest first so the window's eviction order is preserved.
    entries.sort_by_key(|e| (e.ts_ms, e.inbox, e.seq));
    for e in entries {
        state.dedup.restore(e, config);
    }
    if let Some(newest) = newest {
        state.dedup.observe(newest);
    }
    Some(Checkpoint {
        state,
        whole_window: !v2,
    })
}

/// Version 2 encoding (no keyed section), kept for the tests that check
/// old checkpoints still load.
#[cfg(test)]
pub fn encode_checkpoint_v2(state: &RecoveredState) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u32_le(CHECKPOINT_MARK);
    out.put_u32_le(2);
    out.put_u64_le(state.dedup.newest_ts_ms());
    encode_state(state, &mut out);
    out.freeze()
}

/// Version 1 encoding, kept for the tests that check old checkpoints still load.
#[cfg(test)]
pub fn encode_checkpoint_v1(state: &RecoveredState) -> Bytes {
    let mut out = BytesMut::new();
    encode_state(state, &mut out);
    out.freeze()
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, b) = self.0.split_first_chunk::<N>()?;
        self.0 = b;
        Some(*a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let (a, b) = self.0.split_at_checked(n)?;
        self.0 = b;
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, payload: &'static [u8]) -> Record {
        Record::Message(MessageRecord {
            inbox: UserId(7),
            seq: Seq(seq),
            from: UserId(1),
            from_device: DeviceId(2),
            to: UserId(7),
            client_msg_id: 99,
            qos: Qos::ExactlyOnce,
            ts_ms: 123,
            payload: Bytes::from_static(payload),
        })
    }

    #[test]
    fn every_kind_round_trips() {
        let records = [
            msg(1, b"hello"),
            Record::Cursor {
                user: UserId(1),
                device: DeviceId(2),
                seq: Seq(3),
            },
            Record::Release {
                from: UserId(1),
                from_device: DeviceId(2),
                client_msg_id: 3,
                to: UserId(4),
            },
            Record::Member {
                group: UserId(UserId::GROUP_BIT | 5),
                user: UserId(6),
                joined: true,
            },
            Record::Checkpoint(Bytes::from_static(b"snap")),
            Record::State {
                key: StateKey::MqttSession {
                    user: UserId(3),
                    device: DeviceId(4),
                },
                value: Some(Bytes::from_static(b"session")),
            },
            Record::State {
                key: StateKey::Retained {
                    room: UserId(surepush_proto::ROOM_BIT | 9),
                },
                value: Some(Bytes::new()),
            },
            Record::State {
                key: StateKey::Retained {
                    room: UserId(surepush_proto::ROOM_BIT | 9),
                },
                value: None,
            },
        ];
        for r in records {
            let mut b = BytesMut::new();
            encode(&r, &mut b);
            assert_eq!(b.len(), encoded_len(&r));
            assert_eq!(
                decode(&b.freeze()),
                Decoded::Record(r.clone(), encoded_len(&r))
            );
        }
    }

    /// A state record whose key names nothing this build knows (an
    /// unknown tag, a retained message of a non-room id, a deletion that
    /// carries a value) is damage, not a key to fold.
    #[test]
    fn state_records_with_impossible_keys_are_refused() {
        let encode_raw = |kind: Kind, tag: u8, a: u64, b: u64, value: &[u8]| {
            let mut out = BytesMut::new();
            let body_len = 1 + STATE_KEY_LEN + value.len();
            out.put_u32_le(body_len as u32);
            out.put_u32_le(0);
            out.put_u8(kind as u8);
            out.put_u8(tag);
            out.put_u64_le(a);
            out.put_u64_le(b);
            out.put_slice(value);
            seal_crc(&mut out, 0);
            out.freeze()
        };
        let room = surepush_proto::ROOM_BIT | 1;
        for (kind, tag, a, b, value, why) in [
            (Kind::State, 3, 1, 1, &b"v"[..], "bad state key"),
            (Kind::State, STATE_TAG_RETAINED, 5, 0, b"v", "bad state key"),
            (
                Kind::State,
                STATE_TAG_RETAINED,
                room,
                1,
                b"v",
                "bad state key",
            ),
            (
                Kind::StateDeleted,
                STATE_TAG_MQTT_SESSION,
                1,
                1,
                b"v",
                "a state deletion with a value",
            ),
        ] {
            assert_eq!(
                decode(&encode_raw(kind, tag, a, b, value)),
                Decoded::Corrupt(why)
            );
        }
        let good = encode_raw(Kind::StateDeleted, STATE_TAG_RETAINED, room, 0, b"");
        assert!(matches!(
            decode(&good),
            Decoded::Record(Record::State { value: None, .. }, _)
        ));
    }

    #[test]
    fn markers_and_fillers_round_trip_and_fillers_cover_exactly() {
        let mut b = BytesMut::new();
        encode_marker(123_456, &mut b);
        assert_eq!(b.len(), MARKER_LEN);
        assert_eq!(
            decode(&b.clone().freeze()),
            Decoded::Internal(Internal::Durable { up_to: 123_456 }, MARKER_LEN)
        );
        let largest = RECORD_HEADER_LEN + MAX_RECORD_LEN as usize;
        for len in [
            MIN_FILLER_LEN,
            10,
            4096,
            largest,
            largest + 1,
            largest + 9,
            2 * largest + 3,
        ] {
            let mut b = BytesMut::new();
            encode_filler(len, &mut b);
            assert_eq!(b.len(), len, "filler of {len}");
            let mut rest = b.freeze();
            while !rest.is_empty() {
                let Decoded::Internal(Internal::Filler, n) = decode(&rest) else {
                    panic!("filler of {len} does not decode as fillers");
                };
                rest = rest.slice(n..);
            }
        }
    }

    #[test]
    fn every_truncation_and_every_flipped_bit_is_detected() {
        let mut b = BytesMut::new();
        encode(&msg(5, b"payload bytes"), &mut b);
        let full = b.freeze();
        for cut in 1..full.len() {
            let d = decode(&full.slice(..cut));
            assert!(matches!(d, Decoded::Truncated), "cut {cut}: {d:?}");
        }
        for byte in 0..full.len() {
            for bit in 0..8 {
                let mut bad = full.to_vec();
                bad[byte] ^= 1 << bit;
                let d = decode(&Bytes::from(bad));
                assert!(
                    !matches!(d, Decoded::Record(..)),
                    "byte {byte} bit {bit} accepted"
                );
            }
        }
    }

    #[test]
    fn zeros_are_the_clean_end() {
        assert_eq!(decode(&Bytes::from(vec![0u8; 64])), Decoded::End);
        assert_eq!(decode(&Bytes::from(vec![0u8; 3])), Decoded::End);
    }

    #[test]
    fn segment_header_verifies() {
        let h = SegmentHeader::new(4096 * 7);
        let parsed = SegmentHeader::parse(h.as_bytes()).unwrap();
        assert_eq!(parsed.base_lsn.get(), 4096 * 7);
        let mut bad = h.as_bytes().to_vec();
        bad[10] ^= 1;
        assert!(SegmentHeader::parse(&bad).is_none());
    }

    #[test]
    fn sidecar_round_trips_and_rejects_damage() {
        let entries: Vec<SidecarEntry> = (0..5u64)
            .map(|i| SidecarEntry {
                inbox: i.into(),
                seq: (i + 1).into(),
                offset: (i as u32 * 100).into(),
                len: 100.into(),
            })
            .collect();
        let keys: Vec<SidecarKey> = (0..5u64)
            .map(|i| SidecarKey {
                from: (i + 10).into(),
                from_device: 1.into(),
                client_msg_id: (i * 3).into(),
                ts_ms: (1000 + i).into(),
                qos: 1 + (i % 2) as u8,
            })
            .collect();
        let bytes = encode_sidecar(4096, 9000, 77, &entries, &keys);
        assert_eq!(bytes.len(), sidecar_len(5, true));
        assert_eq!(sidecar_count(&bytes), Some(5));
        let full = decode_sidecar(&bytes, 4096, true).unwrap();
        assert_eq!((full.end_offset, full.max_ts_ms), (9000, 77));
        assert_eq!((&full.entries, &full.keys), (&entries, &keys));
        // The index part alone reads and verifies without the keys.
        let index_only = decode_sidecar(&bytes[..sidecar_len(5, false)], 4096, false).unwrap();
        assert_eq!((index_only.entries, index_only.keys), (entries, Vec::new()));
        assert_eq!(
            decode_sidecar(&bytes, 8192, false),
            None,
            "another segment's sidecar"
        );
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert_eq!(decode_sidecar(&bad, 4096, true), None, "flip at {i}");
            if i < sidecar_len(5, false) {
                assert_eq!(decode_sidecar(&bad, 4096, false), None, "flip at {i}");
            }
        }
        assert_eq!(decode_sidecar(&bytes[..bytes.len() - 1], 4096, true), None);
    }

    #[test]
    fn pointer_round_trips_and_rejects_damage() {
        for lsn in [0u64, 4096, u64::MAX] {
            let window = WindowStart {
                lsn: lsn / 2,
                newest_ts_ms: 1_700_000_000_000,
            };
            assert_eq!(
                parse_pointer(&encode_pointer(lsn, window)),
                Some(Pointer {
                    lsn,
                    window: Some(window)
                })
            );
        }
        let window = WindowStart {
            lsn: 100,
            newest_ts_ms: 5,
        };
        let good = encode_pointer(123_456, window);
        assert_eq!(parse_pointer(&good.replace("123456", "123457")), None);
        assert_eq!(parse_pointer(&good.replace(" 100 ", " 101 ")), None);
        assert_eq!(parse_pointer("garbage"), None);
        assert_eq!(parse_pointer(""), None);
        // Version 1 pointers (no window) still parse.
        let v1 = format!(
            "surepush-checkpoint v1 4096 {:08x}\n",
            crc32c::crc32c(b"4096")
        );
        assert_eq!(
            parse_pointer(&v1),
            Some(Pointer {
                lsn: 4096,
                window: None
            })
        );
    }

    #[test]
    fn checkpoint_round_trips_the_state() {
        let config = DedupConfig::default();
        let mut state = RecoveredState::default();
        for r in [
            msg(1, b"a"),
            msg(2, b"b"),
            Record::Cursor {
                user: UserId(7),
                device: DeviceId(1),
                seq: Seq(2),
            },
            Record::Member {
                group: UserId(UserId::GROUP_BIT | 1),
                user: UserId(9),
                joined: true,
            },
            Record::Member {
                group: UserId(UserId::GROUP_BIT | 1),
                user: UserId(3),
                joined: true,
            },
        ] {
            state.apply(&r, &config);
        }
        for (device, value) in [(1, Some("a")), (2, Some("b")), (1, Some("c")), (2, None)] {
            let record = Record::State {
                key: StateKey::MqttSession {
                    user: UserId(7),
                    device: DeviceId(device),
                },
                value: value.map(|v: &'static str| Bytes::from_static(v.as_bytes())),
            };
            state.apply(&record, &config);
        }
        state.dedup.observe(5_000);
        assert_eq!(
            state.groups.values().next().unwrap(),
            &[UserId(3), UserId(9)]
        );
        let session = |device| StateKey::MqttSession {
            user: UserId(7),
            device: DeviceId(device),
        };
        assert_eq!(
            state.keyed.iter().collect::<Vec<_>>(),
            vec![(&session(1), &Bytes::from_static(b"c"))],
            "the last value wins; a deletion removes the key"
        );
        let back = decode_checkpoint(&encode_checkpoint(&state), &config).unwrap();
        assert!(!back.whole_window);
        assert_eq!(back.state, state);
        assert_eq!(back.state.dedup.newest_ts_ms(), 5_000, "the clock is kept");
        // Version 2 (no keyed section) still loads, without keyed state.
        let mut unkeyed = state.clone();
        unkeyed.keyed.clear();
        let v2 = decode_checkpoint(&encode_checkpoint_v2(&state), &config).unwrap();
        assert_eq!(v2.state, unkeyed);
        // Version 1 (the whole window, groups optional) still loads.
        let v1 = decode_checkpoint(&encode_checkpoint_v1(&state), &config).unwrap();
        assert!(v1.whole_window);
        assert_eq!(v1.state, unkeyed);
        let mut old = unkeyed.clone();
        old.groups.clear();
        let old_encoded = encode_checkpoint_v1(&old);
        let without_section = &old_encoded[..old_encoded.len() - 4];
        assert_eq!(
            decode_checkpoint(without_section, &config).unwrap().state,
            old
        );
        assert!(decode_checkpoint(b"\x01\x00\x00", &config).is_none());
        // A body cut short is malformed (its sections are not optional).
        let v3 = encode_checkpoint(&state);
        assert!(decode_checkpoint(&v3[..v3.len() - 4], &config).is_none());
        let v2 = encode_checkpoint_v2(&old);
        assert!(decode_checkpoint(&v2[..v2.len() - 4], &config).is_none());
    }
}
