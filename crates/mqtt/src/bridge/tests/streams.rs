//! Free-form topics (`streams.rs`, issue #21): the bridge alone.

use super::*;
use surepush_proto::topic_stream::{frame_payload, retained_entries, retained_entry, stream_id};
use surepush_proto::StateKey;

/// A live v5 bridge of `ME` whose token grants `acl`, free-form topics
/// open or not.
pub(super) fn live_with(acl: surepush_token::Acl, topics_open: bool) -> Harness {
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
    h.empty_replay();
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
    let id = match h.core().as_slice() {
        [Frame::Send(s)] => {
            assert_eq!(s.to, UserId(stream_id("sensors/1/temp")));
            assert_eq!(s.payload, frame_payload("sensors/1/temp", b"v"));
            s.client_msg_id
        }
        other => panic!("{other:?}"),
    };
    assert!(!h.retained_written(), "set once stored");
    h.b.on_frame(Frame::SendAck(proto::SendAck {
        client_msg_id: id,
        seq: Seq(1),
        own_seq: Seq::ZERO,
        result: SendResult::Stored,
    }));
    h.packets();
    // The retained message is the topic's entry in its stream's record,
    // with the payload as published (retained.rs).
    let w = h
        .stored
        .iter()
        .find(|w| matches!(w.key, StateKey::Retained { .. }))
        .expect("a retained write");
    assert_eq!(
        w.key,
        StateKey::Retained {
            room: UserId(stream_id("sensors/1/temp"))
        }
    );
    let value = w.value.clone().expect("an entry");
    let entries = retained_entries(&value).expect("entries");
    let [(name, body)] = entries.as_slice() else {
        panic!("{entries:?}");
    };
    assert_eq!(*name, "sensors/1/temp");
    let r = crate::bridge::TopicRetained::decode(body).expect("a topic's retained");
    assert_eq!(
        (r.from, r.qos, &r.payload[..]),
        (ME, QoS::AtLeastOnce, &b"v"[..])
    );
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
    // Its retained messages are asked for (retained.rs); the value holds
    // a colliding name's too: only this name's is sent, with RETAIN 1.
    let key = StateKey::Retained { room: UserId(room) };
    assert_eq!(h.b.poll_state_query(), Some(key));
    assert_eq!(h.b.poll_state_query(), None);
    let body = |payload: &'static [u8]| {
        crate::bridge::TopicRetained {
            from: UserId(9),
            qos: QoS::AtLeastOnce,
            ts_ms: 1000,
            attrs: Bytes::new(),
            payload: Bytes::from_static(payload),
        }
        .encode()
    };
    let mut value = retained_entry("chat/other", &body(b"not mine")).to_vec();
    value.extend_from_slice(&retained_entry("chat/general", &body(b"kept")));
    h.b.on_state_value(key, Some(Bytes::from(value)));
    let sent = h.publishes();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (sent[0].topic.as_str(), &sent[0].payload[..], sent[0].retain),
        ("chat/general", &b"kept"[..], true)
    );
    assert_eq!(sent[0].qos, QoS::AtLeastOnce, "the lower of 2 and 1");
    h.b.on_packet(Packet::PubAck(PubReply::success(
        sent[0].packet_id.unwrap(),
    )));
    assert_eq!(h.core(), vec![], "a retained message acknowledges nothing");
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

/// A free-form topic's retained write the home shard refuses
/// (`core.max_retained_topics`): the 5.0 QoS 1 publisher's PUBACK says
/// `0x97` and the session goes on (found by design: closing it, as for a
/// failed session write, would make the client resend the same retained
/// PUBLISH on every reconnect and be refused again).
#[test]
fn a_refused_topic_retained_write_is_puback_quota_exceeded_and_the_session_stays() {
    let mut h = live_with(Default::default(), true);
    h.b.on_packet(publish_packet("sensors/1/temp", 4));
    let id = match h.core().as_slice() {
        [Frame::Send(s)] => s.client_msg_id,
        other => panic!("{other:?}"),
    };
    h.b.on_frame(Frame::SendAck(proto::SendAck {
        client_msg_id: id,
        seq: Seq(1),
        own_seq: Seq::ZERO,
        result: SendResult::Stored,
    }));
    // Held back: report it refused by hand.
    let w = h.b.poll_state().expect("the retained write");
    assert!(matches!(w.key, StateKey::Retained { .. }), "{w:?}");
    assert_eq!(h.b.poll_packet(), None, "the PUBACK waits for the write");
    h.b.on_state_stored(w.report.expect("reported"), false);
    match h.packets().as_slice() {
        [Packet::PubAck(a)] => {
            assert_eq!(
                (a.packet_id, a.reason),
                (pid(4), ReasonCode::QUOTA_EXCEEDED)
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(!h.b.wants_close(), "the session goes on");
}
