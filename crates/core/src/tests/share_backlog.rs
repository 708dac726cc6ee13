//! A share group's backlog (issue #21, docs/MQTT.md 2.3a "Nobody
//! connected"): a group whose members are gone holds at most
//! `core.room_history` messages in memory; the rest stay in the log and
//! are read back in pages when a member can take them, also after a
//! restart. Before, the group dropped every message older than the
//! history.

use super::topic_filters::mqtt_session;
use super::*;
use surepush_proto::topic_stream::{frame_payload, split_payload, stream_id};
use surepush_proto::{share_key, ShareAck, ShareReq};

const HISTORY: u32 = 8;
const STREAMS: u64 = 3;

fn config() -> CoreConfig {
    CoreConfig {
        room_history: HISTORY,
        room_page: 5,
        ..CoreConfig::default()
    }
}

fn group_key() -> u64 {
    share_key("g", "jobs/+")
}

/// `member` joins group `g` on `jobs/+` (persistent, QoS 1); the frames
/// it got (TOPIC room 0, perhaps pushes).
fn share(h: &mut Harness, member: ConnId) -> Vec<Frame> {
    let req = ShareReq {
        group: "g".into(),
        filter: "jobs/+".into(),
        qos: Qos::AtLeastOnce,
        receive_max: 4,
        leave: false,
        persistent: true,
        expiry_s: None,
    };
    h.frame(member, Frame::Share(req));
    h.take(member)
}

/// Messages `m0..m{n}` at QoS 1, to `jobs/{i % STREAMS}`.
fn publish(h: &mut Harness, publisher: ConnId, n: u64) {
    for i in 0..n {
        let name = format!("jobs/{}", i % STREAMS);
        let mut s = send(i + 1, stream_id(&name), Qos::AtLeastOnce);
        if let Frame::Send(s) = &mut s {
            s.payload = frame_payload(&name, format!("m{i}").as_bytes());
        }
        h.frame(publisher, s);
    }
}

/// Takes and acknowledges (SHAREACK) every message the member gets until
/// none comes; `first` are frames it already got. `(topic, payload)` in
/// the order they came.
fn drain(h: &mut Harness, member: ConnId, first: Vec<Frame>) -> Vec<(String, String)> {
    let mut got = Vec::new();
    let mut frames = first;
    loop {
        let pushes: Vec<_> = frames
            .into_iter()
            .filter_map(|f| match f {
                Frame::SharePush(p) => Some(p),
                _ => None,
            })
            .collect();
        if pushes.is_empty() {
            return got;
        }
        for p in pushes {
            let (name, body) = split_payload(&p.push.payload).expect("a topic message");
            got.push((
                name.to_string(),
                String::from_utf8_lossy(&body).into_owned(),
            ));
            let ack = ShareAck {
                group: p.group,
                room: p.push.room,
                seq: p.push.seq,
            };
            h.frame(member, Frame::ShareAck(ack));
        }
        frames = h.take(member);
    }
}

/// Each of `m0..m{n}` exactly once, in order within its topic.
fn assert_all_once_in_order(got: &[(String, String)], n: u64) {
    let mut want: Vec<(String, String)> = (0..n)
        .map(|i| (format!("jobs/{}", i % STREAMS), format!("m{i}")))
        .collect();
    let mut sorted = got.to_vec();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "every message once");
    let mut last: std::collections::HashMap<&str, u64> = Default::default();
    for (topic, payload) in got {
        let i: u64 = payload[1..].parse().expect("m<i>");
        let before = last.insert(topic, i);
        assert!(
            before.is_none_or(|b| b < i),
            "{topic}: m{i} after {before:?}"
        );
    }
}

/// A publisher, and a persistent member of `g` that joined and left.
fn a_group_whose_member_is_gone(h: &mut Harness) -> ConnId {
    let publisher = mqtt_session(h, 1);
    let member = mqtt_session(h, 2);
    share(h, member);
    h.shard.handle_closed(member, h.now);
    h.run();
    publisher
}

#[test]
fn a_group_without_members_holds_its_history_and_reads_the_rest_back() {
    let mut h = Harness::new(config());
    let publisher = a_group_whose_member_is_gone(&mut h);
    let n = 20 * u64::from(HISTORY);
    publish(&mut h, publisher, n);
    let (held, behind) = h.shard.share_held(group_key());
    assert!(held <= HISTORY as usize, "{held} held in memory");
    assert_eq!(behind, STREAMS as usize, "every stream waits in the log");
    assert_eq!(h.shard.stats().share_dropped, 0);

    let member = mqtt_session(&mut h, 2);
    let first = share(&mut h, member);
    let got = drain(&mut h, member, first);
    assert_all_once_in_order(&got, n);
    assert_eq!(h.shard.share_held(group_key()), (0, 0), "all live again");
}

#[test]
fn a_restarted_group_reads_its_whole_backlog_back() {
    let mut h = Harness::new(config());
    let publisher = a_group_whose_member_is_gone(&mut h);
    let n = 20 * u64::from(HISTORY);
    publish(&mut h, publisher, n);

    // kill -9: a new shard from the log.
    let mut recovered = RecoveredState::default();
    for r in &h.log {
        recovered.apply(r, &config().dedup);
    }
    let params = ShardParams {
        id: crate::ShardId(0),
        shards: 1,
        wall_ms_at_zero: 1_700_000_000_000,
    };
    let verifier = TokenVerifier::new(SECRET);
    h.shard = Shard::new(params, config(), verifier, recovered);
    h.out.clear();
    h.shard.load_topic_names();
    h.run();
    let (held, _) = h.shard.share_held(group_key());
    assert!(held <= HISTORY as usize, "{held} held in memory");

    let member = mqtt_session(&mut h, 2);
    let first = share(&mut h, member);
    let got = drain(&mut h, member, first);
    assert_all_once_in_order(&got, n);
}

#[test]
fn the_resume_limit_bounds_how_far_back_a_group_reaches() {
    let mut h = Harness::new(CoreConfig {
        room_resume_limit: 10,
        ..config()
    });
    let publisher = a_group_whose_member_is_gone(&mut h);
    let n = 20 * u64::from(HISTORY);
    publish(&mut h, publisher, n);
    let member = mqtt_session(&mut h, 2);
    let first = share(&mut h, member);
    let got = drain(&mut h, member, first);
    // Per stream, the newest 10 (a subscriber resuming now gets those).
    let per_stream = n / STREAMS;
    for s in 0..STREAMS {
        let topic = format!("jobs/{s}");
        let mine: Vec<u64> = got
            .iter()
            .filter(|(t, _)| *t == topic)
            .map(|(_, p)| p[1..].parse().expect("m<i>"))
            .collect();
        let newest: Vec<u64> = (0..n).filter(|i| i % STREAMS == s).collect();
        assert_eq!(mine, newest[newest.len() - 10..], "{topic}");
        assert!(per_stream > 10);
    }
    assert!(h.shard.stats().share_dropped > 0);
}
