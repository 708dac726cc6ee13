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
mod strategies;
mod validation;

use strategies::*;

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

proptest! {
    /// `encode_head` followed by the payload it returns is exactly what
    /// `encode` writes (the gathered write of a shared room payload,
    /// issue #18 item 2, relies on it).
    #[test]
    fn encode_head_then_payload_is_encode(
        (level, packet) in prop_oneof![Just(ProtocolLevel::V311), Just(ProtocolLevel::V5)]
            .prop_flat_map(|l| (Just(l), arb_packet(l)))
    ) {
        let mut whole = BytesMut::new();
        let mut head = BytesMut::new();
        let whole_ok = encode(&packet, level, &mut whole).is_ok();
        match encode_head(&packet, level, &mut head) {
            Ok(tail) => {
                prop_assert!(whole_ok);
                if !matches!(packet, Packet::Publish(_)) {
                    prop_assert!(tail.is_empty());
                }
                head.extend_from_slice(&tail);
                prop_assert_eq!(&head[..], &whole[..]);
            }
            Err(_) => {
                prop_assert!(!whole_ok);
                prop_assert!(head.is_empty());
            }
        }
    }
}
