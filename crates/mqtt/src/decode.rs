//! Streaming packet decoder.
//!
//! Bytes arrive in arbitrary pieces (a packet split across reads, several
//! packets in one read). The caller appends them to its own `BytesMut` and
//! calls [`Decoder::decode`] until it returns `Ok(None)`. The fixed header is
//! checked as soon as it is complete — type, flags, and the packet size
//! against the limit — so an oversized or foreign packet is refused before
//! its body is buffered. A complete packet is split off the buffer and
//! frozen; every payload, string and binary field of the result is a slice
//! of it (no copy).
//!
//! A server does not know the protocol level until CONNECT arrives: create
//! the decoder with `None`; each CONNECT carries its own level and sets the
//! one used for the packets after it ([`Decoder::protocol_level`]). Whether
//! a second CONNECT is allowed is the session's business, not the codec's.

use bytes::{Buf, BytesMut};

use super::error::MqttError;
use super::packet::{
    Auth, ConnAck, Connect, Disconnect, MqttString, Packet, PacketType, ProtocolLevel, PubReply,
    Publish, QoS, RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck,
    Unsubscribe, Will,
};
use super::props::{Properties, PropertyScope};
use super::reason::ReasonCode;
use super::rules;
use super::wire::{parse_varint, Reader, VARINT_MAX, VARINT_MAX_LEN};

/// Largest packet the protocol can express: one type byte, a 4-byte
/// remaining length, and the largest remaining length.
pub const MAX_PACKET_SIZE: u64 = 1 + VARINT_MAX_LEN as u64 + VARINT_MAX as u64;

/// Protocol name in CONNECT since MQTT 3.1.1.
pub const PROTOCOL_NAME: &[u8] = b"MQTT";
/// Protocol name of MQTT 3.1 (level 3), which this codec does not speak.
const PROTOCOL_NAME_V31: &[u8] = b"MQIsdp";

/// Incremental decoder for one byte stream.
#[derive(Debug)]
pub struct Decoder {
    level: Option<ProtocolLevel>,
    max_packet_size: u32,
    failed: Option<MqttError>,
}

impl Decoder {
    /// A decoder for a stream of `level` (`None`: learn it from CONNECT)
    /// refusing packets larger than `max_packet_size` bytes, fixed header
    /// included (MQTT 5's Maximum Packet Size counts the same way).
    pub fn new(level: Option<ProtocolLevel>, max_packet_size: u32) -> Decoder {
        Decoder {
            level,
            max_packet_size,
            failed: None,
        }
    }

    /// The protocol level in force: given at construction or taken from the
    /// last CONNECT decoded.
    pub fn protocol_level(&self) -> Option<ProtocolLevel> {
        self.level
    }

