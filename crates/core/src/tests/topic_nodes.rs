//! Wildcard filters across the nodes of a cluster (`topic_nodes.rs`): a
//! node's shard 0 greets the other nodes; other nodes' filter sets apply
//! in version order (a gap asks for the whole set, a newer process
//! replaces the older's); a stream message matching another node's filter
//! is relayed to it once.

use std::sync::Arc;

use super::topic_filters::mqtt_session;
use super::*;
use crate::peer::{FilterQuery, FilterWant, NodeFilters, PeerMsg, StreamsAnswered, TopicRelay};
use crate::{ClusterRoutes, PeerTarget};
use surepush_cluster::{NodeId, PartitionCount, PartitionId};
use surepush_proto::topic_stream::{frame_payload, stream_id};

const PARTITIONS: u64 = 4;

fn node(name: &str) -> NodeId {
    NodeId::parse(name).expect("valid")
}

/// Node "a" (this one: even partitions) and "b" (odd ones).
fn cluster_harness() -> Harness {
    let mut h = Harness::new(CoreConfig::default());
    let routes = ClusterRoutes::new(
        node("a"),
        PartitionCount::new(PARTITIONS).expect("valid"),
        1,
        |p| Some(node(if p.0 % 2 == 0 { "a" } else { "b" })),
    )
    .expect("routable");
    h.shard.set_cluster_routes(Arc::new(routes));
    h
}

/// The messages sent to node "b" (its lowest partition, 1) since the
/// last call.
fn to_b(h: &mut Harness) -> Vec<PeerMsg> {
    h.run();
    let mut out = Vec::new();
    for a in std::mem::take(&mut h.out) {
        if let Action::Peer { shard, msg } = a {
            if shard.target() == PeerTarget::Partition(PartitionId(1)) {
                out.push(msg);
            }
        }
    }
    out
}

fn from_b(h: &mut Harness, epoch: u64, version: u64, full: bool, joined: &[&str], left: &[&str]) {
    let msg = NodeFilters {
        node: node("b"),
        epoch,
        version,
        full,
        joined: joined.iter().map(|s| s.to_string()).collect(),
        left: left.iter().map(|s| s.to_string()).collect(),
        relay: true,
    };
    h.shard.handle_peer(msg.into(), h.now);
    h.run();
}

fn remote(h: &Harness) -> u64 {
    h.shard.stats().remote_topic_filters
}

fn whole_set_asked(msgs: &[PeerMsg]) -> bool {
    msgs.iter().any(|m| {
        matches!(m, PeerMsg::FilterQuery(FilterQuery { want: FilterWant::WholeSet, node, .. }) if *node == self::node("a"))
    })
}

/// A topic name whose stream node "a" homes.
fn local_topic(prefix: &str) -> String {
    let count = PartitionCount::new(PARTITIONS).expect("valid");
    (0..)
        .map(|k| format!("{prefix}/{k}/x"))
        .find(|n| count.partition_of_wire_id(stream_id(n)).0 % 2 == 0)
        .expect("some name")
}

