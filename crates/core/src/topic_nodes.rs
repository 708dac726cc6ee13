//! Wildcard topic filters across the nodes of a cluster (issues #21 and
//! #20, docs/CLUSTER.md "Wildcard filters across nodes").
//!
//! On one node every shard holds every shard's filters (`topic_filters.rs`,
//! `homes`). Across nodes, each node's *set of distinct filters* travels
//! instead, and a stream's home shard tells a node with a matching filter
//! once per message, whatever the number of subscribers there:
//!
//! - **Announcing (shard 0).** Shard 0 sees every registration of its node
//!   (every shard sends it [`crate::peer::FilterJoin`]), so it knows when a
//!   filter becomes new to the node or leaves it. Changes are coalesced for
//!   [`ANNOUNCE_WINDOW_NS`] and sent to every other node as one
//!   [`NodeFilters`] (a delta, numbered: `version`), addressed to the
//!   lowest partition the node holds; the node links carry it like any
//!   request (acknowledged, resent, in order per pair of nodes). When the
//!   node first gets its routes it sends each other node its whole set
//!   (`full`) and asks for theirs ([`FilterQuery`]): that is what a node
//!   that (re)starts does. `epoch` (the node's start time) tells a
//!   restarted node's messages from its previous process's.
//! - **Holding (every shard).** The shard that receives a [`NodeFilters`]
//!   hands a copy to every shard of its node; each applies it to its trie
//!   of other nodes' filters (`remote`, valued by node). A delta applies
//!   when its version follows the one held; a duplicate is skipped; a gap
//!   (or a delta of a newer epoch) asks the sender for its whole set, which
//!   replaces what was held (idempotent). A newer epoch drops everything
//!   the node's previous process had registered, and a node gone from the
//!   registry loses its filters ([`Shard::forget_node`], called by the
//!   driver).
//! - **Matching.** When a stream homed here has a message
//!   (`topic_filters.rs` `topic_published`), its name is also matched in
//!   `remote`: one [`TopicRelay`] per node with a matching filter. The
//!   receiving shard matches the name against its node's filters (`homes`)
//!   and sends [`crate::peer::TopicNotice`] to each shard with a match, as a
//!   home shard of that node would; the sessions there subscribe the
//!   stream across nodes as a room (its pushes then cross NATS once per
//!   node on the room's subject).
//!
//! - **A new filter.** The connection's shard also asks every other node
//!   for the streams it homes that match ([`FilterWant::Streams`]); each
//!   of their shards answers with a [`TopicRelay`] per matching stream,
//!   addressed to that connection (as `FilterJoin` answers on one node).
//!   So a persistent session that comes back finds the streams created on
//!   other nodes while it was away, as it does on its own node.
//!
//!   After its answers each of their shards sends [`StreamsAnswered`]
//!   (on the same path, so after them); once every shard of every node
//!   asked has (or a node is forgotten, or [`NODE_ANSWERS_TIMEOUT_NS`]
//!   passed), and the node's own shards have answered, the connection
//!   gets TOPIC room 0 `seq` [`TOPIC_NODES_ANSWERED`]: the MQTT bridge
//!   asks the retained messages of the streams named until then (a new
//!   wildcard SUBSCRIBE gets those of every node, docs/MQTT.md 2.6).
//!
//! Not here: the SUBACK does not wait for other nodes (a message stored
//! on another node before this node's set reached it is not matched; the
//! stream is found by the answer to the new filter, from its next
//! message).

use std::collections::BTreeSet;

use bytes::Bytes;

use super::shard::{Shard, TimerEvent, NS_PER_MS};
use crate::action::ConnId;
use crate::filter_trie::FilterTrie;
use crate::hashing::FastHashMap;
use crate::peer::{FilterQuery, FilterWant, NodeFilters, StreamsAnswered, TopicNotice, TopicRelay};
use crate::router::ShardId;
use surepush_cluster::NodeId;
use surepush_proto::topic::filter_error;
use surepush_proto::{Frame, Seq, TopicSeen, TOPIC_NODES_ANSWERED};

/// How long shard 0 gathers changes of its node's filter set before
/// sending them (one [`NodeFilters`] per node per window).
pub(super) const ANNOUNCE_WINDOW_NS: u64 = 2 * NS_PER_MS;

/// The announcing shard.
const ANNOUNCER: ShardId = ShardId(0);

