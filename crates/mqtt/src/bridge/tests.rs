//! The bridge on its own: MQTT packets and native frames in, the other side out.

use std::num::NonZeroU16;

use bytes::Bytes;

use super::aliases::TOPIC_ALIAS_MAX;
use super::rooms::RoomSub;
use super::state::Inbound;
use super::*;
use crate::{
    MqttString, Properties, Publish, Subscribe, Subscription, SubscriptionOptions, Unsubscribe,
};
use surepush_proto::{
    ConnAck as NativeConnAck, Push, RoomPush, SendAck, SendResult, SubResult, SubscribeFrom, Sync,
    SyncDirection, SyncPage,
};

const ME: UserId = UserId(7);
const DEV: DeviceId = DeviceId(1);

/// The claims of `ME`'s token (no grants).
fn me() -> surepush_token::Claims {
    surepush_token::Claims {
        user: ME,
        device: DEV,
        expires_s: u64::MAX / 2,
        acl: Default::default(),
    }
}

fn params() -> BridgeParams {
    BridgeParams {
        page: 10,
        inflight: 25,
        inflight_bytes: 1 << 20,
        max_packet: 1 << 20,
        receive_max: 100,
        room_window: 8,
        topics_open: true,
    }
}

fn connect(level: ProtocolLevel, clean: bool) -> mqtt::Connect {
    let mut properties = Properties::default();
    if level.is_v5() && !clean {
        properties.session_expiry_interval = Some(3600);
    }
    mqtt::Connect {
        protocol_level: level,
        clean_start: clean,
        keep_alive: 30,
        client_id: MqttString::from("c"),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"token")),
        properties,
    }
}

