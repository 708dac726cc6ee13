//! Free-form topics (`streams.rs`, issue #21): the bridge alone.

use super::*;
use surepush_proto::topic_stream::{frame_payload, stream_id};

/// A live v5 bridge of `ME` whose token grants `acl`, free-form topics
/// open or not.
fn live_with(acl: surepush_token::Acl, topics_open: bool) -> Harness {
    let mut claims = me();
    claims.acl = acl;
    let mut h = Harness::of(Bridge::new(
        connect(ProtocolLevel::V5, true),
        "token".into(),
        claims,
        None,
        1000,
        BridgeParams {
            topics_open,
            ..params()
        },
    ));
    h.core();
    h.b.on_frame(native_connack(0, None));
    h.packets();
    let request = h.sync_request();
    h.b.on_frame(Frame::SyncPage(SyncPage {
        request_id: request,
        head: Seq(0),
        end: true,
        gap: false,
        items: vec![],
    }));
    h.core();
    h
}

fn stream_push(topic: &str, stored_name: &str, seq: u64, payload: &'static [u8]) -> Frame {
    Frame::RoomPush(RoomPush {
        room: stream_id(topic),
        seq: Seq(seq),
        from: UserId(3),
        ts_ms: 0,
        qos: Qos::AtLeastOnce,
        attrs: Default::default(),
        payload: frame_payload(stored_name, payload),
    })
}

fn publish_packet(topic: &str, id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: MqttString::from(topic.to_string()),
        packet_id: Some(pid(id)),
        payload: Bytes::from_static(b"v"),
        properties: Properties::default(),
    })
}

#[test]
fn a_publish_to_a_free_form_topic_is_a_send_to_its_stream_with_the_name_framed() {
    let mut h = live_with(Default::default(), true);
    h.b.on_packet(publish_packet("sensors/1/temp", 4));
    match h.core().as_slice() {
        [Frame::Send(s)] => {
            assert_eq!(s.to, UserId(stream_id("sensors/1/temp")));
            assert_eq!(s.payload, frame_payload("sensors/1/temp", b"v"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!h.retained_written(), "RETAIN is ignored for streams");
}

#[test]
fn a_stream_subscriber_gets_its_names_messages_and_skips_a_colliding_name() {
    let mut h = live_with(Default::default(), true);
    h.subscribe(2, &[("chat/general", QoS::ExactlyOnce)]);
    let room = stream_id("chat/general");
    match h.core().as_slice() {
        [Frame::Subscribe(s)] => assert_eq!((s.room, s.qos), (room, Qos::AtLeastOnce)),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.packets(), vec![], "SUBACK waits for the core");
    h.b.on_frame(Frame::SubAck(proto::SubAck {
        room,
        head: Seq(0),
        first: Seq(1),
        result: SubResult::Ok,
    }));
    // Topics grant QoS 2 (exactly once by the bridge; the native
    // subscription is QoS 1).
    match h.packets().as_slice() {
        [Packet::SubAck(a)] => assert_eq!(a.reasons, vec![ReasonCode(2)]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.b.poll_state_query(),
        None,
        "no retained message for streams"
    );
    // Seq 1 carries another name (as a hash collision would): not
    // delivered, acknowledged with seq 2 once that one is.
    h.b.on_frame(stream_push("chat/general", "chat/other", 1, b"x"));
    h.b.on_frame(stream_push("chat/general", "chat/general", 2, b"hello"));
    let sent = h.publishes();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].topic.as_str(), "chat/general");
    assert_eq!(&sent[0].payload[..], b"hello");
    assert_eq!(
        h.core(),
        vec![Frame::RoomAck { room, seq: Seq(1) }],
        "the skipped one is acknowledged at once"
    );
    h.b.on_packet(Packet::PubAck(PubReply::success(
        sent[0].packet_id.unwrap(),
    )));
    assert_eq!(h.core(), vec![Frame::RoomAck { room, seq: Seq(2) }]);
    h.b.on_packet(Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(3),
        filters: vec![MqttString::from("chat/general")],
        properties: Properties::default(),
    }));
    assert_eq!(h.core(), vec![Frame::Unsubscribe { room }]);
    match h.packets().as_slice() {
        [Packet::UnsubAck(a)] => assert_eq!(a.reasons, vec![ReasonCode::SUCCESS]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn closed_topics_need_the_tokens_grant_and_refusals_never_reach_the_core() {
    let mut h = live_with(Default::default(), false);
    h.subscribe(2, &[("chat/general", QoS::AtLeastOnce)]);
    assert_eq!(h.core(), vec![]);
    match h.packets().as_slice() {
        [Packet::SubAck(a)] => assert_eq!(a.reasons, vec![ReasonCode::NOT_AUTHORIZED]),
        other => panic!("{other:?}"),
    }
    h.b.on_packet(publish_packet("chat/general", 4));
    assert_eq!(h.core(), vec![]);
    match h.packets().as_slice() {
        [Packet::PubAck(a)] => assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("{other:?}"),
    }
    let acl = surepush_token::Acl::new(&["chat/+"], &["chat/#"]).expect("valid");
    let mut h = live_with(acl, false);
    h.subscribe(
        2,
        &[
            ("chat/general", QoS::AtLeastOnce),
            ("news/x", QoS::AtLeastOnce),
        ],
    );
    assert!(matches!(h.core().as_slice(), [Frame::Subscribe(_)]));
    h.b.on_packet(publish_packet("chat/general/deep", 4));
    assert!(matches!(h.core().as_slice(), [Frame::Send(_)]));
}
