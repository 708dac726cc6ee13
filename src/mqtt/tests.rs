//! Codec tests: property-based round trips for every packet type at both
//! levels, arbitrary and exhaustive stream splits, byte-exact vectors
//! written out from the specifications, remaining-length edges and the
//! zero-copy guarantee. The bad-input catalogue is in `tests/validation.rs`,
//! encoder refusals in `tests/encoder.rs`, topic matching in
//! `tests/matching.rs`.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::wire::{parse_varint, varint_len, Counter, Sink, VARINT_MAX};
use super::*;

mod encoder;
mod matching;
mod validation;

const LEVELS: [ProtocolLevel; 2] = [ProtocolLevel::V311, ProtocolLevel::V5];

// ---------------------------------------------------------------- helpers

/// A whole packet: first byte, remaining length, body.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = BytesMut::new();
    len.write_varint(body.len() as u32, "test")
        .expect("test bodies are small");
    out.extend_from_slice(&len);
    out.extend_from_slice(body);
    out
}

/// An MQTT 5 property block: length prefix plus the given bytes.
fn props_block(entries: &[u8]) -> Vec<u8> {
    assert!(entries.len() < 128, "one-byte property length in tests");
    let mut out = vec![entries.len() as u8];
    out.extend_from_slice(entries);
    out
}

/// A length-prefixed string or binary field.
fn lp(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

fn decode_once(bytes: &[u8], level: Option<ProtocolLevel>) -> Result<Option<Packet>, MqttError> {
    let mut d = Decoder::new(level, u32::MAX);
    let mut buf = BytesMut::from(bytes);
    d.decode(&mut buf)
}

/// Decodes a stream that must be exactly one valid packet.
fn decode_ok(bytes: &[u8], level: Option<ProtocolLevel>) -> Packet {
    let mut d = Decoder::new(level, u32::MAX);
    let mut buf = BytesMut::from(bytes);
    let p = d
        .decode(&mut buf)
        .expect("valid packet")
        .expect("complete packet");
    assert!(buf.is_empty(), "packet fully consumed");
    p
}

/// The error a single packet must be rejected with.
fn decode_err(bytes: &[u8], level: Option<ProtocolLevel>) -> MqttError {
    decode_once(bytes, level).expect_err("must be rejected")
}

fn encode_vec(p: &Packet, level: ProtocolLevel) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(p, level, &mut out).expect("encodable");
    out.to_vec()
}

fn pid(id: u16) -> PacketId {
    PacketId::new(id).expect("test ids are nonzero")
}

fn decode_stream(d: &mut Decoder, buf: &mut BytesMut, out: &mut Vec<Packet>) {
    while let Some(p) = d.decode(buf).expect("valid stream") {
        out.push(p);
    }
}

// ------------------------------------------------------------- strategies

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn arb_text(max: usize) -> impl Strategy<Value = MqttString> {
    proptest::string::string_regex(&format!("[a-zA-Z0-9 _./é漢-]{{0,{max}}}"))
        .expect("valid regex")
        .prop_map(MqttString::from)
}

fn arb_topic() -> impl Strategy<Value = MqttString> {
    "\\$?[a-z0-9é]{1,4}(/[a-z0-9]{0,4}){0,3}".prop_map(MqttString::from)
}

fn arb_filter(shared_allowed: bool) -> impl Strategy<Value = MqttString> {
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

fn arb_qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn arb_packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(pid)
}

fn legal_codes(kind: PacketType, level: ProtocolLevel) -> Vec<ReasonCode> {
    (0..=u8::MAX)
        .map(ReasonCode)
        .filter(|c| c.valid_in(kind, level))
        .collect()
}

fn arb_code(kind: PacketType, level: ProtocolLevel) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(legal_codes(kind, level))
}