    /// Decodes the next complete packet at the front of `buf`, removing its
    /// bytes; `Ok(None)` if more bytes are needed (the buffer is then left
    /// as it was, with capacity reserved for the announced packet).
    ///
    /// After an error the stream is unusable: every later call returns the
    /// same error without looking at `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, MqttError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.decode_inner(buf);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, MqttError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let (nibble, flags) = (first >> 4, first & 0x0F);
        let kind = PacketType::from_u8(nibble).ok_or(MqttError::ReservedPacketType(nibble))?;
        // CONNECT carries its own level; everything else needs a known one.
        let level = match (kind, self.level) {
            (PacketType::Connect, _) => None,
            (_, Some(level)) => Some(level),
            (_, None) => return Err(MqttError::ProtocolLevelUnknown { packet: kind }),
        };
        if kind == PacketType::Auth && level == Some(ProtocolLevel::V311) {
            return Err(MqttError::ReservedPacketType(nibble));
        }
        check_flags(kind, flags)?;
        let Some((remaining, len_len)) = parse_varint(&buf[1..], "remaining length")? else {
            return Ok(None);
        };
        let size = 1 + len_len as u64 + u64::from(remaining);
        if size > u64::from(self.max_packet_size) {
            return Err(MqttError::PacketTooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        // Fits in usize: bounded by max_packet_size, a u32.
        let size = size as usize;
        if buf.len() < size {
            buf.reserve(size - buf.len());
            return Ok(None);
        }
        let mut body = buf.split_to(size).freeze();
        body.advance(1 + len_len);
        let r = Reader::new(body, kind);
        let (packet, level) = match level {
            None => {
                let connect = decode_connect(r)?;
                let level = connect.protocol_level;
                (Packet::Connect(Box::new(connect)), level)
            }
            Some(level) => (decode_body(kind, flags, level, r)?, level),
        };
        rules::check(&packet, level)?;
        if kind == PacketType::Connect {
            self.level = Some(level);
        }
        Ok(Some(packet))
    }
}

/// Fixed-header flags: PUBLISH's QoS must not be 3, every other type has
/// one required value.
fn check_flags(kind: PacketType, flags: u8) -> Result<(), MqttError> {
    match kind.required_flags() {
        None if (flags >> 1) & 0b11 == 0b11 => Err(MqttError::InvalidQos {
            field: "PUBLISH fixed header",
        }),
        Some(required) if flags != required => Err(MqttError::InvalidFlags {
            packet: kind,
            flags,
        }),
        _ => Ok(()),
    }
}

/// MQTT 5 properties, or none in 3.1.1.
fn read_properties(
    r: &mut Reader,
    level: ProtocolLevel,
    scope: PropertyScope,
) -> Result<Properties, MqttError> {
    if level.is_v5() {
        Properties::decode(r, scope)
    } else {
        Ok(Properties::default())
    }
}

fn decode_body(
    kind: PacketType,
    flags: u8,
    level: ProtocolLevel,
    mut r: Reader,
) -> Result<Packet, MqttError> {
    let packet = match kind {
        PacketType::Connect => Packet::Connect(Box::new(decode_connect(r)?)),
        PacketType::ConnAck => {
            let ack_flags = r.u8("connect acknowledge flags")?;
            if ack_flags & !1 != 0 {
                return Err(MqttError::ReservedBits {
                    field: "connect acknowledge flags",
                });
            }
            let code = ReasonCode(r.u8("reason code")?);
            let properties = read_properties(&mut r, level, PropertyScope::ConnAck)?;
            r.finish()?;
            Packet::ConnAck(ConnAck {
                session_present: ack_flags & 1 == 1,
                code,
                properties,
            })
        }
        PacketType::Publish => Packet::Publish(decode_publish(flags, level, r)?),
        PacketType::PubAck => Packet::PubAck(decode_pub_reply(level, r)?),
        PacketType::PubRec => Packet::PubRec(decode_pub_reply(level, r)?),
        PacketType::PubRel => Packet::PubRel(decode_pub_reply(level, r)?),
        PacketType::PubComp => Packet::PubComp(decode_pub_reply(level, r)?),
        PacketType::Subscribe => {
            let packet_id = r.packet_id()?;
            let properties = read_properties(&mut r, level, PropertyScope::Subscribe)?;
            let mut filters = Vec::new();
            while r.remaining() > 0 {
                let filter = r.string("topic filter")?;
                let options = subscription_options(r.u8("subscription options")?, level)?;
                filters.push(Subscription { filter, options });
            }
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        }
        PacketType::SubAck => {
            let packet_id = r.packet_id()?;
            let properties = read_properties(&mut r, level, PropertyScope::SubAck)?;
            let reasons = r.rest().iter().map(|c| ReasonCode(*c)).collect();
            Packet::SubAck(SubAck {
                packet_id,
                reasons,
                properties,
            })
        }
        PacketType::Unsubscribe => {
            let packet_id = r.packet_id()?;
            let properties = read_properties(&mut r, level, PropertyScope::Unsubscribe)?;
            let mut filters = Vec::new();
            while r.remaining() > 0 {
                filters.push(r.string("topic filter")?);
            }
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties,
            })
        }
        PacketType::UnsubAck => {
            let packet_id = r.packet_id()?;
            let properties = read_properties(&mut r, level, PropertyScope::UnsubAck)?;
            // 3.1.1 UNSUBACK has no payload; finish() rejects one.
            let reasons = if level.is_v5() {
                r.rest().iter().map(|c| ReasonCode(*c)).collect()
            } else {
                Vec::new()
            };
            r.finish()?;
            Packet::UnsubAck(UnsubAck {
                packet_id,
                reasons,
                properties,
            })
        }
        PacketType::PingReq | PacketType::PingResp => {
            r.finish()?;
            if kind == PacketType::PingReq {
                Packet::PingReq
            } else {
                Packet::PingResp
            }
        }
        PacketType::Disconnect => {
            let (reason, properties) = short_reason(&mut r, level, PropertyScope::Disconnect)?;
            r.finish()?;
            Packet::Disconnect(Disconnect { reason, properties })
        }
        PacketType::Auth => {
            let (reason, properties) = short_reason(&mut r, level, PropertyScope::Auth)?;
            r.finish()?;
            Packet::Auth(Auth { reason, properties })
        }
    };
    Ok(packet)
}

