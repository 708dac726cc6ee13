//! MQTT 5 features of the bridge (issue #21 item 3): subscription
//! identifiers, topic aliases toward the client, will delay.

use std::num::{NonZeroU16, NonZeroU32};

use super::*;

fn id(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// A v5 SUBSCRIBE of `filters` at QoS 1 with identifier `sub_id`.
fn subscribe_with_id(packet_id: u16, filters: &[&str], sub_id: Option<u32>) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(packet_id),
        filters: filters
            .iter()
            .map(|f| Subscription {
                filter: MqttString::from(*f),
                options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            })
            .collect(),
        properties: Properties {
            subscription_identifiers: sub_id.map(id).into_iter().collect(),
            ..Properties::default()
        },
    })
}

/// A live v5 session whose CONNECT carried Topic Alias Maximum `aliases`.
fn live_v5(aliases: Option<u16>) -> Harness {
    let mut c = connect(ProtocolLevel::V5, true);
    c.properties.topic_alias_maximum = aliases;
    let mut h = Harness::of(Bridge::new(c, "token".into(), me(), None, 1000, params()));
    h.core();
    h.b.on_frame(native_connack(0, None));
    h.empty_replay();
    match h.packets().as_slice() {
        [Packet::ConnAck(a)] => {
            assert_eq!(a.properties.subscription_identifier_available, Some(true));
        }
        other => panic!("{other:?}"),
    }
    h
}

/// Delivers QoS 0 inbox pushes to `to` and returns what the client got.
fn push_qos0(h: &mut Harness, to: u64, n: usize) -> Vec<Publish> {
    for _ in 0..n {
        h.b.on_frame(Frame::Push(push(0, to, Qos::AtMostOnce)));
    }
    h.publishes()
}

#[test]
fn every_matching_subscriptions_identifier_goes_with_the_publish() {
    let mut h = live_v5(None);
    h.b.on_packet(subscribe_with_id(1, &["user/+", "group/#"], Some(5)));
    h.b.on_packet(subscribe_with_id(2, &["user/7"], Some(9)));
    h.b.on_packet(subscribe_with_id(3, &["#"], None));
    h.packets();
    let ids = |p: &Publish| p.properties.subscription_identifiers.clone();
    let got = push_qos0(&mut h, 7, 1);
    assert_eq!(ids(&got[0]), vec![id(5), id(9)], "user/+ and user/7");
    let got = push_qos0(&mut h, 1 | UserId::GROUP_BIT, 1);
    assert_eq!(ids(&got[0]), vec![id(5)], "group/#; # has none");
    // Subscribing again without an identifier takes it away
    // (MQTT-3.8.4-3); UNSUBSCRIBE too.
    h.b.on_packet(subscribe_with_id(4, &["user/7"], None));
    h.b.on_packet(Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(5),
        filters: vec![MqttString::from("user/+")],
        properties: Properties::default(),
    }));
    h.packets();
    let got = push_qos0(&mut h, 7, 1);
    assert!(ids(&got[0]).is_empty(), "{got:?}");
}

#[test]
fn subscription_identifiers_are_session_state_and_survive_a_resume() {
    let mut c = connect(ProtocolLevel::V5, false);
    c.properties.topic_alias_maximum = None;
    let mut h = Harness::of(Bridge::new(c, "token".into(), me(), None, 1000, params()));
    h.core();
    h.b.on_frame(native_connack(0, None));
    h.core();
    h.b.on_packet(subscribe_with_id(1, &["user/7"], Some(268_435_455)));
    h.packets();
    let state = h.b.take_over(true).expect("persistent");
    let bytes = state.encode();
    let back = SessionState::decode(&bytes).expect("decodes");
    assert_eq!(
        back.sub_ids.get("user/7"),
        Some(&id(268_435_455)),
        "stored with the subscription"
    );
    let c = connect(ProtocolLevel::V5, false);
    let mut h = Harness::of(Bridge::new(c, "t".into(), me(), Some(back), 2000, params()));
    h.core();
    h.b.on_frame(native_connack(0, None));
    let request = h.sync_request();
    h.b.on_frame(Frame::SyncPage(SyncPage {
        request_id: request,
        head: Seq(1),
        end: true,
        gap: false,
        items: vec![push(1, 7, Qos::AtLeastOnce)],
    }));
    let got = h.publishes();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].properties.subscription_identifiers,
        vec![id(268_435_455)]
    );
}

