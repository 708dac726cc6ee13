//! Issue #24: an inbox replay streams. Pages are read ahead of the
//! client's acknowledgements within the replay window (`window.rs`), a
//! PUBACK is answered by the next PUBLISH at once, and the window bounds
//! what a session holds, by count and by bytes, at QoS 1 and QoS 2.

use super::*;

/// A replay page of `seqs` at `qos` to `user/7` with `size`-byte
/// payloads (`m{seq}` padded with dots), answering `request`.
fn page_of(request: u32, seqs: std::ops::RangeInclusive<u64>, qos: Qos, size: usize) -> Frame {
    Frame::SyncPage(SyncPage {
        request_id: request,
        head: Seq(1000),
        end: false,
        gap: false,
        items: seqs
            .map(|s| {
                let mut p = push(s, ME.0, qos);
                let mut body = format!("m{s}").into_bytes();
                body.resize(size.max(body.len()), b'.');
                p.payload = Bytes::from(body);
                p
            })
            .collect(),
    })
}

/// A replay page of `seqs`, all QoS 1 to `user/7`, answering `request`.
fn replay_page(request: u32, seqs: std::ops::RangeInclusive<u64>) -> Frame {
    page_of(request, seqs, Qos::AtLeastOnce, 0)
}

/// A resumed persistent session subscribed to `user/7` at `qos`, its
/// CONNACK out (position 2, head 1000), with `params`; returns the first
/// SYNC, which acknowledges the position.
fn resumed(qos: QoS, params: BridgeParams) -> (Harness, Sync) {
    let stored = SessionState {
        subs: vec![Subscription {
            filter: MqttString::from("user/7"),
            options: SubscriptionOptions::qos(qos),
        }],
        ..SessionState::new(1)
    };
    let c = connect(ProtocolLevel::V311, false);
    let mut h = Harness::of(Bridge::new(
        c,
        "token".into(),
        me(),
        Some(stored),
        1,
        params,
    ));
    h.core();
    h.b.on_frame(native_connack(1000, Some(2)));
    match h.packets().as_slice() {
        [Packet::ConnAck(a)] => assert!(a.session_present),
        other => panic!("{other:?}"),
    }
    match h.core().as_slice() {
        [Frame::Sync(s)] => {
            assert_eq!(
                (s.direction, s.read_ahead),
                (SyncDirection::After(Seq(2)), false)
            );
            (h, s.clone())
        }
        other => panic!("{other:?}"),
    }
}

/// The one SYNC among `frames`: (after, limit, read_ahead, request id).
fn the_sync(frames: &[Frame]) -> (u64, u32, bool, u32) {
    match frames {
        [.., Frame::Sync(s)] => match s.direction {
            SyncDirection::After(a) => (a.0, s.limit, s.read_ahead, s.request_id),
            other => panic!("{other:?}"),
        },
        other => panic!("expected a SYNC last: {other:?}"),
    }
}

fn payloads(sent: &[Publish]) -> Vec<Bytes> {
    sent.iter().map(|p| p.payload.clone()).collect()
}

fn expected(seqs: std::ops::RangeInclusive<u64>) -> Vec<Bytes> {
    seqs.map(|s| Bytes::from(format!("m{s}"))).collect()
}

/// Issue #24: the bridge asked for page N+1 only once every item of page
/// N was acknowledged by the client, and that SYNC acknowledged page N:
/// replay stopped and waited for PUBACKs (and a delayed TCP ACK) per page.
/// Now the next page is read ahead before any PUBACK, without
/// acknowledging; acknowledgements reach the core as cumulative ACKs of
/// the prefix the client holds, and reading ahead stops at the window.
#[test]
fn replay_reads_the_next_page_before_the_previous_pages_pubacks() {
    // params(): pages of 10, a window of 25 (a reserve of 10, so 15 on
    // the wire).
    let (mut h, first) = resumed(QoS::AtLeastOnce, params());
    assert_eq!(first.limit, 10);
    h.b.on_frame(replay_page(first.request_id, 3..=12));
    let (after, limit, read_ahead, request) = the_sync(&h.core());
    assert_eq!(
        (after, limit, read_ahead),
        (12, 10, true),
        "the next page must be asked before any PUBACK"
    );
    h.b.on_frame(replay_page(request, 13..=22));
    let (after, limit, read_ahead, request) = the_sync(&h.core());
    assert_eq!((after, limit, read_ahead), (22, 5, true), "the room left");
    h.b.on_frame(replay_page(request, 23..=27));
    // 25 held: the window is full, no further read.
    assert_eq!(h.core(), vec![]);
    let sent = h.publishes();
    assert_eq!(
        payloads(&sent),
        expected(3..=17),
        "15 on the wire, in order"
    );
    // PUBACKs of the first six: cumulative ACKs, six more PUBLISHes from
    // the reserve, and once 20 are held (room for half the reserve) the
    // next read, for the room left.
    for p in &sent[..6] {
        h.b.on_packet(Packet::PubAck(PubReply::success(p.packet_id.unwrap())));
    }
    match h.core().as_slice() {
        [Frame::Ack(Seq(7)), Frame::Sync(s), Frame::Ack(Seq(8))] => assert_eq!(
            (s.direction, s.limit, s.read_ahead),
            (SyncDirection::After(Seq(27)), 5, true)
        ),
        other => panic!("{other:?}"),
    }
    let more = h.publishes();
    assert_eq!(payloads(&more), expected(18..=23));
    // An acknowledgement out of order moves nothing in the core.
    h.b.on_packet(Packet::PubAck(PubReply::success(
        sent[7].packet_id.unwrap(),
    )));
    assert_eq!(h.core(), vec![]);
    h.b.on_packet(Packet::PubAck(PubReply::success(
        sent[6].packet_id.unwrap(),
    )));
    assert_eq!(h.core(), vec![Frame::Ack(Seq(10))]);
}