/// How long a new filter waits for other nodes' answers
/// ([`StreamsAnswered`]) before its connection is told they are all in
/// (a node that is down but not yet gone from the registry never answers:
/// its link drops the question).
pub(super) const NODE_ANSWERS_TIMEOUT_NS: u64 = 5_000 * NS_PER_MS;

/// What a shard knows of other nodes' filters, and (shard 0) what it told
/// them of its own node's. See the module docs.
#[derive(Debug, Default)]
pub(super) struct NodeTopics {
    /// Other nodes' filters, valued by index into `nodes`.
    remote: FilterTrie<u16>,
    nodes: Vec<RemoteNode>,
    /// Shard 0: this node's filter set as last announced.
    announced: BTreeSet<String>,
    /// Shard 0: the version of `announced` (0: nothing announced yet).
    version: u64,
    /// Shard 0: changes not announced yet (filter → held after them).
    pending: FastHashMap<String, bool>,
    /// Shard 0: the announce timer is armed.
    armed: bool,
    /// Shard 0: the nodes it has sent its whole set to and asked for theirs.
    greeted: Vec<NodeId>,
    /// New filters of this shard's connections waiting for other nodes'
    /// answers.
    waits: FastHashMap<(ConnId, String), NodeWait>,
    /// The timer that ends waits past [`NODE_ANSWERS_TIMEOUT_NS`] is armed.
    waits_armed: bool,
}

/// A new filter's wait for the other nodes' answers.
#[derive(Debug)]
struct NodeWait {
    /// When it was asked (shard clock, ns).
    since_ns: u64,
    /// Each node asked: its shards that answered, and how many it has (0:
    /// none answered yet).
    nodes: Vec<(NodeId, u16, u16)>,
}

impl NodeWait {
    fn done(&self) -> bool {
        self.nodes.iter().all(|&(_, got, of)| of > 0 && got >= of)
    }
}

/// One other node's filters as this shard holds them.
#[derive(Debug)]
struct RemoteNode {
    id: NodeId,
    epoch: u64,
    version: u64,
    filters: BTreeSet<String>,
    /// Its whole set was asked for and has not come yet.
    asked: bool,
}

impl NodeTopics {
    /// Filters of other nodes held (the sum of their sets).
    pub(super) fn remote_filters(&self) -> u64 {
        self.nodes.iter().map(|n| n.filters.len() as u64).sum()
    }

    fn node_index(&mut self, id: &NodeId) -> u16 {
        if let Some(i) = self.nodes.iter().position(|n| n.id == *id) {
            return i as u16;
        }
        self.nodes.push(RemoteNode {
            id: id.clone(),
            epoch: 0,
            version: 0,
            filters: BTreeSet::new(),
            asked: false,
        });
        (self.nodes.len() - 1) as u16
    }

    fn add(&mut self, node: u16, filter: &str) {
        if filter_error(filter).is_some() {
            return; // never registered by a node of ours: not matched
        }
        if self.nodes[usize::from(node)]
            .filters
            .insert(filter.to_string())
        {
            self.remote.insert(filter, node);
        }
    }

    fn drop_filter(&mut self, node: u16, filter: &str) {
        if self.nodes[usize::from(node)].filters.remove(filter) {
            self.remote.remove(filter, node);
        }
    }

    fn drop_all(&mut self, node: u16) {
        let held = std::mem::take(&mut self.nodes[usize::from(node)].filters);
        for f in held {
            self.remote.remove(&f, node);
        }
    }
}

impl Shard {
    fn me_node(&self) -> Option<NodeId> {
        self.router.cluster().map(|r| r.me().clone())
    }

    /// The [`ShardId`] naming node `node` as a whole (its lowest partition).
    fn node_entry(&self, node: &NodeId) -> Option<ShardId> {
        let routes = self.router.cluster()?;
        let p = routes.entry_of(node)?;
        Some(self.router.owner_of_partition(p))
    }

    /// Shard 0: `filter` became new to the node (`held`) or left it.
    pub(super) fn node_filter_changed(&mut self, filter: &str, held: bool) {
        if self.params.id != ANNOUNCER {
            return;
        }
        let t = &mut self.topics.across;
        t.pending.insert(filter.to_string(), held);
        if !t.armed {
            t.armed = true;
            let at = self.now_ns + ANNOUNCE_WINDOW_NS;
            self.timers.insert(at, TimerEvent::FilterAnnounce);
        }
    }

