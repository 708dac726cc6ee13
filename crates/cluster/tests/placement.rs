//! Placement and registry in NATS JetStream KV, against a real
//! nats-server 2.15 (issue #20).

mod support;

use std::time::{Duration, Instant};

use support::*;
use surepush_cluster::admin;
use surepush_cluster::placement::table::PlacementChange;
use surepush_cluster::registry::table::NodeChange;
use surepush_cluster::{ClusterError, ClusterNode, PartitionCount, PartitionId};

#[test]
fn the_first_node_creates_the_cluster_and_owns_every_partition() {
    let nats = NatsServer::start();
    let a = join(node_config(&nats, "a", 64, 1));
    let meta = a.wait_joined(WAIT).unwrap();
    assert_eq!(meta.partitions.get(), 64);
    assert_eq!(meta.initial_node, Some(node_id("a")));
    a.placement().wait_until(WAIT, |t| t.is_complete()).unwrap();
    let table = a.placement().snapshot();
    assert_eq!(table.counts().get(&node_id("a")), Some(&64));
    for p in 0..64 {
        let asg = table.assignment(PartitionId(p)).unwrap();
        assert_eq!((asg.node.as_str(), asg.epoch), ("a", 1));
    }
    assert!(table.revision() >= 65, "meta + 64 partitions");
}

#[test]
fn nodes_starting_together_agree_on_one_initial_owner() {
    let nats = NatsServer::start();
    // Started at the same time, joining concurrently on a fresh NATS.
    let nodes: Vec<ClusterNode> = ["a", "b", "c"]
        .iter()
        .map(|n| ClusterNode::start(node_config(&nats, n, 128, 1)).unwrap())
        .collect();
    let metas: Vec<_> = nodes.iter().map(|n| n.wait_joined(WAIT).unwrap()).collect();
    let initial = metas[0].initial_node.clone().expect("an initial node");
    assert!(metas
        .iter()
        .all(|m| m.initial_node.as_ref() == Some(&initial)));
    for n in &nodes {
        n.placement().wait_until(WAIT, |t| t.is_complete()).unwrap();
        let table = n.placement().snapshot();
        assert_eq!(table.counts().len(), 1, "one owner for all");
        assert_eq!(table.counts().get(&initial), Some(&128));
        // Each partition was written once: epoch 1 everywhere.
        assert!((0..128).all(|p| table.assignment(PartitionId(p)).unwrap().epoch == 1));
    }
}

#[test]
fn a_node_configured_for_another_partition_count_is_refused() {
    let nats = NatsServer::start();
    let _a = join(node_config(&nats, "a", 64, 1));
    let b = ClusterNode::start(node_config(&nats, "b", 128, 1)).unwrap();
    assert_eq!(
        b.wait_joined(WAIT),
        Err(ClusterError::PartitionCountMismatch {
            cluster: 64,
            configured: 128
        })
    );
    // And `cluster init` with another count is refused the same way.
    let err = admin::init(
        &nats_config(&nats),
        PartitionCount::new(32).unwrap(),
        &[],
        Duration::from_secs(2),
        WAIT,
    );
    assert_eq!(
        err,
        Err(ClusterError::PartitionCountMismatch {
            cluster: 64,
            configured: 32
        })
    );
}

#[test]
fn two_nodes_racing_for_a_partition_one_wins_by_compare_and_set() {
    let nats = NatsServer::start();
    let a = join(node_config(&nats, "a", 16, 1));
    let b = join(node_config(&nats, "b", 16, 1));
    let p = PartitionId(5);
    b.placement()
        .wait_until(WAIT, |t| t.owner(p).is_some())
        .unwrap();
    let seen_a = a.placement().assignment(p).unwrap();
    let seen_b = b.placement().assignment(p).unwrap();
    assert_eq!(seen_a, seen_b, "both read the same revision");
    // Both claim it from the same revision, concurrently.
    let claim_a = a.reassign(p, seen_a.revision, node_id("a"));
    let claim_b = b.reassign(p, seen_b.revision, node_id("b"));
    let (ra, rb) = (claim_a.wait().unwrap(), claim_b.wait().unwrap());
    let (winner, won, lost) = match (&ra, &rb) {
        (Ok(rev), Err(e)) => ("a", *rev, e.clone()),
        (Err(e), Ok(rev)) => ("b", *rev, e.clone()),
        _ => panic!("exactly one must win: {ra:?} {rb:?}"),
    };
    assert_eq!(
        lost,
        ClusterError::Conflict {
            partition: p,
            current: won
        }
    );
    for n in [&a, &b] {
        n.placement()
            .wait_until(WAIT, |t| t.assignment(p).is_some_and(|x| x.revision == won))
            .unwrap();
        let asg = n.placement().assignment(p).unwrap();
        assert_eq!((asg.node.as_str(), asg.epoch), (winner, 2));
    }
    // A stale revision keeps losing.
    assert!(matches!(
        a.reassign(p, seen_a.revision, node_id("a")).wait().unwrap(),
        Err(ClusterError::Conflict { .. })
    ));
    assert!(matches!(
        a.reassign(PartitionId(16), 0, node_id("a")).wait().unwrap(),
        Err(ClusterError::UnknownPartition(PartitionId(16)))
    ));
}

