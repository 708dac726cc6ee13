//! MQTT 5 properties (MQTT 5.0 section 2.2.2).
//!
//! One [`Properties`] struct holds every property; [`PROPERTY_TABLE`] says,
//! as data, in which packets each identifier may appear. The decoder
//! rejects unknown identifiers and misplaced ones (Malformed Packet), a
//! second copy of a property that may appear once and out-of-range values
//! (Protocol Error). Values whose legal range excludes 0 use `NonZero*`
//! types so the zero cannot be built. The encoder applies the same table.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;

use super::error::{EncodeError, MqttError};
use super::packet::{MqttString, QoS};
use super::wire::{measure, Reader, Sink, VARINT_MAX};

/// Payload Format Indicator values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PayloadFormat {
    /// 0: unspecified bytes.
    Unspecified = 0,
    /// 1: UTF-8 text.
    Utf8 = 1,
}

/// The properties of one packet (or of a will). `Default` is "none".
///
/// Only the properties the packet type allows may be set; the doc of each
/// field lists where it may appear.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01, PUBLISH and will: is the payload UTF-8 text.
    pub payload_format: Option<PayloadFormat>,
    /// 0x02, PUBLISH and will: lifetime of the message in seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03, PUBLISH and will: MIME-like content type.
    pub content_type: Option<MqttString>,
    /// 0x08, PUBLISH and will: topic name for a response.
    pub response_topic: Option<MqttString>,
    /// 0x09, PUBLISH and will: request/response correlation bytes.
    pub correlation_data: Option<Bytes>,
    /// 0x0B, PUBLISH (any number) and SUBSCRIBE (at most one).
    pub subscription_identifiers: Vec<NonZeroU32>,
    /// 0x11, CONNECT, CONNACK, DISCONNECT: session lifetime in seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12, CONNACK: client identifier chosen by the server.
    pub assigned_client_identifier: Option<MqttString>,
    /// 0x13, CONNACK: keep alive imposed by the server.
    pub server_keep_alive: Option<u16>,
    /// 0x15, CONNECT, CONNACK, AUTH: enhanced authentication method.
    pub authentication_method: Option<MqttString>,
    /// 0x16, CONNECT, CONNACK, AUTH: enhanced authentication data (only
    /// together with a method).
    pub authentication_data: Option<Bytes>,
    /// 0x17, CONNECT: may the server send reason strings and user properties.
    pub request_problem_information: Option<bool>,
    /// 0x18, will: delay before publishing the will, in seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19, CONNECT: ask for response information in CONNACK.
    pub request_response_information: Option<bool>,
    /// 0x1A, CONNACK: basis for response topics.
    pub response_information: Option<MqttString>,
    /// 0x1C, CONNACK, DISCONNECT: another server to use.
    pub server_reference: Option<MqttString>,
    /// 0x1F, every acknowledgement, DISCONNECT, AUTH: human-readable reason.
    pub reason_string: Option<MqttString>,
    /// 0x21, CONNECT, CONNACK: inflight QoS 1/2 limit.
    pub receive_maximum: Option<NonZeroU16>,
    /// 0x22, CONNECT, CONNACK: highest topic alias accepted.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, PUBLISH: topic alias.
    pub topic_alias: Option<NonZeroU16>,
    /// 0x24, CONNACK: highest QoS the server supports (0 or 1 only; absent
    /// means 2).
    pub maximum_qos: Option<QoS>,
    /// 0x25, CONNACK: retained messages supported.
    pub retain_available: Option<bool>,
    /// 0x26, every packet with properties: name/value pairs, any number,
    /// order preserved.
    pub user_properties: Vec<(MqttString, MqttString)>,
    /// 0x27, CONNECT, CONNACK: largest packet the sender accepts.
    pub maximum_packet_size: Option<NonZeroU32>,
    /// 0x28, CONNACK: wildcard subscriptions supported.
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29, CONNACK: subscription identifiers supported.
    pub subscription_identifier_available: Option<bool>,
    /// 0x2A, CONNACK: shared subscriptions supported.
    pub shared_subscription_available: Option<bool>,
}

