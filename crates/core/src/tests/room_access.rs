//! Room permissions (issue #16 item 6): a token grant, membership, or an
//! open room without members allows; everything else is refused with a
//! typed answer, and a subscription whose permission goes away ends.

use super::*;
use surepush_proto::{SendResult, SubAck, SubResult, Subscribe, SubscribeFrom, ROOM_BIT};

const ROOM: u64 = ROOM_BIT | 1;
const OTHER_ROOM: u64 = ROOM_BIT | 2;

fn closed_rooms() -> Harness {
    Harness::new(CoreConfig {
        rooms_open: false,
        ..CoreConfig::default()
    })
}

impl Harness {
    /// Changes the members of `id` (a room or group); returns them.
    fn change_members(&mut self, id: u64, add: &[u64], remove: &[u64]) -> Vec<UserId> {
        let ids = |v: &[u64]| v.iter().copied().map(UserId).collect();
        self.shard
            .handle_members_update(7, UserId(id), ids(add), ids(remove), self.now);
        self.run();
        let at = self
            .out
            .iter()
            .position(|a| matches!(a, Action::MembersUpdated { .. }))
            .expect("answered");
        match self.out.remove(at) {
            Action::MembersUpdated {
                outcome: MembersOutcome::Members(m),
                ..
            } => m,
            other => panic!("{other:?}"),
        }
    }

    /// SUBSCRIBE to `room` from its start; the room frames that came back.
    fn subscribe(&mut self, conn: ConnId, room: u64) -> Vec<Frame> {
        let s = Subscribe {
            room,
            from: SubscribeFrom::After(Seq::ZERO),
            qos: Qos::AtLeastOnce,
        };
        self.frame(conn, Frame::Subscribe(s));
        take_room(self, conn)
    }

    /// The result of a QoS 1 SEND to `to`.
    fn publish(&mut self, conn: ConnId, cmid: u64, to: u64) -> SendResult {
        self.frame(conn, send(cmid, to, Qos::AtLeastOnce));
        match self.take(conn).as_slice() {
            [Frame::SendAck(a)] => a.result,
            other => panic!("expected one SENDACK: {other:?}"),
        }
    }
}

fn sub_result(frames: &[Frame]) -> SubResult {
    match frames.first() {
        Some(Frame::SubAck(a)) => a.result,
        other => panic!("expected a SUBACK first: {other:?}"),
    }
}

/// Room sequences pushed in `frames`.
fn pushed(frames: &[Frame]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::RoomPush(p) => Some(p.seq.0),
            _ => None,
        })
        .collect()
}

fn forbidden(first: u64) -> Frame {
    Frame::SubAck(SubAck {
        room: ROOM,
        head: Seq::ZERO,
        first: Seq(first),
        result: SubResult::Forbidden,
    })
}

#[test]
fn open_rooms_without_members_keep_todays_behaviour() {
    let mut h = Harness::new(CoreConfig::default());
    let (a, b) = (h.connect(1, 1), h.connect(2, 1));
    assert_eq!(sub_result(&h.subscribe(b, ROOM)), SubResult::Ok);
    assert_eq!(h.publish(a, 1, ROOM), SendResult::Stored);
    assert_eq!(pushed(&take_room(&mut h, b)), [1]);
}

#[test]
fn with_rooms_closed_only_the_tokens_grant_lets_a_session_in() {
    let mut h = closed_rooms();
    let plain = h.connect(1, 1);
    assert_eq!(h.subscribe(plain, ROOM), [forbidden(0)]);
    assert_eq!(h.publish(plain, 1, ROOM), SendResult::Forbidden);
    let acl = Acl::new(&["room/+"], &["room/1"]).expect("valid");
    let granted = h.connect_granted(2, 1, acl);
    assert_eq!(sub_result(&h.subscribe(granted, ROOM)), SubResult::Ok);
    assert_eq!(sub_result(&h.subscribe(granted, OTHER_ROOM)), SubResult::Ok);
    assert_eq!(h.publish(granted, 1, ROOM), SendResult::Stored);
    assert_eq!(h.publish(granted, 2, OTHER_ROOM), SendResult::Forbidden);
    // Only the granted publish was stored; the refused ones left no trace.
    let stored: Vec<(UserId, u64)> = h
        .log
        .iter()
        .filter_map(|r| match r {
            Record::Message(m) => Some((m.inbox, m.client_msg_id)),
            _ => None,
        })
        .collect();
    assert_eq!(stored, [(UserId(ROOM), 1)]);
    assert_eq!(pushed(&take_room(&mut h, granted)), [1]);
    assert_eq!(h.shard.stats().room_forbidden, 3);
}

