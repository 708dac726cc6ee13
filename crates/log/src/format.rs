//! Byte layout of the segment log: segment header, record framing, record
//! bodies (here), the sidecar index of a sealed segment (`sidecar.rs`) and
//! the checkpoint pointer and snapshot (`checkpoint.rs`).
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
use surepush_proto::{DeviceId, Qos, Seq, UserId};

mod checkpoint;
mod sidecar;

pub use checkpoint::{
    decode_checkpoint, encode_checkpoint, encode_pointer, parse_pointer, Checkpoint, Pointer,
    CHECKPOINT_POINTER,
};
#[cfg(test)]
pub use checkpoint::{encode_checkpoint_v1, encode_checkpoint_v2, encode_checkpoint_v3};
pub use sidecar::{
    decode_sidecar, encode_sidecar, sidecar_count, sidecar_len, write_sidecar_to, Sidecar,
    SidecarEntry, SidecarKey, SIDECAR_HEADER_LEN, SIDECAR_MAGIC, SIDECAR_VERSION,
};

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
    /// [`Record::Message`] with attributes (issue #21: MQTT 5 message
    /// properties): the [`Kind::Message`] body, then the attributes'
    /// length ([`ATTRS_LEN_SIZE`] bytes) and the attributes, then the
    /// payload. Added after kind 1 without changing it: a message without
    /// attributes is still written as kind 1, so logs without them stay
    /// readable by earlier builds, and kind 1 records of earlier builds
    /// read as messages without attributes.
    MessageWithAttrs = 10,
}

/// Size of the attributes' length in a [`Kind::MessageWithAttrs`] body.
pub const ATTRS_LEN_SIZE: usize = 4;

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
/// (`a` room wire id, `b` 0), 3 = webhook event (`a` event number, `b` 0),
/// 4 = webhook cursor (`a` 0, `b` 0).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct StateKeyBody {
    tag: u8,
    a: U64,
    b: U64,
}

const STATE_TAG_MQTT_SESSION: u8 = 1;
const STATE_TAG_RETAINED: u8 = 2;
const STATE_TAG_WEBHOOK_EVENT: u8 = 3;
const STATE_TAG_WEBHOOK_CURSOR: u8 = 4;
const STATE_TAG_SHARE_GROUP: u8 = 5;
const STATE_TAG_MQTT_WILL: u8 = 6;

impl StateKeyBody {
    fn of(key: StateKey) -> StateKeyBody {
        let (tag, a, b) = match key {
            StateKey::MqttSession { user, device } => (STATE_TAG_MQTT_SESSION, user.0, device.0),
            StateKey::Retained { room } => (STATE_TAG_RETAINED, room.0, 0),
            StateKey::WebhookEvent { id } => (STATE_TAG_WEBHOOK_EVENT, id, 0),
            StateKey::WebhookCursor => (STATE_TAG_WEBHOOK_CURSOR, 0, 0),
            StateKey::ShareGroup { key } => (STATE_TAG_SHARE_GROUP, key, 0),
            StateKey::MqttWill { user, device } => (STATE_TAG_MQTT_WILL, user.0, device.0),
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
            STATE_TAG_WEBHOOK_EVENT if b == 0 => Some(StateKey::WebhookEvent { id: a }),
            STATE_TAG_WEBHOOK_CURSOR if a == 0 && b == 0 => Some(StateKey::WebhookCursor),
            STATE_TAG_SHARE_GROUP if b == 0 => Some(StateKey::ShareGroup { key: a }),
            STATE_TAG_MQTT_WILL => Some(StateKey::MqttWill {
                user: UserId(a),
                device: DeviceId(b),
            }),
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
            Record::Message(m) => {
                std::mem::size_of::<MessageBody>() + attrs_field_len(&m.attrs) + m.payload.len()
            }
            Record::Cursor { .. } => std::mem::size_of::<CursorBody>(),
            Record::Release { .. } => std::mem::size_of::<ReleaseBody>(),
            Record::Member { .. } => std::mem::size_of::<MemberBody>(),
            Record::Checkpoint(b) => b.len(),
            Record::State { value, .. } => STATE_KEY_LEN + value.as_ref().map_or(0, Bytes::len),
        }
}

/// Bytes the attributes take in a message body (none when empty).
fn attrs_field_len(attrs: &Bytes) -> usize {
    if attrs.is_empty() {
        0
    } else {
        ATTRS_LEN_SIZE + attrs.len()
    }
}

/// Splits what follows a [`Kind::MessageWithAttrs`] fixed body into
/// (attributes, payload); `None` if the length does not fit or is 0.
fn split_attrs(rest: Bytes) -> Option<(Bytes, Bytes)> {
    let len: [u8; ATTRS_LEN_SIZE] = rest.get(..ATTRS_LEN_SIZE)?.try_into().ok()?;
    let len = u32::from_le_bytes(len) as usize;
    let end = ATTRS_LEN_SIZE
        .checked_add(len)
        .filter(|&e| e <= rest.len())?;
    (len > 0).then(|| (rest.slice(ATTRS_LEN_SIZE..end), rest.slice(end..)))
}

/// Appends the framed record to `out`.
pub fn encode(record: &Record, out: &mut BytesMut) {
    let start = out.len();
    let len = (encoded_len(record) - RECORD_HEADER_LEN) as u32;
    out.put_u32_le(len);
    out.put_u32_le(0); // crc, filled below
    match record {
        Record::Message(m) => {
            let kind = if m.attrs.is_empty() {
                Kind::Message
            } else {
                Kind::MessageWithAttrs
            };
            out.put_u8(kind as u8);
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
            let mut crc = crc32c::crc32c_append(
                crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), &[kind as u8]),
                b.as_bytes(),
            );
            out.put_slice(b.as_bytes());
            if !m.attrs.is_empty() {
                let attrs_len = (m.attrs.len() as u32).to_le_bytes();
                crc = crc32c::crc32c_append(crc32c::crc32c_append(crc, &attrs_len), &m.attrs);
                out.put_slice(&attrs_len);
                out.put_slice(&m.attrs);
            }
            let crc = crc32c::crc32c_append(crc, &m.payload);
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
        k if k == Kind::Message as u8 || k == Kind::MessageWithAttrs as u8 => {
            let Ok((b, _)) = MessageBody::read_from_prefix(&body[..]) else {
                return Decoded::Corrupt("short message body");
            };
            let Some(qos) = Qos::from_u8(b.qos) else {
                return Decoded::Corrupt("bad qos");
            };
            let rest = body.slice(std::mem::size_of::<MessageBody>()..);
            let (attrs, payload) = if k == Kind::MessageWithAttrs as u8 {
                match split_attrs(rest) {
                    Some(parts) => parts,
                    None => return Decoded::Corrupt("bad message attributes"),
                }
            } else {
                (Bytes::new(), rest)
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
                attrs,
                payload,
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

#[cfg(test)]
mod tests;