/// A persistent v3.1.1 session of `ME`, resumed from `stored` if given.
fn persistent_bridge(stored: Option<SessionState>, msg_id_base: u64) -> Bridge {
    Bridge::new(
        connect(ProtocolLevel::V311, false),
        "token".into(),
        me(),
        stored,
        msg_id_base,
        params(),
    )
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn native_connack(head: u64, cursor: Option<u64>) -> Frame {
    Frame::ConnAck(NativeConnAck {
        user: ME,
        device: DEV,
        head: Seq(head),
        cursor: cursor.map(Seq),
        max_frame: 1 << 20,
        push_window: 64,
        max_pending_sends: 100,
        keepalive_ms: 30_000,
        max_sync_limit: 100,
    })
}

fn push(seq: u64, to: u64, qos: Qos) -> Push {
    Push {
        seq: Seq(seq),
        prev_seq: Seq(seq.saturating_sub(1)),
        from: UserId(99),
        from_device: DeviceId(1),
        to: UserId(to),
        client_msg_id: seq,
        ts_ms: 0,
        qos,
        echo: false,
        retransmit: false,
        attrs: Bytes::new(),
        payload: Bytes::from(format!("m{seq}")),
    }
}

struct Harness {
    b: Bridge,
    /// State writes handed out (and reported durable at once).
    stored: Vec<StateWrite>,
}

impl Harness {
    fn of(b: Bridge) -> Harness {
        Harness {
            b,
            stored: Vec::new(),
        }
    }

    /// A connected bridge, live, subscribed to `filters`.
    fn live(level: ProtocolLevel, filters: &[(&str, QoS)]) -> Harness {
        let mut h = Harness::of(Bridge::new(
            connect(level, true),
            "token".into(),
            me(),
            None,
            1000,
            params(),
        ));
        assert!(matches!(h.core().as_slice(), [Frame::Connect(_)]));
        h.b.on_frame(native_connack(0, None));
        assert!(matches!(h.packets().as_slice(), [Packet::ConnAck(_)]));
        h.empty_replay();
        h.subscribe(1, filters);
        h
    }

    /// Answers the session's first SYNC with the empty last page of an
    /// empty inbox: the session goes live.
    fn empty_replay(&mut self) {
        let request = self.sync_request();
        self.b.on_frame(Frame::SyncPage(SyncPage {
            request_id: request,
            head: Seq(0),
            end: true,
            gap: false,
            items: vec![],
        }));
    }

    fn subscribe(&mut self, id: u16, filters: &[(&str, QoS)]) {
        self.b.on_packet(Packet::Subscribe(Subscribe {
            packet_id: pid(id),
            filters: filters
                .iter()
                .map(|(f, q)| Subscription {
                    filter: MqttString::from(*f),
                    options: SubscriptionOptions::qos(*q),
                })
                .collect(),
            properties: Properties::default(),
        }));
    }

    /// Frames for the core, without the keep-alive pings (see
    /// `every_packet_feeds_the_keep_alive`).
    fn core(&mut self) -> Vec<Frame> {
        self.core_raw()
            .into_iter()
            .filter(|f| *f != Frame::Ping(0))
            .collect()
    }

    fn core_raw(&mut self) -> Vec<Frame> {
        self.store_state();
        std::iter::from_fn(|| self.b.poll_core()).collect()
    }

    fn packets(&mut self) -> Vec<Packet> {
        self.store_state();
        std::iter::from_fn(|| self.b.poll_packet()).collect()
    }

    /// Takes the bridge's state writes and reports them durable at once
    /// (`persist_tests` holds them back instead).
    fn store_state(&mut self) {
        while let Some(w) = self.b.poll_state() {
            if let Some(id) = w.report {
                self.b.on_state_stored(id, true);
            }
            self.stored.push(w);
        }
    }

    /// Whether a retained-message change was handed out for storing.
    fn retained_written(&self) -> bool {
        self.stored
            .iter()
            .any(|w| matches!(w.key, surepush_proto::StateKey::Retained { .. }))
    }

    fn sync_request(&mut self) -> u32 {
        let frames = self.core();
        match frames.as_slice() {
            [.., Frame::Sync(Sync { request_id, .. })] => *request_id,
            other => panic!("expected a SYNC, got {other:?}"),
        }
    }

    fn publishes(&mut self) -> Vec<Publish> {
        self.packets()
            .into_iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn acks_reach_the_core_only_for_a_contiguous_prefix_the_client_acknowledged() {
    let mut h = Harness::live(ProtocolLevel::V311, &[("user/7", QoS::AtLeastOnce)]);
    h.packets();
    h.core();
    for seq in 1..=3 {
        h.b.on_frame(Frame::Push(push(seq, ME.0, Qos::AtLeastOnce)));
    }
    let sent = h.publishes();
    assert_eq!(sent.len(), 3);
    let ids: Vec<PacketId> = sent.iter().map(|p| p.packet_id.unwrap()).collect();
    // The client acknowledges the third first: nothing may reach the core.
    h.b.on_packet(Packet::PubAck(PubReply::success(ids[2])));
    assert_eq!(h.core(), vec![]);
    h.b.on_packet(Packet::PubAck(PubReply::success(ids[0])));
    assert_eq!(h.core(), vec![Frame::Ack(Seq(1))]);
    h.b.on_packet(Packet::PubAck(PubReply::success(ids[1])));
    assert_eq!(h.core(), vec![Frame::Ack(Seq(3))]);
}

#[test]
fn messages_no_subscription_matches_are_acknowledged_in_order_but_not_sent() {
    let mut h = Harness::live(ProtocolLevel::V5, &[("group/+", QoS::AtLeastOnce)]);
    h.packets();
    h.core();
    let group = 3 | UserId::GROUP_BIT;
    h.b.on_frame(Frame::Push(push(1, group, Qos::AtLeastOnce)));
    h.b.on_frame(Frame::Push(push(2, ME.0, Qos::AtLeastOnce))); // direct: not subscribed
    let sent = h.publishes();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].topic.as_str(), "group/3");
    // Seq 2 is skipped, but must wait for seq 1's PUBACK.
    assert_eq!(h.core(), vec![]);
    h.b.on_packet(Packet::PubAck(PubReply::success(
        sent[0].packet_id.unwrap(),
    )));
    assert_eq!(h.core(), vec![Frame::Ack(Seq(2))]);
}

#[test]
fn retransmissions_from_the_core_are_not_sent_twice() {
    let mut h = Harness::live(ProtocolLevel::V5, &[("#", QoS::ExactlyOnce)]);
    h.packets();
    let mut p = push(1, ME.0, Qos::ExactlyOnce);
    h.b.on_frame(Frame::Push(p.clone()));
    p.retransmit = true;
    h.b.on_frame(Frame::Push(p));
    let sent = h.publishes();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].qos, QoS::ExactlyOnce);
}