#[test]
fn a_room_with_members_is_theirs_even_when_rooms_are_open() {
    let mut h = Harness::new(CoreConfig::default());
    assert_eq!(h.change_members(ROOM, &[2], &[]), [UserId(2)]);
    let (outsider, member) = (h.connect(1, 1), h.connect(2, 1));
    assert_eq!(h.subscribe(outsider, ROOM), [forbidden(0)]);
    assert_eq!(h.publish(outsider, 1, ROOM), SendResult::Forbidden);
    assert_eq!(sub_result(&h.subscribe(member, ROOM)), SubResult::Ok);
    assert_eq!(h.publish(member, 1, ROOM), SendResult::Stored);
    // A room without members next door is still open.
    assert_eq!(
        sub_result(&h.subscribe(outsider, OTHER_ROOM)),
        SubResult::Ok
    );
    assert_eq!(h.publish(outsider, 2, OTHER_ROOM), SendResult::Stored);
    // The membership is durable: Member records keyed by the room id.
    assert!(h.log.contains(&Record::Member {
        group: UserId(ROOM),
        user: UserId(2),
        joined: true
    }));
}

#[test]
fn qos0_publishes_are_dropped_or_with_confirm_answered_forbidden() {
    let mut h = closed_rooms();
    h.change_members(ROOM, &[2], &[]);
    let (outsider, member) = (h.connect(1, 1), h.connect(2, 1));
    assert_eq!(sub_result(&h.subscribe(member, ROOM)), SubResult::Ok);
    let qos0 = |cmid, confirm| {
        Frame::Send(Send {
            client_msg_id: cmid,
            to: UserId(ROOM),
            qos: Qos::AtMostOnce,
            confirm,
            attrs: Bytes::new(),
            payload: Bytes::from_static(b"q0"),
        })
    };
    h.frame(outsider, qos0(1, false));
    assert_eq!(h.take(outsider), []);
    h.frame(outsider, qos0(2, true));
    let refused = h.take(outsider);
    assert!(
        matches!(refused.as_slice(), [Frame::SendAck(a)] if a.result == SendResult::Forbidden && a.client_msg_id == 2),
        "{refused:?}"
    );
    assert_eq!(take_room(&mut h, member), [], "nothing reached the room");
    h.frame(member, qos0(3, true));
    let accepted = h.take(member);
    assert!(
        matches!(accepted.as_slice(), [Frame::SendAck(a)] if a.result == SendResult::Stored && a.seq == Seq::ZERO),
        "{accepted:?}"
    );
    let frames = take_room(&mut h, member);
    assert!(
        matches!(frames.as_slice(), [Frame::RoomPush(p)] if p.seq == Seq::ZERO && p.payload == "q0"),
        "{frames:?}"
    );
}

