//! What a will publishes (`will.rs`, docs/MQTT.md 2.7, issue #21): Will
//! Retain sets a room's or a free-form topic's retained message as a
//! retained PUBLISH would, and the will's v5 message properties are stored
//! with it.

use super::*;
use crate::Will;
use surepush_proto::topic_stream::{retained_entries, stream_id};
use surepush_proto::StateKey;

/// A v5 session with a will to `topic`, `retain` as given, carrying a
/// content type and two user properties (and a delay, not a message
/// property), ended without DISCONNECT.
fn will_of(topic: &str, payload: &'static [u8], retain: bool) -> WillMessage {
    let mut c = connect(ProtocolLevel::V5, true);
    c.will = Some(Will {
        topic: MqttString::from(topic),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain,
        properties: Properties {
            content_type: Some(MqttString::from("text/x")),
            message_expiry_interval: Some(60),
            user_properties: vec![
                (MqttString::from("k"), MqttString::from("1")),
                (MqttString::from("a"), MqttString::from("2")),
            ],
            will_delay_interval: Some(5),
            ..Properties::default()
        },
    });
    let b = Bridge::new(c, "t".into(), me(), None, 1, params());
    b.finish(1)
        .will
        .expect("an abnormal end publishes the will")
}

/// The user properties' names stored with a will, in order.
fn stored_names(will: &WillMessage) -> Vec<String> {
    let p = Properties::decode_message_block(will.attrs.clone()).expect("stored attributes");
    assert_eq!(p.content_type.as_ref().map(|c| c.as_str()), Some("text/x"));
    assert_eq!(p.message_expiry_interval, Some(60));
    assert_eq!(p.will_delay_interval, None, "not a message property");
    p.user_properties
        .iter()
        .map(|(k, _)| k.as_str().to_string())
        .collect()
}

#[test]
fn a_will_keeps_its_message_properties_in_order() {
    let will = will_of("user/8", b"gone", false);
    assert_eq!(stored_names(&will), ["k", "a"]);
    assert!(will.retain.is_none());
}

#[test]
fn a_retained_will_to_a_room_sets_the_rooms_retained_message() {
    let will = will_of("room/4", b"gone", true);
    assert_eq!(stored_names(&will), ["k", "a", "surepush:retain"]);
    let w = will
        .retain
        .expect("a room keeps a retained message")
        .write(5);
    let room = UserId(4 | ROOM_BIT);
    assert_eq!(w.key, StateKey::Retained { room });
    let value = w.value.expect("set, not cleared");
    let set = Retained::decode(&value).expect("a room's retained message");
    assert_eq!(
        (set.from, set.qos, &set.payload[..]),
        (ME, QoS::AtLeastOnce, &b"gone"[..])
    );
    // An empty will clears it.
    let will = will_of("room/4", b"", true);
    assert_eq!(will.retain.expect("a change").write(5).value, None);
}

#[test]
fn a_retained_will_to_a_free_form_topic_sets_its_retained_message_with_its_properties() {
    let will = will_of("a/b", b"gone", true);
    let w = will
        .retain
        .expect("a topic keeps a retained message")
        .write(77);
    assert_eq!(
        w.key,
        StateKey::Retained {
            room: UserId(stream_id("a/b"))
        }
    );
    let value = w.value.expect("an entry");
    let entries = retained_entries(&value).expect("entries");
    let [(name, body)] = entries.as_slice() else {
        panic!("one entry: {entries:?}");
    };
    assert_eq!(*name, "a/b");
    let set = TopicRetained::decode(body).expect("a topic's retained message");
    assert_eq!(
        (set.from, set.ts_ms, &set.payload[..]),
        (ME, 77, &b"gone"[..])
    );
    let p = Properties::decode_message_block(set.attrs).expect("stored properties");
    let names: Vec<_> = p.user_properties.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["k", "a"],
        "no retain mark on the retained message itself"
    );
}

#[test]
fn will_retain_on_an_inbox_or_a_group_retains_nothing() {
    for topic in ["user/8", "group/3"] {
        let will = will_of(topic, b"gone", true);
        assert!(will.retain.is_none(), "{topic}");
        // The message itself says it was published with RETAIN 1 (Retain
        // As Published), as a PUBLISH's would.
        assert_eq!(stored_names(&will), ["k", "a", "surepush:retain"]);
    }
}

/// A will waiting for its delay is a keyed record (`StateKey::MqttWill`):
/// what a restart reads back is the will that was waiting, retained
/// change included; anything else is not a will.
#[test]
fn a_pending_will_reads_back_as_it_was_stored() {
    for (topic, retain) in [("room/4", true), ("a/b", true), ("user/8", false)] {
        let will = will_of(topic, b"gone", retain);
        let pending = PendingWill {
            due_ms: 1234,
            will: will.clone(),
        };
        let back = PendingWill::decode(&pending.encode()).expect("a pending will");
        assert_eq!(back.due_ms, 1234);
        let (a, b) = (&back.will, &will);
        assert_eq!(
            (
                a.to,
                a.qos,
                &a.payload,
                &a.attrs,
                a.client_msg_id,
                a.room_grant
            ),
            (
                b.to,
                b.qos,
                &b.payload,
                &b.attrs,
                b.client_msg_id,
                b.room_grant
            ),
            "{topic}"
        );
        assert_eq!(a.retain, b.retain, "{topic}");
        let bytes = pending.encode();
        assert!(PendingWill::decode(&bytes[..bytes.len() - 1]).is_none());
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(PendingWill::decode(&longer).is_none());
    }
}
