//! Sans-IO MQTT 3.1.1 and 5.0 packet codec.
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