    /// Shard 0: the announce window ended: the changes go to every other
    /// node as one delta.
    pub(super) fn announce_filters(&mut self) {
        let t = &mut self.topics.across;
        t.armed = false;
        let (mut joined, mut left) = (Vec::new(), Vec::new());
        for (filter, held) in t.pending.drain() {
            match (held, t.announced.contains(&filter)) {
                (true, false) => {
                    t.announced.insert(filter.clone());
                    joined.push(filter);
                }
                (false, true) => {
                    t.announced.remove(&filter);
                    left.push(filter);
                }
                _ => {} // back where it was
            }
        }
        if joined.is_empty() && left.is_empty() {
            return;
        }
        t.version += 1;
        let Some(me) = self.me_node() else {
            return; // one node: nobody to tell
        };
        let msg = NodeFilters {
            node: me,
            epoch: self.params.wall_ms_at_zero,
            version: self.topics.across.version,
            full: false,
            joined,
            left,
            relay: true,
        };
        let targets: Vec<ShardId> = self.other_node_entries();
        for target in targets {
            self.route_to(target, msg.clone());
        }
    }

    fn other_node_entries(&self) -> Vec<ShardId> {
        let Some(routes) = self.router.cluster() else {
            return Vec::new();
        };
        routes
            .other_nodes()
            .map(|(_, p)| self.router.owner_of_partition(p))
            .collect()
    }

    /// Shard 0's whole set, for `to`.
    fn send_whole_set(&mut self, to: &NodeId) {
        let (Some(me), Some(target)) = (self.me_node(), self.node_entry(to)) else {
            return;
        };
        let t = &self.topics.across;
        let msg = NodeFilters {
            node: me,
            epoch: self.params.wall_ms_at_zero,
            version: t.version,
            full: true,
            joined: t.announced.iter().cloned().collect(),
            left: Vec::new(),
            relay: true,
        };
        self.route_to(target, msg);
    }

    /// New routes: shard 0 sends each node it has not greeted yet its
    /// whole set and asks for theirs (so a node that starts, or one that
    /// appears, is in step both ways).
    pub(super) fn greet_nodes(&mut self) {
        if self.params.id != ANNOUNCER {
            return;
        }
        let (Some(routes), Some(me)) = (self.router.cluster().cloned(), self.me_node()) else {
            return;
        };
        let new: Vec<NodeId> = routes
            .other_nodes()
            .map(|(n, _)| n.clone())
            .filter(|n| !self.topics.across.greeted.contains(n))
            .collect();
        for node in new {
            self.send_whole_set(&node);
            if let Some(target) = self.node_entry(&node) {
                let query = FilterQuery {
                    node: me.clone(),
                    want: FilterWant::WholeSet,
                    relay: true,
                };
                self.route_to(target, query);
            }
            self.topics.across.greeted.push(node);
        }
    }

    pub(super) fn on_node_filters(&mut self, m: NodeFilters) {
        if m.relay {
            for i in 0..self.router.shards() {
                let copy = NodeFilters {
                    relay: false,
                    ..m.clone()
                };
                self.route_to(ShardId(i), copy);
            }
            return;
        }
        if self.me_node().as_ref() == Some(&m.node) {
            return;
        }
        let t = &mut self.topics.across;
        let i = t.node_index(&m.node);
        let node = &mut t.nodes[usize::from(i)];
        if m.epoch < node.epoch {
            return; // a previous process of that node
        }
        let newer = m.epoch > node.epoch;
        if m.full {
            if !newer && m.version < node.version {
                return; // older than what was applied since
            }
            let keep: BTreeSet<String> = m.joined.into_iter().collect();
            let gone: Vec<String> = node.filters.difference(&keep).cloned().collect();
            (node.epoch, node.version, node.asked) = (m.epoch, m.version, false);
            for f in gone {
                t.drop_filter(i, &f);
            }
            for f in &keep {
                t.add(i, f);
            }
        } else {
            if newer {
                // Its previous process's filters died with it.
                t.drop_all(i);
                let node = &mut t.nodes[usize::from(i)];
                (node.epoch, node.version, node.asked) = (m.epoch, 0, false);
            }
            let node = &mut t.nodes[usize::from(i)];
            if m.version <= node.version {
                return; // applied already
            }
            if m.version != node.version + 1 {
                // A gap: ask for the whole set (once until it comes).
                if !std::mem::replace(&mut node.asked, true) {
                    let me = self.me_node();
                    if let (Some(me), Some(target)) = (me, self.node_entry(&m.node)) {
                        let query = FilterQuery {
                            node: me,
                            want: FilterWant::WholeSet,
                            relay: true,
                        };
                        self.route_to(target, query);
                    }
                }
                return;
            }
            node.version = m.version;
            for f in &m.left {
                t.drop_filter(i, f);
            }
            for f in &m.joined {
                t.add(i, f);
            }
        }
        self.stats.remote_topic_filters = self.topics.across.remote_filters();
    }

