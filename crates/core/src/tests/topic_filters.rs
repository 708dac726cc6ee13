//! Wildcard topic filters (issue #21 item 1, `topic_filters.rs`): a
//! registered filter is told of the streams that exist and of every
//! stream a message is stored in; limits refuse with TOPIC room 0 seq 0;
//! a registration's answer (seq 1) is followed by seq 2 (every other node
//! answered: at once on one node).

use super::*;
use surepush_proto::topic_stream::{frame_payload, stream_id};
use surepush_proto::{FilterReq, TopicSeen};

pub(super) fn mqtt_session(h: &mut Harness, user: u64) -> ConnId {
    let c = h.shard.handle_open_via(crate::MQTT_TRANSPORT, h.now);
    h.run();
    let token = Harness::token(user, 1, u64::MAX / 2);
    h.frame(
        c,
        Frame::Connect(Connect {
            device: DeviceId(1),
            last_seq: Some(Seq::ZERO),
            keepalive_ms: 0,
            token,
        }),
    );
    assert!(matches!(h.take(c).first(), Some(Frame::ConnAck(_))));
    c
}

fn filter(h: &mut Harness, c: ConnId, f: &str, remove: bool) -> Vec<Frame> {
    let req = FilterReq {
        filter: f.into(),
        remove,
    };
    h.frame(c, Frame::Filter(req));
    h.take(c)
}

fn topic(room: u64, seq: u64, name: &str) -> Frame {
    Frame::Topic(TopicSeen {
        room,
        seq: Seq(seq),
        name: name.into(),
    })
}

fn publish(h: &mut Harness, c: ConnId, cmid: u64, name: &str) {
    let mut s = send(cmid, stream_id(name), Qos::AtLeastOnce);
    if let Frame::Send(s) = &mut s {
        s.payload = frame_payload(name, b"x");
    }
    h.frame(c, s);
}

#[test]
fn a_filter_learns_of_existing_and_new_matching_streams_only() {
    let mut h = Harness::new(CoreConfig::default());
    let publisher = mqtt_session(&mut h, 1);
    let subscriber = mqtt_session(&mut h, 2);
    publish(&mut h, publisher, 1, "a/old");
    h.take(publisher);
    let got = filter(&mut h, subscriber, "a/+", false);
    assert_eq!(
        got,
        vec![
            topic(stream_id("a/old"), 2, "a/old"),
            topic(0, 1, "a/+"),
            topic(0, 2, "a/+") // one node: no other node to wait for
        ]
    );
    publish(&mut h, publisher, 2, "a/new");
    publish(&mut h, publisher, 3, "b/other");
    publish(&mut h, publisher, 4, "$x/a");
    h.take(publisher);
    assert_eq!(
        h.take(subscriber),
        vec![topic(stream_id("a/new"), 1, "a/new")]
    );
    // Dropped: no more notices.
    assert_eq!(filter(&mut h, subscriber, "a/+", true), vec![]);
    publish(&mut h, publisher, 5, "a/newer");
    assert_eq!(h.take(subscriber), vec![]);
}

#[test]
fn filters_beyond_the_limits_are_refused() {
    let mut h = Harness::new(CoreConfig {
        max_filters_per_conn: 1,
        ..CoreConfig::default()
    });
    let c = mqtt_session(&mut h, 1);
    assert_eq!(
        filter(&mut h, c, "a/#", false),
        vec![topic(0, 1, "a/#"), topic(0, 2, "a/#")]
    );
    assert_eq!(filter(&mut h, c, "b/#", false), vec![topic(0, 0, "b/#")]);
    assert_eq!(h.shard.stats().topic_filters_refused, 1);
    // A native session may not register at all.
    let native = h.connect(2, 1);
    assert_eq!(
        filter(&mut h, native, "a/#", false),
        vec![topic(0, 0, "a/#")]
    );
}

/// A retained topic whose stream holds no message any more (its history
/// aged out) is still found by a new filter after a restart: its name is
/// read back from the recovered retained record (issue #21, retained
/// messages of free-form topics); a filter that does not match it is not
/// told of it.
#[test]
fn a_new_filter_finds_retained_topics_recovered_without_history() {
    use surepush_proto::topic_stream::retained_entry;
    let mut h = Harness::new(CoreConfig::default());
    let room = stream_id("r/kept");
    let mut recovered = RecoveredState::default();
    recovered.keyed.insert(
        crate::StateKey::Retained { room: UserId(room) },
        retained_entry("r/kept", b"body"),
    );
    let params = ShardParams {
        id: crate::ShardId(0),
        shards: 1,
        wall_ms_at_zero: 1_700_000_000_000,
    };
    let verifier = TokenVerifier::new(SECRET);
    h.shard = Shard::new(params, CoreConfig::default(), verifier, recovered);
    h.shard.load_topic_names();
    h.run();
    let subscriber = mqtt_session(&mut h, 2);
    assert_eq!(
        filter(&mut h, subscriber, "r/#", false),
        vec![
            topic(room, 1, "r/kept"),
            topic(0, 1, "r/#"),
            topic(0, 2, "r/#")
        ]
    );
    assert_eq!(
        filter(&mut h, subscriber, "q/+", false),
        vec![topic(0, 1, "q/+"), topic(0, 2, "q/+")]
    );
}
