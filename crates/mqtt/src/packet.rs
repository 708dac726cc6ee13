//! The packet model: one struct per MQTT control packet, shared by both
//! protocol versions.
//!
//! Fields that exist only in MQTT 5 (reason codes on acknowledgements,
//! properties, subscription options beyond QoS) have a neutral default —
//! [`ReasonCode::SUCCESS`], empty [`Properties`], `false` — which is also
//! what a 3.1.1 packet decodes to, so one type serves both versions.
//! Text and binary fields are `Bytes` slices of the receive buffer.

use std::fmt;
use std::num::NonZeroU16;

use bytes::Bytes;

use super::props::Properties;
use super::reason::ReasonCode;

/// The protocol level byte of CONNECT: which MQTT version a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ProtocolLevel {
    /// MQTT 3.1.1 (level 4).
    V311 = 4,
    /// MQTT 5.0 (level 5).
    V5 = 5,
}

impl ProtocolLevel {
    /// Parses a protocol level byte; levels this codec does not speak
    /// (3 = MQTT 3.1, anything else) are `None`.
    pub fn from_u8(level: u8) -> Option<ProtocolLevel> {
        match level {
            4 => Some(ProtocolLevel::V311),
            5 => Some(ProtocolLevel::V5),
            _ => None,
        }
    }

    /// Whether this is MQTT 5 (properties, reason codes, AUTH).
    pub fn is_v5(self) -> bool {
        self == ProtocolLevel::V5
    }
}

/// Quality of service of a message or subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum QoS {
    /// QoS 0: fire and forget.
    AtMostOnce = 0,
    /// QoS 1: acknowledged by PUBACK, may be duplicated.
    AtLeastOnce = 1,
    /// QoS 2: four-way PUBREC/PUBREL/PUBCOMP handshake.
    ExactlyOnce = 2,
}

impl QoS {
    /// Parses a 2-bit QoS value; 3 is not a QoS (`None`).
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A packet identifier. Zero is not a valid identifier, so it cannot be
/// represented: the decoder rejects it and the encoder never writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// `None` for 0.
    pub const fn new(id: u16) -> Option<PacketId> {
        match NonZeroU16::new(id) {
            Some(id) => Some(PacketId(id)),
            None => None,
        }
    }

    /// The identifier as it travels on the wire.
    pub const fn get(self) -> u16 {
        self.0.get()
    }
}

/// An MQTT "UTF-8 Encoded String": valid UTF-8 held as a `Bytes` slice, so
/// decoded topics and identifiers are not copied out of the receive buffer.
///
/// Construction guarantees valid UTF-8. Strings decoded from the wire are
/// also free of U+0000 and at most 65,535 bytes; the encoder checks both for
/// strings built by the application.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MqttString(Bytes);

impl MqttString {
    /// A string from a literal, without copying.
    pub const fn from_static(s: &'static str) -> MqttString {
        MqttString(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps bytes already checked to be UTF-8; `Err` otherwise.
    pub fn from_utf8(bytes: Bytes) -> Result<MqttString, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(MqttString(bytes))
    }

    /// The text. This re-checks UTF-8 (O(len)) because the module uses no
    /// `unsafe`; call it once per packet, not per comparison.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("MqttString holds UTF-8 by construction")
    }