#[test]
fn a_member_removed_while_subscribed_is_dropped_with_suback_forbidden() {
    let mut h = closed_rooms();
    h.change_members(ROOM, &[1, 2], &[]);
    let acl = Acl::new(&["room/1"], &[]).expect("valid");
    let (publisher, member, granted) = (
        h.connect(1, 1),
        h.connect(2, 1),
        h.connect_granted(3, 1, acl),
    );
    assert_eq!(sub_result(&h.subscribe(member, ROOM)), SubResult::Ok);
    assert_eq!(sub_result(&h.subscribe(granted, ROOM)), SubResult::Ok);
    assert_eq!(h.publish(publisher, 1, ROOM), SendResult::Stored);
    assert_eq!(pushed(&take_room(&mut h, member)), [1]);
    assert_eq!(pushed(&take_room(&mut h, granted)), [1]);
    assert_eq!(h.change_members(ROOM, &[], &[2, 3]), [UserId(1)]);
    // Ended, saying where it would have gone on.
    assert_eq!(take_room(&mut h, member), [forbidden(2)]);
    assert_eq!(h.shard.conn(member).expect("open").rooms, [] as [u64; 0]);
    // The token's grant holds: not a member, never was one, still reading.
    assert_eq!(take_room(&mut h, granted), []);
    assert_eq!(h.publish(publisher, 2, ROOM), SendResult::Stored);
    assert_eq!(take_room(&mut h, member), [], "no longer delivered");
    assert_eq!(pushed(&take_room(&mut h, granted)), [2]);
    // The session stays open; subscribing again is refused.
    assert!(!h.closed(member));
    assert_eq!(h.subscribe(member, ROOM), [forbidden(0)]);
}

#[test]
fn the_first_members_close_an_open_room_to_its_other_subscribers() {
    let mut h = Harness::new(CoreConfig::default());
    let (a, b) = (h.connect(1, 1), h.connect(2, 1));
    assert_eq!(sub_result(&h.subscribe(a, ROOM)), SubResult::Ok);
    assert_eq!(sub_result(&h.subscribe(b, ROOM)), SubResult::Ok);
    h.change_members(ROOM, &[2], &[]);
    assert_eq!(take_room(&mut h, a), [forbidden(1)]);
    assert_eq!(take_room(&mut h, b), []);
    // Removing the last member opens it again (rooms_open), nobody is
    // dropped for that.
    assert_eq!(h.change_members(ROOM, &[], &[2]), []);
    assert_eq!(take_room(&mut h, b), []);
    assert_eq!(sub_result(&h.subscribe(a, ROOM)), SubResult::Ok);
}

#[test]
fn a_retry_of_a_message_stored_while_allowed_is_still_a_duplicate() {
    let mut h = closed_rooms();
    h.change_members(ROOM, &[1], &[]);
    let a = h.connect(1, 1);
    assert_eq!(h.publish(a, 1, ROOM), SendResult::Stored);
    h.change_members(ROOM, &[], &[1]);
    assert_eq!(h.publish(a, 1, ROOM), SendResult::Duplicate);
    assert_eq!(h.publish(a, 2, ROOM), SendResult::Forbidden);
}

#[test]
fn backend_publishes_are_never_refused_and_wills_carry_their_sessions_grant() {
    let mut h = closed_rooms();
    let publish_to = |h: &mut Harness, to: u64, cmid, by| {
        let key = crate::SendKey {
            from: UserId(5),
            from_device: DeviceId(1),
            client_msg_id: cmid,
        };
        let payload = Bytes::from_static(b"p");
        let publish = crate::Publish {
            request: cmid,
            key,
            to: UserId(to),
            qos: Qos::AtLeastOnce,
            attrs: Bytes::new(),
            payload,
            by,
            confirm: false,
        };
        published(h, publish)
    };
    let publish = |h: &mut Harness, cmid, by| publish_to(h, ROOM, cmid, by);
    assert_eq!(
        publish(&mut h, 1, Publisher::Backend),
        StoreOutcome::Stored(Seq(1))
    );
    let will = Publisher::User { room_grant: false };
    assert_eq!(publish(&mut h, 2, will), StoreOutcome::Rejected);
    let granted = Publisher::User { room_grant: true };
    assert_eq!(publish(&mut h, 3, granted), StoreOutcome::Stored(Seq(2)));
    h.change_members(ROOM, &[5], &[]);
    assert_eq!(publish(&mut h, 4, will), StoreOutcome::Stored(Seq(3)));
    // A will to a group needs membership (it was published as if by the
    // backend); the backend needs none.
    let group = UserId::GROUP_BIT | 9;
    h.change_members(group, &[6], &[]);
    assert_eq!(publish_to(&mut h, group, 5, will), StoreOutcome::Rejected);
    let backend = publish_to(&mut h, group, 6, Publisher::Backend);
    assert_eq!(backend, StoreOutcome::Stored(Seq::ZERO));
}

