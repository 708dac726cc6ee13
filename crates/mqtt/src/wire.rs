//! MQTT's primitive data types (MQTT 5.0 section 1.5): big-endian integers,
//! Variable Byte Integers, length-prefixed strings and binary data.
//!
//! Reading goes through [`Reader`], a cursor over one packet's body that
//! hands out `Bytes` slices and names the packet and field in every error.
//! Writing goes through [`Sink`], implemented both by `BytesMut` and by
//! [`Counter`], so each packet layout is written once and run twice: first
//! to measure (the remaining length precedes the body) and then to write.

use bytes::{Buf, Bytes, BytesMut};

use super::error::{EncodeError, MqttError};
use super::packet::{MqttString, PacketId, PacketType};

/// Largest value a Variable Byte Integer holds (4 bytes of 7 bits).
pub(crate) const VARINT_MAX: u32 = (1 << (7 * VARINT_MAX_LEN)) - 1;
/// A Variable Byte Integer is at most this many bytes.
pub(crate) const VARINT_MAX_LEN: usize = 4;
/// Longest string or binary field: its length prefix is a `u16`.
pub(crate) const LENGTH_PREFIXED_MAX: usize = u16::MAX as usize;

/// Parses a Variable Byte Integer at the start of `bytes`: `Ok(None)` if the
/// bytes end before its last byte, otherwise the value and its length.
/// Rejects a fifth byte and non-shortest encodings ([MQTT-1.5.5-1]).
pub(crate) fn parse_varint(
    bytes: &[u8],
    field: &'static str,
) -> Result<Option<(u32, usize)>, MqttError> {
    let mut value = 0u32;
    for (i, &byte) in bytes.iter().take(VARINT_MAX_LEN).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // A last byte of 0 after a continuation adds nothing: the
            // shorter encoding was required.
            if i > 0 && byte == 0 {
                return Err(MqttError::MalformedVarint { field });
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= VARINT_MAX_LEN {
        Err(MqttError::MalformedVarint { field })
    } else {
        Ok(None)
    }
}

/// Encoded length of a Variable Byte Integer (`v <= VARINT_MAX`).
pub(crate) fn varint_len(v: u32) -> usize {
    match v {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        _ => 4,
    }
}

/// Checks an MQTT string's content: UTF-8 is guaranteed by [`MqttString`];
/// U+0000 is forbidden ([MQTT-1.5.4-2]).
pub(crate) fn check_no_null(s: &[u8], field: &'static str) -> Result<(), MqttError> {
    // U+0000 is the only code point whose UTF-8 form contains a 0 byte.
    if s.contains(&0) {
        return Err(MqttError::NullCharacter { field });
    }
    Ok(())
}

/// Cursor over the body of one packet.
pub(crate) struct Reader {
    buf: Bytes,
    packet: PacketType,
}

impl Reader {
    pub(crate) fn new(buf: Bytes, packet: PacketType) -> Reader {
        Reader { buf, packet }
    }

    pub(crate) fn packet(&self) -> PacketType {
        self.packet
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn need(&self, n: usize, field: &'static str) -> Result<(), MqttError> {
        if self.buf.len() < n {
            return Err(MqttError::Truncated {
                packet: self.packet,
                field,
            });
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, MqttError> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, MqttError> {
        self.need(2, field)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, MqttError> {
        self.need(4, field)?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u32, MqttError> {
        let (value, len) = parse_varint(&self.buf, field)?.ok_or(MqttError::Truncated {
            packet: self.packet,
            field,
        })?;
        self.buf.advance(len);
        Ok(value)
    }

    /// The next `n` bytes as a slice of the receive buffer.
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, MqttError> {
        self.need(n, field)?;
        Ok(self.buf.split_to(n))
    }

    /// Binary Data: a `u16` length and that many bytes.
    pub(crate) fn binary(&mut self, field: &'static str) -> Result<Bytes, MqttError> {
        let len = self.u16(field)?;
        self.take(usize::from(len), field)
    }

    /// UTF-8 Encoded String: well-formed and without U+0000.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<MqttString, MqttError> {
        let bytes = self.binary(field)?;
        check_no_null(&bytes, field)?;
        MqttString::from_utf8(bytes).map_err(|_| MqttError::InvalidUtf8 { field })
    }

    /// A packet identifier, which is never 0.
    pub(crate) fn packet_id(&mut self) -> Result<PacketId, MqttError> {
        let id = self.u16("packet identifier")?;
        PacketId::new(id).ok_or(MqttError::ZeroPacketId {
            packet: self.packet,
        })
    }

    /// Everything left (a PUBLISH payload).
    pub(crate) fn rest(&mut self) -> Bytes {
        self.buf.split_to(self.buf.len())
    }

    /// The packet must end here.
    pub(crate) fn finish(self) -> Result<(), MqttError> {
        if !self.buf.is_empty() {
            return Err(MqttError::TrailingBytes {
                packet: self.packet,
                extra: self.buf.len(),
            });
        }
        Ok(())
    }
}

/// Where encoded bytes go: a buffer, or a [`Counter`] measuring them.
pub(crate) trait Sink {
    fn write(&mut self, bytes: &[u8]);

    fn write_u8(&mut self, v: u8) {
        self.write(&[v]);
    }

    fn write_u16(&mut self, v: u16) {
        self.write(&v.to_be_bytes());
    }

    fn write_u32(&mut self, v: u32) {
        self.write(&v.to_be_bytes());
    }

    fn write_varint(&mut self, v: u32, field: &'static str) -> Result<(), EncodeError> {
        if v > VARINT_MAX {
            return Err(EncodeError::TooLong {
                field,
                len: v as usize,
                max: VARINT_MAX as usize,
            });
        }
        let mut v = v;
        loop {
            let byte = (v & 0x7F) as u8;
            v >>= 7;
            if v == 0 {
                self.write_u8(byte);
                return Ok(());
            }
            self.write_u8(byte | 0x80);
        }
    }

    fn write_binary(&mut self, data: &[u8], field: &'static str) -> Result<(), EncodeError> {
        let len = u16::try_from(data.len()).map_err(|_| EncodeError::TooLong {
            field,
            len: data.len(),
            max: LENGTH_PREFIXED_MAX,
        })?;
        self.write_u16(len);
        self.write(data);
        Ok(())
    }

    fn write_string(&mut self, s: &MqttString, field: &'static str) -> Result<(), EncodeError> {
        check_no_null(s.as_bytes(), field)?;
        self.write_binary(s.as_bytes(), field)
    }
}

impl Sink for BytesMut {
    fn write(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A [`Sink`] that only counts.
#[derive(Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn write(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Runs a writer against a [`Counter`]: how many bytes it would write.
pub(crate) fn measure(
    write: impl FnOnce(&mut Counter) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    let mut counter = Counter::default();
    write(&mut counter)?;
    Ok(counter.0)
}
