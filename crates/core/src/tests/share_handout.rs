//! Share groups and the log (issue #21, docs/MQTT.md 2.3a): a QoS 2
//! message handed to a member is sent (SHAREPUSH) only once the group's
//! state recording the hand-out is durable, so a kill -9 in between can
//! never leave a member holding a message the restarted group gives to
//! another member. QoS 1 does not wait.

use super::topic_filters::mqtt_session;
use super::*;
use crate::AppendToken;
use surepush_proto::topic_stream::{frame_payload, split_payload, stream_id};
use surepush_proto::{ShareAck, ShareReq, StateKey};

/// Runs the shard, holding every append of a share group's state (they
/// are "written, not yet durable") and completing every other one.
fn run_holding_share_state(h: &mut Harness) -> Vec<(AppendToken, Record)> {
    let mut held = Vec::new();
    while let Some(a) = h.shard.poll_action() {
        match a {
            Action::Append { token, record } => {
                if matches!(
                    record,
                    Record::State {
                        key: StateKey::ShareGroup { .. },
                        ..
                    }
                ) {
                    held.push((token, record));
                } else {
                    h.log.push(record);
                    h.shard.handle_appended(token, Ok(()), h.now);
                }
            }
            other => h.out.push(other),
        }
    }
    held
}

/// `member` (a persistent session, `expiry_s` its Session Expiry) joins
/// group `g` on `jobs/+` at QoS 2; the frames it got.
pub(super) fn join_persistent(
    h: &mut Harness,
    member: ConnId,
    expiry_s: Option<u32>,
) -> Vec<Frame> {
    let req = ShareReq {
        group: "g".into(),
        filter: "jobs/+".into(),
        qos: Qos::ExactlyOnce,
        receive_max: 10,
        leave: false,
        persistent: true,
        expiry_s,
    };
    h.frame(member, Frame::Share(req));
    h.take(member)
}

/// QoS 2 messages `m{from}..` to `jobs/1` from `publisher`.
pub(super) fn publish_jobs(h: &mut Harness, publisher: ConnId, from: u64, n: u64) {
    for i in from..from + n {
        let mut s = send(i + 1, stream_id("jobs/1"), Qos::ExactlyOnce);
        if let Frame::Send(s) = &mut s {
            s.payload = frame_payload("jobs/1", format!("m{i}").as_bytes());
        }
        h.frame(publisher, s);
    }
}

/// A publisher (user 1), member A (user 2, Session Expiry `a_expiry_s`)
/// and member B (user 3, never expires) of group `g`; six QoS 2 messages
/// to `jobs/1`, of which B finishes what it is sent and A holds the rest
/// unanswered (both get some). The publisher, A, B and the frames A got.
pub(super) fn a_member_holding_qos2(
    h: &mut Harness,
    a_expiry_s: u32,
) -> (ConnId, ConnId, ConnId, Vec<Frame>) {
    let publisher = mqtt_session(h, 1);
    let a = mqtt_session(h, 2);
    join_persistent(h, a, Some(a_expiry_s));
    let b = mqtt_session(h, 3);
    join_persistent(h, b, None);
    publish_jobs(h, publisher, 0, 6);
    let held = h.take(a);
    let finished = h.take(b);
    ack_share_pushes(h, b, &finished);
    let count = |frames: &[Frame]| {
        frames
            .iter()
            .filter(|f| matches!(f, Frame::SharePush(_)))
            .count()
    };
    let (held_n, finished_n) = (count(&held), count(&finished));
    assert!(held_n > 0 && finished_n > 0, "{held:?} {finished:?}");
    assert_eq!(held_n + finished_n, 6);
    (publisher, a, b, held)
}

/// Member A's session has just ended: counted once, the `held` QoS 2
/// messages it had are dropped for the group (`share_dropped` counted from
/// `dropped_before`), none of them goes to `b` (MQTT-4.8.2-5), and the
/// group goes on with `b`, which gets every new message.
pub(super) fn a_left_the_group_to(
    h: &mut Harness,
    publisher: ConnId,
    b: ConnId,
    dropped_before: u64,
    held: usize,
) {
    assert_eq!(h.shard.stats().share_expired, 1);
    assert_eq!(
        h.shard.stats().share_dropped - dropped_before,
        held as u64,
        "A's unfinished QoS 2 messages leave the group"
    );
    let to_b = h.take(b);
    assert!(
        !to_b.iter().any(|f| matches!(f, Frame::SharePush(_))),
        "never to another member: {to_b:?}"
    );
    assert_eq!(
        next_jobs_to(h, publisher, b, 6, 3),
        ["m6", "m7", "m8"],
        "B gets every new message: A is no member"
    );
}

