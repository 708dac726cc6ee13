//! Presence watches across nodes (issue #20) on one shard of node "a":
//! a watcher registers its node once and takes only newer updates; an
//! owner publishes each change once for every watching node and forgets
//! nodes that left the registry; watches follow owner restarts, deaths,
//! NATS reconnects. End to end: tests/cluster_presence.rs.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::{
    ClusterRoutes, Liveness, PeerMsg, PresenceNodeUnwatch, PresenceNodeWatch, PresenceUpdate,
};
use surepush_cluster::{NodeId, PartitionCount, PartitionId};
use surepush_proto::{OnlineDevice, Presence, Watch};

const DEBOUNCE_MS: u64 = 20;
const PARTITIONS: u64 = 8;

fn node(name: &str) -> NodeId {
    NodeId::parse(name).expect("valid")
}

fn partition_of(user: u64) -> PartitionId {
    PartitionCount::new(PARTITIONS)
        .expect("valid")
        .partition_of_wire_id(user)
}

/// Partitions 0..4 on "a" (this node), 4..8 on "b".
fn owner_of(p: PartitionId) -> NodeId {
    node(if p.0 < 4 { "a" } else { "b" })
}

/// A user from `from` up placed on `on`.
fn user_on(on: &str, from: u64) -> u64 {
    (from..)
        .find(|u| owner_of(partition_of(*u)).as_str() == on)
        .expect("users everywhere")
}

/// Routes of node "a" (incarnation 1) with `live` nodes, `reconnects`,
/// and every partition at epoch 3.
fn routes(live: &[(&str, u64)], reconnects: u64) -> Arc<ClusterRoutes> {
    let count = PartitionCount::new(PARTITIONS).expect("valid");
    let nodes: BTreeMap<NodeId, u64> = live.iter().map(|(n, i)| (node(n), *i)).collect();
    let routes = ClusterRoutes::new(node("a"), count, 1, |p| Some(owner_of(p)))
        .expect("routable")
        .with_epochs(|_| 3)
        .with_liveness(Liveness {
            nodes,
            me: 1,
            reconnects,
        });
    Arc::new(routes)
}

fn harness() -> Harness {
    let mut h = Harness::new(CoreConfig {
        presence_debounce_ms: DEBOUNCE_MS,
        ..CoreConfig::default()
    });
    h.set_routes(routes(&[("a", 1), ("b", 1)], 0));
    h
}

impl Harness {
    /// A session of a user of this node watching `user`.
    fn watcher_of(&mut self, me: u64, user: u64) -> ConnId {
        let acl = Acl::new(&[format!("presence/{user}")], &[]).expect("valid filter");
        let c = self.connect_granted(me, 1, acl);
        let users = vec![UserId(user)];
        self.frame(c, Frame::Watch(Watch { request: 1, users }));
        c
    }

    /// Messages the shard sent to other nodes or their subjects (drained).
    fn sent(&mut self) -> Vec<(ShardId, PeerMsg)> {
        let mut sent = Vec::new();
        self.out.retain(|a| match a {
            Action::Peer { shard, msg } => {
                sent.push((*shard, msg.clone()));
                false
            }
            _ => true,
        });
        sent
    }

    fn set_routes(&mut self, routes: Arc<ClusterRoutes>) {
        self.shard.set_cluster_routes(routes);
        self.run();
    }

    fn peer(&mut self, msg: impl Into<PeerMsg>) {
        self.shard.handle_peer(msg.into(), self.now);
        self.run();
    }

    /// Device ids of each PRESENCE `conn` got (checked to be of `user`).
    fn seen(&mut self, conn: ConnId, user: u64) -> Vec<Vec<u64>> {
        self.take(conn)
            .into_iter()
            .filter_map(|f| match f {
                Frame::Presence(Presence { user: u, devices }) => {
                    assert_eq!(u, UserId(user));
                    Some(devices.iter().map(|d| d.device.0).collect())
                }
                _ => None,
            })
            .collect()
    }
}

fn device(id: u64) -> OnlineDevice {
    OnlineDevice {
        device: DeviceId(id),
        since_ms: 1_700_000_000_000,
        shard: 0,
        transport: "native".into(),
    }
}

fn update(user: u64, epoch: u64, version: u64, devices: &[u64]) -> PresenceUpdate {
    PresenceUpdate {
        user: UserId(user),
        epoch,
        version,
        devices: devices.iter().copied().map(device).collect(),
    }
}