fn decode_connect(mut r: Reader) -> Result<Connect, MqttError> {
    let name = r.binary("protocol name")?;
    let level_byte = r.u8("protocol level")?;
    match &name[..] {
        PROTOCOL_NAME => {}
        PROTOCOL_NAME_V31 => return Err(MqttError::UnsupportedProtocolVersion(level_byte)),
        _ => return Err(MqttError::InvalidProtocolName),
    }
    let level = ProtocolLevel::from_u8(level_byte)
        .ok_or(MqttError::UnsupportedProtocolVersion(level_byte))?;
    let flags = r.u8("connect flags")?;
    if flags & 0x01 != 0 {
        return Err(MqttError::ReservedConnectFlag);
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos =
        QoS::from_u8((flags >> 3) & 0b11).ok_or(MqttError::InvalidQos { field: "will QoS" })?;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    // MQTT 5.0 [MQTT-3.1.2-11], [MQTT-3.1.2-13]; the same rules in 3.1.1.
    if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(MqttError::InconsistentWillFlags);
    }
    let keep_alive = r.u16("keep alive")?;
    let properties = read_properties(&mut r, level, PropertyScope::Connect)?;
    let client_id = r.string("client identifier")?;
    let will = if will_flag {
        let properties = read_properties(&mut r, level, PropertyScope::Will)?;
        let topic = r.string("will topic")?;
        let payload = r.binary("will payload")?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = optional(has_username, || r.string("user name"))?;
    let password = optional(has_password, || r.binary("password"))?;
    r.finish()?;
    Ok(Connect {
        protocol_level: level,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn optional<T>(
    present: bool,
    read: impl FnOnce() -> Result<T, MqttError>,
) -> Result<Option<T>, MqttError> {
    if present {
        read().map(Some)
    } else {
        Ok(None)
    }
}

fn decode_publish(flags: u8, level: ProtocolLevel, mut r: Reader) -> Result<Publish, MqttError> {
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(MqttError::InvalidQos {
        field: "PUBLISH fixed header",
    })?;
    let topic: MqttString = r.string("topic name")?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(r.packet_id()?)
    };
    let properties = read_properties(&mut r, level, PropertyScope::Publish)?;
    Ok(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 0b0001 != 0,
        topic,
        packet_id,
        payload: r.rest(),
        properties,
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP. In MQTT 5 the reason code may be left
/// out when it is success and there are no properties, and the properties
/// when there are none (MQTT 5.0 3.4.2.1).
fn decode_pub_reply(level: ProtocolLevel, mut r: Reader) -> Result<PubReply, MqttError> {
    let packet_id = r.packet_id()?;
    let (reason, properties) = short_reason(&mut r, level, PropertyScope::PubReply)?;
    r.finish()?;
    Ok(PubReply {
        packet_id,
        reason,
        properties,
    })
}

/// An optional MQTT 5 reason code followed by optional properties; both
/// absent in 3.1.1.
fn short_reason(
    r: &mut Reader,
    level: ProtocolLevel,
    scope: PropertyScope,
) -> Result<(ReasonCode, Properties), MqttError> {
    if !level.is_v5() || r.remaining() == 0 {
        return Ok((ReasonCode::SUCCESS, Properties::default()));
    }
    let reason = ReasonCode(r.u8("reason code")?);
    if r.remaining() == 0 {
        return Ok((reason, Properties::default()));
    }
    Ok((reason, Properties::decode(r, scope)?))
}

/// The options byte after each SUBSCRIBE filter. 3.1.1 defines only the QoS
/// bits ([MQTT-3.8.3-4] of 3.1.1); MQTT 5 adds bits 2..=5 and reserves 6, 7.
fn subscription_options(byte: u8, level: ProtocolLevel) -> Result<SubscriptionOptions, MqttError> {
    let reserved = if level.is_v5() {
        0b1100_0000
    } else {
        0b1111_1100
    };
    if byte & reserved != 0 {
        return Err(MqttError::ReservedBits {
            field: "subscription options",
        });
    }
    let qos = QoS::from_u8(byte & 0b11).ok_or(MqttError::InvalidQos {
        field: "subscription options",
    })?;
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNewSubscription,
        2 => RetainHandling::DoNotSend,
        _ => return Err(MqttError::InvalidRetainHandling),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0b0100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling,
    })
}
