//! Typed codec errors and the MQTT 5 reason code each one maps to.
//!
//! [`MqttError`] is everything a peer can get wrong. The split between
//! 0x81 Malformed Packet and 0x82 Protocol Error follows MQTT 5.0 section
//! 4.13: a packet that cannot be parsed by the grammar (bad lengths, reserved
//! bits, QoS 3, invalid UTF-8, unknown or misplaced property identifiers) is
//! malformed; one that parses but breaks a rule about its content (packet id
//! 0, duplicate properties, inconsistent flags) is a protocol error. Where the
//! spec names a more precise code (0x84, 0x8F, 0x90, 0x95) that one is used.
//!
//! [`EncodeError`] is what the application can get wrong when building a
//! packet; the encoder refuses anything the decoder would refuse.

use thiserror::Error;

use super::packet::PacketType;
use super::reason::ReasonCode;

/// A decoding failure (or a rule an encoded packet would break). After any
/// of them the byte stream cannot be trusted: the connection is closed,
/// with a DISCONNECT (or CONNACK) carrying [`MqttError::reason_code`] when
/// the peer speaks MQTT 5.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MqttError {
    /// Packet type nibble 0, or 15 (AUTH) on a 3.1.1 connection.
    #[error("packet type {0} is reserved")]
    ReservedPacketType(u8),
    /// Low nibble of the fixed header differs from what the type requires.
    #[error("{packet} has invalid fixed header flags {flags:#06b}")]
    InvalidFlags {
        /// The packet type.
        packet: PacketType,
        /// The received low nibble.
        flags: u8,
    },
    /// A Variable Byte Integer longer than 4 bytes, or not in its shortest
    /// form ([MQTT-1.5.5-1]).
    #[error("malformed variable byte integer in {field}")]
    MalformedVarint {
        /// Where it was read.
        field: &'static str,
    },
    /// The fixed header announces more than the allowed packet size.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge {
        /// Announced size, fixed header included.
        size: u64,
        /// Limit in force.
        max: u32,
    },
    /// The packet ends inside a field.
    #[error("{packet} ends inside {field}")]
    Truncated {
        /// The packet type.
        packet: PacketType,
        /// Field being read.
        field: &'static str,
    },
    /// Bytes left over after the last field of a packet.
    #[error("{packet} has {extra} bytes after its last field")]
    TrailingBytes {
        /// The packet type.
        packet: PacketType,
        /// How many.
        extra: usize,
    },
    /// A QoS field holds 3.
    #[error("QoS 3 in {field}")]
    InvalidQos {
        /// Field name.
        field: &'static str,
    },
    /// Reserved bits set in a flags byte other than the fixed header.
    #[error("reserved bits set in {field}")]
    ReservedBits {
        /// Field name.
        field: &'static str,
    },
    /// A string is not well-formed UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Field name.
        field: &'static str,
    },
    /// A string contains U+0000.
    #[error("{field} contains U+0000")]
    NullCharacter {
        /// Field name.
        field: &'static str,
    },
    /// A packet that needs a packet identifier carries 0.
    #[error("{packet} has packet identifier 0")]
    ZeroPacketId {
        /// The packet type.
        packet: PacketType,
    },
    /// DUP set on a QoS 0 PUBLISH ([MQTT-3.3.1-2]).
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupOnQos0,
    /// A topic name is empty (allowed in MQTT 5 only with a topic alias).
    #[error("empty topic name")]
    EmptyTopicName,
    /// A topic name contains a wildcard.
    #[error("topic name contains the wildcard {0:?}")]
    WildcardInTopicName(char),
    /// A topic filter is empty or misuses `+`, `#` or `$share`.
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(&'static str),
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter.
    #[error("{packet} without topic filters")]
    NoTopicFilters {
        /// The packet type.
        packet: PacketType,
    },
    /// SUBACK, or MQTT 5 UNSUBACK, without any reason code.
    #[error("{packet} without reason codes")]
    NoReasonCodes {
        /// The packet type.
        packet: PacketType,
    },
    /// CONNECT protocol name is neither "MQTT" nor the 3.1 name "MQIsdp".
    #[error("CONNECT protocol name is not \"MQTT\"")]
    InvalidProtocolName,
    /// CONNECT asks for a protocol level this codec does not speak.
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolVersion(u8),
    /// Bit 0 of the CONNECT flags is set ([MQTT-3.1.2-3]).
    #[error("reserved CONNECT flag set")]
    ReservedConnectFlag,
    /// Will QoS or Will Retain set without the Will Flag.
    #[error("will QoS or retain set without the will flag")]
    InconsistentWillFlags,
    /// MQTT 3.1.1 password flag without the user name flag.
    #[error("password without user name")]
    PasswordWithoutUsername,
    /// A packet other than CONNECT arrived before the protocol level was
    /// known (the first packet from a client must be CONNECT).
    #[error("{packet} before CONNECT")]
    ProtocolLevelUnknown {
        /// The packet type.
        packet: PacketType,
    },
    /// A property identifier MQTT 5 does not define.
    #[error("unknown property identifier {0:#04x}")]
    UnknownProperty(u32),
    /// A property that may not appear in this packet.
    #[error("property {property:#04x} not allowed in {scope}")]
    PropertyNotAllowed {
        /// Property identifier.
        property: u8,
        /// Packet (or "will properties").
        scope: &'static str,
    },
    /// A property that may appear once appears again.
    #[error("property {0:#04x} appears more than once")]
    DuplicateProperty(u8),
    /// A property value outside its legal range (a zero Receive Maximum,
    /// a boolean byte other than 0 or 1, ...).
    #[error("property {0:#04x} has an invalid value")]
    InvalidPropertyValue(u8),
    /// A reason code the packet type may not carry.
    #[error("{packet} cannot carry reason code {code:#04x}")]
    InvalidReasonCode {
        /// The packet type.
        packet: PacketType,
        /// The code.
        code: u8,
    },
    /// Retain Handling 3 in subscription options.
    #[error("retain handling 3 in subscription options")]
    InvalidRetainHandling,
    /// No Local on a shared subscription ([MQTT-3.8.3-4]).
    #[error("no-local set on a shared subscription")]
    NoLocalOnSharedSubscription,
    /// CONNACK with session present and an error code ([MQTT-3.2.2-4]).
    #[error("CONNACK session present with a failure code")]
    SessionPresentOnFailure,
}