/// Runs `publish` and takes its answer out of the actions.
fn published(h: &mut Harness, publish: crate::Publish) -> StoreOutcome {
    h.shard.handle_publish(publish, h.now);
    h.run();
    let at = h
        .out
        .iter()
        .position(|a| matches!(a, Action::Published { .. }))
        .expect("answered");
    match h.out.remove(at) {
        Action::Published { outcome, .. } => outcome,
        _ => unreachable!(),
    }
}

/// Issue #21 (Will Retain): a QoS 0 will that asks for confirmation is
/// answered by the room's home shard, `Rejected` when the room refuses
/// it, so its retained message is set only for a will the room took;
/// without confirmation QoS 0 is answered `Stored` at once, as before.
#[test]
fn a_confirmed_qos_0_publish_hears_whether_the_room_or_group_took_it() {
    let mut h = closed_rooms();
    let group = UserId::GROUP_BIT | 9;
    h.change_members(group, &[5], &[]);
    let will = |cmid, to: u64, room_grant, confirm| crate::Publish {
        request: cmid,
        key: crate::SendKey {
            from: UserId(5),
            from_device: DeviceId(1),
            client_msg_id: cmid,
        },
        to: UserId(to),
        qos: Qos::AtMostOnce,
        attrs: Bytes::new(),
        payload: Bytes::from_static(b"p"),
        by: Publisher::User { room_grant },
        confirm,
    };
    let stored = StoreOutcome::Stored(Seq::ZERO);
    assert_eq!(published(&mut h, will(1, ROOM, false, false)), stored);
    assert_eq!(
        published(&mut h, will(2, ROOM, false, true)),
        StoreOutcome::Rejected
    );
    assert_eq!(published(&mut h, will(3, ROOM, true, true)), stored);
    h.change_members(ROOM, &[5], &[]);
    assert_eq!(published(&mut h, will(4, ROOM, false, true)), stored);
    assert_eq!(published(&mut h, will(5, group, false, true)), stored);
    h.change_members(group, &[], &[5]);
    assert_eq!(
        published(&mut h, will(6, group, false, true)),
        StoreOutcome::Rejected
    );
    // To a user nothing can refuse it: answered at once.
    assert_eq!(published(&mut h, will(7, 2, false, true)), stored);
}

#[test]
fn room_membership_survives_a_restart() {
    let mut h = closed_rooms();
    h.change_members(ROOM, &[2, 3], &[]);
    h.change_members(ROOM, &[], &[3]);
    let mut recovered = RecoveredState::default();
    for r in &h.log {
        recovered.apply(r, &CoreConfig::default().dedup);
    }
    let mut again = closed_rooms();
    again.shard = Shard::new(
        ShardParams {
            id: crate::ShardId(0),
            shards: 1,
            wall_ms_at_zero: 1_700_000_000_000,
        },
        CoreConfig {
            rooms_open: false,
            ..CoreConfig::default()
        },
        TokenVerifier::new(SECRET),
        recovered,
    );
    let (member, former) = (again.connect(2, 1), again.connect(3, 1));
    assert_eq!(sub_result(&again.subscribe(member, ROOM)), SubResult::Ok);
    assert_eq!(again.subscribe(former, ROOM), [forbidden(0)]);
}

#[test]
fn membership_requests_name_a_group_or_room_and_users() {
    let mut h = Harness::new(CoreConfig::default());
    for (id, members) in [(7, vec![UserId(1)]), (ROOM, vec![UserId(ROOM_BIT | 3)])] {
        h.shard
            .handle_members_update(1, UserId(id), members, Vec::new(), h.now);
        h.run();
        assert!(
            matches!(
                h.out.pop(),
                Some(Action::MembersUpdated {
                    outcome: MembersOutcome::Invalid(_),
                    ..
                })
            ),
            "{id}"
        );
    }
}

