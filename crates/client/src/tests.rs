//! The session alone, fed frames as a gateway (or a faulty network) would
//! send them. End-to-end behaviour over TCP is in tests/rooms.rs; delivery
//! under faults is the simulator's job (tests/sim).

use bytes::Bytes;

use super::{ClientConfig, ClientSession, Event};
use surepush_proto::{
    ConnAck, DeviceId, Frame, Qos, RoomPush, Seq, SubAck, SubResult, Subscribe, SubscribeFrom,
    UserId, ROOM_BIT,
};

const ROOM: u64 = ROOM_BIT | 1;

/// A connected session that follows `ROOM` from now (SUBSCRIBE sent).
fn following_from_now() -> ClientSession {
    let mut s = ClientSession::new(ClientConfig::new("token".into(), DeviceId(1)), None);
    s.subscribe(ROOM, Qos::AtLeastOnce, 0);
    connected(&mut s, 0);
    s
}

/// Connects `s` and answers with a CONNACK; drains what it sends.
fn connected(s: &mut ClientSession, now: u64) -> Vec<Frame> {
    s.connect(now);
    s.handle_frame(
        Frame::ConnAck(ConnAck {
            user: UserId(1),
            device: DeviceId(1),
            head: Seq::ZERO,
            cursor: None,
            max_frame: 1 << 20,
            push_window: 64,
            max_pending_sends: 16,
            keepalive_ms: 30_000,
            max_sync_limit: 1_000,
        }),
        now,
    );
    drain(s)
}

fn suback(head: u64, first: u64) -> Frame {
    Frame::SubAck(SubAck {
        room: ROOM,
        head: Seq(head),
        first: Seq(first),
        result: SubResult::Ok,
    })
}

fn push(seq: u64) -> Frame {
    Frame::RoomPush(RoomPush {
        room: ROOM,
        seq: Seq(seq),
        from: UserId(2),
        ts_ms: 0,
        qos: Qos::AtLeastOnce,
        attrs: Bytes::new(),
        payload: Bytes::from(format!("m{seq}")),
    })
}

/// Room sequences handed to the application since the last call.
fn delivered(s: &mut ClientSession) -> Vec<u64> {
    let mut seqs = Vec::new();
    while let Some(e) = s.poll_event() {
        if let Event::RoomMessage(p) = e {
            seqs.push(p.seq.0);
        }
    }
    seqs
}

/// Frames the session wants to send, drained.
fn drain(s: &mut ClientSession) -> Vec<Frame> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn resubscribe_after(last: u64) -> Frame {
    Frame::Subscribe(Subscribe {
        room: ROOM,
        from: SubscribeFrom::After(Seq(last)),
        qos: Qos::AtLeastOnce,
    })
}

#[test]
fn a_room_push_before_the_suback_of_a_subscription_from_now_is_not_delivered() {
    // Found by the simulator (tests/sim, seeds 4, 15 and 42 while rooms
    // were added): a ROOMPUSH reached the session before the SUBACK of its
    // subscription from now (the SUBACK lost or overtaken) and was
    // delivered with no position to check it against. Had it overtaken an
    // earlier push too (as here: 2 before 1), that one would have been
    // dropped as already seen.
    let mut s = following_from_now();
    s.handle_frame(push(2), 1);
    assert_eq!(delivered(&mut s), [] as [u64; 0], "no position yet");
    s.handle_frame(suback(0, 1), 2);
    s.handle_frame(push(1), 3);
    assert_eq!(delivered(&mut s), [1]);
    // 2 was dropped above, not lost: the next push shows the hole and the
    // session subscribes again after 1.
    s.handle_frame(push(3), 4);
    assert_eq!(delivered(&mut s), [] as [u64; 0]);
    assert!(drain(&mut s).contains(&resubscribe_after(1)));
}

#[test]
fn an_ok_suback_that_starts_later_does_not_move_the_position() {
    // Found by the simulator (tests/sim, seeds 55, 381 and 1044 while rooms
    // were added): a SUBSCRIBE from now was duplicated; the first SUBACK
    // started at 5, the second (the room had grown) at 6, and the session
    // skipped 5.
    let mut s = following_from_now();
    s.handle_frame(suback(4, 5), 1);
    s.handle_frame(suback(5, 6), 2);
    s.handle_frame(push(6), 3);
    assert_eq!(delivered(&mut s), [] as [u64; 0], "5 comes first");
    assert!(drain(&mut s).contains(&resubscribe_after(4)));
    s.handle_frame(push(5), 4);
    s.handle_frame(push(6), 5);
    assert_eq!(delivered(&mut s), [5, 6]);
}

/// Issue 16 item 6: SUBACK Forbidden (refused, or a subscription the
/// gateway ended when the user lost the room) ends the follow and says so,
/// with the last sequence delivered; the session does not subscribe again
/// on its own.
#[test]
fn suback_forbidden_ends_the_follow_and_is_reported_with_the_last_sequence() {
    let mut s = following_from_now();
    s.handle_frame(suback(0, 1), 1);
    s.handle_frame(push(1), 2);
    s.handle_frame(push(2), 3);
    assert_eq!(delivered(&mut s), [1, 2]);
    s.handle_frame(
        Frame::SubAck(SubAck {
            room: ROOM,
            head: Seq::ZERO,
            first: Seq(3),
            result: SubResult::Forbidden,
        }),
        4,
    );
    let events: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(
        matches!(
            events.as_slice(),
            [Event::RoomForbidden {
                room: ROOM,
                last: Some(Seq(2))
            }]
        ),
        "{events:?}"
    );
    s.handle_frame(push(3), 5);
    assert_eq!(delivered(&mut s), [] as [u64; 0], "no longer followed");
    s.handle_disconnect(6);
    let again = connected(&mut s, 7);
    assert!(
        !again.iter().any(|f| matches!(f, Frame::Subscribe(_))),
        "{again:?}"
    );
}