    /// The raw bytes (a slice of the receive buffer for decoded strings).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for MqttString {
    /// Copies the text.
    fn from(s: &str) -> MqttString {
        MqttString(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for MqttString {
    /// Takes over the allocation (no copy).
    fn from(s: String) -> MqttString {
        MqttString(Bytes::from(s.into_bytes()))
    }
}

impl PartialEq<str> for MqttString {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for MqttString {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl fmt::Debug for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The 4-bit packet type of the fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Client request to connect.
    Connect = 1,
    /// Connect acknowledgement.
    ConnAck = 2,
    /// Application message.
    Publish = 3,
    /// QoS 1 acknowledgement.
    PubAck = 4,
    /// QoS 2 step 1: publish received.
    PubRec = 5,
    /// QoS 2 step 2: publish release.
    PubRel = 6,
    /// QoS 2 step 3: publish complete.
    PubComp = 7,
    /// Subscribe request.
    Subscribe = 8,
    /// Subscribe acknowledgement.
    SubAck = 9,
    /// Unsubscribe request.
    Unsubscribe = 10,
    /// Unsubscribe acknowledgement.
    UnsubAck = 11,
    /// Keep-alive ping.
    PingReq = 12,
    /// Keep-alive pong.
    PingResp = 13,
    /// Orderly close.
    Disconnect = 14,
    /// MQTT 5 authentication exchange (reserved in 3.1.1).
    Auth = 15,
}

impl PacketType {
    /// Every packet type in wire order.
    pub const ALL: [PacketType; 15] = [
        PacketType::Connect,
        PacketType::ConnAck,
        PacketType::Publish,
        PacketType::PubAck,
        PacketType::PubRec,
        PacketType::PubRel,
        PacketType::PubComp,
        PacketType::Subscribe,
        PacketType::SubAck,
        PacketType::Unsubscribe,
        PacketType::UnsubAck,
        PacketType::PingReq,
        PacketType::PingResp,
        PacketType::Disconnect,
        PacketType::Auth,
    ];

    /// Parses the high nibble of the first byte; 0 is reserved (`None`).
    pub fn from_u8(nibble: u8) -> Option<PacketType> {
        PacketType::ALL.iter().copied().find(|t| *t as u8 == nibble)
    }

    /// The low nibble every packet of this type must carry, or `None` for
    /// PUBLISH, whose flags are DUP, QoS and RETAIN.
    pub fn required_flags(self) -> Option<u8> {
        match self {
            PacketType::Publish => None,
            // [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1]
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }

    /// The name the specifications use ("CONNECT", "PUBACK", ...).
    pub fn name(self) -> &'static str {
        match self {
            PacketType::Connect => "CONNECT",
            PacketType::ConnAck => "CONNACK",
            PacketType::Publish => "PUBLISH",
            PacketType::PubAck => "PUBACK",
            PacketType::PubRec => "PUBREC",
            PacketType::PubRel => "PUBREL",
            PacketType::PubComp => "PUBCOMP",
            PacketType::Subscribe => "SUBSCRIBE",
            PacketType::SubAck => "SUBACK",
            PacketType::Unsubscribe => "UNSUBSCRIBE",
            PacketType::UnsubAck => "UNSUBACK",
            PacketType::PingReq => "PINGREQ",
            PacketType::PingResp => "PINGRESP",
            PacketType::Disconnect => "DISCONNECT",
            PacketType::Auth => "AUTH",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One MQTT control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (boxed: with two property sets it is by far the largest
    /// packet, and it arrives once per connection).
    Connect(Box<Connect>),
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(PubReply),
    /// PUBREC.
    PubRec(PubReply),
    /// PUBREL.
    PubRel(PubReply),
    /// PUBCOMP.
    PubComp(PubReply),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect),
    /// AUTH (MQTT 5 only).
    Auth(Auth),
}

impl Packet {
    /// The fixed-header type of this packet.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}

/// CONNECT: the first packet a client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// Version the client speaks; the rest of the connection uses it.
    pub protocol_level: ProtocolLevel,
    /// 3.1.1 "Clean Session" / 5.0 "Clean Start".
    pub clean_start: bool,
    /// Keep-alive interval in seconds (0 = off).
    pub keep_alive: u16,
    /// Client identifier; may be empty (the server may then assign one).
    pub client_id: MqttString,
    /// Last will, published by the server if the connection drops.
    pub will: Option<Will>,
    /// User name.
    pub username: Option<MqttString>,
    /// Password (binary data); 3.1.1 forbids it without a user name.
    pub password: Option<Bytes>,
    /// MQTT 5 CONNECT properties (empty in 3.1.1).
    pub properties: Properties,
}

/// The will message carried in CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    /// Topic name the will is published to (no wildcards).
    pub topic: MqttString,
    /// Will payload.
    pub payload: Bytes,
    /// QoS of the will publication.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
    /// MQTT 5 will properties (empty in 3.1.1).
    pub properties: Properties,
}

/// CONNACK: the server's answer to CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnAck {
    /// The server holds a session for this client. Must be `false` when
    /// `code` is not success.
    pub session_present: bool,
    /// 5.0 reason code, or the 3.1.1 Connect Return Code (0 accepted,
    /// 1..=5 refused for the reasons the 3.1.1 spec lists).
    pub code: ReasonCode,
    /// MQTT 5 CONNACK properties (empty in 3.1.1).
    pub properties: Properties,
}

/// PUBLISH: an application message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Possible redelivery; never set on QoS 0.
    pub dup: bool,
    /// Delivery guarantee.
    pub qos: QoS,
    /// Retained message.
    pub retain: bool,
    /// Topic name; may be empty in MQTT 5 only when a topic alias is set.
    pub topic: MqttString,
    /// Present exactly when `qos` is not [`QoS::AtMostOnce`].
    pub packet_id: Option<PacketId>,
    /// Application payload: a slice of the receive buffer, not a copy.
    pub payload: Bytes,
    /// MQTT 5 PUBLISH properties (empty in 3.1.1).
    pub properties: Properties,
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP (which one is the [`Packet`] variant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubReply {
    /// Identifier of the PUBLISH this answers.
    pub packet_id: PacketId,
    /// MQTT 5 reason code; always success in 3.1.1.
    pub reason: ReasonCode,
    /// MQTT 5 properties (empty in 3.1.1).
    pub properties: Properties,
}

impl PubReply {
    /// A successful reply without properties (the only kind 3.1.1 has).
    pub fn success(packet_id: PacketId) -> PubReply {
        PubReply {
            packet_id,
            reason: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }
    }
}

/// How retained messages are sent when a subscription is made (MQTT 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum RetainHandling {
    /// 0: send retained messages at subscribe time (the 3.1.1 behaviour).
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not exist yet.
    SendIfNewSubscription = 1,
    /// 2: never send them at subscribe time.
    DoNotSend = 2,
}

/// The options byte of one subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    /// Maximum QoS the subscriber accepts.
    pub qos: QoS,
    /// MQTT 5: do not forward the client's own publications back to it.
    pub no_local: bool,
    /// MQTT 5: keep the RETAIN flag as published when forwarding.
    pub retain_as_published: bool,
    /// MQTT 5: retained-message behaviour at subscribe time.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with the given QoS and every MQTT 5 option at its default
    /// (the only kind 3.1.1 has).
    pub fn qos(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }
}

/// One topic filter of a SUBSCRIBE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// Topic filter (wildcards allowed; `$share/name/filter` in MQTT 5).
    pub filter: MqttString,
    /// Options for this filter.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE: at least one topic filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// Identifier echoed by SUBACK.
    pub packet_id: PacketId,
    /// The filters, in order; never empty.
    pub filters: Vec<Subscription>,
    /// MQTT 5 properties (empty in 3.1.1).
    pub properties: Properties,
}

/// SUBACK: one reason code per filter of the SUBSCRIBE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    /// Identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// Granted QoS (0, 1, 2) or a failure code, per filter; never empty.
    pub reasons: Vec<ReasonCode>,
    /// MQTT 5 properties (empty in 3.1.1).
    pub properties: Properties,
}

/// UNSUBSCRIBE: at least one topic filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Identifier echoed by UNSUBACK.
    pub packet_id: PacketId,
    /// The filters to remove; never empty.
    pub filters: Vec<MqttString>,
    /// MQTT 5 properties (empty in 3.1.1).
    pub properties: Properties,
}

/// UNSUBACK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubAck {
    /// Identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// MQTT 5: one reason code per filter (never empty); 3.1.1: empty.
    pub reasons: Vec<ReasonCode>,
    /// MQTT 5 properties (empty in 3.1.1).
    pub properties: Properties,
}

/// DISCONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// MQTT 5 reason code; always "normal disconnection" (0) in 3.1.1.
    pub reason: ReasonCode,
    /// MQTT 5 properties (empty in 3.1.1).
    pub properties: Properties,
}

impl Disconnect {
    /// A normal disconnection without properties (the only kind 3.1.1 has).
    pub fn normal() -> Disconnect {
        Disconnect {
            reason: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }
    }
}

/// AUTH (MQTT 5 only): one step of an enhanced authentication exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// Success, continue authentication, or re-authenticate.
    pub reason: ReasonCode,
    /// Authentication method and data travel as properties.
    pub properties: Properties,
}
