//! Proptest strategies: every packet type at either level, with only the
//! properties each packet allows and values inside their legal ranges.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::super::wire::VARINT_MAX;
use super::super::*;
use super::{pid, LEVELS};

pub(super) fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

pub(super) fn arb_text(max: usize) -> impl Strategy<Value = MqttString> {
    proptest::string::string_regex(&format!("[a-zA-Z0-9 _./é漢-]{{0,{max}}}"))
        .expect("valid regex")
        .prop_map(MqttString::from)
}

pub(super) fn arb_topic() -> impl Strategy<Value = MqttString> {
    "\\$?[a-z0-9é]{1,4}(/[a-z0-9]{0,4}){0,3}".prop_map(MqttString::from)
}

pub(super) fn arb_filter(shared_allowed: bool) -> impl Strategy<Value = MqttString> {
    let level = prop_oneof![3 => "[a-z0-9]{0,3}", 1 => Just("+".to_string())];
    (
        vec(level, 1..4),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(levels, hash, only_hash, shared)| {
            let mut f = levels.join("/");
            if only_hash {
                f = "#".to_string();
            } else if hash {
                f.push_str("/#");
            } else if f.is_empty() {
                f.push('x');
            }
            if shared && shared_allowed {
                f = format!("$share/group/{f}");
            }
            MqttString::from(f)
        })
}

pub(super) fn arb_qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

pub(super) fn arb_packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(pid)
}

pub(super) fn legal_codes(kind: PacketType, level: ProtocolLevel) -> Vec<ReasonCode> {
    (0..=u8::MAX)
        .map(ReasonCode)
        .filter(|c| c.valid_in(kind, level))
        .collect()
}

pub(super) fn arb_code(
    kind: PacketType,
    level: ProtocolLevel,
) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(legal_codes(kind, level))
}

/// Clears the property with identifier `id`.
pub(super) fn clear(p: &mut Properties, id: u8) {
    match id {
        0x01 => p.payload_format = None,
        0x02 => p.message_expiry_interval = None,
        0x03 => p.content_type = None,
        0x08 => p.response_topic = None,
        0x09 => p.correlation_data = None,
        0x0B => p.subscription_identifiers.clear(),
        0x11 => p.session_expiry_interval = None,
        0x12 => p.assigned_client_identifier = None,
        0x13 => p.server_keep_alive = None,
        0x15 => p.authentication_method = None,
        0x16 => p.authentication_data = None,
        0x17 => p.request_problem_information = None,
        0x18 => p.will_delay_interval = None,
        0x19 => p.request_response_information = None,
        0x1A => p.response_information = None,
        0x1C => p.server_reference = None,
        0x1F => p.reason_string = None,
        0x21 => p.receive_maximum = None,
        0x22 => p.topic_alias_maximum = None,
        0x23 => p.topic_alias = None,
        0x24 => p.maximum_qos = None,
        0x25 => p.retain_available = None,
        0x26 => p.user_properties.clear(),
        0x27 => p.maximum_packet_size = None,
        0x28 => p.wildcard_subscription_available = None,
        0x29 => p.subscription_identifier_available = None,
        0x2A => p.shared_subscription_available = None,
        _ => panic!("clear() lacks property {id:#04x}"),
    }
}