/// Where a property list sits; decides which identifiers are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PropertyScope {
    /// CONNECT properties.
    Connect,
    /// Will properties inside CONNECT.
    Will,
    /// CONNACK.
    ConnAck,
    /// PUBLISH.
    Publish,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    PubReply,
    /// SUBSCRIBE.
    Subscribe,
    /// SUBACK.
    SubAck,
    /// UNSUBSCRIBE.
    Unsubscribe,
    /// UNSUBACK.
    UnsubAck,
    /// DISCONNECT.
    Disconnect,
    /// AUTH.
    Auth,
}

impl PropertyScope {
    /// This scope's bit in a [`PropertyInfo::scopes`] mask.
    pub const fn bit(self) -> u16 {
        1 << self as u16
    }

    /// Name used in errors.
    pub fn name(self) -> &'static str {
        match self {
            PropertyScope::Connect => "CONNECT",
            PropertyScope::Will => "will properties",
            PropertyScope::ConnAck => "CONNACK",
            PropertyScope::Publish => "PUBLISH",
            PropertyScope::PubReply => "PUBACK/PUBREC/PUBREL/PUBCOMP",
            PropertyScope::Subscribe => "SUBSCRIBE",
            PropertyScope::SubAck => "SUBACK",
            PropertyScope::Unsubscribe => "UNSUBSCRIBE",
            PropertyScope::UnsubAck => "UNSUBACK",
            PropertyScope::Disconnect => "DISCONNECT",
            PropertyScope::Auth => "AUTH",
        }
    }
}

/// One row of the property table.
#[derive(Clone, Copy, Debug)]
pub struct PropertyInfo {
    /// Identifier byte.
    pub id: u8,
    /// Name in the specification.
    pub name: &'static str,
    /// [`PropertyScope::bit`]s of the places it may appear.
    pub scopes: u16,
}

use PropertyScope as S;

const MESSAGE: u16 = S::Publish.bit() | S::Will.bit();
const EVERYWHERE: u16 = (1 << (S::Auth as u16 + 1)) - 1;

/// Every MQTT 5 property and where it may appear (MQTT 5.0 table 2-4).
pub const PROPERTY_TABLE: [PropertyInfo; 27] = [
    row(0x01, "Payload Format Indicator", MESSAGE),
    row(0x02, "Message Expiry Interval", MESSAGE),
    row(0x03, "Content Type", MESSAGE),
    row(0x08, "Response Topic", MESSAGE),
    row(0x09, "Correlation Data", MESSAGE),
    row(
        0x0B,
        "Subscription Identifier",
        S::Publish.bit() | S::Subscribe.bit(),
    ),
    row(
        0x11,
        "Session Expiry Interval",
        S::Connect.bit() | S::ConnAck.bit() | S::Disconnect.bit(),
    ),
    row(0x12, "Assigned Client Identifier", S::ConnAck.bit()),
    row(0x13, "Server Keep Alive", S::ConnAck.bit()),
    row(
        0x15,
        "Authentication Method",
        S::Connect.bit() | S::ConnAck.bit() | S::Auth.bit(),
    ),
    row(
        0x16,
        "Authentication Data",
        S::Connect.bit() | S::ConnAck.bit() | S::Auth.bit(),
    ),
    row(0x17, "Request Problem Information", S::Connect.bit()),
    row(0x18, "Will Delay Interval", S::Will.bit()),
    row(0x19, "Request Response Information", S::Connect.bit()),
    row(0x1A, "Response Information", S::ConnAck.bit()),
    row(
        0x1C,
        "Server Reference",
        S::ConnAck.bit() | S::Disconnect.bit(),
    ),
    row(
        0x1F,
        "Reason String",
        S::ConnAck.bit()
            | S::PubReply.bit()
            | S::SubAck.bit()
            | S::UnsubAck.bit()
            | S::Disconnect.bit()
            | S::Auth.bit(),
    ),
    row(0x21, "Receive Maximum", S::Connect.bit() | S::ConnAck.bit()),
    row(
        0x22,
        "Topic Alias Maximum",
        S::Connect.bit() | S::ConnAck.bit(),
    ),
    row(0x23, "Topic Alias", S::Publish.bit()),
    row(0x24, "Maximum QoS", S::ConnAck.bit()),
    row(0x25, "Retain Available", S::ConnAck.bit()),
    row(0x26, "User Property", EVERYWHERE),
    row(
        0x27,
        "Maximum Packet Size",
        S::Connect.bit() | S::ConnAck.bit(),
    ),
    row(0x28, "Wildcard Subscription Available", S::ConnAck.bit()),
    row(0x29, "Subscription Identifier Available", S::ConnAck.bit()),
    row(0x2A, "Shared Subscription Available", S::ConnAck.bit()),
];

