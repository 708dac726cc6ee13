//! Sequences the gateway no longer has (issue 23; issue 16 items 7, 8):
//! a device holding more than the surviving head raises it, nothing is
//! numbered twice, live delivery and pages step over what is gone and
//! say so, and an ACK up to the head is accepted on any connection.

use super::*;

pub(super) fn connect_with(
    h: &mut Harness,
    user: u64,
    device: u64,
    last_seq: Option<u64>,
) -> ConnId {
    let c = h.open();
    let token = Harness::token(user, device, u64::MAX / 2);
    h.frame(
        c,
        Frame::Connect(Connect {
            device: DeviceId(device),
            last_seq: last_seq.map(Seq),
            keepalive_ms: 0,
            token,
        }),
    );
    c
}

fn sync_after(request_id: u32, after: u64) -> Frame {
    Frame::Sync(Sync {
        request_id,
        direction: SyncDirection::After(Seq(after)),
        limit: 100,
        read_ahead: false,
    })
}

/// Issue 23: after a salvage lost seqs 20..=80, a device reconnecting with
/// `last_seq = 80` was refused forever with AckBeyondSent, and the next
/// message was numbered 20 again.
#[test]
fn a_device_beyond_the_head_raises_it_and_the_next_message_goes_above() {
    let mut h = Harness::new(CoreConfig::default());
    let d1 = connect_with(&mut h, 1, 1, Some(80));
    match h.take(d1).as_slice() {
        [Frame::ConnAck(a)] => assert_eq!((a.head, a.cursor), (Seq(80), Some(Seq(80)))),
        other => panic!("{other:?}"),
    }
    assert!(
        h.log.iter().any(|r| matches!(r, Record::Cursor { user, seq, .. } if *user == UserId(1) && *seq == Seq(80))),
        "the raise is a durable cursor record"
    );
    h.frame(d1, sync_after(1, 80));
    let sender = h.connect(2, 1);
    h.frame(sender, send(7, 1, Qos::AtLeastOnce));
    let acks: Vec<_> = h.take(sender);
    assert!(
        matches!(acks.as_slice(), [Frame::SendAck(a)] if a.seq == Seq(81)),
        "stored above the raised head: {acks:?}"
    );
    // A device that holds less learns what is gone, page and live alike.
    let d2 = connect_with(&mut h, 1, 2, Some(19));
    h.take(d2);
    h.frame(d2, sync_after(1, 19));
    match h.take(d2).as_slice() {
        [Frame::SyncPage(p)] => {
            assert!(p.gap, "{p:?}");
            assert_eq!(
                p.items
                    .iter()
                    .map(|i| (i.seq, i.prev_seq))
                    .collect::<Vec<_>>(),
                [(Seq(81), Seq(19))]
            );
        }
        other => panic!("{other:?}"),
    }
    // Beyond any plausible loss the claim is still refused.
    let liar = connect_with(&mut h, 1, 3, Some(81 + (1 << 32) + 1));
    h.assert_failed(liar, ErrorCode::AckBeyondSent);
}

/// Live delivery steps over sequences the log no longer holds (lost to a
/// salvage, here 4 and 5 of 5) instead of reading for them forever, and the
/// next PUSH names what came before it.
#[test]
fn live_delivery_steps_over_lost_sequences_and_prev_seq_shows_the_gap() {
    let mut recovered = RecoveredState::default();
    recovered.heads.insert(UserId(1), Seq(5));
    let mut h = Harness::new(CoreConfig::default());
    h.shard = Shard::new(
        ShardParams {
            id: crate::ShardId(0),
            shards: 1,
            wall_ms_at_zero: 1_700_000_000_000,
        },
        CoreConfig::default(),
        TokenVerifier::new(SECRET),
        recovered,
    );
    for seq in 1..=3 {
        h.log.push(Record::Message(crate::MessageRecord {
            inbox: UserId(1),
            seq: Seq(seq),
            from: UserId(2),
            from_device: DeviceId(1),
            to: UserId(1),
            client_msg_id: seq,
            qos: Qos::AtLeastOnce,
            ts_ms: 1,
            attrs: Bytes::new(),
            payload: Bytes::from_static(b"old"),
        }));
    }
    let d = connect_with(&mut h, 1, 1, Some(3));
    h.take(d);
    h.frame(d, sync_after(1, 3));
    match h.take(d).as_slice() {
        [Frame::SyncPage(p)] => {
            assert!(
                p.items.is_empty() && p.end && p.gap && p.head == Seq(5),
                "{p:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    let reads = h
        .out
        .iter()
        .filter(|a| matches!(a, Action::Read { .. }))
        .count();
    assert_eq!(reads, 0, "no endless reads for what is gone");
    let sender = h.connect(2, 1);
    h.frame(sender, send(9, 1, Qos::AtLeastOnce));
    match h.take(d).as_slice() {
        [Frame::Push(p)] => assert_eq!((p.seq, p.prev_seq), (Seq(6), Seq(3))),
        other => panic!("{other:?}"),
    }
    h.frame(d, Frame::Ack(Seq(6)));
    assert!(!h.closed(d));
}

/// Issue 16 item 8: an ACK of a stored sequence the connection has not
/// been sent (the device got it on an earlier connection) was closed with
/// AckBeyondSent; it is accepted up to the durable head.
#[test]
fn an_ack_up_to_the_head_is_accepted_before_anything_was_sent() {
    let mut h = Harness::new(CoreConfig::default());
    let sender = h.connect(2, 1);
    for cmid in 1..=3 {
        h.frame(sender, send(cmid, 1, Qos::AtLeastOnce));
    }
    let d = h.connect(1, 1);
    h.frame(d, Frame::Ack(Seq(3)));
    assert!(!h.closed(d), "{:?}", h.take(d));
    assert_eq!(h.shard.device_cursor(UserId(1), DeviceId(1)), Some(Seq(3)));
    h.frame(d, Frame::Ack(Seq(4)));
    h.assert_failed(d, ErrorCode::AckBeyondSent);
}
