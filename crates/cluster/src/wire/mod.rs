//! The cluster's binary encoding: named message structs, length-prefixed,
//! versioned.
//!
//! Everything a node writes for another node (KV records, request batches,
//! room publishes, and the application's messages inside batches) is a
//! struct implementing [`Wire`]. One frame is
//!
//! ```text
//! [len u32 LE: bytes after this field][kind u16 LE][version u8][body]
//! ```
//!
//! - `kind` names the struct ([`MessageKind`]; the registry of numbers is
//!   [`kinds`]). A decoder checks it, so bytes of one struct are never read
//!   as another.
//! - `version` is the body layout's version, from 1. A reader decodes
//!   every version up to its own `VERSION` and refuses 0 and newer ones with
//!   [`WireError::UnsupportedVersion`]; a writer only sends what its peers
//!   read (nodes advertise their wire version in the registry).
//! - Integers are little-endian; byte strings and text carry a length
//!   prefix; every read is bounds-checked, so any input yields a value or a
//!   [`WireError`], never a panic (the `cluster_wire` fuzz target checks
//!   this).
//!
//! serde and JSON stay off this path: the encoding is a handful of
//! `put_*` calls per struct and decoding slices the input `Bytes` instead of
//! copying payloads.

mod reader;

pub mod kinds;

use bytes::{BufMut, Bytes, BytesMut};

pub use reader::Reader;

/// Number naming one message struct on the wire (see [`kinds`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageKind(pub u16);

/// Size of a frame's header: length, kind, version.
pub const FRAME_HEADER: usize = 4 + 2 + 1;

/// A struct with a binary encoding.
pub trait Wire: Sized {
    /// The struct's number.
    const KIND: MessageKind;
    /// The newest body layout this build writes and reads.
    const VERSION: u8;

    /// Appends the body (no frame header).
    fn encode_body(&self, out: &mut BytesMut);

    /// Reads a body of layout `version` (`<= VERSION`, checked by the
    /// caller). Must consume exactly the body; [`decode`] checks that.
    fn decode_body(version: u8, body: &mut Reader<'_>) -> Result<Self, WireError>;
}

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ended inside a field.
    #[error("truncated: needed {needed} more bytes")]
    Truncated {
        /// Bytes missing.
        needed: usize,
    },
    /// A frame of another struct.
    #[error("expected message kind {expected}, got {got}")]
    WrongKind {
        /// The kind the caller asked for.
        expected: u16,
        /// The kind in the frame.
        got: u16,
    },
    /// A body layout this build does not read: newer than its own, or 0
    /// (layouts are numbered from 1).
    #[error("message kind {kind} version {version} is not in 1..={supported}")]
    UnsupportedVersion {
        /// The struct.
        kind: u16,
        /// The version in the frame.
        version: u8,
        /// The newest version this build reads.
        supported: u8,
    },
    /// Bytes left after the body, or after the last frame.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// Text that is not UTF-8.
    #[error("text field is not UTF-8")]
    InvalidUtf8,
    /// A field's value is outside its domain (an unknown tag, a bad node
    /// id, a count larger than the input can hold).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Appends `msg` as one frame.
pub fn encode<T: Wire>(msg: &T, out: &mut BytesMut) {
    let start = out.len();
    out.put_u32_le(0); // patched below
    out.put_u16_le(T::KIND.0);
    out.put_u8(T::VERSION);
    msg.encode_body(out);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// `msg` as one frame in a buffer of its own.
pub fn to_bytes<T: Wire>(msg: &T) -> Bytes {
    to_bytes_sized(msg, 0)
}

/// `msg` as one frame in a buffer of its own, allocated once for
/// `capacity` bytes (the caller's estimate of the frame's size: a buffer
/// grown field by field reallocates several times).
pub fn to_bytes_sized<T: Wire>(msg: &T, capacity: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(capacity);
    encode(msg, &mut out);
    out.freeze()
}

/// Decodes exactly one frame of `T` (no bytes before or after it).
pub fn decode<T: Wire>(input: &Bytes) -> Result<T, WireError> {
    let mut frames = Frames::new(input);
    let frame = frames.next().ok_or(WireError::Truncated {
        needed: FRAME_HEADER,
    })??;
    if frames.remaining() > 0 {
        return Err(WireError::Trailing(frames.remaining()));
    }
    frame.decode()
}

/// One frame, not yet decoded.
#[derive(Debug, Clone)]
pub struct RawFrame {
    /// The struct it holds.
    pub kind: MessageKind,
    /// Its body layout.
    pub version: u8,
    /// The body.
    pub body: Bytes,
}

impl RawFrame {
    /// Decodes the body as `T` (kind and version checked, body consumed
    /// exactly).
    pub fn decode<T: Wire>(&self) -> Result<T, WireError> {
        decode_body::<T>(self.kind, self.version, &self.body)
    }
}

/// Decodes a body of a known kind and version as `T`.
pub fn decode_body<T: Wire>(kind: MessageKind, version: u8, body: &Bytes) -> Result<T, WireError> {
    if kind != T::KIND {
        return Err(WireError::WrongKind {
            expected: T::KIND.0,
            got: kind.0,
        });
    }
    if version == 0 || version > T::VERSION {
        return Err(WireError::UnsupportedVersion {
            kind: kind.0,
            version,
            supported: T::VERSION,
        });
    }
    let mut reader = Reader::new(body);
    let msg = T::decode_body(version, &mut reader)?;
    reader.finish()?;
    Ok(msg)
}

/// The frames in a buffer, in order; stops after the first error.
pub struct Frames<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> Frames<'a> {
    /// Frames of `input`.
    pub fn new(input: &'a Bytes) -> Frames<'a> {
        Frames {
            reader: Reader::new(input),
            failed: false,
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.reader.remaining()
    }

    fn read_frame(&mut self) -> Result<RawFrame, WireError> {
        let len = self.reader.u32()? as usize;
        let mut frame = self.reader.sub(len)?;
        let kind = MessageKind(frame.u16()?);
        let version = frame.u8()?;
        let body = frame.rest();
        Ok(RawFrame {
            kind,
            version,
            body,
        })
    }
}

impl Iterator for Frames<'_> {
    type Item = Result<RawFrame, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.remaining() == 0 {
            return None;
        }
        let frame = self.read_frame();
        self.failed = frame.is_err();
        Some(frame)
    }
}

/// Appends a byte string with a u32 length prefix.
pub fn put_blob(out: &mut BytesMut, blob: &[u8]) {
    out.put_u32_le(u32::try_from(blob.len()).expect("a blob is smaller than 4 GiB"));
    out.put_slice(blob);
}

/// Appends text with a u16 length prefix (callers keep text short: ids,
/// addresses).
pub fn put_str(out: &mut BytesMut, text: &str) {
    out.put_u16_le(u16::try_from(text.len()).expect("short text field"));
    out.put_slice(text.as_bytes());
}

/// Appends an optional text: a presence byte, then the text.
pub fn put_opt_str(out: &mut BytesMut, text: Option<&str>) {
    match text {
        None => out.put_u8(0),
        Some(t) => {
            out.put_u8(1);
            put_str(out, t);
        }
    }
}

#[cfg(test)]
mod tests;