/// Any legal property set for `scope`: every property is generated, then
/// the ones the table does not allow there are cleared.
pub(super) fn arb_properties(scope: PropertyScope) -> impl Strategy<Value = Properties> {
    let nz16 = || option::of((1..=u16::MAX).prop_map(|v| NonZeroU16::new(v).expect("range")));
    let a = (
        option::of(prop_oneof![
            Just(PayloadFormat::Unspecified),
            Just(PayloadFormat::Utf8)
        ]),
        option::of(any::<u32>()),
        option::of(arb_text(10)),
        option::of(arb_topic()),
        option::of(arb_bytes(10)),
        vec(
            (1..=VARINT_MAX).prop_map(|v| NonZeroU32::new(v).expect("range")),
            0..3,
        ),
        option::of(any::<u32>()),
        option::of(arb_text(10)),
        option::of(any::<u16>()),
    );
    let b = (
        option::of(arb_text(8)),
        option::of(arb_bytes(8)),
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(any::<bool>()),
        option::of(arb_text(8)),
        option::of(arb_text(8)),
        option::of(arb_text(8)),
        nz16(),
    );
    let c = (
        option::of(any::<u16>()),
        nz16(),
        option::of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        option::of(any::<bool>()),
        vec((arb_text(5), arb_text(5)), 0..3),
        option::of((1..=u32::MAX).prop_map(|v| NonZeroU32::new(v).expect("range"))),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
    );
    (a, b, c).prop_map(move |(a, b, c)| {
        let mut p = Properties {
            payload_format: a.0,
            message_expiry_interval: a.1,
            content_type: a.2,
            response_topic: a.3,
            correlation_data: a.4,
            subscription_identifiers: a.5,
            session_expiry_interval: a.6,
            assigned_client_identifier: a.7,
            server_keep_alive: a.8,
            authentication_method: b.0,
            authentication_data: b.1,
            request_problem_information: b.2,
            will_delay_interval: b.3,
            request_response_information: b.4,
            response_information: b.5,
            server_reference: b.6,
            reason_string: b.7,
            receive_maximum: b.8,
            topic_alias_maximum: c.0,
            topic_alias: c.1,
            maximum_qos: c.2,
            retain_available: c.3,
            user_properties: c.4,
            maximum_packet_size: c.5,
            wildcard_subscription_available: c.6,
            subscription_identifier_available: c.7,
            shared_subscription_available: c.8,
        };
        for info in PROPERTY_TABLE {
            if info.scopes & scope.bit() == 0 {
                clear(&mut p, info.id);
            }
        }
        if scope != PropertyScope::Publish {
            p.subscription_identifiers.truncate(1);
        }
        if p.authentication_method.is_none() {
            p.authentication_data = None;
        }
        p
    })
}