    /// Node `node` is gone from the registry (down, or cut off): its
    /// filters are dropped, so its streams' messages are no longer relayed
    /// there. Whatever it sends next is checked against nothing: the same
    /// process's next delta is a gap (its whole set is asked for), a new
    /// process's whole set replaces.
    pub fn forget_node(&mut self, node: &NodeId) {
        self.stop_waiting_for(node);
        let t = &mut self.topics.across;
        let Some(i) = t.nodes.iter().position(|n| n.id == *node) else {
            return;
        };
        t.drop_all(i as u16);
        let n = &mut t.nodes[i];
        (n.version, n.asked) = (0, false);
        self.stats.remote_topic_filters = self.topics.across.remote_filters();
    }

    /// Node `node` will not answer: the waits for it end when nothing else
    /// is missing.
    fn stop_waiting_for(&mut self, node: &NodeId) {
        let mut over = Vec::new();
        for (key, wait) in self.topics.across.waits.iter_mut() {
            wait.nodes.retain(|n| n.0 != *node);
            if wait.done() {
                over.push(key.clone());
            }
        }
        for key in over {
            self.end_wait(key);
        }
    }

    pub(super) fn on_filter_query(&mut self, m: FilterQuery) {
        match m.want {
            FilterWant::WholeSet if self.params.id != ANNOUNCER => self.route_to(ANNOUNCER, m),
            FilterWant::WholeSet => self.send_whole_set(&m.node),
            FilterWant::Streams { .. } if m.relay => {
                for i in 0..self.router.shards() {
                    let copy = FilterQuery {
                        relay: false,
                        ..m.clone()
                    };
                    self.route_to(ShardId(i), copy);
                }
            }
            FilterWant::Streams {
                filter,
                shard,
                conn,
            } => {
                if filter_error(&filter).is_some() {
                    return;
                }
                let Some(target) = self.node_entry(&m.node) else {
                    return;
                };
                for (room, name) in self.streams_matching(&filter) {
                    let head = self.sessions.durable_head(surepush_proto::UserId(room));
                    let msg = TopicRelay {
                        room,
                        seq: head.next(),
                        name,
                        frame: Bytes::new(),
                        to: Some((shard, conn)),
                    };
                    self.route_to(target, msg);
                }
                let Some(me) = self.me_node() else {
                    return;
                };
                let done = StreamsAnswered {
                    filter,
                    shard,
                    conn,
                    node: me,
                    shards: self.router.shards(),
                };
                self.route_to(target, done);
            }
        }
    }

    /// `conn` (of this shard) registered `filter`: every other node tells
    /// it of the streams it homes that match (as this node's shards do,
    /// but after the SUBACK: it does not wait for other nodes).
    pub(super) fn ask_nodes_for_streams(&mut self, filter: &str, conn: ConnId) {
        let Some(me) = self.me_node() else {
            return;
        };
        let query = FilterQuery {
            node: me,
            want: FilterWant::Streams {
                filter: filter.to_string(),
                shard: self.params.id,
                conn,
            },
            relay: true,
        };
        let Some(routes) = self.router.cluster() else {
            return;
        };
        let targets: Vec<(NodeId, ShardId)> = routes
            .other_nodes()
            .map(|(n, p)| (n.clone(), self.router.owner_of_partition(p)))
            .collect();
        if targets.is_empty() {
            return;
        }
        let wait = NodeWait {
            since_ns: self.now_ns,
            nodes: targets.iter().map(|(n, _)| (n.clone(), 0, 0)).collect(),
        };
        let t = &mut self.topics.across;
        t.waits.insert((conn, filter.to_string()), wait);
        if !std::mem::replace(&mut t.waits_armed, true) {
            let at = self.now_ns + NODE_ANSWERS_TIMEOUT_NS;
            self.timers.insert(at, TimerEvent::NodeAnswers);
        }
        for (_, target) in targets {
            self.route_to(target, query.clone());
        }
    }

    /// Whether `conn`'s new `filter` still waits for other nodes' answers.
    pub(super) fn waits_for_nodes(&self, conn: ConnId, filter: &str) -> bool {
        self.topics
            .across
            .waits
            .contains_key(&(conn, filter.to_string()))
    }

