//! WebSocket frames (RFC 6455 §5), sans IO: client frames in, unmasked
//! message bytes and control frames out; server frame headers.
//!
//! Frame headers are parsed and formatted by tungstenite's
//! [`FrameHeader`]; this file adds what a server must enforce on top:
//! client frames are masked, no extension bits (nothing is negotiated),
//! binary messages only, control frames short and unfragmented, a message
//! within `max_message_size` and `MAX_FRAGMENTS`, continuations only inside
//! a message. Each violation is a [`WsError`] carrying the close code the
//! RFC gives for it.
//!
//! Message payloads are not buffered: a data frame's bytes are unmasked
//! into the caller's buffer as they arrive, so the protocol above sees one
//! byte stream whatever the framing (docs/PROTOCOL.md "WebSocket mapping").

use std::io::Cursor;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Close codes the gateway sends (RFC 6455 §7.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseCode {
    /// 1000: done.
    Normal,
    /// 1002: not WebSocket as the RFC has it.
    Protocol,
    /// 1003: a text message (the gateway takes binary messages only).
    Unsupported,
    /// 1008: the connection broke a rule of the gateway (idle too long).
    Policy,
    /// 1009: a message larger than `max_message_size`.
    TooBig,
    /// Whatever the client sent in its close frame (echoed).
    Echo(u16),
}

impl CloseCode {
    /// The code on the wire.
    pub(crate) fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::Protocol => 1002,
            CloseCode::Unsupported => 1003,
            CloseCode::Policy => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::Echo(code) => code,
        }
    }
}

/// Client input that is not WebSocket as the gateway speaks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WsError {
    /// A client frame without a mask (RFC 6455 §5.1).
    #[error("client frame not masked")]
    Unmasked,
    /// RSV bits set: no extension is negotiated (permessage-deflate is off).
    #[error("reserved bits set, no extension negotiated")]
    ReservedBits,
    /// An opcode the RFC reserves.
    #[error("reserved opcode")]
    ReservedOpcode,
    /// A control frame longer than 125 bytes or fragmented (§5.5).
    #[error("control frame fragmented or longer than 125 bytes")]
    BadControl,
    /// A close frame whose payload is one byte or whose code is not one a
    /// peer may send (§7.4).
    #[error("invalid close frame")]
    BadClose,
    /// A continuation frame outside a message, or a new message before the
    /// last one ended (§5.4).
    #[error("fragments out of order")]
    FragmentOrder,
    /// A message in more than `MAX_FRAGMENTS` frames.
    #[error("message in too many fragments")]
    TooManyFragments,
    /// A message longer than `max_message_size`.
    #[error("message larger than the limit")]
    TooBig,
    /// A text message.
    #[error("text message (binary only)")]
    Text,
}

impl WsError {
    /// The close code the RFC gives for the violation.
    pub(crate) fn close_code(self) -> CloseCode {
        match self {
            WsError::TooBig => CloseCode::TooBig,
            WsError::Text => CloseCode::Unsupported,
            WsError::TooManyFragments => CloseCode::Policy,
            _ => CloseCode::Protocol,
        }
    }
}

/// Frames one message may come in. A bound, so that a client cannot make
/// the gateway parse an endless message of empty fragments (each one a
/// header of work and no payload).
pub(crate) const MAX_FRAGMENTS: u32 = 1024;
/// Largest control frame payload (§5.5).
const MAX_CONTROL: u64 = 125;
/// Largest frame header (2 + 8 length + 4 mask).
pub(crate) const MAX_HEADER: usize = 14;

/// What [`Decoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// This many message bytes were written to the caller's buffer (> 0).
    Data(usize),
    /// A ping: answer with a pong carrying this payload.
    Ping(Bytes),
    /// A pong (liveness only).
    Pong,
    /// The client closes, with this code (none if it gave none).
    Close(Option<u16>),
    /// Nothing decodable: feed more bytes.
    More,
}

/// The data frame being read.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    /// Payload bytes still to come.
    left: u64,
    mask: [u8; 4],
    /// Payload bytes already unmasked (the mask's phase).
    done: u64,
}

/// Client frames → message bytes and control frames.
#[derive(Debug)]
pub(crate) struct Decoder {
    max_message: usize,
    /// Bytes received and not decoded yet.
    raw: BytesMut,
    frame: Option<InFrame>,
    /// Inside a message (its last frame not seen yet): its size so far and
    /// its frames.
    message: Option<(u64, u32)>,
}

/// A decoder's state as it travels between shards in a hand-off.
#[derive(Debug)]
pub(crate) struct DecoderState {
    raw: BytesMut,
    frame: Option<(u64, [u8; 4], u64)>,
    message: Option<(u64, u32)>,
}

impl Decoder {
    /// A decoder for a new connection; `raw`: bytes that came after the
    /// upgrade request.
    pub(crate) fn new(max_message: usize, raw: &[u8]) -> Decoder {
        Decoder {
            max_message,
            raw: BytesMut::from(raw),
            frame: None,
            message: None,
        }
    }

    /// Receive buffer: read bytes from the socket into its spare capacity.
    pub(crate) fn raw(&mut self) -> &mut BytesMut {
        &mut self.raw
    }

