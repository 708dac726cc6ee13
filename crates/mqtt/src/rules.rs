//! Rules about a packet's content, checked on a parsed packet.
//!
//! The decoder enforces the grammar while it parses (lengths, reserved bits,
//! property placement); the rules here need the whole packet and are the
//! same for both directions, so the decoder runs them after parsing and the
//! encoder before writing. That keeps "what the encoder writes, the decoder
//! accepts" true by construction.

use super::error::MqttError;
use super::packet::{Packet, PacketType, ProtocolLevel, QoS};
use super::props::Properties;
use super::reason::ReasonCode;
use super::topic::{validate_topic_filter, validate_topic_name};

/// Checks every content rule for `packet` at `level`.
pub(crate) fn check(packet: &Packet, level: ProtocolLevel) -> Result<(), MqttError> {
    let kind = packet.packet_type();
    match packet {
        Packet::Connect(c) => {
            if let Some(will) = &c.will {
                validate_topic_name(will.topic.as_str())?;
                message_properties(&will.properties)?;
            }
            // 3.1.1 [MQTT-3.1.2-22]; MQTT 5 allows a password alone.
            if level == ProtocolLevel::V311 && c.password.is_some() && c.username.is_none() {
                return Err(MqttError::PasswordWithoutUsername);
            }
            authentication(&c.properties)
        }
        Packet::ConnAck(a) => {
            reason(a.code, kind, level)?;
            // [MQTT-3.2.2-4] (3.1.1), [MQTT-3.2.2-6] (5.0).
            if a.session_present && a.code != ReasonCode::SUCCESS {
                return Err(MqttError::SessionPresentOnFailure);
            }
            authentication(&a.properties)
        }
        Packet::Publish(p) => {
            if p.dup && p.qos == QoS::AtMostOnce {
                return Err(MqttError::DupOnQos0);
            }
            // MQTT 5 lets a topic alias stand in for an empty topic name.
            let aliased = level.is_v5() && p.properties.topic_alias.is_some();
            if !(p.topic.is_empty() && aliased) {
                validate_topic_name(p.topic.as_str())?;
            }
            message_properties(&p.properties)
        }
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            reason(r.reason, kind, level)
        }
        Packet::Subscribe(s) => {
            if s.filters.is_empty() {
                return Err(MqttError::NoTopicFilters { packet: kind });
            }
            for sub in &s.filters {
                let shared = validate_topic_filter(sub.filter.as_str(), level.is_v5())?;
                if shared && sub.options.no_local {
                    return Err(MqttError::NoLocalOnSharedSubscription);
                }
            }
            Ok(())
        }
        Packet::SubAck(s) => reasons(&s.reasons, kind, level),
        Packet::Unsubscribe(u) => {
            if u.filters.is_empty() {
                return Err(MqttError::NoTopicFilters { packet: kind });
            }
            for filter in &u.filters {
                validate_topic_filter(filter.as_str(), level.is_v5())?;
            }
            Ok(())
        }
        Packet::UnsubAck(u) if level.is_v5() => reasons(&u.reasons, kind, level),
        Packet::UnsubAck(_) | Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => reason(d.reason, kind, level),
        Packet::Auth(a) => {
            reason(a.reason, kind, level)?;
            authentication(&a.properties)
        }
    }
}

fn reason(code: ReasonCode, packet: PacketType, level: ProtocolLevel) -> Result<(), MqttError> {
    if !code.valid_in(packet, level) {
        return Err(MqttError::InvalidReasonCode {
            packet,
            code: code.0,
        });
    }
    Ok(())
}

/// SUBACK and MQTT 5 UNSUBACK: one code per filter, so at least one.
fn reasons(
    codes: &[ReasonCode],
    packet: PacketType,
    level: ProtocolLevel,
) -> Result<(), MqttError> {
    if codes.is_empty() {
        return Err(MqttError::NoReasonCodes { packet });
    }
    codes.iter().try_for_each(|c| reason(*c, packet, level))
}

/// PUBLISH and will: a Response Topic is a topic name (MQTT 5.0 section 3.3.2.3.5).
fn message_properties(p: &Properties) -> Result<(), MqttError> {
    match &p.response_topic {
        Some(t) => validate_topic_name(t.as_str()),
        None => Ok(()),
    }
}

/// Authentication Data needs an Authentication Method (MQTT 5.0 3.1.2.11.10).
fn authentication(p: &Properties) -> Result<(), MqttError> {
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(MqttError::InvalidPropertyValue(0x16));
    }
    Ok(())
}