/// Issue #21/#20: shard 0 of a starting node sends each other node its
/// whole (empty) set and asks for theirs; deltas from another node apply
/// in version order, a duplicate is skipped, a gap asks for the whole
/// set and changes nothing until it comes; a newer process of the node
/// replaces everything its previous one registered.
#[test]
fn other_nodes_filter_sets_apply_in_version_order() {
    let mut h = cluster_harness();
    let greeting = to_b(&mut h);
    assert!(whole_set_asked(&greeting), "{greeting:?}");
    assert!(greeting.iter().any(|m| matches!(
        m,
        PeerMsg::NodeFilters(NodeFilters { full: true, version: 0, joined, relay: true, .. }) if joined.is_empty()
    )));

    from_b(&mut h, 5, 0, true, &[], &[]);
    from_b(&mut h, 5, 1, false, &["t/+/x", "u/#"], &[]);
    assert_eq!(remote(&h), 2);
    from_b(&mut h, 5, 1, false, &["dup/#"], &[]);
    assert_eq!(remote(&h), 2, "a duplicate is skipped");
    from_b(&mut h, 5, 2, false, &[], &["u/#"]);
    assert_eq!(remote(&h), 1);
    assert!(to_b(&mut h).is_empty(), "nothing asked while in step");

    from_b(&mut h, 5, 4, false, &["gap/#"], &[]);
    assert_eq!(remote(&h), 1, "a delta after a gap is not applied");
    assert!(whole_set_asked(&to_b(&mut h)), "a gap asks for the set");
    from_b(&mut h, 5, 5, false, &["gap2/#"], &[]);
    assert!(to_b(&mut h).is_empty(), "asked once until it comes");
    from_b(&mut h, 5, 5, true, &["#", "t/+/x"], &[]);
    assert_eq!(remote(&h), 2, "the whole set replaces");
    from_b(&mut h, 4, 9, true, &["old/#"], &[]);
    assert_eq!(remote(&h), 2, "an older process is ignored");

    // b restarted: its new process's first delta drops the old filters.
    from_b(&mut h, 6, 1, false, &["new/#"], &[]);
    assert_eq!(remote(&h), 1);

    // b left the registry: its filters go; if it was only cut off, its
    // next delta asks for the whole set again.
    h.shard.forget_node(&node("b"));
    assert_eq!(remote(&h), 0);
    from_b(&mut h, 6, 2, false, &["more/#"], &[]);
    assert_eq!(remote(&h), 0);
    assert!(whole_set_asked(&to_b(&mut h)));
    from_b(&mut h, 6, 2, true, &["new/#", "more/#"], &[]);
    assert_eq!(remote(&h), 2);
}

/// Issue #21/#20: a stream message whose name matches node b's filters is
/// relayed to b once, however many of b's filters match; one that
/// matches none is not; a filter registered here asks b for its streams.
#[test]
fn a_matching_stream_message_is_relayed_once_per_node() {
    let mut h = cluster_harness();
    to_b(&mut h);
    from_b(&mut h, 5, 0, true, &["t/+/x", "t/#", "#"], &[]);
    let publisher = mqtt_session(&mut h, 1);
    let name = local_topic("t");
    let mut s = send(1, stream_id(&name), Qos::AtLeastOnce);
    if let Frame::Send(s) = &mut s {
        s.payload = frame_payload(&name, b"x");
    }
    h.frame(publisher, s);
    let relays: Vec<PeerMsg> = to_b(&mut h)
        .into_iter()
        .filter(|m| matches!(m, PeerMsg::TopicRelay(_)))
        .collect();
    assert_eq!(
        relays,
        vec![PeerMsg::TopicRelay(TopicRelay {
            room: stream_id(&name),
            seq: Seq(1),
            name: name.clone(),
            frame: Bytes::new(),
            to: None,
        })]
    );
    assert_eq!(h.shard.stats().topic_relays, 1);

    from_b(&mut h, 5, 1, false, &[], &["t/+/x", "t/#", "#"]);
    let mut s = send(2, stream_id(&name), Qos::AtLeastOnce);
    if let Frame::Send(s) = &mut s {
        s.payload = frame_payload(&name, b"y");
    }
    h.frame(publisher, s);
    assert!(to_b(&mut h).is_empty(), "no filter of b matches any more");

    let subscriber = mqtt_session(&mut h, 2);
    let req = surepush_proto::FilterReq {
        filter: "t/#".into(),
        remove: false,
    };
    h.frame(subscriber, Frame::Filter(req));
    let asked = to_b(&mut h);
    assert!(
        asked.iter().any(|m| matches!(
            m,
            PeerMsg::FilterQuery(FilterQuery { want: FilterWant::Streams { filter, .. }, .. }) if filter == "t/#"
        )),
        "{asked:?}"
    );
}

fn topic(room: u64, seq: u64, name: &str) -> Frame {
    Frame::Topic(surepush_proto::TopicSeen {
        room,
        seq: Seq(seq),
        name: name.into(),
    })
}

