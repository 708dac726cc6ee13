//! Streaming frame decoder.
//!
//! Bytes arrive in arbitrary pieces (a frame split across reads, several
//! frames in one read). [`Decoder`] keeps one growable buffer, validates the
//! 8-byte header in place as soon as it is complete — so an oversized or
//! foreign frame is refused before its body is buffered — and hands out each
//! complete frame as a `Bytes` split off the buffer (no copy).

use bytes::{Buf, Bytes, BytesMut};
use zerocopy::FromBytes;

use super::error::ProtoError;
use super::frame::{Frame, FrameKind};
use super::header::{FrameHeader, DEFAULT_MAX_FRAME, HEADER_LEN, MAGIC, VERSION};

/// Decodes one whole encoded frame held in `bytes` (a frame encoded once
/// and shared, such as a room message queued for many connections): the
/// payload is sliced out of `bytes`, not copied, and `bytes` itself is left
/// as it is for the other holders.
pub fn decode_shared(bytes: &Bytes) -> Result<Frame, ProtoError> {
    let malformed = |what| ProtoError::Malformed {
        frame: "shared frame",
        what,
    };
    let (header, _) =
        FrameHeader::ref_from_prefix(&bytes[..]).map_err(|_| malformed("shorter than a header"))?;
    if header.magic != MAGIC || header.version != VERSION {
        return Err(ProtoError::UnsupportedVersion {
            magic: header.magic,
            version: header.version,
        });
    }
    let kind = FrameKind::from_u8(header.kind).ok_or(ProtoError::UnknownFrameType(header.kind))?;
    if HEADER_LEN + header.len.get() as usize != bytes.len() {
        return Err(malformed("not exactly one frame"));
    }
    Frame::decode_body(kind, header.flags, bytes.slice(HEADER_LEN..))
}

/// Incremental decoder for one byte stream.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max_frame: u32,
    failed: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder {
    /// A decoder refusing frames larger than `max_frame` bytes (header included).
    pub fn new(max_frame: u32) -> Decoder {
        Decoder {
            // No buffer up front: readers size their reads (an idle
            // connection holds 512 bytes, not 4 KiB).
            buf: BytesMut::new(),
            max_frame: max_frame.max(HEADER_LEN as u32),
            failed: false,
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The receive buffer, for callers that read straight into it.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes buffered but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes still missing for the frame at the front of the buffer (at
    /// least 1 when no complete frame is buffered); a read size hint.
    pub fn missing(&self) -> usize {
        match FrameHeader::ref_from_prefix(&self.buf[..]) {
            Ok((h, _)) => (HEADER_LEN + h.len.get() as usize).saturating_sub(self.buf.len()),
            Err(_) => HEADER_LEN - self.buf.len(),
        }
    }

    /// Decodes the next complete frame, `Ok(None)` if more bytes are needed.
    ///
    /// After an error the stream is unusable: every later call returns the
    /// same kind of failure without looking at new bytes.
    pub fn decode(&mut self) -> Result<Option<Frame>, ProtoError> {
        if self.failed {
            return Err(ProtoError::Malformed {
                frame: "stream",
                what: "decoder stopped after an earlier error",
            });
        }
        let result = self.decode_inner();
        self.failed = result.is_err();
        result
    }

    fn decode_inner(&mut self) -> Result<Option<Frame>, ProtoError> {
        let Ok((header, _)) = FrameHeader::ref_from_prefix(&self.buf[..]) else {
            return Ok(None);
        };
        if header.magic != MAGIC || header.version != VERSION {
            return Err(ProtoError::UnsupportedVersion {
                magic: header.magic,
                version: header.version,
            });
        }
        let kind =
            FrameKind::from_u8(header.kind).ok_or(ProtoError::UnknownFrameType(header.kind))?;
        let total = HEADER_LEN as u64 + u64::from(header.len.get());
        if total > u64::from(self.max_frame) {
            return Err(ProtoError::FrameTooLarge {
                len: total,
                max: self.max_frame,
            });
        }
        let total = total as usize;
        let flags = header.flags;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total).freeze();
        frame.advance(HEADER_LEN);
        Frame::decode_body(kind, flags, frame).map(Some)
    }
}