#[test]
fn qos2_out_acknowledges_at_pubrec_and_releases_until_pubcomp() {
    let mut h = Harness::live(ProtocolLevel::V311, &[("user/7", QoS::ExactlyOnce)]);
    h.packets();
    h.core();
    h.b.on_frame(Frame::Push(push(1, ME.0, Qos::ExactlyOnce)));
    let id = h.publishes()[0].packet_id.unwrap();
    h.b.on_packet(Packet::PubRec(PubReply::success(id)));
    assert_eq!(h.core(), vec![Frame::Ack(Seq(1))]);
    assert_eq!(h.packets(), vec![Packet::PubRel(PubReply::success(id))]);
    // A repeated PUBREC gets PUBREL again; PUBCOMP frees the id.
    h.b.on_packet(Packet::PubRec(PubReply::success(id)));
    assert_eq!(h.packets(), vec![Packet::PubRel(PubReply::success(id))]);
    h.b.on_packet(Packet::PubComp(PubReply::success(id)));
    assert!(h.b.busy.inflight.is_empty());
    assert!(h.b.state.rel_pending.is_empty());
}

#[test]
fn delivery_qos_is_the_lower_of_message_and_subscription() {
    let mut h = Harness::live(ProtocolLevel::V311, &[("user/7", QoS::AtMostOnce)]);
    h.packets();
    h.core();
    h.b.on_frame(Frame::Push(push(1, ME.0, Qos::ExactlyOnce)));
    let sent = h.publishes();
    assert_eq!(sent[0].qos, QoS::AtMostOnce);
    assert_eq!(sent[0].packet_id, None);
    assert_eq!(h.core(), vec![Frame::Ack(Seq(1))]);
}

#[test]
fn the_clients_receive_maximum_bounds_publishes_in_flight() {
    let mut c = connect(ProtocolLevel::V5, true);
    c.properties.receive_maximum = NonZeroU16::new(2);
    let mut h = Harness::of(Bridge::new(c, "t".into(), me(), None, 1, params()));
    h.b.on_frame(native_connack(0, None));
    h.empty_replay();
    h.subscribe(1, &[("#", QoS::AtLeastOnce)]);
    h.packets();
    for seq in 1..=5 {
        h.b.on_frame(Frame::Push(push(seq, ME.0, Qos::AtLeastOnce)));
    }
    let first = h.publishes();
    assert_eq!(first.len(), 2);
    h.b.on_packet(Packet::PubAck(PubReply::success(
        first[0].packet_id.unwrap(),
    )));
    let next = h.publishes();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].payload, Bytes::from_static(b"m3"));
}

#[test]
fn a_qos2_publish_resent_with_the_same_packet_id_is_sent_to_the_core_once() {
    let mut h = Harness::live(ProtocolLevel::V311, &[]);
    h.packets();
    h.core();
    let publish = Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: MqttString::from("user/8"),
        packet_id: Some(pid(9)),
        payload: Bytes::from_static(b"once"),
        properties: Properties::default(),
    };
    h.b.on_packet(Packet::Publish(publish.clone()));
    let id = match h.core().as_slice() {
        [Frame::Send(s)] => {
            assert_eq!(s.to, UserId(8));
            s.client_msg_id
        }
        other => panic!("{other:?}"),
    };
    // Resent before the store finished: not sent again.
    h.b.on_packet(Packet::Publish(Publish {
        dup: true,
        ..publish.clone()
    }));
    assert_eq!(h.core(), vec![]);
    h.b.on_frame(Frame::SendAck(SendAck {
        client_msg_id: id,
        seq: Seq(1),
        own_seq: Seq(1),
        result: SendResult::Stored,
    }));
    assert_eq!(h.packets(), vec![Packet::PubRec(PubReply::success(pid(9)))]);
    // Resent after PUBREC was lost: PUBREC again, still nothing stored.
    h.b.on_packet(Packet::Publish(Publish {
        dup: true,
        ..publish
    }));
    assert_eq!(h.core(), vec![]);
    assert_eq!(h.packets(), vec![Packet::PubRec(PubReply::success(pid(9)))]);
    h.b.on_packet(Packet::PubRel(PubReply::success(pid(9))));
    assert_eq!(
        h.core(),
        vec![Frame::Rel {
            client_msg_id: id,
            to: UserId(8)
        }]
    );
    h.b.on_frame(Frame::Comp { client_msg_id: id });
    assert_eq!(
        h.packets(),
        vec![Packet::PubComp(PubReply::success(pid(9)))]
    );
    assert!(h.b.state.inbound.is_empty());
}

