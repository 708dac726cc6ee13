//! Room subscriptions of the bridge: positions that outlive a connection
//! (issue #16 item 2) and slow subscribers (issue #25).

use super::super::state::STATE_VERSION;
use super::*;

const ROOM: u64 = 4;

fn room_push(seq: u64) -> Frame {
    Frame::RoomPush(RoomPush {
        room: ROOM | ROOM_BIT,
        seq: Seq(seq),
        from: UserId(3),
        ts_ms: 0,
        qos: Qos::AtLeastOnce,
        attrs: Bytes::new(),
        payload: Bytes::from(format!("r{seq}")),
    })
}

fn room_lag(next: u64) -> Frame {
    Frame::RoomLag {
        room: ROOM | ROOM_BIT,
        next: Seq(next),
    }
}

fn suback(head: u64, first: u64) -> Frame {
    Frame::SubAck(proto::SubAck {
        room: ROOM | ROOM_BIT,
        head: Seq(head),
        first: Seq(first),
        result: SubResult::Ok,
    })
}

fn room_seqs(sent: &[Publish]) -> Vec<String> {
    sent.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

fn subscribe_from(frames: &[Frame]) -> Vec<SubscribeFrom> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Subscribe(s) if s.room == ROOM | ROOM_BIT => Some(s.from),
            _ => None,
        })
        .collect()
}

/// A live bridge subscribed to room 4 at QoS 1, its SUBACK in.
fn subscribed(level: ProtocolLevel, head: u64) -> Harness {
    let mut h = Harness::live(level, &[("room/4", QoS::AtLeastOnce)]);
    h.b.on_frame(suback(head, head + 1));
    h.packets();
    h.core();
    h
}

fn ack(h: &mut Harness, p: &Publish) {
    h.b.on_packet(Packet::PubAck(PubReply::success(p.packet_id.unwrap())));
}

/// Issue #16 item 2: the position of a subscription to a room without
/// messages is "after 0", which used to be stored as 0 = "no position":
/// the next connection subscribed from "now" and missed everything
/// published while the session was offline.
#[test]
fn a_session_subscribed_to_an_empty_room_resumes_after_0_not_from_now() {
    let mut first = persistent_bridge(None, 1000);
    first.on_frame(native_connack(0, None));
    first.on_packet(Packet::Subscribe(mqtt::Subscribe {
        packet_id: pid(1),
        filters: vec![Subscription {
            filter: MqttString::from("room/4"),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        }],
        properties: Properties::default(),
    }));
    first.on_frame(suback(0, 1));
    let Keep::Save(state) = first.finish(5).keep else {
        panic!("a persistent session is kept");
    };
    let stored = SessionState::decode(&state.encode()).expect("decodes");
    assert_eq!(stored.rooms[&ROOM].position, Some(Seq(0)));
    let mut h = Harness::of(persistent_bridge(Some(stored), 2000));
    h.core();
    h.b.on_frame(native_connack(0, None));
    assert_eq!(
        subscribe_from(&h.core()),
        vec![SubscribeFrom::After(Seq(0))]
    );
}

/// Session files written before the position had its own flag (version 1)
/// still load: there 0 meant "no position".
#[test]
fn version_1_session_files_still_load_with_0_as_no_position() {
    let mut v1 = vec![1u8];
    v1.extend_from_slice(&0u32.to_le_bytes()); // inbox subscriptions
    v1.extend_from_slice(&2u32.to_le_bytes()); // rooms
    for (room, acked) in [(9u64, 44u64), (10, 0)] {
        v1.extend_from_slice(&room.to_le_bytes());
        v1.push(1); // QoS 1, no No Local
        v1.extend_from_slice(&acked.to_le_bytes());
    }
    v1.extend_from_slice(&0u32.to_le_bytes()); // inbound QoS 2
    v1.extend_from_slice(&77u64.to_le_bytes()); // next_msg_id
    v1.extend_from_slice(&3u64.to_le_bytes()); // inbox_start
    v1.extend_from_slice(&0u32.to_le_bytes()); // out_pids
    v1.extend_from_slice(&0u32.to_le_bytes()); // rel_pending
    v1.extend_from_slice(&60u32.to_le_bytes()); // expiry_s
    v1.extend_from_slice(&5u64.to_le_bytes()); // ended_ms
    let state = SessionState::decode(&v1).expect("a version 1 file loads");
    assert_eq!(state.rooms[&9].position, Some(Seq(44)));
    assert_eq!(state.rooms[&10].position, None);
    assert_eq!(state.next_msg_id, 77);
    let again = state.encode();
    assert_eq!(again[0], STATE_VERSION);
    let back = SessionState::decode(&again).expect("decodes");
    assert_eq!(back.rooms, state.rooms);
}

