//! Packet encoder.
//!
//! [`encode`] appends one packet to a caller-owned `BytesMut`. Each body
//! layout is written once, generic over [`Sink`]: it runs against a
//! [`Counter`](super::wire::Counter) to learn the remaining length (which
//! precedes the body), then against the buffer. The only copy is the one
//! into the output buffer.
//!
//! Before writing, the packet must be expressible at the requested level
//! (3.1.1 has no properties, reason codes on acknowledgements, MQTT 5
//! subscription options or AUTH) and pass the same content rules the
//! decoder applies, so everything `encode` writes decodes back equal.

use bytes::{Bytes, BytesMut};

use super::decode::PROTOCOL_NAME;
use super::error::EncodeError;
use super::packet::{
    Packet, ProtocolLevel, PubReply, Publish, QoS, RetainHandling, SubscriptionOptions,
};
use super::props::{Properties, PropertyScope};
use super::reason::ReasonCode;
use super::rules;
use super::wire::{measure, varint_len, Sink, VARINT_MAX};

/// Appends `packet`, encoded for a connection speaking `level`, to `out`.
/// On error nothing is appended.
pub fn encode(
    packet: &Packet,
    level: ProtocolLevel,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let remaining = remaining_length(packet, level)?;
    let start = out.len();
    out.reserve(1 + varint_len(remaining) + remaining as usize);
    out.write_u8(first_byte(packet));
    let written = out
        .write_varint(remaining, "remaining length")
        .and_then(|()| write_body(packet, level, out));
    if written.is_err() {
        out.truncate(start);
    }
    debug_assert!(
        written.is_err() || out.len() - start == 1 + varint_len(remaining) + remaining as usize,
        "measured and written lengths differ for {packet:?}"
    );
    written
}