impl MqttError {
    /// The MQTT 5 reason code to report this error with: in DISCONNECT, or
    /// in CONNACK when it concerns the CONNECT packet.
    pub fn reason_code(&self) -> ReasonCode {
        use MqttError as E;
        match self {
            E::ReservedPacketType(_)
            | E::InvalidFlags { .. }
            | E::MalformedVarint { .. }
            | E::Truncated { .. }
            | E::TrailingBytes { .. }
            | E::InvalidQos { .. }
            | E::ReservedBits { .. }
            | E::InvalidUtf8 { .. }
            | E::NullCharacter { .. }
            | E::ReservedConnectFlag
            | E::UnknownProperty(_)
            | E::PropertyNotAllowed { .. } => ReasonCode::MALFORMED_PACKET,
            E::ZeroPacketId { .. }
            | E::DupOnQos0
            | E::EmptyTopicName
            | E::NoTopicFilters { .. }
            | E::NoReasonCodes { .. }
            | E::InvalidProtocolName
            | E::InconsistentWillFlags
            | E::PasswordWithoutUsername
            | E::ProtocolLevelUnknown { .. }
            | E::DuplicateProperty(_)
            | E::InvalidPropertyValue(_)
            | E::InvalidReasonCode { .. }
            | E::InvalidRetainHandling
            | E::NoLocalOnSharedSubscription
            | E::SessionPresentOnFailure => ReasonCode::PROTOCOL_ERROR,
            E::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            E::UnsupportedProtocolVersion(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            E::WildcardInTopicName(_) => ReasonCode::TOPIC_NAME_INVALID,
            E::InvalidTopicFilter(_) => ReasonCode::TOPIC_FILTER_INVALID,
        }
    }
}

/// A packet the encoder refuses to write. Nothing is appended to the output
/// buffer when encoding fails.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The packet breaks a rule the decoder enforces.
    #[error(transparent)]
    Invalid(#[from] MqttError),
    /// A string, binary field, or the whole packet is too long for its
    /// length prefix.
    #[error("{field} is {len} bytes, more than the {max} its length prefix allows")]
    TooLong {
        /// What is too long.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field that MQTT 3.1.1 cannot express (properties, a non-success
    /// reason code, subscription options, AUTH) is set on a 3.1.1 packet.
    #[error("{0} needs MQTT 5")]
    RequiresV5(&'static str),
    /// PUBLISH has a packet identifier at QoS 0 or none at QoS 1/2.
    #[error("PUBLISH packet identifier does not match its QoS")]
    PacketIdMismatch,
    /// CONNECT's protocol level differs from the level asked to encode at.
    #[error("CONNECT protocol level differs from the encoding level")]
    ProtocolLevelMismatch,
}
