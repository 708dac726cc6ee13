//! What the encoder refuses, and that a refusal leaves the output alone.

use proptest::strategy::ValueTree;

use super::*;

fn encode_err(p: &Packet, level: ProtocolLevel) -> EncodeError {
    let mut out = BytesMut::from(&b"keep"[..]);
    let e = encode(p, level, &mut out).expect_err("must be refused");
    assert_eq!(&out[..], b"keep", "nothing appended on error");
    e
}

fn publish(topic: &str) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: MqttString::from(topic),
        packet_id: None,
        payload: Bytes::new(),
        properties: Properties::default(),
    }
}

#[test]
fn mqtt5_only_fields_cannot_be_sent_at_3_1_1() {
    let v311 = ProtocolLevel::V311;
    let mut p = publish("t");
    p.properties.message_expiry_interval = Some(1);
    assert_eq!(
        encode_err(&Packet::Publish(p), v311),
        EncodeError::RequiresV5("properties")
    );
    let nack = PubReply {
        packet_id: pid(1),
        reason: ReasonCode::QUOTA_EXCEEDED,
        properties: Properties::default(),
    };
    assert_eq!(
        encode_err(&Packet::PubAck(nack), v311),
        EncodeError::RequiresV5("a reason code")
    );
    let auth = Packet::Auth(Auth {
        reason: ReasonCode::SUCCESS,
        properties: Properties::default(),
    });
    assert_eq!(encode_err(&auth, v311), EncodeError::RequiresV5("AUTH"));
    let mut options = SubscriptionOptions::qos(QoS::AtMostOnce);
    options.no_local = true;
    let sub = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: vec![Subscription {
            filter: MqttString::from_static("a"),
            options,
        }],
        properties: Properties::default(),
    });
    assert!(matches!(encode_err(&sub, v311), EncodeError::RequiresV5(_)));
    let unsuback = Packet::UnsubAck(UnsubAck {
        packet_id: pid(1),
        reasons: vec![ReasonCode::SUCCESS],
        properties: Properties::default(),
    });
    assert!(matches!(
        encode_err(&unsuback, v311),
        EncodeError::RequiresV5(_)
    ));
}

#[test]
fn publish_packet_id_must_match_qos() {
    let mut p = publish("t");
    p.packet_id = Some(pid(1));
    assert_eq!(
        encode_err(&Packet::Publish(p.clone()), ProtocolLevel::V5),
        EncodeError::PacketIdMismatch
    );
    p.qos = QoS::AtLeastOnce;
    p.packet_id = None;
    assert_eq!(
        encode_err(&Packet::Publish(p), ProtocolLevel::V5),
        EncodeError::PacketIdMismatch
    );
}

#[test]
fn connect_level_must_match() {
    let c = Packet::Connect(Box::new(Connect {
        protocol_level: ProtocolLevel::V5,
        clean_start: true,
        keep_alive: 0,
        client_id: MqttString::default(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }));
    assert_eq!(
        encode_err(&c, ProtocolLevel::V311),
        EncodeError::ProtocolLevelMismatch
    );
}

#[test]
fn decoder_rules_apply_to_encoding() {
    let v5 = ProtocolLevel::V5;
    let invalid = |e: MqttError| EncodeError::Invalid(e);
    assert_eq!(
        encode_err(&Packet::Publish(publish("a/+")), v5),
        invalid(MqttError::WildcardInTopicName('+'))
    );
    assert_eq!(
        encode_err(&Packet::Publish(publish("")), v5),
        invalid(MqttError::EmptyTopicName)
    );
    assert_eq!(
        encode_err(&Packet::Publish(publish("a\0")), v5),
        invalid(MqttError::NullCharacter {
            field: "topic name"
        })
    );
    let mut p = publish("t");
    p.properties.session_expiry_interval = Some(1);
    assert_eq!(
        encode_err(&Packet::Publish(p), v5),
        invalid(MqttError::PropertyNotAllowed {
            property: 0x11,
            scope: "PUBLISH"
        })
    );
    let mut p = publish("t");
    p.dup = true;
    assert_eq!(
        encode_err(&Packet::Publish(p), v5),
        invalid(MqttError::DupOnQos0)
    );
    let empty = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: Vec::new(),
        properties: Properties::default(),
    });
    assert_eq!(
        encode_err(&empty, v5),
        invalid(MqttError::NoTopicFilters {
            packet: PacketType::Subscribe
        })
    );
    let connack = Packet::ConnAck(ConnAck {
        session_present: false,
        code: ReasonCode::SUCCESS,
        properties: Properties {
            maximum_qos: Some(QoS::ExactlyOnce),
            ..Properties::default()
        },
    });
    assert_eq!(
        encode_err(&connack, v5),
        invalid(MqttError::InvalidPropertyValue(0x24))
    );
    let sub_ids = |n: u32| Properties {
        subscription_identifiers: (1..=n)
            .map(|i| NonZeroU32::new(i).expect("nonzero"))
            .collect(),
        ..Properties::default()
    };
    let sub = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: vec![Subscription {
            filter: MqttString::from_static("a"),
            options: SubscriptionOptions::qos(QoS::AtMostOnce),
        }],
        properties: sub_ids(2),
    });
    assert_eq!(
        encode_err(&sub, v5),
        invalid(MqttError::DuplicateProperty(0x0B))
    );
    let mut p = publish("t");
    p.properties.subscription_identifiers = vec![NonZeroU32::new(VARINT_MAX + 1).expect("nonzero")];
    assert_eq!(
        encode_err(&Packet::Publish(p), v5),
        invalid(MqttError::InvalidPropertyValue(0x0B))
    );
}

