//! MQTT 5 message properties carried end to end (issue #21 item 3): a v5
//! PUBLISH's message properties become the SEND's attributes, a pushed
//! message's attributes become the PUBLISH's properties again (with the
//! Message Expiry Interval less the wait, or not sent at all once it
//! passed), and v3.1.1 has none either way.

use super::*;
use crate::PayloadFormat;

/// Every message property, as a v5 publisher may send them.
fn message_properties() -> Properties {
    Properties {
        payload_format: Some(PayloadFormat::Utf8),
        message_expiry_interval: Some(60),
        content_type: Some(MqttString::from("text/plain")),
        response_topic: Some(MqttString::from("user/9")),
        correlation_data: Some(Bytes::from_static(b"\x00corr")),
        user_properties: vec![
            (MqttString::from("k"), MqttString::from("v1")),
            (MqttString::from("k"), MqttString::from("v2")),
            (MqttString::from("a"), MqttString::from("b")),
        ],
        ..Properties::default()
    }
}

/// The attributes a v5 PUBLISH to user 8 with `properties` makes.
fn sent_attrs(level: ProtocolLevel, properties: Properties) -> Bytes {
    let mut h = Harness::live(level, &[]);
    h.packets();
    h.core();
    h.b.on_packet(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: MqttString::from("user/8"),
        packet_id: Some(pid(1)),
        payload: Bytes::from_static(b"x"),
        properties,
    }));
    match h.core().as_slice() {
        [Frame::Send(s)] => s.attrs.clone(),
        other => panic!("{other:?}"),
    }
}

/// A push of inbox message `seq` received at `ts_ms` with `attrs`.
fn push_with(seq: u64, ts_ms: u64, attrs: Bytes) -> Frame {
    Frame::Push(Push {
        ts_ms,
        attrs,
        ..push(seq, ME.0, Qos::AtLeastOnce)
    })
}

#[test]
fn a_v5_subscriber_gets_the_v5_publishers_message_properties_and_then_from() {
    let mut with_alias = message_properties();
    with_alias.topic_alias = NonZeroU16::new(1);
    let attrs = sent_attrs(ProtocolLevel::V5, with_alias);
    assert!(!attrs.is_empty());
    assert!(
        sent_attrs(ProtocolLevel::V5, Properties::default()).is_empty(),
        "no properties, no attributes"
    );
    let mut h = Harness::live(ProtocolLevel::V5, &[("user/7", QoS::AtLeastOnce)]);
    h.packets();
    h.core();
    let t = 1_800_000_000_000;
    h.b.set_clock(t + 10_500);
    h.b.on_frame(push_with(1, t, attrs));
    let got = h.publishes();
    assert_eq!(got.len(), 1);
    let mut want = message_properties();
    want.message_expiry_interval = Some(50);
    want.user_properties
        .push((MqttString::from("from"), MqttString::from("99")));
    assert_eq!(got[0].properties, want, "the topic alias is not forwarded");
    assert_eq!(got[0].payload, Bytes::from_static(b"m1"));
}

#[test]
fn an_expired_message_is_not_sent_but_acknowledged_and_counted() {
    let mut props = message_properties();
    props.message_expiry_interval = Some(5);
    let attrs = sent_attrs(ProtocolLevel::V5, props);
    let mut h = Harness::live(ProtocolLevel::V5, &[("user/7", QoS::AtLeastOnce)]);
    h.packets();
    h.core();
    let t = 1_800_000_000_000;
    h.b.set_clock(t + 5_000);
    h.b.on_frame(push_with(1, t, attrs));
    h.b.on_frame(push_with(2, t, Bytes::new()));
    let got = h.publishes();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].payload, Bytes::from_static(b"m2"));
    assert_eq!(h.b.take_expired(), 1);
    assert_eq!(h.b.take_expired(), 0);
    h.b.on_packet(Packet::PubAck(PubReply::success(got[0].packet_id.unwrap())));
    assert_eq!(h.core(), vec![Frame::Ack(Seq(2))], "1 counts as done");
}

#[test]
fn v311_clients_neither_send_nor_get_properties() {
    let attrs = sent_attrs(ProtocolLevel::V5, message_properties());
    let mut h = Harness::live(ProtocolLevel::V311, &[("user/7", QoS::AtLeastOnce)]);
    h.packets();
    h.core();
    h.b.on_frame(push_with(1, 0, attrs));
    let got = h.publishes();
    assert_eq!(got.len(), 1);
    assert!(got[0].properties.is_empty());
    // A v3.1.1 PUBLISH decodes with empty properties: no attributes.
    assert!(sent_attrs(ProtocolLevel::V311, Properties::default()).is_empty());
}

#[test]
fn attributes_that_are_no_message_properties_are_not_forwarded() {
    let mut h = Harness::live(ProtocolLevel::V5, &[("user/7", QoS::AtLeastOnce)]);
    h.packets();
    h.core();
    // A native sender's bytes; and a Response Topic with a wildcard.
    let mut bad_topic = bytes::BytesMut::new();
    bad_topic.extend_from_slice(&[0x08, 0, 3]);
    bad_topic.extend_from_slice(b"a/#");
    for (seq, attrs) in [
        (1, Bytes::from_static(b"\xff\xfe")),
        (2, bad_topic.freeze()),
    ] {
        h.b.on_frame(push_with(seq, 0, attrs));
    }
    let got = h.publishes();
    assert_eq!(got.len(), 2);
    for p in got {
        assert_eq!(
            p.properties.user_properties,
            vec![(MqttString::from("from"), MqttString::from("99"))]
        );
        assert_eq!(p.properties.response_topic, None);
    }
}
