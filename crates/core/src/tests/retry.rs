//! A retried SEND must be the same SEND (issue #16 item 5): a SEND that
//! reuses a client_msg_id for another addressee, QoS or payload gets
//! `Conflict` and stores nothing, in flight or after its SENDACK.

use super::*;

fn send_with(cmid: u64, to: u64, qos: Qos, payload: &'static [u8]) -> Frame {
    Frame::Send(Send {
        client_msg_id: cmid,
        to: UserId(to),
        qos,
        confirm: false,
        attrs: Bytes::new(),
        payload: Bytes::from_static(payload),
    })
}

fn sendack(frames: &[Frame]) -> (surepush_proto::SendResult, Seq) {
    match frames {
        [Frame::SendAck(a)] => (a.result, a.seq),
        other => panic!("expected one SENDACK: {other:?}"),
    }
}

/// Messages stored in `inbox`, as (seq, to, payload).
fn stored_in(h: &Harness, inbox: u64) -> Vec<(u64, u64, Bytes)> {
    h.log
        .iter()
        .filter_map(|r| match r {
            Record::Message(m) if m.inbox == UserId(inbox) => {
                Some((m.seq.0, m.to.0, m.payload.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Issue #16 item 5: a SEND reusing a stored send's client_msg_id for
/// another addressee was stored a second time and answered `Stored`; with
/// another payload or QoS it was called a duplicate. Each is `Conflict`
/// now, and nothing new is stored; the true retry is still `Duplicate`.
#[test]
fn a_retry_that_differs_from_the_stored_send_is_a_conflict_and_stores_nothing() {
    use surepush_proto::SendResult::{Conflict, Duplicate, Stored};
    let mut h = Harness::new(CoreConfig::default());
    let a = h.connect(1, 1);
    h.frame(a, send_with(7, 2, Qos::AtLeastOnce, b"hello"));
    assert_eq!(sendack(&h.take(a)), (Stored, Seq(1)));
    let before = h.log.len();
    for (what, retry) in [
        (
            "another addressee",
            send_with(7, 3, Qos::AtLeastOnce, b"hello"),
        ),
        (
            "another payload",
            send_with(7, 2, Qos::AtLeastOnce, b"HELLO"),
        ),
        ("another QoS", send_with(7, 2, Qos::ExactlyOnce, b"hello")),
        (
            "a room instead",
            send_with(7, ROOM, Qos::AtLeastOnce, b"hello"),
        ),
    ] {
        h.frame(a, retry);
        assert_eq!(sendack(&h.take(a)), (Conflict, Seq::ZERO), "{what}");
        assert_eq!(h.log.len(), before, "{what}: nothing stored");
    }
    assert!(stored_in(&h, 3).is_empty());
    assert_eq!(
        stored_in(&h, 2),
        vec![(1, 2, Bytes::from_static(b"hello"))],
        "the original is untouched"
    );
    h.frame(a, send_with(7, 2, Qos::AtLeastOnce, b"hello"));
    assert_eq!(sendack(&h.take(a)), (Duplicate, Seq(1)), "a true retry");
    assert!(!h.closed(a), "a conflict does not close the session");
}

const ROOM: u64 = surepush_proto::ROOM_BIT | 5;

/// Issue #16 item 5, for sends that leave no copy in the sender's inbox: a
/// room send retried with another payload is compared with the room's
/// stored copy.
#[test]
fn a_room_send_retried_with_another_payload_is_a_conflict() {
    use surepush_proto::SendResult::{Conflict, Duplicate, Stored};
    let mut h = Harness::new(CoreConfig::default());
    let a = h.connect(1, 1);
    h.frame(a, send_with(9, ROOM, Qos::AtLeastOnce, b"to the room"));
    assert_eq!(sendack(&h.take(a)), (Stored, Seq(1)));
    h.frame(a, send_with(9, ROOM, Qos::AtLeastOnce, b"something else"));
    assert_eq!(sendack(&h.take(a)), (Conflict, Seq::ZERO));
    h.frame(a, send_with(9, ROOM, Qos::AtLeastOnce, b"to the room"));
    assert_eq!(sendack(&h.take(a)), (Duplicate, Seq(1)));
    assert_eq!(stored_in(&h, ROOM).len(), 1);
}

/// Issue #16 item 5: a second SEND with the same id but another addressee
/// while the first is still being stored was merged into it (one SENDACK,
/// stored only for the first addressee).
#[test]
fn a_different_send_under_an_id_in_flight_is_refused_and_the_first_completes() {
    use surepush_proto::SendResult::{Conflict, Stored};
    let mut h = Harness::new(CoreConfig::default());
    let a = h.connect(1, 1);
    h.shard
        .handle_frame(a, send_with(4, 2, Qos::AtLeastOnce, b"first"), h.now);
    // Hold the appends: the first send is in flight.
    let mut held = Vec::new();
    while let Some(action) = h.shard.poll_action() {
        match action {
            Action::Append { token, record } => {
                h.log.push(record);
                held.push(token);
            }
            other => h.out.push(other),
        }
    }
    h.frame(a, send_with(4, 3, Qos::AtLeastOnce, b"first"));
    assert_eq!(sendack(&h.take(a)), (Conflict, Seq::ZERO));
    for token in held {
        h.shard.handle_appended(token, Ok(()), h.now);
    }
    h.run();
    assert_eq!(
        sendack(&h.take(a)),
        (Stored, Seq(1)),
        "the original completes"
    );
    assert!(stored_in(&h, 3).is_empty());
}

/// Issue #16 item 5 for the admin API: a publish reusing an id with
/// another payload is refused.
#[test]
fn a_backend_publish_reusing_an_id_for_another_message_is_a_conflict() {
    let mut h = Harness::new(CoreConfig::default());
    let key = crate::SendKey {
        from: UserId(0),
        from_device: DeviceId(u64::MAX),
        client_msg_id: 5,
    };
    let publish = |h: &mut Harness, request, payload: &'static [u8]| {
        let publish = crate::Publish {
            request,
            key,
            to: UserId(2),
            qos: Qos::AtLeastOnce,
            attrs: Bytes::new(),
            payload: Bytes::from_static(payload),
            by: Publisher::Backend,
            confirm: false,
        };
        h.shard.handle_publish(publish, h.now);
        h.run();
        h.out
            .iter()
            .find_map(|a| match a {
                Action::Published {
                    request: r,
                    outcome,
                } if *r == request => Some(*outcome),
                _ => None,
            })
            .expect("answered")
    };
    assert_eq!(publish(&mut h, 1, b"x"), StoreOutcome::Stored(Seq(1)));
    assert_eq!(publish(&mut h, 2, b"y"), StoreOutcome::Conflict);
    assert_eq!(publish(&mut h, 3, b"x"), StoreOutcome::Duplicate(Seq(1)));
    assert_eq!(stored_in(&h, 2).len(), 1);
}

/// Found by the loadgen kill -9 smoke test: a retried SEND waits for its
/// stored original to be read back; a newer SEND of the same connection
/// went ahead of it and was stored first, so the inbox held the sender's
/// messages out of order (index 130 at seq 130, index 129 at seq 131).
/// Later SENDs now wait behind the comparison.
#[test]
fn sends_behind_a_retry_being_compared_keep_the_connections_order() {
    use surepush_proto::SendResult::{Duplicate, Stored};
    let mut h = Harness::new(CoreConfig::default());
    let a = h.connect(1, 1);
    h.frame(a, send_with(1, 2, Qos::AtLeastOnce, b"first"));
    assert_eq!(sendack(&h.take(a)), (Stored, Seq(1)));
    // The retry of 1 (compared: its read held), then a new send 2.
    h.shard
        .handle_frame(a, send_with(1, 2, Qos::AtLeastOnce, b"first"), h.now);
    h.shard
        .handle_frame(a, send_with(2, 2, Qos::AtLeastOnce, b"second"), h.now);
    let mut held = Vec::new();
    while let Some(action) = h.shard.poll_action() {
        match action {
            Action::Read { id, user, query } => held.push((id, user, query)),
            Action::Append { .. } => panic!("send 2 was stored before the retry of 1 was decided"),
            other => h.out.push(other),
        }
    }
    assert_eq!(held.len(), 1, "one comparison read");
    let (id, user, _) = held.remove(0);
    let records = h
        .log
        .iter()
        .filter_map(|r| match r {
            Record::Message(m) if m.inbox == user => Some(m.clone()),
            _ => None,
        })
        .collect();
    h.shard.handle_read(id, Ok(records), h.now);
    h.run();
    let acks: Vec<_> = h
        .take(a)
        .into_iter()
        .map(|f| match f {
            Frame::SendAck(s) => (s.client_msg_id, s.result, s.seq),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(acks, vec![(1, Duplicate, Seq(1)), (2, Stored, Seq(2))]);
    assert_eq!(
        stored_in(&h, 2),
        vec![
            (1, 2, Bytes::from_static(b"first")),
            (2, 2, Bytes::from_static(b"second"))
        ]
    );
}
