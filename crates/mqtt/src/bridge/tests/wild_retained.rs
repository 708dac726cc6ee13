//! Retained messages of a new wildcard filter across the nodes of a
//! cluster (issue #21/#20, `retained.rs`): the streams other nodes name
//! after the SUBACK are asked too, each once, until the core says every
//! node answered; a retained message never follows a live one of its
//! stream.

use super::streams::live_with;
use super::*;
use surepush_proto::topic_stream::{frame_payload, retained_entry, stream_id};
use surepush_proto::{StateKey, TopicSeen, TOPIC_NODES_ANSWERED};

fn topic(name: &str, seq: u64) -> Frame {
    Frame::Topic(TopicSeen {
        room: stream_id(name),
        seq: Seq(seq),
        name: name.into(),
    })
}

fn answer(filter: &str, seq: u64) -> Frame {
    Frame::Topic(TopicSeen {
        room: 0,
        seq: Seq(seq),
        name: filter.into(),
    })
}

fn key(name: &str) -> StateKey {
    StateKey::Retained {
        room: UserId(stream_id(name)),
    }
}

fn retained(name: &str, payload: &'static [u8]) -> Option<Bytes> {
    let body = crate::bridge::TopicRetained {
        from: UserId(9),
        qos: QoS::AtLeastOnce,
        ts_ms: 1000,
        attrs: Bytes::new(),
        payload: Bytes::from_static(payload),
    }
    .encode();
    Some(retained_entry(name, &body))
}

fn queries(h: &mut Harness) -> Vec<StateKey> {
    std::iter::from_fn(|| h.b.poll_state_query()).collect()
}

#[test]
fn a_new_filter_asks_the_streams_other_nodes_name_until_every_node_answered() {
    let mut h = live_with(Default::default(), true);
    h.subscribe(2, &[("t/#", QoS::AtLeastOnce)]);
    h.core();
    // This node's shards name t/near, then answer: the SUBACK goes, and
    // t/near's retained message is asked.
    h.b.on_frame(topic("t/near", 1));
    h.b.on_frame(answer("t/#", 1));
    assert!(matches!(h.packets().as_slice(), [Packet::SubAck(_)]));
    assert_eq!(queries(&mut h), vec![key("t/near")]);
    // Other nodes name t/far (twice: asked once) and t/live after the
    // SUBACK: asked too.
    h.b.on_frame(topic("t/far", 5));
    h.b.on_frame(topic("t/far", 5));
    h.b.on_frame(topic("t/live", 3));
    assert_eq!(queries(&mut h), vec![key("t/far"), key("t/live")]);
    h.core();
    // A live message of t/live comes before its retained one: the
    // retained one (older) is skipped.
    h.b.on_frame(Frame::RoomPush(RoomPush {
        room: stream_id("t/live"),
        seq: Seq(3),
        from: UserId(3),
        ts_ms: 2000,
        qos: Qos::AtLeastOnce,
        attrs: Default::default(),
        payload: frame_payload("t/live", b"now"),
    }));
    h.b.on_state_value(key("t/live"), retained("t/live", b"old"));
    h.b.on_state_value(key("t/near"), retained("t/near", b"n"));
    h.b.on_state_value(key("t/far"), retained("t/far", b"f"));
    let sent: Vec<(String, Bytes, bool)> = h
        .publishes()
        .into_iter()
        .map(|p| (p.topic.as_str().to_string(), p.payload, p.retain))
        .collect();
    assert_eq!(
        sent,
        vec![
            ("t/live".into(), Bytes::from_static(b"now"), false),
            ("t/near".into(), Bytes::from_static(b"n"), true),
            ("t/far".into(), Bytes::from_static(b"f"), true),
        ]
    );
    // Every node answered: a stream named from now on (a new one's first
    // message) is not asked.
    h.b.on_frame(answer("t/#", TOPIC_NODES_ANSWERED));
    h.b.on_frame(topic("t/late", 1));
    assert_eq!(queries(&mut h), vec![]);
}

#[test]
fn retain_handling_2_asks_no_stream_of_any_node() {
    let mut h = live_with(Default::default(), true);
    h.b.on_packet(Packet::Subscribe(Subscribe {
        packet_id: pid(2),
        filters: vec![Subscription {
            filter: MqttString::from("t/#"),
            options: SubscriptionOptions {
                retain_handling: crate::RetainHandling::DoNotSend,
                ..SubscriptionOptions::qos(QoS::AtLeastOnce)
            },
        }],
        properties: Properties::default(),
    }));
    h.core();
    h.b.on_frame(topic("t/near", 1));
    h.b.on_frame(answer("t/#", 1));
    h.b.on_frame(topic("t/far", 5));
    h.b.on_frame(answer("t/#", TOPIC_NODES_ANSWERED));
    assert_eq!(queries(&mut h), vec![]);
}

#[test]
fn an_unsubscribed_filter_asks_no_more_streams() {
    let mut h = live_with(Default::default(), true);
    h.subscribe(2, &[("t/#", QoS::AtLeastOnce)]);
    h.core();
    h.b.on_frame(answer("t/#", 1));
    h.packets();
    h.b.on_packet(Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(3),
        filters: vec![MqttString::from("t/#")],
        properties: Properties::default(),
    }));
    h.core();
    // An answer of another node still in flight.
    h.b.on_frame(topic("t/far", 5));
    assert_eq!(queries(&mut h), vec![]);
}