#[test]
fn every_node_sees_placement_changes_in_the_order_they_were_made() {
    let nats = NatsServer::start();
    let a = join(node_config(&nats, "a", 8, 1));
    let b = join(node_config(&nats, "b", 8, 1));
    b.placement().wait_until(WAIT, |t| t.is_complete()).unwrap();
    let (start_a, changes_a) = a.placement().changes();
    let (_, changes_b) = b.placement().changes();
    // A chain of moves, each from the revision the previous one made.
    let plan = [
        (3u32, "b"),
        (1, "b"),
        (3, "a"),
        (7, "b"),
        (3, "b"),
        (1, "a"),
    ];
    let mut made = Vec::new();
    let mut revs: std::collections::HashMap<u32, u64> = (0..8)
        .map(|p| (p, start_a.assignment(PartitionId(p)).unwrap().revision))
        .collect();
    for (p, to) in plan {
        let rev = a
            .reassign(PartitionId(p), revs[&p], node_id(to))
            .wait()
            .unwrap()
            .unwrap();
        revs.insert(p, rev);
        made.push((p, to.to_owned(), rev));
    }
    for changes in [changes_a, changes_b] {
        let seen: Vec<(u32, String, u64)> = (0..plan.len())
            .map(|_| {
                let c: PlacementChange = changes.recv_timeout(WAIT).expect("a change");
                let after = c.after.expect("an owner");
                (c.partition.0, after.node.to_string(), after.revision)
            })
            .collect();
        assert_eq!(seen, made);
        assert!(changes.try_recv().is_err(), "nothing else changed");
    }
    let last = made.last().unwrap().2;
    assert_eq!(a.placement().revision(), last);
}

#[test]
fn placement_survives_a_nats_restart() {
    let mut nats = NatsServer::start();
    let a = join(node_config(&nats, "a", 32, 1));
    let _b = join(node_config(&nats, "b", 32, 1));
    for p in [2u32, 9, 30] {
        let rev = a.placement().assignment(PartitionId(p)).unwrap().revision;
        a.reassign(PartitionId(p), rev, node_id("b"))
            .wait()
            .unwrap()
            .unwrap();
    }
    a.placement()
        .wait_until(WAIT, |t| t.counts().get(&node_id("b")) == Some(&3))
        .unwrap();
    let before = a.placement().snapshot();

    // SIGKILL: only what JetStream synced survives (sync_interval: always).
    nats.restart();

    // A node joining after the restart loads the same placement.
    let c = join(node_config(&nats, "c", 32, 1));
    c.placement().wait_until(WAIT, |t| t.is_complete()).unwrap();
    let after = c.placement().snapshot();
    assert_eq!(after.counts(), before.counts());
    for p in 0..32 {
        let (x, y) = (
            before.assignment(PartitionId(p)).unwrap(),
            after.assignment(PartitionId(p)).unwrap(),
        );
        assert_eq!(
            (&x.node, x.epoch, x.revision),
            (&y.node, y.epoch, y.revision),
            "p{p}"
        );
    }
    // The running node's view keeps following: a change made after the
    // restart reaches it.
    let rev = c.placement().assignment(PartitionId(2)).unwrap().revision;
    let new_rev = c
        .reassign(PartitionId(2), rev, node_id("c"))
        .wait()
        .unwrap()
        .unwrap();
    a.placement()
        .wait_until(WAIT, |t| {
            t.assignment(PartitionId(2))
                .is_some_and(|x| x.revision == new_rev && x.node.as_str() == "c")
        })
        .unwrap();
}

/// Issue #20 (presence watches re-read on a reconnect): a NATS restart
/// quicker than any polling interval (kill, start again: tens of ms) is
/// still reported, and the first connect is not.
#[test]
fn every_nats_restart_is_reported_as_a_reconnect_however_short() {
    let mut nats = NatsServer::start();
    let mut a = join(node_config(&nats, "a", 8, 1));
    let reconnects = a.take_reconnects().expect("reconnects, once");
    assert!(reconnects.is_empty(), "the first connect is no reconnect");
    for i in 0..3 {
        nats.restart();
        assert_eq!(
            reconnects.recv_timeout(WAIT),
            Ok(()),
            "restart {i} not reported"
        );
    }
}