/// Issue #25: on ROOMLAG the bridge used to re-subscribe at once after the
/// last acknowledged message, into the same full socket, and sent every
/// unacknowledged message again on the same connection (hundreds of
/// times for a frozen client). Now it waits for the output to drain,
/// resumes once, and never sends a message twice on one connection.
#[test]
fn a_lagged_room_waits_for_the_output_to_drain_and_resumes_without_resending() {
    let mut h = subscribed(ProtocolLevel::V311, 10);
    for seq in 11..=14 {
        h.b.on_frame(room_push(seq));
    }
    let sent = h.publishes();
    assert_eq!(room_seqs(&sent), ["r11", "r12", "r13", "r14"]);
    ack(&mut h, &sent[0]);
    h.core();
    h.b.on_frame(room_lag(15));
    assert!(h.core().is_empty(), "no re-subscription into a full socket");
    assert!(h.b.wants_drain());
    h.b.on_frame(room_push(15)); // queued before the lag: comes again
    assert!(h.publishes().is_empty());
    h.b.on_output_drained();
    assert!(!h.b.wants_drain());
    assert_eq!(
        subscribe_from(&h.core()),
        vec![SubscribeFrom::After(Seq(11))],
        "once, after the last acknowledged message"
    );
    for seq in 12..=16 {
        h.b.on_frame(room_push(seq)); // the replay
    }
    assert_eq!(
        room_seqs(&h.publishes()),
        ["r15", "r16"],
        "12 to 14 are in flight already: not sent twice"
    );
}

/// A client with more than half the room window unacknowledged would lag
/// again at once: the resume waits for its acknowledgements too.
#[test]
fn a_lagged_room_resumes_only_when_half_the_window_is_acknowledged() {
    let mut h = subscribed(ProtocolLevel::V311, 0);
    for seq in 1..=8 {
        h.b.on_frame(room_push(seq));
    }
    let sent = h.publishes();
    h.b.on_frame(room_lag(9));
    h.b.on_output_drained();
    assert!(
        subscribe_from(&h.core()).is_empty(),
        "8 unacknowledged of 8"
    );
    for p in &sent[..3] {
        ack(&mut h, p);
    }
    assert!(subscribe_from(&h.core()).is_empty(), "5 unacknowledged");
    ack(&mut h, &sent[3]);
    assert_eq!(
        subscribe_from(&h.core()),
        vec![SubscribeFrom::After(Seq(4))]
    );
}

/// Issue #25: a client acknowledging a fast catch-up one PUBACK at a time
/// produced a PING and a ROOMACK per PUBACK, and the core's frame rate
/// limit closed the connection. A batch of packets yields one
/// acknowledgement per kind.
#[test]
fn the_acknowledgements_of_a_batch_of_packets_reach_the_core_as_one_frame() {
    let mut h = subscribed(ProtocolLevel::V311, 0);
    for seq in 1..=6 {
        h.b.on_frame(room_push(seq));
    }
    let sent = h.publishes();
    h.core_raw();
    for p in &sent {
        ack(&mut h, p);
    }
    assert_eq!(
        h.core_raw(),
        vec![Frame::RoomAck {
            room: ROOM | ROOM_BIT,
            seq: Seq(6)
        }]
    );
    h.b.on_packet(Packet::PingReq);
    h.b.on_packet(Packet::PingReq);
    assert_eq!(h.core_raw(), vec![Frame::Ping(0)], "one keep-alive a batch");
}

/// Issue #25: a connection dropped for its unread output is told why
/// (MQTT 5), and what was queued for it is withdrawn.
#[test]
fn a_client_dropped_for_its_output_gets_quota_exceeded_in_v5_and_nothing_else() {
    let mut h = subscribed(ProtocolLevel::V5, 0);
    for seq in 1..=3 {
        h.b.on_frame(room_push(seq));
    }
    h.b.drop_for_quota();
    match h.packets().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::QUOTA_EXCEEDED),
        other => panic!("{other:?}"),
    }
    let mut old = subscribed(ProtocolLevel::V311, 0);
    old.b.on_frame(room_push(1));
    old.b.drop_for_quota();
    assert!(old.packets().is_empty(), "3.1.1 has no DISCONNECT to send");
}
