//! The bad-input catalogue: one test per rule the decoder enforces, each
//! proving the exact error and its MQTT 5 reason code.

use super::*;

const V311: Option<ProtocolLevel> = Some(ProtocolLevel::V311);
const V5: Option<ProtocolLevel> = Some(ProtocolLevel::V5);

fn assert_rejected(bytes: &[u8], level: Option<ProtocolLevel>, want: MqttError, code: ReasonCode) {
    let got = decode_err(bytes, level);
    assert_eq!(got, want, "bytes {bytes:02x?}");
    assert_eq!(got.reason_code(), code, "{got}");
}

/// A CONNECT body: protocol name, level, flags, keep alive 0, then `rest`.
fn connect_body(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = lp(name);
    body.extend_from_slice(&[level, flags, 0x00, 0x00]);
    body.extend_from_slice(rest);
    body
}

/// A v5 QoS 0 PUBLISH to "t" with the given property entries.
fn publish_v5_with(props: &[u8]) -> Vec<u8> {
    let mut body = lp(b"t");
    body.extend(props_block(props));
    frame(0x30, &body)
}

#[test]
fn reserved_packet_types() {
    let malformed = ReasonCode::MALFORMED_PACKET;
    assert_rejected(
        &[0x00, 0x00],
        V5,
        MqttError::ReservedPacketType(0),
        malformed,
    );
    // AUTH does not exist in 3.1.1: type 15 is reserved there.
    assert_rejected(
        &[0xF0, 0x00],
        V311,
        MqttError::ReservedPacketType(15),
        malformed,
    );
    assert_eq!(
        decode_ok(&[0xF0, 0x00], V5),
        Packet::Auth(Auth {
            reason: ReasonCode::SUCCESS,
            properties: Properties::default()
        })
    );
}

#[test]
fn pubrel_subscribe_unsubscribe_need_flags_0010() {
    for (kind, first) in [
        (PacketType::PubRel, 0x60),
        (PacketType::Subscribe, 0x80),
        (PacketType::Unsubscribe, 0xA0),
        (PacketType::Subscribe, 0x83),
    ] {
        let bytes = [first, 0x02, 0x00, 0x01];
        let flags = first & 0x0F;
        let want = MqttError::InvalidFlags {
            packet: kind,
            flags,
        };
        assert_rejected(&bytes, V311, want, ReasonCode::MALFORMED_PACKET);
    }
}

#[test]
fn other_packets_need_flags_0000() {
    for (kind, first) in [
        (PacketType::PubAck, 0x42),
        (PacketType::PingReq, 0xC1),
        (PacketType::Disconnect, 0xE8),
        (PacketType::Connect, 0x12),
    ] {
        let want = MqttError::InvalidFlags {
            packet: kind,
            flags: first & 0x0F,
        };
        assert_rejected(&[first, 0x00], V5, want, ReasonCode::MALFORMED_PACKET);
    }
}