    /// `conn`'s `filter` left (or the connection closed): its wait ends
    /// unanswered.
    pub(super) fn drop_node_wait(&mut self, conn: ConnId, filter: &str) {
        self.topics.across.waits.remove(&(conn, filter.to_string()));
    }

    /// TOPIC room 0 [`TOPIC_NODES_ANSWERED`] to `conn`.
    pub(super) fn nodes_answered(&mut self, conn: ConnId, filter: String) {
        let frame = Frame::Topic(TopicSeen {
            room: 0,
            seq: Seq(TOPIC_NODES_ANSWERED),
            name: filter,
        });
        self.send_frame(conn, frame);
    }

    /// The wait of `key` is over: its connection is told, unless this
    /// node's shards have not answered yet (their answer tells it then).
    fn end_wait(&mut self, key: (ConnId, String)) {
        self.topics.across.waits.remove(&key);
        if !self.filter_joining(key.0, &key.1) {
            self.nodes_answered(key.0, key.1);
        }
    }

    pub(super) fn on_streams_answered(&mut self, m: StreamsAnswered) {
        if m.shard != self.params.id {
            if m.shard.index() < usize::from(self.router.shards()) {
                self.route_to(m.shard, m); // the node's entry shard
            }
            return;
        }
        let key = (m.conn, m.filter);
        let Some(wait) = self.topics.across.waits.get_mut(&key) else {
            return; // dropped meanwhile, or timed out
        };
        if let Some(n) = wait.nodes.iter_mut().find(|n| n.0 == m.node) {
            n.1 = n.1.saturating_add(1);
            n.2 = m.shards;
        }
        if wait.done() {
            self.end_wait(key);
        }
    }

    /// The timer of the waits: those past [`NODE_ANSWERS_TIMEOUT_NS`] end.
    pub(super) fn expire_node_waits(&mut self) {
        let now = self.now_ns;
        let t = &mut self.topics.across;
        t.waits_armed = false;
        let over: Vec<(ConnId, String)> = t
            .waits
            .iter()
            .filter(|(_, w)| w.since_ns + NODE_ANSWERS_TIMEOUT_NS <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in over {
            self.end_wait(key);
        }
        let t = &mut self.topics.across;
        if let Some(first) = t.waits.values().map(|w| w.since_ns).min() {
            t.waits_armed = true;
            let at = first + NODE_ANSWERS_TIMEOUT_NS;
            self.timers.insert(at, TimerEvent::NodeAnswers);
        }
    }

    /// A stream homed here has message `seq`: one [`TopicRelay`] to each
    /// other node with a matching filter. Returns how many were sent.
    pub(super) fn relay_topic(&mut self, room: u64, seq: Seq, name: &str, frame: &Bytes) -> u64 {
        let t = &self.topics.across;
        let mut nodes: Vec<u16> = Vec::new();
        t.remote.matches(name, |n| {
            if !nodes.contains(&n) {
                nodes.push(n);
            }
        });
        let targets: Vec<ShardId> = nodes
            .into_iter()
            .filter_map(|n| self.node_entry(&t.nodes[usize::from(n)].id))
            .collect();
        let sent = targets.len() as u64;
        for target in targets {
            let msg = TopicRelay {
                room,
                seq,
                name: name.to_string(),
                frame: frame.clone(),
                to: None,
            };
            self.route_to(target, msg);
        }
        self.stats.topic_relays += sent;
        sent
    }

    /// Whether a stream message must be relayed to another node (so its
    /// QoS 0 frame is worth encoding).
    pub(super) fn relays_topic(&self, name: &str) -> bool {
        let mut any = false;
        self.topics.across.remote.matches(name, |_| any = true);
        any
    }

    pub(super) fn on_topic_relay(&mut self, m: TopicRelay) {
        let TopicRelay {
            room,
            seq,
            name,
            frame,
            to,
        } = m;
        let targets: Vec<(ShardId, Option<ConnId>)> = match to {
            Some((shard, conn)) if shard.index() < usize::from(self.router.shards()) => {
                vec![(shard, Some(conn))]
            }
            Some(_) => Vec::new(), // not a shard of this node
            None => self
                .matching_shards(&name)
                .into_iter()
                .map(|s| (s, None))
                .collect(),
        };
        for (shard, conn) in targets {
            let msg = TopicNotice {
                room,
                seq,
                name: name.clone(),
                conn,
                frame: frame.clone(),
            };
            self.route_to(shard, msg);
        }
    }
}