#[test]
fn a_3_1_1_session_never_gets_identifiers_or_aliases() {
    let mut h = Harness::live(ProtocolLevel::V311, &[("user/+", QoS::AtMostOnce)]);
    h.packets();
    let got = push_qos0(&mut h, 7, 2);
    assert_eq!(got.len(), 2);
    for p in got {
        assert_eq!(p.properties, Properties::default());
        assert_eq!(p.topic, "user/7");
    }
}

#[test]
fn topic_aliases_toward_the_client_stay_within_its_maximum() {
    let mut h = live_v5(Some(2));
    h.b.on_packet(subscribe_with_id(1, &["user/+"], None));
    h.packets();
    let mut seen = Vec::new();
    for to in [7, 8, 7, 9, 8, 9] {
        let got = push_qos0(&mut h, to, 1);
        let p = &got[0];
        seen.push((
            p.topic.to_string(),
            p.properties.topic_alias.map(|a| a.get()),
        ));
    }
    let alias = |t: &str, a: Option<u16>| (t.to_string(), a);
    assert_eq!(
        seen,
        vec![
            alias("user/7", Some(1)), // sets alias 1
            alias("user/8", Some(2)), // sets alias 2
            alias("", Some(1)),       // uses it: no name
            alias("user/9", None),    // none left (maximum 2)
            alias("", Some(2)),
            alias("user/9", None),
        ]
    );
    // Each packet encodes: an empty name with an alias is valid v5.
    let mut h = live_v5(Some(1));
    h.b.on_packet(subscribe_with_id(1, &["user/+"], None));
    h.packets();
    for _ in 0..2 {
        h.b.on_frame(Frame::Push(push(0, 7, Qos::AtMostOnce)));
    }
    for p in h.packets() {
        let mut out = bytes::BytesMut::new();
        assert!(h.b.encode(&p, &mut out), "{p:?}");
    }
    // Without a Topic Alias Maximum in CONNECT: never.
    let mut h = live_v5(None);
    h.b.on_packet(subscribe_with_id(1, &["user/+"], None));
    h.packets();
    let got = push_qos0(&mut h, 7, 2);
    assert!(got
        .iter()
        .all(|p| p.properties.topic_alias.is_none() && p.topic == "user/7"));
    assert_eq!(NonZeroU16::new(1).map(|a| a.get()), Some(1));
}

/// A persistent v5 session with a will delayed by `delay_s`, session
/// expiry `expiry_s`.
fn delayed_will(delay_s: u32, expiry_s: u32) -> Bridge {
    let mut c = connect(ProtocolLevel::V5, expiry_s == 0);
    c.properties.session_expiry_interval = Some(expiry_s);
    c.will = Some(Will {
        topic: MqttString::from("user/8"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties {
            will_delay_interval: Some(delay_s),
            ..Properties::default()
        },
    });
    let mut b = Bridge::new(c, "t".into(), me(), None, 1, params());
    b.on_frame(native_connack(0, None));
    b
}

#[test]
fn a_will_waits_the_lesser_of_its_delay_and_the_session_expiry() {
    let will = |b: Bridge| b.finish(1).will.expect("a will").delay_s;
    assert_eq!(will(delayed_will(30, 3600)), 30);
    assert_eq!(will(delayed_will(30, 10)), 10, "the session ends first");
    assert_eq!(will(delayed_will(30, 0)), 0, "a session that ends at once");
    // Taken over by a connection that resumes the session: within the
    // delay, so never published (MQTT-3.1.3-9).
    let mut b = delayed_will(30, 3600);
    assert!(b.take_over(true).is_some());
    assert!(b.finish(1).will.is_none());
    // Taken over by a clean start: the session ends now, the will goes
    // at once.
    let mut b = delayed_will(30, 3600);
    b.take_over(false);
    assert_eq!(will(b), 0);
    // Without a delay a takeover publishes it as before.
    let mut b = delayed_will(0, 3600);
    b.take_over(true);
    assert_eq!(will(b), 0);
}

/// Issue #21 item 5, issue #17 goal 4: the boxed bridge of an idle
/// connection fits mimalloc's 512-byte size class (it was 1,024 bytes, and
/// 1,080 took the 1,280-byte class); topic aliases, the queues of a busy
/// connection (`busy.rs`) and the gate's queues are boxed apart, and only
/// while used.
#[test]
fn the_bridge_fits_in_half_a_kibibyte() {
    assert!(
        std::mem::size_of::<Bridge>() <= 512,
        "{} bytes",
        std::mem::size_of::<Bridge>()
    );
}