#[test]
fn a_node_that_stops_heartbeating_is_seen_gone_within_the_ttl() {
    let nats = NatsServer::start();
    let a = join(node_config(&nats, "a", 8, 1));
    let b = join(node_config(&nats, "b", 8, 1));
    a.nodes()
        .wait_until(WAIT, |t| t.get(&node_id("b")).is_some())
        .unwrap();
    let rec = a.nodes().get(&node_id("b")).unwrap();
    assert_eq!(rec.incarnation, b.incarnation());
    assert_eq!(rec.mqtt_addr.as_deref(), Some("127.0.0.1:1883"));
    let (_, changes) = a.nodes().changes();
    // Heartbeats (3 per TTL) do not look like changes.
    let heartbeats = Duration::from_millis(1500);
    assert!(
        changes.recv_timeout(heartbeats).is_err(),
        "a heartbeat is no change"
    );

    // b dies: no goodbye, its entry just stops being rewritten.
    let died = Instant::now();
    drop(b);
    let change = changes.recv_timeout(WAIT).expect("b leaves");
    let gone_after = died.elapsed();
    assert_eq!(change, NodeChange::Left(node_id("b")));
    // TTL 2 s after the last heartbeat, which was at most TTL/3 before the
    // kill; the server's expiry check adds well under a second.
    assert!(
        gone_after <= Duration::from_secs(3),
        "seen gone after {gone_after:?}"
    );
    assert!(
        gone_after >= Duration::from_millis(1300),
        "gone before the TTL could pass: {gone_after:?}"
    );
    assert!(a.nodes().get(&node_id("b")).is_none());
    assert!(a.nodes().get(&node_id("a")).is_some(), "a keeps beating");
}

#[test]
fn a_clean_shutdown_is_seen_at_once_and_a_restart_as_a_new_incarnation() {
    let nats = NatsServer::start();
    let a = join(node_config(&nats, "a", 8, 1));
    let b = join(node_config(&nats, "b", 8, 1));
    let first = b.incarnation();
    a.nodes()
        .wait_until(WAIT, |t| t.get(&node_id("b")).is_some())
        .unwrap();
    let (_, changes) = a.nodes().changes();
    let left = Instant::now();
    b.shutdown(WAIT);
    assert_eq!(
        changes.recv_timeout(WAIT).unwrap(),
        NodeChange::Left(node_id("b"))
    );
    assert!(left.elapsed() < Duration::from_secs(1), "not after the TTL");
    let b = join(node_config(&nats, "b", 8, 1));
    assert!(b.incarnation() > first);
    match changes.recv_timeout(WAIT).unwrap() {
        NodeChange::Joined(r) => assert_eq!(r.incarnation, b.incarnation()),
        other => panic!("expected b to join again, got {other:?}"),
    }
}

#[test]
fn init_then_status_reports_nodes_partitions_and_revisions() {
    let nats = NatsServer::start();
    let cfg = nats_config(&nats);
    let p = PartitionCount::new(16).unwrap();
    let created = admin::init(&cfg, p, &[], Duration::from_secs(2), WAIT).unwrap();
    assert!(matches!(created, admin::InitOutcome::Created(ref m) if m.initial_node.is_none()));
    assert!(matches!(
        admin::init(&cfg, p, &[], Duration::from_secs(2), WAIT).unwrap(),
        admin::InitOutcome::Existed(_)
    ));
    // Before any node: nothing assigned.
    let s = admin::status(&cfg, WAIT).unwrap();
    assert_eq!((s.unassigned, s.nodes.len()), (16, 0));

    let a = join(node_config(&nats, "a", 16, 1));
    let b = join(node_config(&nats, "b", 16, 1));
    for q in [0u32, 1, 2, 3, 4] {
        let rev = a.placement().assignment(PartitionId(q)).unwrap().revision;
        a.reassign(PartitionId(q), rev, node_id("b"))
            .wait()
            .unwrap()
            .unwrap();
    }
    let s = admin::status(&cfg, WAIT).unwrap();
    assert_eq!(s.meta.initial_node, Some(node_id("a")));
    assert_eq!(s.unassigned, 0);
    assert_eq!(s.partitions_per_node.get(&node_id("a")), Some(&11));
    assert_eq!(s.partitions_per_node.get(&node_id("b")), Some(&5));
    let ids: Vec<_> = s.nodes.iter().map(|n| n.id.to_string()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(s.placement_revision, a.placement().revision());
    let text = s.to_string();
    assert!(text.contains("16 partitions"), "{text}");
    drop(b);
}

#[test]
fn status_without_a_cluster_says_so() {
    let nats = NatsServer::start();
    assert_eq!(
        admin::status(&nats_config(&nats), WAIT),
        Err(ClusterError::NotInitialized)
    );
}

/// Issue #20: `init` with the cluster's nodes spreads the partitions over
/// them round-robin, so a new cluster needs no partition moves; running it
/// again changes nothing.
#[test]
fn init_with_nodes_spreads_the_partitions() {
    let nats = NatsServer::start();
    let cfg = nats_config(&nats);
    let p = PartitionCount::new(9).unwrap();
    let nodes = [node_id("x"), node_id("y"), node_id("z")];
    admin::init(&cfg, p, &nodes, Duration::from_secs(2), WAIT).unwrap();
    admin::init(&cfg, p, &nodes[..1], Duration::from_secs(2), WAIT).unwrap();
    let status = admin::status(&cfg, WAIT).unwrap();
    assert_eq!(status.unassigned, 0);
    for n in &nodes {
        assert_eq!(status.partitions_per_node.get(n), Some(&3), "{status:?}");
    }
    let x = join(node_config(&nats, "x", 9, 1));
    x.placement().wait_until(WAIT, |t| t.is_complete()).unwrap();
    for part in p.iter() {
        assert_eq!(
            x.placement().owner(part),
            Some(nodes[part.0 as usize % 3].clone())
        );
    }
}