/// QoS 0 with CONFIRM is answered for every kind of addressee, and a
/// backend QoS 0 publish to a group reaches the members (it used to be
/// dropped: the home shard asked the backend's user to be a member).
#[test]
fn qos0_confirm_and_backend_qos0_to_groups() {
    let group = UserId::GROUP_BIT | 4;
    let mut h = Harness::new(CoreConfig::default());
    h.shard
        .handle_members_update(1, UserId(group), vec![UserId(2)], Vec::new(), h.now);
    h.run();
    h.out.clear();
    let (outsider, member) = (h.connect(1, 1), h.connect(2, 1));
    h.go_live(member, 0);
    let confirmed = |h: &mut Harness, cmid, to| {
        h.frame(
            outsider,
            Frame::Send(Send {
                client_msg_id: cmid,
                to: UserId(to),
                qos: Qos::AtMostOnce,
                confirm: true,
                attrs: Bytes::new(),
                payload: Bytes::from_static(b"c"),
            }),
        );
        match h.take(outsider).as_slice() {
            [Frame::SendAck(a)] => a.result,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(confirmed(&mut h, 1, group), SendResult::Forbidden);
    assert_eq!(confirmed(&mut h, 2, 2), SendResult::Stored);
    assert_eq!(h.take(member).len(), 1, "the direct QoS 0 message");
    let key = crate::SendKey {
        from: UserId(0),
        from_device: DeviceId(u64::MAX),
        client_msg_id: 9,
    };
    let payload = Bytes::from_static(b"from the backend");
    let publish = crate::Publish {
        request: 1,
        key,
        to: UserId(group),
        qos: Qos::AtMostOnce,
        attrs: Bytes::new(),
        payload,
        by: Publisher::Backend,
        confirm: false,
    };
    h.shard.handle_publish(publish, h.now);
    h.run();
    let frames = h.take(member);
    assert!(
        matches!(frames.as_slice(), [Frame::Push(p)] if p.payload == "from the backend"),
        "{frames:?}"
    );
}

/// Issue #21: a topic stream (a free-form MQTT topic, a room number with
/// bit 61) is granted by name in the MQTT bridge. Here an MQTT connection's
/// requests are granted; a native connection gets one only as a member,
/// even with `rooms_open` and a token granting `#`.
#[test]
fn topic_streams_open_to_mqtt_connections_and_to_native_ones_only_as_members() {
    let stream = surepush_proto::topic_stream::stream_id("chat/general");
    let mut h = Harness::new(CoreConfig::default());
    let native = h.connect_granted(1, 1, Acl::new(&["#"], &["#"]).expect("valid"));
    let sub = |h: &mut Harness, conn| {
        let s = Subscribe {
            room: stream,
            from: SubscribeFrom::After(Seq::ZERO),
            qos: Qos::AtLeastOnce,
        };
        h.frame(conn, Frame::Subscribe(s));
        sub_result(&take_room(h, conn))
    };
    assert_eq!(sub(&mut h, native), SubResult::Forbidden);
    assert_eq!(h.publish(native, 1, stream), SendResult::Forbidden);
    let mqtt = h.shard.handle_open_via(crate::MQTT_TRANSPORT, h.now);
    h.run();
    let token = Harness::token_granting(2, 1, u64::MAX / 2, Acl::default());
    h.frame(
        mqtt,
        Frame::Connect(Connect {
            device: DeviceId(1),
            last_seq: Some(Seq::ZERO),
            keepalive_ms: 0,
            token,
        }),
    );
    assert!(matches!(h.take(mqtt).first(), Some(Frame::ConnAck(_))));
    assert_eq!(sub(&mut h, mqtt), SubResult::Ok);
    assert_eq!(h.publish(mqtt, 1, stream), SendResult::Stored);
    assert_eq!(pushed(&take_room(&mut h, mqtt)), [1]);
    assert_eq!(h.change_members(stream, &[1], &[]), [UserId(1)]);
    assert_eq!(sub(&mut h, native), SubResult::Ok);
}