#[test]
fn publish_qos_3_is_malformed() {
    let want = MqttError::InvalidQos {
        field: "PUBLISH fixed header",
    };
    assert_rejected(
        &frame(0x36, &lp(b"t")),
        V311,
        want,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn dup_on_qos_0_is_a_protocol_error() {
    let want = MqttError::DupOnQos0;
    assert_rejected(
        &frame(0x38, &lp(b"t")),
        V311,
        want,
        ReasonCode::PROTOCOL_ERROR,
    );
}

#[test]
fn packet_id_zero_is_refused_where_one_is_required() {
    let zero = |packet| MqttError::ZeroPacketId { packet };
    let e = ReasonCode::PROTOCOL_ERROR;
    let mut publish = lp(b"t");
    publish.extend_from_slice(&[0x00, 0x00]);
    assert_rejected(&frame(0x32, &publish), V311, zero(PacketType::Publish), e);
    assert_rejected(&[0x40, 0x02, 0x00, 0x00], V311, zero(PacketType::PubAck), e);
    assert_rejected(&[0x50, 0x02, 0x00, 0x00], V5, zero(PacketType::PubRec), e);
    assert_rejected(&[0x62, 0x02, 0x00, 0x00], V5, zero(PacketType::PubRel), e);
    assert_rejected(&[0x70, 0x02, 0x00, 0x00], V5, zero(PacketType::PubComp), e);
    let mut subscribe = vec![0x00, 0x00];
    subscribe.extend(lp(b"a"));
    subscribe.push(0x00);
    assert_rejected(
        &frame(0x82, &subscribe),
        V311,
        zero(PacketType::Subscribe),
        e,
    );
    assert_rejected(
        &[0x90, 0x03, 0x00, 0x00, 0x00],
        V311,
        zero(PacketType::SubAck),
        e,
    );
    let mut unsubscribe = vec![0x00, 0x00];
    unsubscribe.extend(lp(b"a"));
    assert_rejected(
        &frame(0xA2, &unsubscribe),
        V311,
        zero(PacketType::Unsubscribe),
        e,
    );
    assert_rejected(
        &[0xB0, 0x02, 0x00, 0x00],
        V311,
        zero(PacketType::UnsubAck),
        e,
    );
}

#[test]
fn strings_must_be_utf8() {
    // 0xC3 0x28 is an invalid two-byte sequence; 0xED 0xA0 0x80 a surrogate.
    for bad in [&[0xC3, 0x28][..], &[0xED, 0xA0, 0x80], &[0xFF]] {
        let want = MqttError::InvalidUtf8 {
            field: "topic name",
        };
        assert_rejected(
            &frame(0x30, &lp(bad)),
            V311,
            want,
            ReasonCode::MALFORMED_PACKET,
        );
    }
    let body = connect_body(b"MQTT", 4, 0x02, &lp(&[0xC0, 0x80]));
    let want = MqttError::InvalidUtf8 {
        field: "client identifier",
    };
    assert_rejected(
        &frame(0x10, &body),
        None,
        want,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn strings_must_not_contain_u0000() {
    let want = MqttError::NullCharacter {
        field: "topic name",
    };
    assert_rejected(
        &frame(0x30, &lp(b"a\0b")),
        V5,
        want,
        ReasonCode::MALFORMED_PACKET,
    );
    // Also inside property strings.
    let mut entry = vec![0x03];
    entry.extend(lp(b"x\0"));
    let want = MqttError::NullCharacter {
        field: "Content Type",
    };
    assert_rejected(
        &publish_v5_with(&entry),
        V5,
        want,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn topic_names_must_not_contain_wildcards() {
    for (topic, c) in [(&b"a/+"[..], '+'), (b"#", '#'), (b"a/b#", '#')] {
        let want = MqttError::WildcardInTopicName(c);
        assert_rejected(
            &frame(0x30, &lp(topic)),
            V311,
            want,
            ReasonCode::TOPIC_NAME_INVALID,
        );
    }
    // The will topic is a topic name too.
    let mut rest = lp(b"id");
    rest.extend(lp(b"w/#"));
    rest.extend(lp(b"payload"));
    let body = connect_body(b"MQTT", 4, 0x04, &rest);
    let want = MqttError::WildcardInTopicName('#');
    assert_rejected(
        &frame(0x10, &body),
        None,
        want,
        ReasonCode::TOPIC_NAME_INVALID,
    );
}

#[test]
fn empty_topic_name_needs_a_topic_alias() {
    let want = MqttError::EmptyTopicName;
    assert_rejected(
        &frame(0x30, &lp(b"")),
        V311,
        want.clone(),
        ReasonCode::PROTOCOL_ERROR,
    );
    let mut v5 = lp(b"");
    v5.extend(props_block(&[]));
    assert_rejected(&frame(0x30, &v5), V5, want, ReasonCode::PROTOCOL_ERROR);
    let mut aliased = lp(b"");
    aliased.extend(props_block(&[0x23, 0x00, 0x01]));
    assert!(
        matches!(decode_ok(&frame(0x30, &aliased), V5), Packet::Publish(p) if p.topic.is_empty())
    );
}

#[test]
fn topic_filters_must_be_well_formed() {
    let cases: [(&str, Option<ProtocolLevel>, &str); 9] = [
        ("a/#/b", V311, "'#' must be the whole last level"),
        ("a#", V311, "'#' must be the whole last level"),
        ("#/", V5, "'#' must be the whole last level"),
        ("a/b+", V311, "'+' must be a whole level"),
        ("+a/b", V5, "'+' must be a whole level"),
        ("", V311, "empty"),
        ("$share/g", V5, "shared subscription without a filter"),
        ("$share//a", V5, "invalid share name"),
        ("$share/g+/a", V5, "invalid share name"),
    ];
    for (filter, level, why) in cases {
        let mut body = vec![0x00, 0x01];
        if level == V5 {
            body.extend(props_block(&[]));
        }
        body.extend(lp(filter.as_bytes()));
        body.push(0x00);
        let want = MqttError::InvalidTopicFilter(why);
        let code = ReasonCode::TOPIC_FILTER_INVALID;
        assert_rejected(&frame(0x82, &body), level, want.clone(), code);
        // UNSUBSCRIBE applies the same rules.
        body.pop();
        assert_rejected(&frame(0xA2, &body), level, want, code);
    }
    // In 3.1.1 "$share/g" is an ordinary filter.
    let mut body = vec![0x00, 0x01];
    body.extend(lp(b"$share/g"));
    body.push(0x00);
    assert!(matches!(
        decode_ok(&frame(0x82, &body), V311),
        Packet::Subscribe(_)
    ));
}

#[test]
fn subscribe_and_unsubscribe_need_a_filter() {
    for (first, kind) in [
        (0x82, PacketType::Subscribe),
        (0xA2, PacketType::Unsubscribe),
    ] {
        let want = MqttError::NoTopicFilters { packet: kind };
        let code = ReasonCode::PROTOCOL_ERROR;
        assert_rejected(&[first, 0x02, 0x00, 0x01], V311, want.clone(), code);
        assert_rejected(&[first, 0x03, 0x00, 0x01, 0x00], V5, want, code);
    }
}

#[test]
fn acknowledgements_need_a_reason_code_per_filter() {
    let want = |packet| MqttError::NoReasonCodes { packet };
    let code = ReasonCode::PROTOCOL_ERROR;
    assert_rejected(
        &[0x90, 0x02, 0x00, 0x01],
        V311,
        want(PacketType::SubAck),
        code,
    );
    assert_rejected(
        &[0xB0, 0x03, 0x00, 0x01, 0x00],
        V5,
        want(PacketType::UnsubAck),
        code,
    );
}

#[test]
fn connect_protocol_name_and_level() {
    let body = |name: &[u8], level| frame(0x10, &connect_body(name, level, 0x02, &lp(b"")));
    let e = ReasonCode::UNSUPPORTED_PROTOCOL_VERSION;
    assert_rejected(
        &body(b"MQTX", 4),
        None,
        MqttError::InvalidProtocolName,
        ReasonCode::PROTOCOL_ERROR,
    );
    assert_rejected(
        &body(b"mqtt", 5),
        None,
        MqttError::InvalidProtocolName,
        ReasonCode::PROTOCOL_ERROR,
    );
    assert_rejected(
        &body(b"MQIsdp", 3),
        None,
        MqttError::UnsupportedProtocolVersion(3),
        e,
    );
    assert_rejected(
        &body(b"MQTT", 3),
        None,
        MqttError::UnsupportedProtocolVersion(3),
        e,
    );
    assert_rejected(
        &body(b"MQTT", 6),
        None,
        MqttError::UnsupportedProtocolVersion(6),
        e,
    );
}

#[test]
fn connect_reserved_flag_must_be_zero() {
    let body = connect_body(b"MQTT", 4, 0x03, &lp(b"id"));
    let want = MqttError::ReservedConnectFlag;
    assert_rejected(
        &frame(0x10, &body),
        None,
        want,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn will_qos_and_retain_need_the_will_flag() {
    for flags in [0x08, 0x10, 0x20, 0x28] {
        let body = connect_body(
            b"MQTT",
            5,
            flags,
            &[&props_block(&[])[..], &lp(b"id")].concat(),
        );
        let want = MqttError::InconsistentWillFlags;
        assert_rejected(&frame(0x10, &body), None, want, ReasonCode::PROTOCOL_ERROR);
    }
    // Will QoS 3 is malformed even with the will flag.
    let body = connect_body(b"MQTT", 4, 0x1C, &lp(b"id"));
    let want = MqttError::InvalidQos { field: "will QoS" };
    assert_rejected(
        &frame(0x10, &body),
        None,
        want,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn password_without_user_name() {
    let mut rest = lp(b"id");
    rest.extend(lp(b"secret"));
    let v311 = frame(0x10, &connect_body(b"MQTT", 4, 0x42, &rest));
    let want = MqttError::PasswordWithoutUsername;
    assert_rejected(&v311, None, want, ReasonCode::PROTOCOL_ERROR);
    // MQTT 5 allows it (3.1.2.9).
    let mut rest = props_block(&[]);
    rest.extend(lp(b"id"));
    rest.extend(lp(b"secret"));
    let v5 = frame(0x10, &connect_body(b"MQTT", 5, 0x42, &rest));
    let Packet::Connect(c) = decode_ok(&v5, None) else {
        panic!("expected CONNECT")
    };
    assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
    assert_eq!(c.username, None);
}

#[test]
fn connect_body_must_match_its_flags() {
    // User name flag set, but the packet ends after the client id.
    let body = connect_body(b"MQTT", 4, 0x82, &lp(b"id"));
    let want = MqttError::Truncated {
        packet: PacketType::Connect,
        field: "user name",
    };
    assert_rejected(
        &frame(0x10, &body),
        None,
        want,
        ReasonCode::MALFORMED_PACKET,
    );
    // No flags, but a stray field follows.
    let body = connect_body(b"MQTT", 4, 0x02, &[&lp(b"id")[..], &lp(b"x")].concat());
    let want = MqttError::TrailingBytes {
        packet: PacketType::Connect,
        extra: 3,
    };
    assert_rejected(
        &frame(0x10, &body),
        None,
        want,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn properties_that_may_appear_once() {
    let twice = [0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2];
    let code = ReasonCode::PROTOCOL_ERROR;
    assert_rejected(
        &publish_v5_with(&twice),
        V5,
        MqttError::DuplicateProperty(0x02),
        code,
    );
    // Subscription Identifier: once in SUBSCRIBE, any number in PUBLISH.
    let ids = [0x0B, 0x01, 0x0B, 0x02];
    let mut sub = vec![0x00, 0x01];
    sub.extend(props_block(&ids));
    sub.extend(lp(b"a"));
    sub.push(0x00);
    assert_rejected(
        &frame(0x82, &sub),
        V5,
        MqttError::DuplicateProperty(0x0B),
        code,
    );
    let Packet::Publish(p) = decode_ok(&publish_v5_with(&ids), V5) else {
        panic!("expected PUBLISH")
    };
    assert_eq!(p.properties.subscription_identifiers.len(), 2);
    // User Property may repeat, order kept.
    let users = [0x26, 0, 1, b'k', 0, 1, b'1', 0x26, 0, 1, b'k', 0, 1, b'2'];
    let Packet::Publish(p) = decode_ok(&publish_v5_with(&users), V5) else {
        panic!("expected PUBLISH")
    };
    let values: Vec<&str> = p
        .properties
        .user_properties
        .iter()
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(values, ["1", "2"]);
}

#[test]
fn unknown_property_identifier_is_malformed() {
    let code = ReasonCode::MALFORMED_PACKET;
    assert_rejected(
        &publish_v5_with(&[0x7F, 0x00]),
        V5,
        MqttError::UnknownProperty(0x7F),
        code,
    );
    assert_rejected(
        &publish_v5_with(&[0x00]),
        V5,
        MqttError::UnknownProperty(0),
        code,
    );
}

#[test]
fn properties_not_allowed_in_the_packet_are_malformed() {
    let code = ReasonCode::MALFORMED_PACKET;
    let want = MqttError::PropertyNotAllowed {
        property: 0x11,
        scope: "PUBLISH",
    };
    assert_rejected(&publish_v5_with(&[0x11, 0, 0, 0, 1]), V5, want, code);
    // Will Delay Interval belongs in the will properties, not CONNECT's.
    let mut rest = props_block(&[0x18, 0, 0, 0, 1]);
    rest.extend(lp(b"id"));
    let body = connect_body(b"MQTT", 5, 0x02, &rest);
    let want = MqttError::PropertyNotAllowed {
        property: 0x18,
        scope: "CONNECT",
    };
    assert_rejected(&frame(0x10, &body), None, want, code);
    // Topic Alias in PUBACK.
    let mut puback = vec![0x00, 0x01, 0x00];
    puback.extend(props_block(&[0x23, 0x00, 0x01]));
    let want = MqttError::PropertyNotAllowed {
        property: 0x23,
        scope: "PUBACK/PUBREC/PUBREL/PUBCOMP",
    };
    assert_rejected(&frame(0x40, &puback), V5, want, code);
}

#[test]
fn property_values_out_of_range() {
    let code = ReasonCode::PROTOCOL_ERROR;
    let bad = MqttError::InvalidPropertyValue;
    assert_rejected(&publish_v5_with(&[0x01, 0x02]), V5, bad(0x01), code);
    assert_rejected(&publish_v5_with(&[0x23, 0x00, 0x00]), V5, bad(0x23), code);
    assert_rejected(&publish_v5_with(&[0x0B, 0x00]), V5, bad(0x0B), code);
    let connack = |entries: &[u8]| {
        let mut body = vec![0x00, 0x00];
        body.extend(props_block(entries));
        frame(0x20, &body)
    };
    assert_rejected(&connack(&[0x24, 0x02]), V5, bad(0x24), code);
    assert_rejected(&connack(&[0x21, 0x00, 0x00]), V5, bad(0x21), code);
    assert_rejected(&connack(&[0x27, 0, 0, 0, 0]), V5, bad(0x27), code);
    assert_rejected(&connack(&[0x25, 0x02]), V5, bad(0x25), code);
    // Authentication Data without an Authentication Method.
    assert_rejected(&connack(&[0x16, 0x00, 0x01, 0xAA]), V5, bad(0x16), code);
    let connect = |entries: &[u8]| {
        let mut rest = props_block(entries);
        rest.extend(lp(b"id"));
        frame(0x10, &connect_body(b"MQTT", 5, 0x02, &rest))
    };
    assert_rejected(&connect(&[0x17, 0x05]), None, bad(0x17), code);
    assert_rejected(&connect(&[0x19, 0xFF]), None, bad(0x19), code);
}

#[test]
fn property_block_longer_than_the_packet_is_truncated() {
    let mut body = lp(b"t");
    body.extend_from_slice(&[0x05, 0x01]);
    let want = MqttError::Truncated {
        packet: PacketType::Publish,
        field: "properties",
    };
    assert_rejected(&frame(0x30, &body), V5, want, ReasonCode::MALFORMED_PACKET);
    // A property value cut by the end of the block.
    let want = MqttError::Truncated {
        packet: PacketType::Publish,
        field: "Message Expiry Interval",
    };
    let cut = publish_v5_with(&[0x02, 0x00, 0x00]);
    assert_rejected(&cut, V5, want, ReasonCode::MALFORMED_PACKET);
    // Property length not in shortest form.
    let mut body = lp(b"t");
    body.extend_from_slice(&[0x80, 0x00]);
    let want = MqttError::MalformedVarint {
        field: "property length",
    };
    assert_rejected(&frame(0x30, &body), V5, want, ReasonCode::MALFORMED_PACKET);
}

#[test]
fn reason_codes_must_belong_to_the_packet() {
    let code = ReasonCode::PROTOCOL_ERROR;
    let want = |packet, code| MqttError::InvalidReasonCode { packet, code };
    // 0x92 is PUBREL/PUBCOMP only.
    assert_rejected(
        &[0x40, 0x03, 0x00, 0x01, 0x92],
        V5,
        want(PacketType::PubAck, 0x92),
        code,
    );
    assert_rejected(&[0xF0, 0x01, 0x01], V5, want(PacketType::Auth, 0x01), code);
    assert_rejected(
        &[0xE0, 0x01, 0x05],
        V5,
        want(PacketType::Disconnect, 0x05),
        code,
    );
    // 3.1.1 CONNACK return codes stop at 5; SUBACK has 0, 1, 2, 0x80.
    assert_rejected(
        &[0x20, 0x02, 0x00, 0x06],
        V311,
        want(PacketType::ConnAck, 0x06),
        code,
    );
    assert_rejected(
        &[0x90, 0x03, 0x00, 0x01, 0x87],
        V311,
        want(PacketType::SubAck, 0x87),
        code,
    );
}

#[test]
fn connack_flags_and_session_present() {
    let want = MqttError::ReservedBits {
        field: "connect acknowledge flags",
    };
    assert_rejected(
        &[0x20, 0x02, 0x02, 0x00],
        V311,
        want,
        ReasonCode::MALFORMED_PACKET,
    );
    let want = MqttError::SessionPresentOnFailure;
    assert_rejected(
        &[0x20, 0x02, 0x01, 0x05],
        V311,
        want.clone(),
        ReasonCode::PROTOCOL_ERROR,
    );
    assert_rejected(
        &[0x20, 0x03, 0x01, 0x87, 0x00],
        V5,
        want,
        ReasonCode::PROTOCOL_ERROR,
    );
}

#[test]
fn subscription_options() {
    let subscribe = |level: Option<ProtocolLevel>, options: u8| {
        let mut body = vec![0x00, 0x01];
        if level == V5 {
            body.extend(props_block(&[]));
        }
        body.extend(lp(b"$share/g/a"));
        body.push(options);
        frame(0x82, &body)
    };
    let reserved = MqttError::ReservedBits {
        field: "subscription options",
    };
    let malformed = ReasonCode::MALFORMED_PACKET;
    // 3.1.1 defines only the QoS bits.
    assert_rejected(&subscribe(V311, 0x04), V311, reserved.clone(), malformed);
    assert_rejected(&subscribe(V5, 0x40), V5, reserved, malformed);
    let qos3 = MqttError::InvalidQos {
        field: "subscription options",
    };
    assert_rejected(&subscribe(V5, 0x03), V5, qos3, malformed);
    let rh = MqttError::InvalidRetainHandling;
    assert_rejected(&subscribe(V5, 0x30), V5, rh, ReasonCode::PROTOCOL_ERROR);
    let nl = MqttError::NoLocalOnSharedSubscription;
    assert_rejected(&subscribe(V5, 0x04), V5, nl, ReasonCode::PROTOCOL_ERROR);
    let Packet::Subscribe(s) = decode_ok(&subscribe(V5, 0x2A), V5) else {
        panic!("expected SUBSCRIBE")
    };
    assert_eq!(
        s.filters[0].options,
        SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: false,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        }
    );
}

#[test]
fn packet_too_large_is_refused_from_the_fixed_header() {
    let mut d = Decoder::new(V5, 100);
    // Only the header of a 1003-byte PUBLISH has arrived.
    let mut buf = BytesMut::from(&[0x30, 0xE8, 0x07][..]);
    let e = d.decode(&mut buf).expect_err("too large");
    assert_eq!(
        e,
        MqttError::PacketTooLarge {
            size: 1003,
            max: 100
        }
    );
    assert_eq!(e.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    // The limit counts the fixed header: 100 bytes exactly is fine.
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: MqttString::from_static("t"),
        packet_id: None,
        payload: Bytes::from(vec![0; 94]),
        properties: Properties::default(),
    });
    let wire = encode_vec(&packet, ProtocolLevel::V5);
    assert_eq!(wire.len(), 100);
    let mut d = Decoder::new(V5, 100);
    assert_eq!(d.decode(&mut BytesMut::from(&wire[..])), Ok(Some(packet)));
}

#[test]
fn fixed_size_packets_reject_extra_bytes() {
    let trailing = |packet, extra| MqttError::TrailingBytes { packet, extra };
    let code = ReasonCode::MALFORMED_PACKET;
    assert_rejected(
        &[0xC0, 0x01, 0x00],
        V5,
        trailing(PacketType::PingReq, 1),
        code,
    );
    assert_rejected(
        &[0xE0, 0x01, 0x00],
        V311,
        trailing(PacketType::Disconnect, 1),
        code,
    );
    // 3.1.1 acknowledgements are exactly the packet id.
    assert_rejected(
        &[0x40, 0x03, 0x00, 0x01, 0x00],
        V311,
        trailing(PacketType::PubAck, 1),
        code,
    );
    assert_rejected(
        &[0xB0, 0x03, 0x00, 0x01, 0x00],
        V311,
        trailing(PacketType::UnsubAck, 1),
        code,
    );
    let truncated = MqttError::Truncated {
        packet: PacketType::PubAck,
        field: "packet identifier",
    };
    assert_rejected(&[0x40, 0x01, 0x00], V5, truncated, code);
}

#[test]
fn first_packet_must_be_connect_when_the_level_is_unknown() {
    let want = MqttError::ProtocolLevelUnknown {
        packet: PacketType::Publish,
    };
    assert_rejected(
        &frame(0x30, &lp(b"t")),
        None,
        want,
        ReasonCode::PROTOCOL_ERROR,
    );
    // An HTTP client on the MQTT port: 'G' = 0x47 reads as a PUBACK type.
    let want = MqttError::ProtocolLevelUnknown {
        packet: PacketType::PubAck,
    };
    assert_rejected(
        b"GET / HTTP/1.1\r\n",
        None,
        want,
        ReasonCode::PROTOCOL_ERROR,
    );
}

#[test]
fn decoder_stays_failed_after_an_error() {
    let mut d = Decoder::new(V5, 1024);
    let mut buf = BytesMut::from(&[0x00, 0x00][..]);
    let first = d.decode(&mut buf).expect_err("reserved type");
    buf.clear();
    buf.extend_from_slice(&[0xC0, 0x00]);
    assert_eq!(
        d.decode(&mut buf),
        Err(first),
        "a desynchronised stream must not resume"
    );
}

/// Every decode error's reason code is one a server may send: in a
/// DISCONNECT, or (Unsupported Protocol Version) in CONNACK.
#[test]
fn every_error_reason_code_is_sendable() {
    let errors = [
        MqttError::ReservedPacketType(0),
        MqttError::PacketTooLarge { size: 1, max: 0 },
        MqttError::DupOnQos0,
        MqttError::WildcardInTopicName('+'),
        MqttError::InvalidTopicFilter("empty"),
        MqttError::UnsupportedProtocolVersion(3),
    ];
    for e in errors {
        let code = e.reason_code();
        let ok = code.valid_in(PacketType::Disconnect, ProtocolLevel::V5)
            || (code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
                && code.valid_in(PacketType::ConnAck, ProtocolLevel::V5));
        assert!(ok, "{e}: {code:?}");
    }
}