/// Issue #24: with every message read on the wire, a PUBACK freed a slot
/// but found nothing to send until the next page was read, and a client
/// without TCP_NODELAY (mosquitto_sub) held its further PUBACKs until the
/// server's delayed ACK: ~40 ms per window (1,440 msgs/s with a window of
/// 20 where mosquitto drained 102,571/s). The window keeps a reserve in
/// the bridge, so each PUBACK is answered by a PUBLISH in the same turn.
#[test]
fn every_puback_of_a_full_window_is_answered_by_the_next_publish_at_once() {
    let p = BridgeParams {
        page: 64,
        inflight: 20,
        ..params()
    };
    let (mut h, first) = resumed(QoS::AtLeastOnce, p);
    assert_eq!(first.limit, 20);
    h.b.on_frame(replay_page(first.request_id, 3..=22));
    assert_eq!(h.core(), vec![], "the window is full");
    let mut on_wire: VecDeque<Publish> = h.publishes().into();
    assert_eq!(on_wire.len(), 10, "half the window waits in reserve");
    let mut delivered = Vec::new();
    let mut last_read = 22;
    while let Some(p) = on_wire.pop_front() {
        delivered.push(p.payload.clone());
        h.b.on_packet(Packet::PubAck(PubReply::success(p.packet_id.unwrap())));
        let answer = h.publishes();
        if delivered.len() + on_wire.len() < 58 {
            assert!(!answer.is_empty(), "PUBACK {} unanswered", delivered.len());
        }
        on_wire.extend(answer);
        // The core answers a SYNC at once, up to seq 60 (the last SYNC,
        // after 60, stays unanswered: the replay is not over).
        if let Some(Frame::Sync(s)) = h.core().last().filter(|_| last_read < 60) {
            let to = (last_read + u64::from(s.limit)).min(60);
            h.b.on_frame(replay_page(s.request_id, last_read + 1..=to));
            last_read = to;
            on_wire.extend(h.publishes());
        }
        assert!(on_wire.len() <= 10, "never more than the send window");
    }
    assert_eq!(delivered, expected(3..=60), "every message once, in order");
}

/// The window in bytes (issue #24 item 1): reading ahead stops once the
/// held messages carry `inflight_bytes`, whatever the count, and resumes
/// as the client acknowledges.
#[test]
fn the_byte_window_stops_reading_ahead_until_pubacks_free_it() {
    let p = BridgeParams {
        page: 4,
        inflight: 100,
        inflight_bytes: 10_000,
        ..params()
    };
    let (mut h, first) = resumed(QoS::AtLeastOnce, p);
    // 4 KiB messages: the third page passes 10,000 bytes.
    h.b.on_frame(page_of(first.request_id, 3..=6, Qos::AtLeastOnce, 4096));
    assert!(h.core().is_empty(), "16 KiB held: no read ahead");
    let sent = h.publishes();
    assert_eq!(sent.len(), 4);
    h.b.on_packet(Packet::PubAck(PubReply::success(
        sent[0].packet_id.unwrap(),
    )));
    assert_eq!(
        h.core(),
        vec![Frame::Ack(Seq(3))],
        "12 KiB held: still none"
    );
    h.b.on_packet(Packet::PubAck(PubReply::success(
        sent[1].packet_id.unwrap(),
    )));
    let frames = h.core();
    assert_eq!(frames[0], Frame::Ack(Seq(4)));
    let (after, limit, read_ahead, _) = the_sync(&frames);
    assert_eq!((after, limit, read_ahead), (6, 4, true), "8 KiB held: read");
}

/// QoS 2 replay streams too: pages are read ahead before any PUBREC, a
/// PUBREC (the client has the message) moves the core's cursor, and every
/// message is sent once, its packet id durable before it leaves.
#[test]
fn a_qos2_replay_reads_ahead_and_acknowledges_on_pubrec() {
    let (mut h, first) = resumed(QoS::ExactlyOnce, params());
    h.b.on_frame(page_of(first.request_id, 3..=12, Qos::ExactlyOnce, 0));
    let (after, _, read_ahead, request) = the_sync(&h.core());
    assert_eq!((after, read_ahead), (12, true), "no PUBREC needed first");
    h.b.on_frame(page_of(request, 13..=22, Qos::ExactlyOnce, 0));
    let (after, limit, _, _) = the_sync(&h.core());
    assert_eq!((after, limit), (22, 5));
    let sent = h.publishes();
    assert_eq!(payloads(&sent), expected(3..=17));
    assert!(sent.iter().all(|p| p.qos == QoS::ExactlyOnce && !p.dup));
    // Each packet id was handed out for a durable write before its
    // PUBLISH (Harness stores them at once).
    assert!(h.stored.iter().any(|w| w.report.is_some()));
    for p in &sent[..3] {
        h.b.on_packet(Packet::PubRec(PubReply::success(p.packet_id.unwrap())));
    }
    assert_eq!(
        h.core(),
        vec![Frame::Ack(Seq(5))],
        "PUBREC is the client's receipt"
    );
    let answer = h.packets();
    let rels = answer
        .iter()
        .filter(|p| matches!(p, Packet::PubRel(_)))
        .count();
    let more: Vec<_> = answer
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(rels, 3);
    // PUBREL-awaiting-PUBCOMP still occupies the send window (the
    // packet id is in use), so nothing new goes out before PUBCOMP.
    assert!(more.is_empty(), "{more:?}");
    for p in &sent[..3] {
        h.b.on_packet(Packet::PubComp(PubReply::success(p.packet_id.unwrap())));
    }
    assert_eq!(payloads(&h.publishes()), expected(18..=20));
}