/// Clears the property with identifier `id`.
fn clear(p: &mut Properties, id: u8) {
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
fn arb_properties(scope: PropertyScope) -> impl Strategy<Value = Properties> {
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

fn arb_props_at(level: ProtocolLevel, scope: PropertyScope) -> BoxedStrategy<Properties> {
    if level.is_v5() {
        arb_properties(scope).boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

fn arb_connect(level: ProtocolLevel) -> impl Strategy<Value = Packet> {
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

fn arb_publish(level: ProtocolLevel) -> impl Strategy<Value = Packet> {
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

fn arb_pub_reply(kind: PacketType, level: ProtocolLevel) -> impl Strategy<Value = Packet> {
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

fn arb_subscription(level: ProtocolLevel) -> impl Strategy<Value = Subscription> {
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
fn arb_packet(level: ProtocolLevel) -> impl Strategy<Value = Packet> {
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

fn arb_level() -> impl Strategy<Value = ProtocolLevel> {
    proptest::sample::select(LEVELS.to_vec())
}

fn arb_level_and_packets(max: usize) -> impl Strategy<Value = (ProtocolLevel, Vec<Packet>)> {
    arb_level().prop_flat_map(move |level| (Just(level), vec(arb_packet(level), 1..max)))
}

// ------------------------------------------------------------ round trips

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_packet_round_trips_at_both_levels(
        (level, packet) in arb_level().prop_flat_map(|l| (Just(l), arb_packet(l)))
    ) {
        let mut buf = BytesMut::new();
        encode(&packet, level, &mut buf).expect("generated packets are valid");
        prop_assert_eq!(buf.len(), encoded_len(&packet, level).expect("valid"));
        let mut d = Decoder::new(Some(level), u32::MAX);
        prop_assert_eq!(d.decode(&mut buf).expect("decodes"), Some(packet));
        prop_assert!(buf.is_empty());
    }

    /// A stream cut at arbitrary points decodes to the same packets.
    #[test]
    fn split_streams_decode_identically(
        (level, packets) in arb_level_and_packets(8),
        cuts in vec(0usize..4096, 0..16),
    ) {
        let mut stream = BytesMut::new();
        for p in &packets {
            encode(p, level, &mut stream).expect("generated packets are valid");
        }
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.extend([0, stream.len()]);
        cuts.sort_unstable();
        let mut d = Decoder::new(Some(level), u32::MAX);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for w in cuts.windows(2) {
            buf.extend_from_slice(&stream[w[0]..w[1]]);
            decode_stream(&mut d, &mut buf, &mut got);
        }
        prop_assert_eq!(got, packets);
        prop_assert!(buf.is_empty());
    }

    /// A server-side decoder that does not know the level yet learns it
    /// from the CONNECT at the head of the stream, fed one byte at a time.
    #[test]
    fn level_is_learned_from_connect(
        (level, connect, rest) in arb_level().prop_flat_map(|l| {
            (Just(l), arb_connect(l), vec(arb_packet(l), 0..4))
        })
    ) {
        let mut stream = BytesMut::new();
        encode(&connect, level, &mut stream).expect("valid");
        for p in &rest {
            encode(p, level, &mut stream).expect("valid");
        }
        let mut d = Decoder::new(None, u32::MAX);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in stream.iter() {
            buf.extend_from_slice(&[*byte]);
            decode_stream(&mut d, &mut buf, &mut got);
        }
        prop_assert_eq!(d.protocol_level(), Some(level));
        prop_assert_eq!(got.first(), Some(&connect));
        prop_assert_eq!(&got[1..], &rest[..]);
    }

    /// Arbitrary bytes never panic the decoder: they decode, wait, or fail
    /// with a typed error.
    #[test]
    fn arbitrary_bytes_never_panic(
        data in vec(any::<u8>(), 0..300),
        level in option::of(arb_level()),
    ) {
        let mut d = Decoder::new(level, 256);
        let mut buf = BytesMut::from(&data[..]);
        for _ in 0..64 {
            match d.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Flipping one byte of a valid packet never panics either (mutations
    /// stay close to the grammar, unlike random bytes).
    #[test]
    fn mutated_packets_never_panic(
        (level, packet) in arb_level().prop_flat_map(|l| (Just(l), arb_packet(l))),
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        let mut bytes = encode_vec(&packet, level);
        let i = at.index(bytes.len());
        bytes[i] = value;
        let _ = decode_once(&bytes, Some(level));
    }

    #[test]
    fn varint_round_trips(v in 0..=VARINT_MAX) {
        let mut buf = BytesMut::new();
        buf.write_varint(v, "test").expect("in range");
        prop_assert_eq!(buf.len(), varint_len(v));
        prop_assert_eq!(parse_varint(&buf, "test"), Ok(Some((v, buf.len()))));
    }
}

/// Every split point of a mixed stream, exhaustively, and byte by byte.
#[test]
fn every_single_split_of_a_stream_decodes_the_same() {
    let level = ProtocolLevel::V5;
    let packets = vec![
        Packet::Connect(Box::new(Connect {
            protocol_level: level,
            clean_start: true,
            keep_alive: 30,
            client_id: MqttString::from_static("dev-1"),
            will: None,
            username: Some(MqttString::from_static("u")),
            password: Some(Bytes::from_static(b"p")),
            properties: Properties {
                session_expiry_interval: Some(60),
                ..Properties::default()
            },
        })),
        publish_v5_vector(),
        Packet::PubAck(PubReply::success(pid(7))),
        Packet::PingReq,
        Packet::Disconnect(Disconnect::normal()),
    ];
    let mut stream = BytesMut::new();
    for p in &packets {
        encode(p, level, &mut stream).expect("valid");
    }
    for split in 0..=stream.len() {
        let mut d = Decoder::new(None, 1024);
        let mut buf = BytesMut::from(&stream[..split]);
        let mut got = Vec::new();
        decode_stream(&mut d, &mut buf, &mut got);
        buf.extend_from_slice(&stream[split..]);
        decode_stream(&mut d, &mut buf, &mut got);
        assert_eq!(got, packets, "split at {split}");
    }
}

// ------------------------------------------------------ byte-exact vectors

#[test]
fn connect_v311_vector() {
    // 3.1.1 section 3.1: protocol name "MQTT", level 4, Clean Session,
    // keep alive 60, client identifier "abc".
    let wire = [
        0x10, 0x0F, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x03, b'a',
        b'b', b'c',
    ];
    let packet = Packet::Connect(Box::new(Connect {
        protocol_level: ProtocolLevel::V311,
        clean_start: true,
        keep_alive: 60,
        client_id: MqttString::from_static("abc"),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }));
    assert_eq!(encode_vec(&packet, ProtocolLevel::V311), wire);
    assert_eq!(decode_ok(&wire, None), packet);
}

#[test]
fn fixed_size_packet_vectors() {
    use ProtocolLevel::{V311, V5};
    let cases: [(Packet, ProtocolLevel, &[u8]); 9] = [
        (Packet::PingReq, V311, &[0xC0, 0x00]),
        (Packet::PingResp, V5, &[0xD0, 0x00]),
        (
            Packet::Disconnect(Disconnect::normal()),
            V311,
            &[0xE0, 0x00],
        ),
        (Packet::Disconnect(Disconnect::normal()), V5, &[0xE0, 0x00]),
        (
            Packet::Disconnect(Disconnect {
                reason: ReasonCode::SESSION_TAKEN_OVER,
                properties: Properties::default(),
            }),
            V5,
            &[0xE0, 0x01, 0x8E],
        ),
        // PUBREL carries the required flags 0b0010.
        (
            Packet::PubRel(PubReply::success(pid(1))),
            V311,
            &[0x62, 0x02, 0x00, 0x01],
        ),
        (
            Packet::PubAck(PubReply::success(pid(1))),
            V5,
            &[0x40, 0x02, 0x00, 0x01],
        ),
        (
            Packet::PubAck(PubReply {
                packet_id: pid(1),
                reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
                properties: Properties::default(),
            }),
            V5,
            &[0x40, 0x03, 0x00, 0x01, 0x10],
        ),
        // MQTT 5 CONNACK: flags, reason, empty property block.
        (
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: ReasonCode::SUCCESS,
                properties: Properties::default(),
            }),
            V5,
            &[0x20, 0x03, 0x00, 0x00, 0x00],
        ),
    ];
    for (packet, level, wire) in cases {
        assert_eq!(encode_vec(&packet, level), wire, "{packet:?}");
        assert_eq!(decode_ok(wire, Some(level)), packet);
    }
}

#[test]
fn subscribe_v311_vector() {
    // SUBSCRIBE (flags 0b0010), id 1, "a/#" at QoS 1.
    let wire = [0x82, 0x08, 0x00, 0x01, 0x00, 0x03, b'a', b'/', b'#', 0x01];
    let packet = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: vec![Subscription {
            filter: MqttString::from_static("a/#"),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        }],
        properties: Properties::default(),
    });
    assert_eq!(encode_vec(&packet, ProtocolLevel::V311), wire);
    assert_eq!(decode_ok(&wire, Some(ProtocolLevel::V311)), packet);
}

fn publish_v5_vector() -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: MqttString::from_static("a/b"),
        packet_id: Some(pid(10)),
        payload: Bytes::from_static(b"hi"),
        properties: Properties {
            payload_format: Some(PayloadFormat::Utf8),
            message_expiry_interval: Some(3600),
            content_type: Some(MqttString::from_static("t")),
            topic_alias: NonZeroU16::new(5),
            user_properties: vec![(MqttString::from_static("k"), MqttString::from_static("v"))],
            ..Properties::default()
        },
    })
}

#[test]
fn publish_v5_with_properties_vector() {
    #[rustfmt::skip]
    let wire = [
        0x32, 0x1F,                         // PUBLISH QoS 1, remaining length 31
        0x00, 0x03, b'a', b'/', b'b',       // topic name
        0x00, 0x0A,                         // packet identifier 10
        0x15,                               // property length 21
        0x01, 0x01,                         // payload format indicator: UTF-8
        0x02, 0x00, 0x00, 0x0E, 0x10,       // message expiry interval 3600
        0x03, 0x00, 0x01, b't',             // content type "t"
        0x23, 0x00, 0x05,                   // topic alias 5
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
        b'h', b'i',                         // payload
    ];
    let packet = publish_v5_vector();
    assert_eq!(encode_vec(&packet, ProtocolLevel::V5), wire);
    assert_eq!(decode_ok(&wire, Some(ProtocolLevel::V5)), packet);
}

// ------------------------------------------------------- remaining length

/// A QoS 0 3.1.1 PUBLISH to "t" whose remaining length is `remaining`.
fn publish_with_remaining(remaining: usize) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: MqttString::from_static("t"),
        packet_id: None,
        payload: Bytes::from(vec![0xAB; remaining - 3]),
        properties: Properties::default(),
    })
}

#[test]
fn remaining_length_boundaries_encode_and_decode() {
    let cases: [(usize, &[u8]); 6] = [
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
    ];
    for (remaining, header) in cases {
        let packet = publish_with_remaining(remaining);
        let wire = encode_vec(&packet, ProtocolLevel::V311);
        assert_eq!(&wire[1..1 + header.len()], header, "remaining {remaining}");
        assert_eq!(wire.len(), 1 + header.len() + remaining);
        assert_eq!(decode_ok(&wire, Some(ProtocolLevel::V311)), packet);
    }
}

#[test]
fn remaining_length_zero() {
    assert_eq!(
        decode_ok(&[0xC0, 0x00], Some(ProtocolLevel::V5)),
        Packet::PingReq
    );
    assert_eq!(encoded_len(&Packet::PingResp, ProtocolLevel::V5), Ok(2));
}

#[test]
fn largest_remaining_length_is_parsed_then_checked_against_the_limit() {
    // 0xFF 0xFF 0xFF 0x7F = 268,435,455; the limit rejects it from the
    // header alone, so nothing near 256 MiB is buffered.
    let mut d = Decoder::new(Some(ProtocolLevel::V311), 1 << 20);
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    assert_eq!(
        d.decode(&mut buf),
        Err(MqttError::PacketTooLarge {
            size: MAX_PACKET_SIZE,
            max: 1 << 20
        })
    );
    assert_eq!(MAX_PACKET_SIZE, 268_435_460);
    assert_eq!(
        parse_varint(&[0xFF, 0xFF, 0xFF, 0x7F], "t"),
        Ok(Some((268_435_455, 4)))
    );
    let mut sink = Counter::default();
    assert!(matches!(
        sink.write_varint(VARINT_MAX + 1, "t"),
        Err(EncodeError::TooLong { .. })
    ));
}

#[test]
fn five_byte_remaining_length_is_malformed() {
    let e = decode_err(
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        Some(ProtocolLevel::V5),
    );
    assert_eq!(
        e,
        MqttError::MalformedVarint {
            field: "remaining length"
        }
    );
    assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
    // Rejected as soon as the fourth byte still says "more follows".
    let e = decode_err(&[0x30, 0x80, 0x80, 0x80, 0x80], Some(ProtocolLevel::V5));
    assert!(matches!(e, MqttError::MalformedVarint { .. }));
}

#[test]
fn non_shortest_remaining_length_is_malformed() {
    // 0 encoded in two bytes; [MQTT-1.5.5-1].
    let e = decode_err(&[0xC0, 0x80, 0x00], Some(ProtocolLevel::V311));
    assert!(matches!(e, MqttError::MalformedVarint { .. }));
}

#[test]
fn incomplete_header_waits() {
    for bytes in [&[][..], &[0x30], &[0x30, 0xFF], &[0x30, 0xFF, 0xFF, 0xFF]] {
        assert_eq!(decode_once(bytes, Some(ProtocolLevel::V5)), Ok(None));
    }
}

// ---------------------------------------------------------------- zero copy

#[test]
fn publish_payload_is_a_slice_of_the_decode_buffer() {
    let packet = publish_with_remaining(1000);
    let mut buf = BytesMut::from(&encode_vec(&packet, ProtocolLevel::V311)[..]);
    let (base, len) = (buf.as_ptr() as usize, buf.len());
    let mut d = Decoder::new(Some(ProtocolLevel::V311), u32::MAX);
    let Some(Packet::Publish(p)) = d.decode(&mut buf).expect("valid") else {
        panic!("expected PUBLISH")
    };
    let (payload, topic) = (
        p.payload.as_ptr() as usize,
        p.topic.as_bytes().as_ptr() as usize,
    );
    assert!(payload > base && payload + p.payload.len() == base + len);
    assert!(
        topic > base && topic < payload,
        "topic points into the buffer too"
    );
}