#[test]
fn failures_are_reason_codes_in_v5_and_a_close_in_v311() {
    for level in [ProtocolLevel::V5, ProtocolLevel::V311] {
        let mut h = Harness::live(level, &[]);
        h.packets();
        h.core();
        h.b.on_packet(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: MqttString::from("user/8"),
            packet_id: Some(pid(1)),
            payload: Bytes::new(),
            properties: Properties::default(),
        }));
        let id = match h.core().as_slice() {
            [Frame::Send(s)] => s.client_msg_id,
            other => panic!("{other:?}"),
        };
        h.b.on_frame(Frame::SendAck(SendAck {
            client_msg_id: id,
            seq: Seq(0),
            own_seq: Seq(0),
            result: SendResult::StorageUnavailable,
        }));
        if level.is_v5() {
            match h.packets().as_slice() {
                [Packet::PubAck(r)] => assert_eq!(r.reason, ReasonCode::UNSPECIFIED_ERROR),
                other => panic!("{other:?}"),
            }
            assert!(!h.b.wants_close());
        } else {
            assert_eq!(h.packets(), vec![]);
            assert!(h.b.wants_close());
            assert!(matches!(h.core().as_slice(), [Frame::Disconnect(_)]));
        }
    }
}

#[test]
fn unknown_topics_are_refused_per_protocol_level() {
    let bad = |qos, packet_id| {
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: MqttString::from("user/01"),
            packet_id,
            payload: Bytes::new(),
            properties: Properties::default(),
        })
    };
    let mut h = Harness::live(ProtocolLevel::V5, &[]);
    h.packets();
    h.core();
    h.b.on_packet(bad(QoS::AtLeastOnce, Some(pid(4))));
    match h.packets().as_slice() {
        [Packet::PubAck(r)] => assert_eq!(r.reason, ReasonCode::TOPIC_NAME_INVALID),
        other => panic!("{other:?}"),
    }
    h.b.on_packet(bad(QoS::AtMostOnce, None));
    match h.packets().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::TOPIC_NAME_INVALID),
        other => panic!("{other:?}"),
    }
    assert!(h.b.wants_close());
    // v3.1.1 (issue #21 item 4): acknowledged as the QoS requires,
    // dropped, and the session stays (MQTT-3.3.5-2 allows either).
    let mut h = Harness::live(ProtocolLevel::V311, &[]);
    h.packets();
    h.core();
    h.b.on_packet(bad(QoS::AtMostOnce, None));
    h.b.on_packet(bad(QoS::AtLeastOnce, Some(pid(4))));
    h.b.on_packet(bad(QoS::ExactlyOnce, Some(pid(5))));
    h.b.on_packet(Packet::PubRel(PubReply::success(pid(5))));
    assert_eq!(
        h.packets(),
        vec![
            Packet::PubAck(PubReply::success(pid(4))),
            Packet::PubRec(PubReply::success(pid(5))),
            Packet::PubComp(PubReply::success(pid(5))),
        ]
    );
    assert!(!h.b.wants_close());
    assert!(
        !h.core().iter().any(|f| matches!(f, Frame::Send(_))),
        "nothing reaches the core"
    );
}