    /// The state to hand off (see [`Decoder::resume`]).
    pub(crate) fn suspend(self) -> DecoderState {
        DecoderState {
            raw: self.raw,
            frame: self.frame.map(|f| (f.left, f.mask, f.done)),
            message: self.message,
        }
    }

    /// A decoder continuing where a handed-off one stopped.
    pub(crate) fn resume(max_message: usize, state: DecoderState) -> Decoder {
        Decoder {
            max_message,
            raw: state.raw,
            frame: state
                .frame
                .map(|(left, mask, done)| InFrame { left, mask, done }),
            message: state.message,
        }
    }

    /// Decodes what it can: message bytes go to `out` (unmasked).
    pub(crate) fn decode(&mut self, out: &mut [u8]) -> Result<Decoded, WsError> {
        loop {
            if let Some(frame) = &mut self.frame {
                if frame.left == 0 {
                    self.frame = None;
                    continue;
                }
                let n = (frame.left.min(out.len() as u64) as usize).min(self.raw.len());
                if n == 0 {
                    return Ok(Decoded::More);
                }
                unmask_into(&self.raw[..n], &mut out[..n], frame.mask, frame.done);
                self.raw.advance(n);
                frame.left -= n as u64;
                frame.done += n as u64;
                return Ok(Decoded::Data(n));
            }
            let mut cursor = Cursor::new(&self.raw[..]);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Ok(Decoded::More),
                Err(_) => return Err(WsError::ReservedOpcode),
            };
            let header_len = cursor.position() as usize;
            let mask = header.mask.ok_or(WsError::Unmasked)?;
            if header.rsv1 || header.rsv2 || header.rsv3 {
                return Err(WsError::ReservedBits);
            }
            match header.opcode {
                OpCode::Control(control) => {
                    if !header.is_final || len > MAX_CONTROL {
                        return Err(WsError::BadControl);
                    }
                    let whole = header_len + len as usize;
                    if self.raw.len() < whole {
                        return Ok(Decoded::More);
                    }
                    self.raw.advance(header_len);
                    let mut payload = self.raw.split_to(len as usize);
                    unmask_in_place(&mut payload, mask);
                    match control {
                        Control::Ping => return Ok(Decoded::Ping(payload.freeze())),
                        Control::Pong => return Ok(Decoded::Pong),
                        Control::Close => return close_code(&payload).map(Decoded::Close),
                        Control::Reserved(_) => return Err(WsError::ReservedOpcode),
                    }
                }
                OpCode::Data(data) => {
                    let (size, frames) = match (data, self.message) {
                        (Data::Continue, Some(message)) => message,
                        (Data::Continue, None) => return Err(WsError::FragmentOrder),
                        (_, Some(_)) => return Err(WsError::FragmentOrder),
                        (Data::Text, None) => return Err(WsError::Text),
                        (Data::Binary, None) => (0, 0),
                        (Data::Reserved(_), None) => return Err(WsError::ReservedOpcode),
                    };
                    let size = size.saturating_add(len);
                    if size > self.max_message as u64 {
                        return Err(WsError::TooBig);
                    }
                    if frames + 1 > MAX_FRAGMENTS {
                        return Err(WsError::TooManyFragments);
                    }
                    self.message = (!header.is_final).then_some((size, frames + 1));
                    self.raw.advance(header_len);
                    self.frame = Some(InFrame {
                        left: len,
                        mask,
                        done: 0,
                    });
                }
            }
        }
    }
}

/// The code of a client's close frame, checked (§5.5.1, §7.4).
fn close_code(payload: &[u8]) -> Result<Option<u16>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::BadClose),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let allowed = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !allowed || std::str::from_utf8(reason).is_err() {
                return Err(WsError::BadClose);
            }
            Ok(Some(code))
        }
    }
}

/// `out = raw ^ mask`, the mask taken from byte `phase` of the payload on
/// (tungstenite keeps its own masking function private).
fn unmask_into(raw: &[u8], out: &mut [u8], mask: [u8; 4], phase: u64) {
    let phase = (phase % 4) as usize;
    for (i, (o, r)) in out.iter_mut().zip(raw).enumerate() {
        *o = r ^ mask[(phase + i) % 4];
    }
}

fn unmask_in_place(buf: &mut [u8], mask: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Appends an unmasked, final server frame header for a payload of `len`
/// bytes (the payload follows as its own chunks).
pub(crate) fn put_header(out: &mut BytesMut, opcode: OpCode, len: u64) {
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: None,
    };
    header
        .format(len, &mut out.writer())
        .expect("writing to a BytesMut cannot fail");
}

/// A whole server control frame.
pub(crate) fn control_frame(control: Control, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(MAX_HEADER + payload.len());
    put_header(&mut out, OpCode::Control(control), payload.len() as u64);
    out.put_slice(payload);
    out.freeze()
}

/// A server close frame with `code`.
pub(crate) fn close_frame(code: CloseCode) -> Bytes {
    control_frame(Control::Close, &code.code().to_be_bytes())
}

#[cfg(test)]
mod tests;