/// The publisher sends `m{from}..` (`n` messages); `member`, which the
/// group now hands everything to, gets and acknowledges them. Their
/// payloads, in the order `member` got them.
fn next_jobs_to(
    h: &mut Harness,
    publisher: ConnId,
    member: ConnId,
    from: u64,
    n: u64,
) -> Vec<String> {
    publish_jobs(h, publisher, from, n);
    let frames = h.take(member);
    ack_share_pushes(h, member, &frames);
    job_pushes(frames).into_iter().map(|(_, m)| m).collect()
}

/// The SHAREPUSHes of `jobs/1` in `frames`: `(seq, payload)`.
pub(super) fn job_pushes(frames: Vec<Frame>) -> Vec<(Seq, String)> {
    frames
        .into_iter()
        .filter_map(|f| match f {
            Frame::SharePush(p) => {
                let (topic, body) = split_payload(&p.push.payload).expect("a topic message");
                assert_eq!(topic, "jobs/1");
                Some((p.push.seq, String::from_utf8_lossy(&body).into_owned()))
            }
            _ => None,
        })
        .collect()
}

/// `member` acknowledges every SHAREPUSH in `frames` (it keeps up).
pub(super) fn ack_share_pushes(h: &mut Harness, member: ConnId, frames: &[Frame]) {
    for f in frames {
        if let Frame::SharePush(p) = f {
            let ack = ShareAck {
                group: p.group,
                room: p.push.room,
                seq: p.push.seq,
            };
            h.frame(member, Frame::ShareAck(ack));
        }
    }
}

fn share(h: &mut Harness, member: ConnId) {
    // Joined on every shard: TOPIC room 0 names the shared filter.
    let joined = join_persistent(h, member, None);
    assert!(
        joined
            .iter()
            .any(|f| matches!(f, Frame::Topic(t) if t.room == 0 && t.seq == Seq(1))),
        "{joined:?}"
    );
}

fn publish(h: &mut Harness, publisher: ConnId, cmid: u64, qos: Qos) {
    let name = "jobs/1";
    let mut s = send(cmid, stream_id(name), qos);
    if let Frame::Send(s) = &mut s {
        s.payload = frame_payload(name, format!("m{cmid}").as_bytes());
    }
    h.shard.handle_frame(publisher, s, h.now);
}

/// A fresh shard with a publisher's session and a member of group `g`.
fn a_publisher_and_a_member() -> (Harness, ConnId, ConnId) {
    let mut h = Harness::new(CoreConfig::default());
    let publisher = mqtt_session(&mut h, 1);
    let member = mqtt_session(&mut h, 2);
    share(&mut h, member);
    (h, publisher, member)
}

fn pushes(h: &mut Harness, member: ConnId) -> Vec<(Seq, Qos)> {
    h.take(member)
        .into_iter()
        .filter_map(|f| match f {
            Frame::SharePush(p) => Some((p.push.seq, p.push.qos)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_qos2_shared_message_leaves_only_once_its_hand_out_is_durable() {
    let (mut h, publisher, member) = a_publisher_and_a_member();

    publish(&mut h, publisher, 1, Qos::ExactlyOnce);
    let held = run_holding_share_state(&mut h);
    assert!(!held.is_empty(), "the hand-out is written");
    // Written, not durable: a kill -9 now must find the message unsent.
    assert_eq!(pushes(&mut h, member), vec![]);
    for (token, record) in held {
        h.log.push(record);
        h.shard.handle_appended(token, Ok(()), h.now);
    }
    h.run();
    assert_eq!(pushes(&mut h, member), vec![(Seq(1), Qos::ExactlyOnce)]);
}

#[test]
fn a_qos1_shared_message_does_not_wait_for_the_groups_state() {
    let (mut h, publisher, member) = a_publisher_and_a_member();

    publish(&mut h, publisher, 1, Qos::AtLeastOnce);
    let held = run_holding_share_state(&mut h);
    assert!(
        !held.is_empty(),
        "the stream's first message writes the cursor"
    );
    assert_eq!(pushes(&mut h, member), vec![(Seq(1), Qos::AtLeastOnce)]);
}

#[test]
fn a_failed_hand_out_write_sends_nothing() {
    let (mut h, publisher, member) = a_publisher_and_a_member();

    publish(&mut h, publisher, 1, Qos::ExactlyOnce);
    let held = run_holding_share_state(&mut h);
    for (token, _) in held {
        h.shard.handle_appended(token, Err(()), h.now);
    }
    h.run();
    // The restart from the log that follows a storage failure finds it
    // waiting for a member (MQTT.md 2.13).
    assert_eq!(pushes(&mut h, member), vec![]);
}