fn register(h: &mut Harness, c: ConnId, f: &str) -> Vec<Frame> {
    let req = surepush_proto::FilterReq {
        filter: f.into(),
        remove: false,
    };
    h.frame(c, Frame::Filter(req));
    h.take(c)
}

fn answered(filter: &str, conn: ConnId) -> PeerMsg {
    StreamsAnswered {
        filter: filter.into(),
        shard: crate::ShardId(0),
        conn,
        node: node("b"),
        shards: 2,
    }
    .into()
}

/// Issue #21/#20 (retained messages of a new wildcard filter across
/// nodes): a new filter's connection gets TOPIC room 0 seq 2 once every
/// shard of every other node has answered its question (after their
/// streams), or the node is forgotten, or the wait timed out; a node asked
/// names its streams, then says it answered.
#[test]
fn a_new_filter_is_told_when_every_other_node_answered() {
    let mut h = cluster_harness();
    to_b(&mut h);
    let c = mqtt_session(&mut h, 2);
    assert_eq!(register(&mut h, c, "t/#"), vec![topic(0, 1, "t/#")]);
    to_b(&mut h);
    // b's two shards answer: one stream, then each says it is done.
    let relay = TopicRelay {
        room: stream_id("t/far"),
        seq: Seq(4),
        name: "t/far".into(),
        frame: Bytes::new(),
        to: Some((crate::ShardId(0), c)),
    };
    h.shard.handle_peer(relay.into(), h.now);
    h.shard.handle_peer(answered("t/#", c), h.now);
    h.run();
    assert_eq!(h.take(c), vec![topic(stream_id("t/far"), 4, "t/far")]);
    h.shard.handle_peer(answered("t/#", c), h.now);
    h.run();
    assert_eq!(h.take(c), vec![topic(0, 2, "t/#")]);
    h.shard.handle_peer(answered("t/#", c), h.now);
    h.run();
    assert_eq!(h.take(c), vec![], "told once");

    // b never answers: the wait ends after the timeout, or when b is
    // forgotten.
    assert_eq!(register(&mut h, c, "u/#"), vec![topic(0, 1, "u/#")]);
    h.advance(crate::topic_nodes::NODE_ANSWERS_TIMEOUT_NS / crate::shard::NS_PER_MS - 1);
    assert_eq!(h.take(c), vec![]);
    h.advance(1);
    assert_eq!(h.take(c), vec![topic(0, 2, "u/#")]);
    assert_eq!(register(&mut h, c, "v/#"), vec![topic(0, 1, "v/#")]);
    h.shard.forget_node(&node("b"));
    h.run();
    assert_eq!(h.take(c), vec![topic(0, 2, "v/#")]);

    // Asked by b: this node names its matching stream, then answers.
    let publisher = mqtt_session(&mut h, 1);
    let name = local_topic("w");
    let mut s = send(1, stream_id(&name), Qos::AtLeastOnce);
    if let Frame::Send(s) = &mut s {
        s.payload = frame_payload(&name, b"x");
    }
    h.frame(publisher, s);
    to_b(&mut h);
    let query = FilterQuery {
        node: node("b"),
        want: FilterWant::Streams {
            filter: "w/#".into(),
            shard: crate::ShardId(1),
            conn: c,
        },
        relay: false,
    };
    h.shard.handle_peer(query.into(), h.now);
    let sent = to_b(&mut h);
    let want: Vec<PeerMsg> = vec![
        TopicRelay {
            room: stream_id(&name),
            seq: Seq(2),
            name: name.clone(),
            frame: Bytes::new(),
            to: Some((crate::ShardId(1), c)),
        }
        .into(),
        StreamsAnswered {
            filter: "w/#".into(),
            shard: crate::ShardId(1),
            conn: c,
            node: node("a"),
            shards: 1,
        }
        .into(),
    ];
    assert_eq!(sent, want);
}