/// As [`encode`], except that a PUBLISH's payload is left out of `out` and
/// returned: the caller writes it right after what was appended (a payload
/// shared by many connections is then gathered, not copied into each
/// connection's buffer). Other packets are appended whole and return an
/// empty payload. On error nothing is appended.
pub fn encode_head(
    packet: &Packet,
    level: ProtocolLevel,
    out: &mut BytesMut,
) -> Result<Bytes, EncodeError> {
    let Packet::Publish(p) = packet else {
        return encode(packet, level, out).map(|()| Bytes::new());
    };
    let remaining = remaining_length(packet, level)?;
    let start = out.len();
    out.write_u8(first_byte(packet));
    let written = out
        .write_varint(remaining, "remaining length")
        .and_then(|()| write_publish_head(p, level, out));
    match written {
        Ok(()) => Ok(p.payload.clone()),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// A PUBLISH's variable header (topic, packet id, properties): its body
/// up to the payload.
fn write_publish_head<S: Sink>(
    p: &Publish,
    level: ProtocolLevel,
    s: &mut S,
) -> Result<(), EncodeError> {
    s.write_string(&p.topic, "topic name")?;
    if let Some(id) = p.packet_id {
        s.write_u16(id.get());
    }
    write_properties(&p.properties, level, PropertyScope::Publish, s)
}

/// How many bytes [`encode`] would append for `packet` at `level`.
pub fn encoded_len(packet: &Packet, level: ProtocolLevel) -> Result<usize, EncodeError> {
    let remaining = remaining_length(packet, level)?;
    Ok(1 + varint_len(remaining) + remaining as usize)
}

fn remaining_length(packet: &Packet, level: ProtocolLevel) -> Result<u32, EncodeError> {
    expressible(packet, level)?;
    rules::check(packet, level)?;
    let len = measure(|c| write_body(packet, level, c))?;
    u32::try_from(len)
        .ok()
        .filter(|len| *len <= VARINT_MAX)
        .ok_or(EncodeError::TooLong {
            field: "remaining length",
            len,
            max: VARINT_MAX as usize,
        })
}

/// Type nibble and flags.
fn first_byte(packet: &Packet) -> u8 {
    let kind = packet.packet_type();
    let flags = match packet {
        Packet::Publish(p) => (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain),
        _ => kind
            .required_flags()
            .expect("only PUBLISH has variable flags"),
    };
    ((kind as u8) << 4) | flags
}

/// Fails unless `cond` holds or the level is MQTT 5.
fn v5_only(level: ProtocolLevel, v311_ok: bool, what: &'static str) -> Result<(), EncodeError> {
    if level.is_v5() || v311_ok {
        Ok(())
    } else {
        Err(EncodeError::RequiresV5(what))
    }
}

fn expressible(packet: &Packet, level: ProtocolLevel) -> Result<(), EncodeError> {
    let no_props = |p: &Properties| v5_only(level, p.is_empty(), "properties");
    let success = |r: ReasonCode| v5_only(level, r == ReasonCode::SUCCESS, "a reason code");
    match packet {
        Packet::Connect(c) => {
            if c.protocol_level != level {
                return Err(EncodeError::ProtocolLevelMismatch);
            }
            no_props(&c.properties)?;
            c.will.as_ref().map_or(Ok(()), |w| no_props(&w.properties))
        }
        Packet::ConnAck(a) => no_props(&a.properties),
        Packet::Publish(p) => {
            if p.packet_id.is_some() != (p.qos != QoS::AtMostOnce) {
                return Err(EncodeError::PacketIdMismatch);
            }
            no_props(&p.properties)
        }
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            success(r.reason)?;
            no_props(&r.properties)
        }
        Packet::Subscribe(s) => {
            for sub in &s.filters {
                let plain = sub.options == SubscriptionOptions::qos(sub.options.qos);
                v5_only(level, plain, "subscription options other than QoS")?;
            }
            no_props(&s.properties)
        }
        Packet::SubAck(s) => no_props(&s.properties),
        Packet::Unsubscribe(u) => no_props(&u.properties),
        Packet::UnsubAck(u) => {
            v5_only(level, u.reasons.is_empty(), "UNSUBACK reason codes")?;
            no_props(&u.properties)
        }
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => {
            success(d.reason)?;
            no_props(&d.properties)
        }
        Packet::Auth(_) => v5_only(level, false, "AUTH"),
    }
}

fn write_properties<S: Sink>(
    p: &Properties,
    level: ProtocolLevel,
    scope: PropertyScope,
    s: &mut S,
) -> Result<(), EncodeError> {
    if level.is_v5() {
        p.encode(scope, s)?;
    }
    Ok(())
}

fn write_body<S: Sink>(
    packet: &Packet,
    level: ProtocolLevel,
    s: &mut S,
) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(c) => {
            s.write_binary(PROTOCOL_NAME, "protocol name")?;
            s.write_u8(level as u8);
            let (will_flag, will_qos, will_retain) = match &c.will {
                Some(w) => (true, w.qos as u8, w.retain),
                None => (false, 0, false),
            };
            s.write_u8(
                (u8::from(c.username.is_some()) << 7)
                    | (u8::from(c.password.is_some()) << 6)
                    | (u8::from(will_retain) << 5)
                    | (will_qos << 3)
                    | (u8::from(will_flag) << 2)
                    | (u8::from(c.clean_start) << 1),
            );
            s.write_u16(c.keep_alive);
            write_properties(&c.properties, level, PropertyScope::Connect, s)?;
            s.write_string(&c.client_id, "client identifier")?;
            if let Some(w) = &c.will {
                write_properties(&w.properties, level, PropertyScope::Will, s)?;
                s.write_string(&w.topic, "will topic")?;
                s.write_binary(&w.payload, "will payload")?;
            }
            if let Some(u) = &c.username {
                s.write_string(u, "user name")?;
            }
            if let Some(p) = &c.password {
                s.write_binary(p, "password")?;
            }
        }
        Packet::ConnAck(a) => {
            s.write_u8(u8::from(a.session_present));
            s.write_u8(a.code.0);
            write_properties(&a.properties, level, PropertyScope::ConnAck, s)?;
        }
        Packet::Publish(p) => {
            write_publish_head(p, level, s)?;
            s.write(&p.payload);
        }
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            write_pub_reply(r, level, s)?;
        }
        Packet::Subscribe(sub) => {
            s.write_u16(sub.packet_id.get());
            write_properties(&sub.properties, level, PropertyScope::Subscribe, s)?;
            for f in &sub.filters {
                s.write_string(&f.filter, "topic filter")?;
                s.write_u8(options_byte(&f.options));
            }
        }
        Packet::SubAck(a) => {
            s.write_u16(a.packet_id.get());
            write_properties(&a.properties, level, PropertyScope::SubAck, s)?;
            a.reasons.iter().for_each(|r| s.write_u8(r.0));
        }
        Packet::Unsubscribe(u) => {
            s.write_u16(u.packet_id.get());
            write_properties(&u.properties, level, PropertyScope::Unsubscribe, s)?;
            for f in &u.filters {
                s.write_string(f, "topic filter")?;
            }
        }
        Packet::UnsubAck(a) => {
            s.write_u16(a.packet_id.get());
            write_properties(&a.properties, level, PropertyScope::UnsubAck, s)?;
            a.reasons.iter().for_each(|r| s.write_u8(r.0));
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            write_short_reason(d.reason, &d.properties, level, PropertyScope::Disconnect, s)?;
        }
        Packet::Auth(a) => {
            write_short_reason(a.reason, &a.properties, level, PropertyScope::Auth, s)?;
        }
    }
    Ok(())
}

fn write_pub_reply<S: Sink>(
    r: &PubReply,
    level: ProtocolLevel,
    s: &mut S,
) -> Result<(), EncodeError> {
    s.write_u16(r.packet_id.get());
    write_short_reason(r.reason, &r.properties, level, PropertyScope::PubReply, s)
}

/// The shortest form MQTT 5 allows: nothing for success without
/// properties, the reason code alone without properties, else both.
fn write_short_reason<S: Sink>(
    reason: ReasonCode,
    props: &Properties,
    level: ProtocolLevel,
    scope: PropertyScope,
    s: &mut S,
) -> Result<(), EncodeError> {
    if !level.is_v5() || (reason == ReasonCode::SUCCESS && props.is_empty()) {
        return Ok(());
    }
    s.write_u8(reason.0);
    if !props.is_empty() {
        props.encode(scope, s)?;
    }
    Ok(())
}

fn options_byte(o: &SubscriptionOptions) -> u8 {
    let retain_handling = match o.retain_handling {
        RetainHandling::SendAtSubscribe => 0,
        RetainHandling::SendIfNewSubscription => 1,
        RetainHandling::DoNotSend => 2,
    };
    (retain_handling << 4)
        | (u8::from(o.retain_as_published) << 3)
        | (u8::from(o.no_local) << 2)
        | o.qos as u8
}