const fn row(id: u8, name: &'static str, scopes: u16) -> PropertyInfo {
    PropertyInfo { id, name, scopes }
}

/// The table row of an identifier, `None` if MQTT 5 defines no such property.
pub fn property_info(id: u32) -> Option<&'static PropertyInfo> {
    PROPERTY_TABLE.iter().find(|p| u32::from(p.id) == id)
}

fn allowed(info: &PropertyInfo, scope: PropertyScope) -> Result<(), MqttError> {
    if info.scopes & scope.bit() == 0 {
        return Err(MqttError::PropertyNotAllowed {
            property: info.id,
            scope: scope.name(),
        });
    }
    Ok(())
}

fn set_once<T>(slot: &mut Option<T>, value: T, id: u8) -> Result<(), MqttError> {
    if slot.is_some() {
        return Err(MqttError::DuplicateProperty(id));
    }
    *slot = Some(value);
    Ok(())
}

/// A byte property that must be 0 or 1.
fn flag(byte: u8, id: u8) -> Result<bool, MqttError> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(MqttError::InvalidPropertyValue(id)),
    }
}

/// A property value borrowed for encoding.
enum Value<'a> {
    Byte(u8),
    U16(u16),
    U32(u32),
    Varint(u32),
    Str(&'a MqttString),
    Bin(&'a Bytes),
    Pair(&'a MqttString, &'a MqttString),
}

impl Properties {
    /// Whether no property is set (what every 3.1.1 packet has).
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }

    /// Reads a property length and that many bytes of properties.
    pub(crate) fn decode(r: &mut Reader, scope: PropertyScope) -> Result<Properties, MqttError> {
        let len = r.varint("property length")?;
        let block = r.take(len as usize, "properties")?;
        Properties::decode_entries(Reader::new(block, r.packet()), scope)
    }

    /// Reads properties up to the end of `r`.
    fn decode_entries(mut r: Reader, scope: PropertyScope) -> Result<Properties, MqttError> {
        let mut p = Properties::default();
        while r.remaining() > 0 {
            let id = r.varint("property identifier")?;
            let info = property_info(id).ok_or(MqttError::UnknownProperty(id))?;
            allowed(info, scope)?;
            p.read_value(&mut r, info, scope)?;
        }
        Ok(p)
    }

    /// The message properties only: those a server forwards with an
    /// application message unchanged (MQTT 5.0 section 3.3.2.3: Payload
    /// Format Indicator, Message Expiry Interval, Content Type, Response
    /// Topic, Correlation Data, User Properties in their order). Topic
    /// aliases and subscription identifiers belong to one connection.
    pub fn message_properties(&self) -> Properties {
        Properties {
            payload_format: self.payload_format,
            message_expiry_interval: self.message_expiry_interval,
            content_type: self.content_type.clone(),
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.clone(),
            user_properties: self.user_properties.clone(),
            ..Properties::default()
        }
    }

    /// The message properties ([`Properties::message_properties`]) as a
    /// block of MQTT 5 property entries without the length in front (the
    /// message attributes the bridge stores, docs/MQTT.md 2.4); empty when
    /// there are none.
    pub fn encode_message_block(&self) -> Result<Bytes, EncodeError> {
        let m = self.message_properties();
        if m.is_empty() {
            return Ok(Bytes::new());
        }
        let mut out = bytes::BytesMut::new();
        m.encode_entries(PropertyScope::Publish, &mut out)?;
        Ok(out.freeze())
    }

    /// Reads a block [`Properties::encode_message_block`] wrote. Anything
    /// else (another sender's attributes) is checked as a PUBLISH's
    /// properties would be, and only the message properties are kept.
    pub fn decode_message_block(block: Bytes) -> Result<Properties, MqttError> {
        let p = Properties::decode_entries(
            Reader::new(block, super::packet::PacketType::Publish),
            PropertyScope::Publish,
        )?;
        if let Some(t) = &p.response_topic {
            super::topic::validate_topic_name(t.as_str())?;
        }
        Ok(p.message_properties())
    }

    fn read_value(
        &mut self,
        r: &mut Reader,
        info: &PropertyInfo,
        scope: PropertyScope,
    ) -> Result<(), MqttError> {
        let (id, f) = (info.id, info.name);
        let bad = MqttError::InvalidPropertyValue(id);
        match id {
            0x01 => {
                let v = match r.u8(f)? {
                    0 => PayloadFormat::Unspecified,
                    1 => PayloadFormat::Utf8,
                    _ => return Err(bad),
                };
                set_once(&mut self.payload_format, v, id)
            }
            0x02 => set_once(&mut self.message_expiry_interval, r.u32(f)?, id),
            0x03 => set_once(&mut self.content_type, r.string(f)?, id),
            0x08 => set_once(&mut self.response_topic, r.string(f)?, id),
            0x09 => set_once(&mut self.correlation_data, r.binary(f)?, id),
            0x0B => {
                let v = NonZeroU32::new(r.varint(f)?).ok_or(bad)?;
                // Several identifiers only in PUBLISH, where a server lists
                // every matching subscription (MQTT 5.0 section 3.3.4).
                if scope != PropertyScope::Publish && !self.subscription_identifiers.is_empty() {
                    return Err(MqttError::DuplicateProperty(id));
                }
                self.subscription_identifiers.push(v);
                Ok(())
            }
            0x11 => set_once(&mut self.session_expiry_interval, r.u32(f)?, id),
            0x12 => set_once(&mut self.assigned_client_identifier, r.string(f)?, id),
            0x13 => set_once(&mut self.server_keep_alive, r.u16(f)?, id),
            0x15 => set_once(&mut self.authentication_method, r.string(f)?, id),
            0x16 => set_once(&mut self.authentication_data, r.binary(f)?, id),
            0x17 => set_once(
                &mut self.request_problem_information,
                flag(r.u8(f)?, id)?,
                id,
            ),
            0x18 => set_once(&mut self.will_delay_interval, r.u32(f)?, id),
            0x19 => set_once(
                &mut self.request_response_information,
                flag(r.u8(f)?, id)?,
                id,
            ),
            0x1A => set_once(&mut self.response_information, r.string(f)?, id),
            0x1C => set_once(&mut self.server_reference, r.string(f)?, id),
            0x1F => set_once(&mut self.reason_string, r.string(f)?, id),
            0x21 => set_once(
                &mut self.receive_maximum,
                NonZeroU16::new(r.u16(f)?).ok_or(bad)?,
                id,
            ),
            0x22 => set_once(&mut self.topic_alias_maximum, r.u16(f)?, id),
            0x23 => set_once(
                &mut self.topic_alias,
                NonZeroU16::new(r.u16(f)?).ok_or(bad)?,
                id,
            ),
            0x24 => {
                let qos = match r.u8(f)? {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => return Err(bad),
                };
                set_once(&mut self.maximum_qos, qos, id)
            }
            0x25 => set_once(&mut self.retain_available, flag(r.u8(f)?, id)?, id),
            0x26 => {
                let pair = (r.string(f)?, r.string(f)?);
                self.user_properties.push(pair);
                Ok(())
            }
            0x27 => {
                let v = NonZeroU32::new(r.u32(f)?).ok_or(bad)?;
                set_once(&mut self.maximum_packet_size, v, id)
            }
            0x28 => set_once(
                &mut self.wildcard_subscription_available,
                flag(r.u8(f)?, id)?,
                id,
            ),
            0x29 => set_once(
                &mut self.subscription_identifier_available,
                flag(r.u8(f)?, id)?,
                id,
            ),
            0x2A => set_once(
                &mut self.shared_subscription_available,
                flag(r.u8(f)?, id)?,
                id,
            ),
            // Only reachable if PROPERTY_TABLE gains a row this match lacks;
            // the round-trip tests cover every row.
            _ => Err(MqttError::UnknownProperty(u32::from(id))),
        }
    }

    /// Calls `f` with every property set, in identifier order.
    fn for_each<'a>(
        &'a self,
        f: &mut dyn FnMut(u8, Value<'a>) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        let byte = |b: Option<bool>| b.map(|b| Value::Byte(u8::from(b)));
        let singles = [
            (0x01, self.payload_format.map(|v| Value::Byte(v as u8))),
            (0x02, self.message_expiry_interval.map(Value::U32)),
            (0x03, self.content_type.as_ref().map(Value::Str)),
            (0x08, self.response_topic.as_ref().map(Value::Str)),
            (0x09, self.correlation_data.as_ref().map(Value::Bin)),
        ];
        for (id, v) in singles.into_iter() {
            if let Some(v) = v {
                f(id, v)?;
            }
        }
        for v in &self.subscription_identifiers {
            f(0x0B, Value::Varint(v.get()))?;
        }
        let singles = [
            (0x11, self.session_expiry_interval.map(Value::U32)),
            (
                0x12,
                self.assigned_client_identifier.as_ref().map(Value::Str),
            ),
            (0x13, self.server_keep_alive.map(Value::U16)),
            (0x15, self.authentication_method.as_ref().map(Value::Str)),
            (0x16, self.authentication_data.as_ref().map(Value::Bin)),
            (0x17, byte(self.request_problem_information)),
            (0x18, self.will_delay_interval.map(Value::U32)),
            (0x19, byte(self.request_response_information)),
            (0x1A, self.response_information.as_ref().map(Value::Str)),
            (0x1C, self.server_reference.as_ref().map(Value::Str)),
            (0x1F, self.reason_string.as_ref().map(Value::Str)),
            (0x21, self.receive_maximum.map(|v| Value::U16(v.get()))),
            (0x22, self.topic_alias_maximum.map(Value::U16)),
            (0x23, self.topic_alias.map(|v| Value::U16(v.get()))),
            (0x24, self.maximum_qos.map(|q| Value::Byte(q as u8))),
            (0x25, byte(self.retain_available)),
        ];
        for (id, v) in singles.into_iter() {
            if let Some(v) = v {
                f(id, v)?;
            }
        }
        for (k, v) in &self.user_properties {
            f(0x26, Value::Pair(k, v))?;
        }
        let singles = [
            (0x27, self.maximum_packet_size.map(|v| Value::U32(v.get()))),
            (0x28, byte(self.wildcard_subscription_available)),
            (0x29, byte(self.subscription_identifier_available)),
            (0x2A, byte(self.shared_subscription_available)),
        ];
        for (id, v) in singles.into_iter() {
            if let Some(v) = v {
                f(id, v)?;
            }
        }
        Ok(())
    }

    /// Writes the property length and the properties.
    pub(crate) fn encode<S: Sink>(
        &self,
        scope: PropertyScope,
        s: &mut S,
    ) -> Result<(), EncodeError> {
        if self.maximum_qos == Some(QoS::ExactlyOnce) {
            return Err(MqttError::InvalidPropertyValue(0x24).into());
        }
        if scope != PropertyScope::Publish && self.subscription_identifiers.len() > 1 {
            return Err(MqttError::DuplicateProperty(0x0B).into());
        }
        let len = measure(|c| self.encode_entries(scope, c))?;
        let len = u32::try_from(len)
            .ok()
            .filter(|len| *len <= VARINT_MAX)
            .ok_or(EncodeError::TooLong {
                field: "property length",
                len,
                max: VARINT_MAX as usize,
            })?;
        s.write_varint(len, "property length")?;
        self.encode_entries(scope, s)
    }

    fn encode_entries<S: Sink>(&self, scope: PropertyScope, s: &mut S) -> Result<(), EncodeError> {
        self.for_each(&mut |id, value| {
            let info = property_info(u32::from(id))
                .expect("for_each only yields identifiers from PROPERTY_TABLE");
            allowed(info, scope)?;
            // Every identifier is below 0x80: a one-byte Variable Byte Integer.
            s.write_u8(id);
            match value {
                Value::Byte(b) => s.write_u8(b),
                Value::U16(v) => s.write_u16(v),
                Value::U32(v) => s.write_u32(v),
                Value::Varint(v) => {
                    if v > VARINT_MAX {
                        return Err(MqttError::InvalidPropertyValue(id).into());
                    }
                    s.write_varint(v, info.name)?;
                }
                Value::Str(v) => s.write_string(v, info.name)?,
                Value::Bin(v) => s.write_binary(v, info.name)?,
                Value::Pair(k, v) => {
                    s.write_string(k, info.name)?;
                    s.write_string(v, info.name)?;
                }
            }
            Ok(())
        })
    }
}