#[test]
fn over_long_strings_are_refused() {
    let long = "x".repeat(usize::from(u16::MAX) + 1);
    assert_eq!(
        encode_err(&Packet::Publish(publish(&long)), ProtocolLevel::V311),
        EncodeError::TooLong {
            field: "topic name",
            len: long.len(),
            max: 65_535
        }
    );
    let ok = "x".repeat(usize::from(u16::MAX));
    let p = Packet::Publish(publish(&ok));
    assert_eq!(
        decode_ok(
            &encode_vec(&p, ProtocolLevel::V311),
            Some(ProtocolLevel::V311)
        ),
        p
    );
}

#[test]
fn encode_appends_after_existing_bytes() {
    let mut out = BytesMut::from(&b"prefix"[..]);
    encode(&Packet::PingReq, ProtocolLevel::V5, &mut out).expect("valid");
    encode(&Packet::PingResp, ProtocolLevel::V5, &mut out).expect("valid");
    assert_eq!(&out[..], b"prefix\xC0\x00\xD0\x00");
}

/// Every row of the property table survives a round trip, so the table,
/// the decoder's match and the encoder's list agree.
#[test]
fn every_property_in_the_table_round_trips() {
    for info in PROPERTY_TABLE {
        let scope = [
            PropertyScope::Connect,
            PropertyScope::Will,
            PropertyScope::ConnAck,
            PropertyScope::Publish,
            PropertyScope::PubReply,
            PropertyScope::Subscribe,
            PropertyScope::SubAck,
            PropertyScope::Unsubscribe,
            PropertyScope::UnsubAck,
            PropertyScope::Disconnect,
            PropertyScope::Auth,
        ]
        .into_iter()
        .find(|s| info.scopes & s.bit() != 0)
        .expect("every property is allowed somewhere");
        assert_eq!(
            property_info(u32::from(info.id)).map(|i| i.id),
            Some(info.id)
        );
        // A value the encoder writes for this id, found by generating.
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut found = false;
        for _ in 0..200 {
            let props = arb_properties(scope)
                .new_tree(&mut runner)
                .expect("strategy")
                .current();
            let mut only = props.clone();
            for other in PROPERTY_TABLE {
                if other.id != info.id {
                    clear(&mut only, other.id);
                }
            }
            if only.is_empty() {
                continue;
            }
            let mut buf = BytesMut::new();
            only.encode(scope, &mut buf).expect("valid property");
            assert_eq!(buf[1], info.id, "{}", info.name);
            let mut r = super::super::wire::Reader::new(buf.freeze(), PacketType::Publish);
            assert_eq!(Properties::decode(&mut r, scope), Ok(only));
            found = true;
            break;
        }
        assert!(found, "no value generated for {}", info.name);
    }
}
