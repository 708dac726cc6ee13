//! The sending device's echo of a send whose copies become durable at
//! different times (addressee on another shard or node) is held until the
//! SENDACK, so both leave in one write as they do when both copies share a
//! commit (issue #20, `deliver.rs` `hold_echo`); any other push to the
//! device releases it first, in sequence order.

use super::pair::{on_shard, on_shard_after, Pair};
use super::*;
use surepush_proto::{Push, SendAck, SendResult};

/// (seq, prev_seq, echo, from) of each PUSH, and (client_msg_id, result,
/// seq, own_seq) of each SENDACK, in the order sent.
#[derive(Debug, PartialEq, Eq)]
enum Out {
    Push(u64, u64, bool, u64),
    SendAck(u64, SendResult, u64, u64),
}

fn outs(frames: Vec<Frame>) -> Vec<Out> {
    frames
        .into_iter()
        .map(|f| match f {
            Frame::Push(Push {
                seq,
                prev_seq,
                echo,
                from,
                ..
            }) => Out::Push(seq.0, prev_seq.0, echo, from.0),
            Frame::SendAck(SendAck {
                client_msg_id,
                result,
                seq,
                own_seq,
            }) => Out::SendAck(client_msg_id, result, seq.0, own_seq.0),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// A sender on shard 0 and an addressee on shard 1, both live.
fn across() -> (Pair, UserId, (usize, ConnId), UserId, (usize, ConnId)) {
    let mut p = Pair::new();
    let (s, r) = (on_shard(0), on_shard(1));
    let sender = p.live(s, 1);
    let receiver = p.live(r, 2);
    (p, s, sender, r, receiver)
}

#[test]
fn the_echo_waits_for_the_sendack_and_leaves_just_before_it() {
    let (mut p, s, (s_shard, s_conn), r, (r_shard, r_conn)) = across();
    p.frame(s_shard, s_conn, send(7, r.0, Qos::AtLeastOnce));
    p.commit(s_shard, true);
    assert_eq!(
        p.take(s_shard, s_conn),
        vec![],
        "the own copy is durable, the addressee's is not: nothing yet"
    );
    p.commit(r_shard, true);
    assert_eq!(
        outs(p.take(r_shard, r_conn)),
        vec![Out::Push(1, 0, false, s.0)]
    );
    assert_eq!(
        outs(p.take(s_shard, s_conn)),
        vec![
            Out::Push(1, 0, true, s.0),
            Out::SendAck(7, SendResult::Stored, 1, 1),
        ]
    );
}

#[test]
fn another_push_to_the_sender_releases_its_held_echo_first() {
    let (mut p, s, (s_shard, s_conn), r, (r_shard, _)) = across();
    let t = on_shard_after(0, s.0);
    let (t_shard, t_conn) = p.live(t, 3);
    assert_eq!(t_shard, s_shard);
    p.frame(s_shard, s_conn, send(1, r.0, Qos::AtLeastOnce));
    p.commit(s_shard, true);
    assert_eq!(p.take(s_shard, s_conn), vec![]);
    // t (same shard as s) sends to s: one commit stores both copies.
    p.frame(t_shard, t_conn, send(2, s.0, Qos::AtLeastOnce));
    p.commit(s_shard, true);
    assert_eq!(
        outs(p.take(s_shard, s_conn)),
        vec![Out::Push(1, 0, true, s.0), Out::Push(2, 1, false, t.0)],
        "the held echo goes first, the chain of prev_seq unbroken"
    );
    p.commit(r_shard, true);
    assert_eq!(
        outs(p.take(s_shard, s_conn)),
        vec![Out::SendAck(1, SendResult::Stored, 1, 1)]
    );
}

#[test]
fn pipelined_sends_hold_their_echoes_in_order_until_a_sendack() {
    let (mut p, s, (s_shard, s_conn), r, (r_shard, _)) = across();
    p.frame(s_shard, s_conn, send(1, r.0, Qos::AtLeastOnce));
    p.frame(s_shard, s_conn, send(2, r.0, Qos::AtLeastOnce));
    p.commit(s_shard, true);
    assert_eq!(p.take(s_shard, s_conn), vec![]);
    p.commit(r_shard, true);
    assert_eq!(
        outs(p.take(s_shard, s_conn)),
        vec![
            Out::Push(1, 0, true, s.0),
            Out::Push(2, 1, true, s.0),
            Out::SendAck(1, SendResult::Stored, 1, 1),
            Out::SendAck(2, SendResult::Stored, 2, 2),
        ]
    );
}

#[test]
fn a_send_refused_by_the_addressees_shard_still_releases_the_durable_echo() {
    let (mut p, s, (s_shard, s_conn), r, (r_shard, _)) = across();
    p.frame(s_shard, s_conn, send(4, r.0, Qos::AtLeastOnce));
    p.commit(s_shard, true);
    assert_eq!(p.take(s_shard, s_conn), vec![]);
    p.commit(r_shard, false);
    assert_eq!(
        outs(p.take(s_shard, s_conn)),
        vec![
            Out::Push(1, 0, true, s.0),
            Out::SendAck(4, SendResult::StorageUnavailable, 0, 1),
        ]
    );
}

#[test]
fn the_sender_acknowledging_past_a_held_echo_drops_it() {
    let (mut p, _, (s_shard, s_conn), r, (r_shard, _)) = across();
    p.frame(s_shard, s_conn, send(5, r.0, Qos::AtLeastOnce));
    p.commit(s_shard, true);
    // The device holds seq 1 already (e.g. from a page of another
    // connection): its ACK moves live delivery past it.
    p.frame(s_shard, s_conn, Frame::Ack(Seq(1)));
    p.commit(r_shard, true);
    assert_eq!(
        outs(p.take(s_shard, s_conn)),
        vec![Out::SendAck(5, SendResult::Stored, 1, 1)]
    );
}