#[test]
fn room_subscriptions_go_to_the_core_and_suback_waits_for_them() {
    let mut h = Harness::live(ProtocolLevel::V5, &[]);
    h.packets();
    h.core();
    h.subscribe(
        2,
        &[("room/4", QoS::ExactlyOnce), ("user/7", QoS::AtLeastOnce)],
    );
    match h.core().as_slice() {
        [Frame::Subscribe(s)] => {
            assert_eq!(s.room, 4 | ROOM_BIT);
            assert_eq!(s.qos, Qos::AtLeastOnce, "rooms grant at most QoS 1");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.packets(), vec![]);
    h.b.on_frame(Frame::SubAck(proto::SubAck {
        room: 4 | ROOM_BIT,
        head: Seq(10),
        first: Seq(11),
        result: SubResult::Ok,
    }));
    match h.packets().as_slice() {
        [Packet::SubAck(a)] => assert_eq!(a.reasons, vec![ReasonCode(1), ReasonCode(1)]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.b.poll_state_query(),
        Some(surepush_proto::StateKey::Retained {
            room: UserId(4 | ROOM_BIT)
        })
    );
    h.b.on_frame(Frame::RoomPush(RoomPush {
        room: 4 | ROOM_BIT,
        seq: Seq(11),
        from: UserId(3),
        ts_ms: 0,
        qos: Qos::AtLeastOnce,
        attrs: Bytes::new(),
        payload: Bytes::from_static(b"hi"),
    }));
    let sent = h.publishes();
    assert_eq!(sent[0].topic.as_str(), "room/4");
    h.b.on_packet(Packet::PubAck(PubReply::success(
        sent[0].packet_id.unwrap(),
    )));
    assert_eq!(
        h.core(),
        vec![Frame::RoomAck {
            room: 4 | ROOM_BIT,
            seq: Seq(11)
        }]
    );
    h.b.on_packet(Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(3),
        filters: vec![MqttString::from("room/4"), MqttString::from("nope")],
        properties: Properties::default(),
    }));
    assert_eq!(h.core(), vec![Frame::Unsubscribe { room: 4 | ROOM_BIT }]);
    match h.packets().as_slice() {
        [Packet::UnsubAck(a)] => assert_eq!(
            a.reasons,
            vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn session_state_round_trips_and_garbage_is_refused() {
    let mut state = SessionState::new(12345);
    state.subs.push(Subscription {
        filter: MqttString::from("user/+"),
        options: SubscriptionOptions::qos(QoS::ExactlyOnce),
    });
    state.rooms.insert(
        9,
        RoomSub {
            qos: QoS::AtLeastOnce,
            position: Some(Seq(44)),
            no_local: true,
            retain_as_published: true,
        },
    );
    state.out_pids.insert(45, 7);
    state.rel_pending.insert(8);
    state.inbound.insert(
        3,
        Inbound {
            client_msg_id: 5,
            to: UserId(6),
            stored: true,
        },
    );
    state.inbox_start = Seq(17);
    state.inbox_acked = Seq(40);
    state.done.extend([43, 46]);
    state.expiry_s = 60;
    state.ended_ms = 1_000;
    state
        .sub_ids
        .insert("user/+".into(), std::num::NonZeroU32::new(77).unwrap());
    assert!(!state.expired(60_999));
    assert!(state.expired(61_000));
    let bytes = state.encode();
    let back = SessionState::decode(&bytes).expect("decodes");
    assert_eq!(back.encode(), bytes);
    assert_eq!(back.inbox_start, Seq(17));
    assert_eq!((back.inbox_acked, &back.done), (Seq(40), &state.done));
    assert_eq!(back.sub_ids, state.sub_ids);
    // Version 4 (without the share group part, three empty lists here)
    // still loads.
    let v5_tail = 3 * 4;
    let mut v4 = bytes[..bytes.len() - v5_tail].to_vec();
    v4[0] = 4;
    let old = SessionState::decode(&v4).expect("version 4 decodes");
    assert_eq!(old.sub_ids, state.sub_ids);
    // Version 3 (without the subscription identifiers and the topic
    // stream part, four empty lists here) still loads.
    let v4_tail = v5_tail + (4 + 2 + "user/+".len() + 4) + 4 * 4;
    let mut v3 = bytes[..bytes.len() - v4_tail].to_vec();
    v3[0] = 3;
    let old = SessionState::decode(&v3).expect("version 3 decodes");
    assert!(old.sub_ids.is_empty());
    assert_eq!(old.done, state.done);
    // Version 2 (without the position and the out-of-order
    // acknowledgements) still loads.
    let mut v2 = bytes[..bytes.len() - v4_tail - (8 + 4 + 2 * 8)].to_vec();
    v2[0] = 2;
    let old = SessionState::decode(&v2).expect("version 2 decodes");
    assert_eq!((old.inbox_acked, old.done.len()), (Seq::ZERO, 0));
    assert_eq!(old.out_pids, state.out_pids);
    for cut in 0..bytes.len() {
        assert!(
            SessionState::decode(&bytes[..cut]).is_none(),
            "prefix {cut}"
        );
    }
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(SessionState::decode(&extra).is_none());
    let mut bad_version = bytes;
    bad_version[0] = 9;
    assert!(SessionState::decode(&bad_version).is_none());
    // The topic stream part (version 4) round-trips, and a state without
    // one carries none.
    assert!(state.wild.is_none());
    let w = state.wild_mut();
    w.streams.insert(77, vec!["a/b".into(), "a/c".into()]);
    w.room_pids.insert((77, 5), 9);
    w.room_done.insert((77, 6));
    w.filter_since.insert("a/+".into(), 1_700_000_000_000);
    w.shared_pids.insert((3, 77, 7), 10);
    w.shared_done.insert((3, 77, 8), 11);
    w.shared_completed.push_back((3, 77, 2));
    let bytes = state.encode();
    let back = SessionState::decode(&bytes).expect("decodes");
    assert_eq!(back.encode(), bytes);
    let w = back.wild();
    assert_eq!(w.streams[&77], vec!["a/b".to_string(), "a/c".to_string()]);
    assert_eq!((w.room_pids[&(77, 5)], w.room_done.len()), (9, 1));
    assert_eq!(w.filter_since["a/+"], 1_700_000_000_000);
    assert_eq!(
        (w.shared_pids[&(3, 77, 7)], w.shared_done[&(3, 77, 8)]),
        (10, 11)
    );
    assert_eq!(w.shared_completed, [(3, 77, 2)]);
    for cut in 0..bytes.len() {
        assert!(
            SessionState::decode(&bytes[..cut]).is_none(),
            "prefix {cut}"
        );
    }
}

#[test]
fn a_will_is_published_unless_the_client_disconnected() {
    let with_will = |level| {
        let mut c = connect(level, true);
        c.will = Some(Will {
            topic: MqttString::from("user/8"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        });
        Bridge::new(c, "t".into(), me(), None, 1, params())
    };
    let dropped = with_will(ProtocolLevel::V311).finish(1);
    let will = dropped.will.expect("abnormal end publishes the will");
    assert_eq!(will.to, UserId(8));
    assert_eq!(will.qos, Qos::AtLeastOnce);
    let mut polite = with_will(ProtocolLevel::V5);
    polite.on_frame(native_connack(0, None));
    polite.on_packet(Packet::Disconnect(mqtt::Disconnect::normal()));
    assert!(polite.finish(1).will.is_none());
    let mut asks = with_will(ProtocolLevel::V5);
    asks.on_frame(native_connack(0, None));
    asks.on_packet(Packet::Disconnect(mqtt::Disconnect {
        reason: ReasonCode::DISCONNECT_WITH_WILL,
        properties: Properties::default(),
    }));
    assert!(asks.finish(1).will.is_some());
}

#[test]
fn connects_the_spec_refuses_are_refused() {
    let mut c = connect(ProtocolLevel::V311, false);
    c.client_id = MqttString::from("");
    assert_eq!(refuse_connect(&c), Some(ReasonCode(0x02)));
    let mut c = connect(ProtocolLevel::V5, true);
    c.will = Some(Will {
        topic: MqttString::from("$SYS/nowhere"),
        payload: Bytes::new(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    assert_eq!(refuse_connect(&c), Some(ReasonCode::TOPIC_NAME_INVALID));
    assert_eq!(refuse_connect(&connect(ProtocolLevel::V5, false)), None);
}

#[test]
fn topic_aliases_set_by_a_name_are_used_by_an_empty_one_and_bounded() {
    let mut h = Harness::live(ProtocolLevel::V5, &[]);
    h.packets();
    h.core();
    let aliased = |topic: &str, alias: u16| {
        let properties = Properties {
            topic_alias: NonZeroU16::new(alias),
            ..Properties::default()
        };
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: MqttString::from(topic),
            packet_id: None,
            payload: Bytes::from_static(b"a"),
            properties,
        })
    };
    h.b.on_packet(aliased("user/42", 3));
    h.b.on_packet(aliased("", 3));
    let targets: Vec<UserId> = h
        .core()
        .into_iter()
        .map(|f| match f {
            Frame::Send(s) => s.to,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(targets, vec![UserId(42), UserId(42)]);
    h.b.on_packet(aliased("", 4));
    match h.packets().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::PROTOCOL_ERROR),
        other => panic!("{other:?}"),
    }
    let mut h = Harness::live(ProtocolLevel::V5, &[]);
    h.packets();
    h.b.on_packet(aliased("user/42", TOPIC_ALIAS_MAX + 1));
    match h.packets().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::TOPIC_ALIAS_INVALID),
        other => panic!("{other:?}"),
    }
}

#[test]
fn packets_sent_before_the_connack_are_answered_after_it_in_order() {
    let mut h = Harness::of(Bridge::new(
        connect(ProtocolLevel::V5, true),
        "t".into(),
        me(),
        None,
        1,
        params(),
    ));
    h.core();
    h.subscribe(1, &[("user/7", QoS::AtLeastOnce)]);
    h.b.on_packet(Packet::PingReq);
    assert_eq!(h.packets(), vec![], "nothing may precede CONNACK");
    assert_eq!(h.core(), vec![]);
    h.b.on_frame(native_connack(0, None));
    let kinds: Vec<mqtt::PacketType> = h.packets().iter().map(Packet::packet_type).collect();
    assert_eq!(
        kinds,
        vec![
            mqtt::PacketType::ConnAck,
            mqtt::PacketType::SubAck,
            mqtt::PacketType::PingResp
        ]
    );
}

#[test]
fn a_refusal_before_the_session_opens_is_a_connack_not_a_disconnect() {
    for (level, code) in [
        (ProtocolLevel::V5, ReasonCode::QUOTA_EXCEEDED),
        (ProtocolLevel::V311, ReasonCode(0x03)),
    ] {
        let mut h = Harness::of(Bridge::new(
            connect(level, true),
            "t".into(),
            me(),
            None,
            1,
            params(),
        ));
        h.core();
        h.b.on_frame(Frame::error(
            ErrorCode::TooManyConnections,
            "too many devices",
        ));
        match h.packets().as_slice() {
            [Packet::ConnAck(a)] => assert_eq!(a.code, code),
            other => panic!("{other:?}"),
        }
        assert!(h.b.wants_close());
    }
}

#[test]
fn this_devices_own_sends_are_not_delivered_back_even_in_replay_pages() {
    let mut h = Harness::of(Bridge::new(
        connect(ProtocolLevel::V311, true),
        "t".into(),
        me(),
        None,
        1,
        params(),
    ));
    h.core();
    h.b.on_frame(native_connack(0, None));
    let request = h.sync_request();
    let mut own = push(1, 8, Qos::AtLeastOnce);
    own.from = ME;
    own.from_device = DEV;
    let mut other_device = push(2, 8, Qos::AtLeastOnce);
    other_device.from = ME;
    other_device.from_device = DeviceId(2);
    h.subscribe(1, &[("#", QoS::AtLeastOnce)]);
    h.packets();
    h.b.on_frame(Frame::SyncPage(SyncPage {
        request_id: request,
        head: Seq(2),
        end: true,
        gap: false,
        items: vec![own, other_device],
    }));
    let sent = h.publishes();
    assert_eq!(sent.len(), 1, "only the copy sent from another device");
    assert_eq!(sent[0].topic.as_str(), "user/8");
}

#[test]
fn only_a_normal_disconnect_deletes_the_will_and_expiry_cannot_rise_from_zero() {
    let with_will = || {
        let mut c = connect(ProtocolLevel::V5, true);
        c.will = Some(Will {
            topic: MqttString::from("user/8"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
        });
        Bridge::new(c, "t".into(), me(), None, 1, params())
    };
    let mut b = with_will();
    b.on_frame(native_connack(0, None));
    b.on_packet(Packet::Disconnect(mqtt::Disconnect {
        reason: ReasonCode::UNSPECIFIED_ERROR,
        properties: Properties::default(),
    }));
    assert!(b.finish(1).will.is_some(), "an error reason keeps the will");
    let mut b = with_will();
    b.on_frame(native_connack(0, None));
    b.on_packet(Packet::Disconnect(mqtt::Disconnect {
        reason: ReasonCode::SUCCESS,
        properties: Properties {
            session_expiry_interval: Some(60),
            ..Properties::default()
        },
    }));
    let out: Vec<Packet> = std::iter::from_fn(|| b.poll_packet()).collect();
    assert!(
        matches!(out.last(), Some(Packet::Disconnect(d)) if d.reason == ReasonCode::PROTOCOL_ERROR),
        "{out:?}"
    );
    assert!(
        b.finish(1).will.is_some(),
        "a protocol error is not a normal disconnect"
    );
}

#[test]
fn a_taken_over_session_publishes_its_will_and_hands_on_only_persistent_state() {
    let mut c = connect(ProtocolLevel::V311, true);
    c.will = Some(Will {
        topic: MqttString::from("user/8"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let mut clean = Bridge::new(c, "t".into(), me(), None, 1, params());
    assert!(
        clean.take_over(true).is_none(),
        "a clean session ends with its connection"
    );
    let done = clean.finish(1);
    assert!(done.will.is_some());
    assert!(matches!(done.keep, Keep::Nothing));
    let mut persistent = persistent_bridge(None, 1);
    assert!(persistent.take_over(true).is_some());
}

#[test]
fn no_local_room_subscriptions_skip_this_users_publishes_but_acknowledge_them() {
    let mut h = Harness::live(ProtocolLevel::V5, &[]);
    h.packets();
    h.core();
    let mut options = SubscriptionOptions::qos(QoS::AtLeastOnce);
    options.no_local = true;
    h.b.on_packet(Packet::Subscribe(Subscribe {
        packet_id: pid(5),
        filters: vec![Subscription {
            filter: MqttString::from("room/2"),
            options,
        }],
        properties: Properties::default(),
    }));
    h.core();
    h.b.on_frame(Frame::SubAck(proto::SubAck {
        room: 2 | ROOM_BIT,
        head: Seq(0),
        first: Seq(1),
        result: SubResult::Ok,
    }));
    h.packets();
    for (seq, from) in [(1, ME), (2, UserId(3))] {
        h.b.on_frame(Frame::RoomPush(RoomPush {
            room: 2 | ROOM_BIT,
            seq: Seq(seq),
            from,
            ts_ms: 0,
            qos: Qos::AtLeastOnce,
            attrs: Bytes::new(),
            payload: Bytes::from_static(b"r"),
        }));
    }
    let sent = h.publishes();
    assert_eq!(sent.len(), 1, "the user's own publish is skipped");
    assert_eq!(
        h.core(),
        vec![Frame::RoomAck {
            room: 2 | ROOM_BIT,
            seq: Seq(1)
        }],
        "and acknowledged at once"
    );
    h.b.on_packet(Packet::PubAck(PubReply::success(
        sent[0].packet_id.unwrap(),
    )));
    assert_eq!(
        h.core(),
        vec![Frame::RoomAck {
            room: 2 | ROOM_BIT,
            seq: Seq(2)
        }]
    );
}

#[test]
fn every_packet_feeds_the_keep_alive() {
    let mut h = Harness::live(ProtocolLevel::V311, &[]);
    h.packets();
    h.core();
    h.subscribe(2, &[("user/+", QoS::AtLeastOnce)]);
    assert_eq!(
        h.core_raw(),
        vec![Frame::Ping(0)],
        "an inbox SUBSCRIBE has no frame of its own"
    );
    h.b.on_packet(Packet::PingReq);
    assert_eq!(h.core_raw(), vec![Frame::Ping(0)]);
}

#[test]
fn a_malformed_packet_before_the_connack_is_refused_with_a_connack() {
    let mut h = Harness::of(Bridge::new(
        connect(ProtocolLevel::V5, true),
        "t".into(),
        me(),
        None,
        1,
        params(),
    ));
    h.core();
    let e = mqtt::Decoder::new(Some(ProtocolLevel::V5), 1024)
        .decode(&mut bytes::BytesMut::from(
            &[0x36u8, 0x05, 0, 1, b'a', 0, 1][..],
        ))
        .expect_err("QoS 3 is malformed");
    h.b.on_decode_error(&e);
    match h.packets().as_slice() {
        [Packet::ConnAck(a)] => assert_eq!(a.code, ReasonCode::MALFORMED_PACKET),
        other => panic!("{other:?}"),
    }
    let done = std::mem::replace(
        &mut h.b,
        Bridge::new(
            connect(ProtocolLevel::V5, true),
            "t".into(),
            me(),
            None,
            1,
            params(),
        ),
    )
    .finish(1);
    assert!(
        matches!(done.keep, Keep::Nothing),
        "a refused session leaves stored state alone"
    );
}

mod flow_control;
mod permissions;
mod persist;
mod properties;
mod replay;
mod rooms;
mod with_core;

/// #21 item 5: a connection's queues keep the buffers its first packets
/// grew (a queue of packets is 456 bytes a slot); an idle connection gives
/// them back, and what is still queued stays.
#[test]
fn an_idle_bridge_gives_back_its_empty_queues() {
    let mut h = Harness::of(persistent_bridge(None, 1000));
    h.core();
    h.b.on_frame(native_connack(0, None));
    h.packets();
    h.core();
    assert!(
        h.b.to_client.capacity() + h.b.to_core.capacity() > 0,
        "the CONNACK and the SYNC grew the queues"
    );
    h.b.on_frame(Frame::Ping(7)); // the core's answer: nothing for the client
    h.b.release_idle_memory();
    assert_eq!(h.b.to_client.capacity(), 0);
    assert_eq!(h.b.to_core.capacity(), 0);
    assert!(!h.b.gate.q.is_made(), "the gate's queues are dropped");
    assert!(!h.b.busy.is_made(), "the busy part is dropped");
    // Something queued survives the release.
    h.b.on_packet(Packet::PingReq);
    h.b.release_idle_memory();
    assert!(matches!(h.packets().as_slice(), [Packet::PingResp]));
}

mod streams;
mod wild_retained;

mod v5;
mod wills;