pub(super) fn arb_props_at(
    level: ProtocolLevel,
    scope: PropertyScope,
) -> BoxedStrategy<Properties> {
    if level.is_v5() {
        arb_properties(scope).boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

pub(super) fn arb_connect(level: ProtocolLevel) -> impl Strategy<Value = Packet> {
    let will = (
        arb_topic(),
        arb_bytes(20),
        arb_qos(),
        any::<bool>(),
        arb_props_at(level, PropertyScope::Will),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    (
        any::<bool>(),
        any::<u16>(),
        arb_text(23),
        option::of(will),
        option::of(arb_text(10)),
        option::of(arb_bytes(10)),
        arb_props_at(level, PropertyScope::Connect),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // 3.1.1 allows a password only with a user name.
                let password = if level.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol_level: level,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

pub(super) fn arb_publish(level: ProtocolLevel) -> impl Strategy<Value = Packet> {
    (
        (any::<bool>(), arb_qos(), any::<bool>()),
        arb_topic(),
        any::<bool>(),
        arb_packet_id(),
        arb_bytes(64),
        arb_props_at(level, PropertyScope::Publish),
    )
        .prop_map(
            |((dup, qos, retain), topic, drop_topic, id, payload, properties)| {
                let aliased = properties.topic_alias.is_some();
                let at_most_once = qos == QoS::AtMostOnce;
                Packet::Publish(Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic: if aliased && drop_topic {
                        MqttString::default()
                    } else {
                        topic
                    },
                    packet_id: (!at_most_once).then_some(id),
                    payload,
                    properties,
                })
            },
        )
}

pub(super) fn arb_pub_reply(
    kind: PacketType,
    level: ProtocolLevel,
) -> impl Strategy<Value = Packet> {
    (
        arb_packet_id(),
        arb_code(kind, level),
        arb_props_at(level, PropertyScope::PubReply),
    )
        .prop_map(move |(packet_id, reason, properties)| {
            let r = PubReply {
                packet_id,
                reason,
                properties,
            };
            match kind {
                PacketType::PubAck => Packet::PubAck(r),
                PacketType::PubRec => Packet::PubRec(r),
                PacketType::PubRel => Packet::PubRel(r),
                _ => Packet::PubComp(r),
            }
        })
}

pub(super) fn arb_subscription(level: ProtocolLevel) -> impl Strategy<Value = Subscription> {
    let retain_handling = prop_oneof![
        Just(RetainHandling::SendAtSubscribe),
        Just(RetainHandling::SendIfNewSubscription),
        Just(RetainHandling::DoNotSend)
    ];
    (
        arb_filter(level.is_v5()),
        arb_qos(),
        any::<bool>(),
        any::<bool>(),
        retain_handling,
    )
        .prop_map(move |(filter, qos, nl, rap, rh)| {
            let shared = filter.as_str().starts_with(SHARED_PREFIX);
            let options = if level.is_v5() {
                SubscriptionOptions {
                    qos,
                    no_local: nl && !shared,
                    retain_as_published: rap,
                    retain_handling: rh,
                }
            } else {
                SubscriptionOptions::qos(qos)
            };
            Subscription { filter, options }
        })
}

/// Every packet type legal at `level`.
pub(super) fn arb_packet(level: ProtocolLevel) -> impl Strategy<Value = Packet> {
    use PacketType as T;
    let v5 = level.is_v5();
    let connack = (
        any::<bool>(),
        arb_code(T::ConnAck, level),
        arb_props_at(level, PropertyScope::ConnAck),
    )
        .prop_map(|(sp, code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present: sp && code == ReasonCode::SUCCESS,
                code,
                properties,
            })
        });
    let subscribe = (
        arb_packet_id(),
        vec(arb_subscription(level), 1..4),
        arb_props_at(level, PropertyScope::Subscribe),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        });
    let suback = (
        arb_packet_id(),
        vec(arb_code(T::SubAck, level), 1..4),
        arb_props_at(level, PropertyScope::SubAck),
    )
        .prop_map(|(packet_id, reasons, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                reasons,
                properties,
            })
        });
    let unsubscribe = (
        arb_packet_id(),
        vec(arb_filter(v5), 1..4),
        arb_props_at(level, PropertyScope::Unsubscribe),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties,
            })
        });
    let unsuback_codes = if v5 {
        vec(arb_code(T::UnsubAck, level), 1..4).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    let unsuback = (
        arb_packet_id(),
        unsuback_codes,
        arb_props_at(level, PropertyScope::UnsubAck),
    )
        .prop_map(|(packet_id, reasons, properties)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                reasons,
                properties,
            })
        });
    let disconnect = (
        arb_code(T::Disconnect, level),
        arb_props_at(level, PropertyScope::Disconnect),
    )
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }));
    let common = prop_oneof![
        arb_connect(level),
        connack,
        arb_publish(level),
        arb_pub_reply(T::PubAck, level),
        arb_pub_reply(T::PubRec, level),
        arb_pub_reply(T::PubRel, level),
        arb_pub_reply(T::PubComp, level),
        subscribe,
        suback,
        unsubscribe,
        unsuback,
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect,
    ];
    if v5 {
        let auth = (
            arb_code(T::Auth, level),
            arb_props_at(level, PropertyScope::Auth),
        )
            .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }));
        prop_oneof![14 => common, 1 => auth].boxed()
    } else {
        common.boxed()
    }
}

pub(super) fn arb_level() -> impl Strategy<Value = ProtocolLevel> {
    proptest::sample::select(LEVELS.to_vec())
}

pub(super) fn arb_level_and_packets(
    max: usize,
) -> impl Strategy<Value = (ProtocolLevel, Vec<Packet>)> {
    arb_level().prop_flat_map(move |level| (Just(level), vec(arb_packet(level), 1..max)))
}