/// The node watches `sent` holds, as (user, incarnation).
fn node_watches(sent: &[(ShardId, PeerMsg)]) -> Vec<(u64, u64)> {
    sent.iter()
        .filter_map(|(_, m)| match m {
            PeerMsg::PresenceNodeWatch(w) => {
                assert_eq!(w.node.as_str(), "a");
                Some((w.user.0, w.incarnation))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_watcher_registers_its_node_once_and_takes_only_newer_updates() {
    let mut h = harness();
    let watched = user_on("b", 1);
    let first = h.watcher_of(user_on("a", 100), watched);
    let second = h.watcher_of(user_on("a", 200), watched);
    let sent = h.sent();
    assert_eq!(
        node_watches(&sent),
        [(watched, 1)],
        "one registration per node"
    );
    assert!(
        matches!(sent[0].0.target(), crate::PeerTarget::Partition(p) if p == partition_of(watched))
    );

    h.peer(update(watched, 3, 5, &[10]));
    assert_eq!(h.seen(first, watched), [vec![10]]);
    assert_eq!(h.seen(second, watched), [vec![10]]);
    // Older, repeated and empty stamps are ignored.
    h.peer(update(watched, 3, 4, &[]));
    h.peer(update(watched, 3, 5, &[]));
    h.peer(update(watched, 0, 0, &[]));
    h.peer(update(watched, 2, 9, &[]));
    assert!(h.seen(first, watched).is_empty());
    h.peer(update(watched, 3, 6, &[10, 11]));
    h.peer(update(watched, 4, 1, &[11]));
    assert_eq!(h.seen(first, watched), [vec![10, 11], vec![11]]);

    h.frame(first, Frame::Unwatch(vec![UserId(watched)]));
    assert!(h.sent().is_empty(), "a watcher is left here");
    h.frame(second, Frame::Unwatch(vec![UserId(watched)]));
    let sent = h.sent();
    assert!(
        matches!(&sent[..], [(_, PeerMsg::PresenceNodeUnwatch(u))] if u.user == UserId(watched) && u.incarnation == 1),
        "{sent:?}"
    );
}

#[test]
fn an_owner_publishes_each_change_once_for_all_watching_nodes() {
    let mut h = harness();
    h.set_routes(routes(&[("a", 1), ("b", 1), ("c", 7)], 0));
    // New routes greet the other nodes with this node's wildcard filters
    // (`topic_nodes.rs`): not what this test counts.
    let greetings = h.sent();
    assert!(
        greetings
            .iter()
            .all(|(_, m)| matches!(m, PeerMsg::NodeFilters(_) | PeerMsg::FilterQuery(_))),
        "{greetings:?}"
    );
    let watched = user_on("a", 1);
    for (name, incarnation, ticket) in [("b", 1, 3), ("c", 7, 4)] {
        h.peer(PresenceNodeWatch {
            user: UserId(watched),
            node: node(name),
            incarnation,
            origin: ShardId::ticket(ticket),
        });
    }
    let answers = h.sent();
    assert_eq!(answers.len(), 2, "{answers:?}");
    for (i, (to, msg)) in answers.iter().enumerate() {
        assert_eq!(*to, ShardId::ticket(3 + i as u16));
        assert_eq!(*msg, update(watched, 3, i as u64 + 1, &[]).into());
    }

    let phone = h.connect(watched, 10);
    h.advance(DEBOUNCE_MS);
    let sent = h.sent();
    assert_eq!(sent.len(), 1, "once for both nodes: {sent:?}");
    assert_eq!(
        sent[0],
        (ShardId::ROOM_SUBJECTS, update(watched, 3, 3, &[10]).into())
    );

    // "b" stops watching; "c" still does.
    h.peer(PresenceNodeUnwatch {
        user: UserId(watched),
        node: node("b"),
        incarnation: 1,
    });
    h.shard.handle_closed(phone, h.now);
    h.advance(DEBOUNCE_MS);
    assert_eq!(
        h.sent(),
        [(ShardId::ROOM_SUBJECTS, update(watched, 3, 4, &[]).into())]
    );

    // "c"'s entry expires: it may come back as it was; still told.
    h.set_routes(routes(&[("a", 1), ("b", 1)], 0));
    h.connect(watched, 12);
    h.advance(DEBOUNCE_MS);
    let sent = h.sent();
    assert!(
        matches!(&sent[..], [(ShardId::ROOM_SUBJECTS, PeerMsg::PresenceUpdate(u))]
            if u.version == 5 && u.devices.iter().map(|d| d.device.0).eq([12])),
        "{sent:?}"
    );
    // "c" restarted (a new incarnation): its registration is gone.
    h.set_routes(routes(&[("a", 1), ("b", 1), ("c", 8)], 0));
    h.connect(watched, 11);
    h.advance(DEBOUNCE_MS);
    assert!(h.sent().is_empty());
}

#[test]
fn watches_follow_owner_restarts_deaths_and_nats_reconnects() {
    let mut h = harness();
    let watched = user_on("b", 1);
    let watcher = h.watcher_of(user_on("a", 100), watched);
    assert_eq!(node_watches(&h.sent()), [(watched, 1)]);
    h.peer(update(watched, 3, 1, &[10]));
    assert_eq!(h.seen(watcher, watched), [vec![10]]);

    // Nothing changed for the watch: nothing sent.
    h.set_routes(routes(&[("a", 1), ("b", 1), ("c", 1)], 0));
    assert!(h.sent().is_empty());
    // "b" restarted (a new incarnation): registered again.
    h.set_routes(routes(&[("a", 1), ("b", 2)], 0));
    assert_eq!(node_watches(&h.sent()), [(watched, 1)]);
    // "b" died: offline here until it is back.
    h.set_routes(routes(&[("a", 1)], 0));
    assert_eq!(h.seen(watcher, watched), [Vec::<u64>::new()]);
    assert!(h.sent().is_empty());
    h.set_routes(routes(&[("a", 1), ("b", 3)], 0));
    assert_eq!(node_watches(&h.sent()), [(watched, 1)]);
    h.peer(update(watched, 4, 1, &[10]));
    assert_eq!(h.seen(watcher, watched), [vec![10]]);
    // NATS came back: what was published meanwhile is read again.
    h.set_routes(routes(&[("a", 1), ("b", 3)], 1));
    assert_eq!(node_watches(&h.sent()), [(watched, 1)]);
    // This node's own entry expired (the owners dropped its
    // registrations) and came back: registered again.
    h.set_routes(routes(&[("b", 3)], 1));
    assert!(h.sent().is_empty());
    h.set_routes(routes(&[("a", 1), ("b", 3)], 1));
    assert_eq!(node_watches(&h.sent()), [(watched, 1)]);
}
