//! Message attributes: an optional opaque block that travels and is stored
//! with a message, next to its payload (issue #21 item 3: MQTT 5 message
//! properties carried end to end). The gateway never looks inside; the
//! MQTT bridge puts the MQTT 5 properties of a PUBLISH there
//! (docs/MQTT.md 2.4, docs/PROTOCOL.md "Message attributes").
//!
//! On the wire (SEND, PUSH, SYNCPAGE items, ROOMPUSH) the frame's qos byte
//! carries [`QOS_HAS_ATTRS`]; the payload field then starts with the
//! attributes' length ([`ATTRS_LEN_SIZE`] bytes, little endian) and the
//! attributes, and the message payload follows. Without the bit the
//! payload field is the payload, as before, so frames without attributes
//! are unchanged. Empty attributes are never flagged.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtoError;
use crate::types::Qos;

/// Bit of a frame's qos byte: the payload field starts with attributes.
pub const QOS_HAS_ATTRS: u8 = 0x80;

/// Size of the attributes' length in front of them.
pub const ATTRS_LEN_SIZE: usize = 4;

/// The qos byte for `qos` with `attrs` (empty: none).
pub(crate) fn qos_byte(qos: Qos, attrs: &Bytes) -> u8 {
    qos as u8 | if attrs.is_empty() { 0 } else { QOS_HAS_ATTRS }
}

/// Bytes the attributes add to a payload field.
pub fn encoded_len(attrs: &Bytes) -> usize {
    if attrs.is_empty() {
        0
    } else {
        ATTRS_LEN_SIZE + attrs.len()
    }
}

/// Writes the attributes part of a payload field (nothing if empty).
pub(crate) fn put(attrs: &Bytes, dst: &mut BytesMut) {
    if !attrs.is_empty() {
        dst.put_u32_le(attrs.len() as u32);
        dst.put_slice(attrs);
    }
}

/// Splits a frame's qos byte and payload field into (QoS, attributes,
/// payload), without copying.
pub(crate) fn split(
    qos: u8,
    field: Bytes,
    frame: &'static str,
) -> Result<(Qos, Bytes, Bytes), ProtoError> {
    let level = Qos::from_u8(qos & !QOS_HAS_ATTRS).ok_or(ProtoError::InvalidQos(qos))?;
    if qos & QOS_HAS_ATTRS == 0 {
        return Ok((level, Bytes::new(), field));
    }
    let malformed = |what| ProtoError::Malformed { frame, what };
    let len: [u8; ATTRS_LEN_SIZE] = field
        .get(..ATTRS_LEN_SIZE)
        .and_then(|b| b.try_into().ok())
        .ok_or(malformed("attributes length truncated"))?;
    let len = u32::from_le_bytes(len) as usize;
    let end = ATTRS_LEN_SIZE
        .checked_add(len)
        .filter(|&end| end <= field.len())
        .ok_or(malformed("attributes exceed the payload field"))?;
    if len == 0 {
        return Err(malformed("empty attributes flagged"));
    }
    Ok((level, field.slice(ATTRS_LEN_SIZE..end), field.slice(end..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_and_bad_lengths_are_malformed() {
        let attrs = Bytes::from_static(b"\x03\x00\x04text");
        let mut field = BytesMut::new();
        put(&attrs, &mut field);
        field.put_slice(b"payload");
        assert_eq!(field.len(), encoded_len(&attrs) + 7);
        let byte = qos_byte(Qos::ExactlyOnce, &attrs);
        assert_eq!(byte, 2 | QOS_HAS_ATTRS);
        let (qos, a, p) = split(byte, field.freeze(), "PUSH").unwrap();
        assert_eq!(
            (qos, &a[..], &p[..]),
            (Qos::ExactlyOnce, &attrs[..], &b"payload"[..])
        );
        // Without the bit the field is the payload, whatever it holds.
        let plain = Bytes::from_static(b"\x00\x00\x00\x09x");
        let (_, a, p) = split(1, plain.clone(), "PUSH").unwrap();
        assert!(a.is_empty());
        assert_eq!(p, plain);
        assert_eq!(qos_byte(Qos::AtLeastOnce, &Bytes::new()), 1);
        for bad in [
            &b""[..],
            b"\x01\x00",
            b"\x05\x00\x00\x00abcd",
            b"\x00\x00\x00\x00x",
        ] {
            let got = split(1 | QOS_HAS_ATTRS, Bytes::copy_from_slice(bad), "PUSH");
            assert!(matches!(got, Err(ProtoError::Malformed { .. })), "{bad:?}");
        }
        assert_eq!(
            split(3 | QOS_HAS_ATTRS, Bytes::new(), "PUSH"),
            Err(ProtoError::InvalidQos(3 | QOS_HAS_ATTRS))
        );
    }
}
