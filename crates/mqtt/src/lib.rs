//! Sans-IO MQTT 3.1.1 and 5.0: the packet codec (this page) and the
//! [`bridge`] that drives an MQTT connection as a native session.
//!
//! Ground rules:
//! - No I/O and no clock: this module turns bytes into [`Packet`]s and back.
//!   Sessions, keep-alive timers, inflight windows and retained messages
//!   belong to the callers.
//! - Decoding is streaming ([`Decoder`]): the caller owns the receive buffer,
//!   appends whatever arrived, and calls [`Decoder::decode`] until it returns
//!   `Ok(None)`. Any split of the input decodes the same.
//! - Zero copy: a decoded packet's payload, strings and binary fields are
//!   `bytes::Bytes` slices of the receive buffer.
//! - Everything the specifications make a Malformed Packet or a Protocol
//!   Error is a typed [`MqttError`] with its MQTT 5 [`ReasonCode`]; nothing
//!   here panics on peer input, and after an error the decoder stays failed.
//! - The encoder refuses what the decoder would refuse, so every packet
//!   [`encode`] accepts decodes back to an equal packet.
//! - No `unsafe`.
//!
//! | file        | owns                                                         |
//! |-------------|--------------------------------------------------------------|
//! | `packet`    | the packet structs, [`MqttString`], [`PacketId`], [`QoS`]     |
//! | `props`     | MQTT 5 [`Properties`] and the table of where each may appear |
//! | `reason`    | [`ReasonCode`] and which codes each packet may carry         |
//! | `wire`      | integers, Variable Byte Integers, strings, binary data       |
//! | `decode`    | the streaming [`Decoder`]                                    |
//! | `encode`    | [`encode`]                                                   |
//! | `rules`     | content rules shared by decoder and encoder                  |
//! | `topic`     | topic name/filter validation and [`topic_matches`]           |
//! | `error`     | [`MqttError`] (peer errors) and [`EncodeError`]              |
//!
//! ```
//! use bytes::BytesMut;
//! use surepush_mqtt::{encode, Decoder, Packet, ProtocolLevel};
//!
//! let mut wire = BytesMut::new();
//! encode(&Packet::PingReq, ProtocolLevel::V311, &mut wire).unwrap();
//! assert_eq!(&wire[..], &[0xC0, 0x00]);
//!
//! let mut decoder = Decoder::new(Some(ProtocolLevel::V311), 1 << 20);
//! assert_eq!(decoder.decode(&mut wire).unwrap(), Some(Packet::PingReq));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bridge;
mod decode;
mod encode;
mod error;
mod packet;
mod props;
mod reason;
mod rules;
mod topic;
mod wire;

pub use decode::{Decoder, MAX_PACKET_SIZE, PROTOCOL_NAME};
pub use encode::{encode, encode_head, encoded_len};
pub use error::{EncodeError, MqttError};
pub use packet::{
    Auth, ConnAck, Connect, Disconnect, MqttString, Packet, PacketId, PacketType, ProtocolLevel,
    PubReply, Publish, QoS, RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions,
    UnsubAck, Unsubscribe, Will,
};
pub use props::{
    property_info, PayloadFormat, Properties, PropertyInfo, PropertyScope, PROPERTY_TABLE,
};
pub use reason::ReasonCode;
pub use topic::{
    topic_matches, validate_topic_filter, validate_topic_name, LEVEL_SEPARATOR, MULTI_LEVEL,
    SHARED_PREFIX, SINGLE_LEVEL,
};

#[cfg(test)]
mod tests;
