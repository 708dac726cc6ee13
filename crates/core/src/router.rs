//! Who owns a user, group or room, and how to address it: the one place
//! that decides.
//!
//! Every piece of per-id state (an inbox and its cursors, a group's or a
//! room's members, a room's history, keyed state) lives on exactly one
//! shard, its owner, and everything else reaches it with a message
//! ([`crate::PeerMsg`]). The core's parts, the server's accept paths and
//! the tools ask [`Router::owner`]; nobody hashes ids themselves.
//!
//! Today a node's ids are spread over its shards by jump consistent hashing
//! (Lamping & Veach, 2014): when the shard count changes from n to n+1 only
//! 1/(n+1) of the ids move, which keeps a later resharding of a node's log
//! cheap.
//!
//! In a cluster (issue #20, `surepush-cluster`) an id belongs to a
//! partition placed on some node. The router then holds a
//! [`ClusterRoutes`] snapshot (immutable; a placement change is a new
//! snapshot swapped in whole, so the hot path takes no lock) and answers
//! `Address::Node(node, partition)` for ids placed elsewhere. Inside a node
//! a whole partition lives on one shard, the one the node's explicit
//! [`ShardMap`] names (persisted with the data dir; a node's first map is
//! the jump hash of the partition, [`hashed_shard_of_partition`]), so the
//! receiving node maps a partition to its shard without knowing the
//! sender's shard count, and a partition can move between the shards of a
//! node (a new map in a new snapshot).
//!
//! The parts of the core address peers by [`ShardId`]; a [`ShardId`] is
//! one of three things ([`PeerTarget`]), so messages to another node take
//! the same path (`Action::Peer`) as messages to another shard:
//!
//! | range             | meaning                                              |
//! |-------------------|------------------------------------------------------|
//! | `0 .. 0x4000`     | a shard of this node                                 |
//! | `0x4000 .. 0x7fff`| a return ticket: the driver's name for "the node and shard that sent the request being answered" |
//! | `0x7fff`          | [`ShardId::ROOM_SUBJECTS`]: every other node with subscribers of a room (its NATS subject) |
//! | `0x8000 ..`       | the owner of partition `id - 0x8000` on another node |
//!
//! So a cluster has at most 32,768 partitions and a node at most 16,384
//! shards (checked by [`ClusterRoutes::new`]).

use std::fmt;
use std::sync::Arc;

use surepush_cluster::shard_map::ShardMap;
use surepush_cluster::{NodeId, PartitionCount, PartitionId};
use surepush_proto::UserId;

/// First [`ShardId`] that names a return ticket.
const FIRST_TICKET: u16 = 0x4000;
/// First [`ShardId`] that names a partition on another node.
const FIRST_REMOTE: u16 = 0x8000;
/// The [`ShardId`] naming every other node's subscribers of a room.
const ROOM_SUBJECTS: u16 = FIRST_REMOTE - 1;
/// Most return tickets a shard can have outstanding.
pub const MAX_TICKETS: u16 = ROOM_SUBJECTS - FIRST_TICKET;
/// Most partitions a cluster routed by this router may have.
pub const MAX_CLUSTER_PARTITIONS: u32 = (u16::MAX - FIRST_REMOTE) as u32 + 1;

/// One shard of this node, `0..shards`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

impl ShardId {
    /// The other nodes of the cluster listening to the subject of the id a
    /// message is about: a room's home shard sends each room push (and each
    /// revocation) here once, a user's owner shard each presence change of
    /// a user other nodes watch (`PresenceUpdate`), and the driver
    /// publishes it once on the room's or the user's NATS subject.
    pub const ROOM_SUBJECTS: ShardId = ShardId(ROOM_SUBJECTS);

    /// The index into per-shard tables (mesh queues, metrics).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The return ticket `n` (`< MAX_TICKETS`), a name the driver gives the
    /// sender of a request from another node while it is being answered.
    pub fn ticket(n: u16) -> ShardId {
        debug_assert!(n < MAX_TICKETS, "ticket {n} out of range");
        ShardId(FIRST_TICKET + n)
    }

    /// Where a message addressed to this id goes.
    pub fn target(self) -> PeerTarget {
        match self.0 {
            n if n < FIRST_TICKET => PeerTarget::Local(self),
            ROOM_SUBJECTS => PeerTarget::RoomSubjects,
            n if n < FIRST_REMOTE => PeerTarget::Ticket(n - FIRST_TICKET),
            n => PeerTarget::Partition(PartitionId(u32::from(n - FIRST_REMOTE))),
        }
    }

    fn remote(p: PartitionId) -> ShardId {
        ShardId(FIRST_REMOTE + p.0 as u16)
    }
}

/// What a [`ShardId`] addresses (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerTarget {
    /// A shard of this node.
    Local(ShardId),
    /// The sender of a request from another node (the driver's ticket).
    Ticket(u16),
    /// Every other node with subscribers of the room the message is about
    /// (published once on the room's subject).
    RoomSubjects,
    /// The owner of this partition, on another node.
    Partition(PartitionId),
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where the owner of an id is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A shard of this node.
    Shard(ShardId),
    /// Another node of the cluster, and the id's partition (which that
    /// node maps to one of its shards).
    Node(NodeId, PartitionId),
    /// A partition no node holds yet (the placement is still loading).
    Unplaced(PartitionId),
}

/// Why a placement cannot be routed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoutesError {
    /// More partitions than shard ids can name (see the module doc).
    #[error("{0} partitions; a routed cluster has at most {MAX_CLUSTER_PARTITIONS}")]
    TooManyPartitions(u32),
    /// More shards than shard ids can name.
    #[error("{0} shards; a cluster node has at most {FIRST_TICKET}")]
    TooManyShards(u16),
    /// A shard map that does not fit the routes: another partition count,
    /// or shards the node does not run.
    #[error("the shard map has {map_partitions} partitions on {map_shards} shards; the node routes {partitions} on {shards}")]
    ShardMapMismatch {
        /// Partitions in the map.
        map_partitions: u32,
        /// Shards in the map.
        map_shards: u16,
        /// The cluster's partitions.
        partitions: u32,
        /// The node's shards.
        shards: u16,
    },
}

/// Which node holds each partition, as this node last saw the placement.
/// Immutable: a change is a new snapshot.
#[derive(Debug, PartialEq, Eq)]
pub struct ClusterRoutes {
    me: NodeId,
    partitions: PartitionCount,
    owners: Vec<Option<NodeId>>,
    /// Partition → shard of this node (every partition: a node move's
    /// import lands on the shard named here before the node owns it).
    shard_map: Arc<ShardMap>,
    /// Each other node holding a partition, with the lowest it holds: the
    /// partition messages for the node as a whole are addressed to.
    entries: Vec<(NodeId, PartitionId)>,
    /// Each partition's placement epoch (0 if not given).
    epochs: Vec<u64>,
    /// Which nodes are alive (in the registry), if known.
    liveness: Option<Liveness>,
}

/// The registry as routes see it: the live nodes' incarnations, this
/// node's own, and how many times the NATS connection came back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Liveness {
    /// Each live node's incarnation (its registry entry's).
    pub nodes: std::collections::BTreeMap<NodeId, u64>,
    /// This process's incarnation.
    pub me: u64,
    /// Counts the NATS connection's reconnects (what was published while
    /// it was away may be lost).
    pub reconnects: u64,
}

impl ClusterRoutes {
    /// The routes of node `me` (of `shards` shards) given each partition's
    /// owner, with each partition on its hashed shard
    /// ([`hashed_shard_of_partition`]; see [`ClusterRoutes::with_shard_map`]).
    pub fn new(
        me: NodeId,
        partitions: PartitionCount,
        shards: u16,
        owner: impl Fn(PartitionId) -> Option<NodeId>,
    ) -> Result<ClusterRoutes, RoutesError> {
        if partitions.get() > MAX_CLUSTER_PARTITIONS {
            return Err(RoutesError::TooManyPartitions(partitions.get()));
        }
        if shards > FIRST_TICKET {
            return Err(RoutesError::TooManyShards(shards));
        }
        let hashed = ShardMap::filled(partitions, shards.max(1), |p| {
            hashed_shard_of_partition(p, shards).0
        })
        .expect("hashed shards are below the shard count");
        let owners: Vec<Option<NodeId>> = partitions.iter().map(owner).collect();
        let mut entries: Vec<(NodeId, PartitionId)> = Vec::new();
        for (p, node) in partitions.iter().zip(&owners) {
            if let Some(node) = node.as_ref().filter(|n| **n != me) {
                if !entries.iter().any(|(n, _)| n == node) {
                    entries.push((node.clone(), p));
                }
            }
        }
        Ok(ClusterRoutes {
            me,
            partitions,
            owners,
            shard_map: Arc::new(hashed),
            entries,
            epochs: vec![0; partitions.get() as usize],
            liveness: None,
        })
    }

    /// These routes with partitions on the shards `map` names (the node's
    /// explicit, persisted map). The map must hold every partition, on
    /// shards below `shards`.
    pub fn with_shard_map(
        mut self,
        shards: u16,
        map: Arc<ShardMap>,
    ) -> Result<ClusterRoutes, RoutesError> {
        let complete = map.entries().all(|(_, s)| s.is_some());
        if map.partitions() != self.partitions.get() || map.shards() > shards || !complete {
            return Err(RoutesError::ShardMapMismatch {
                map_partitions: map.partitions(),
                map_shards: map.shards(),
                partitions: self.partitions.get(),
                shards,
            });
        }
        self.shard_map = map;
        Ok(self)
    }

    /// The shard of this node that holds (or would hold) partition `p`.
    pub fn shard_of(&self, p: PartitionId) -> ShardId {
        ShardId(self.shard_map.shard_of(p).unwrap_or(0))
    }

    /// The shard map these routes use.
    pub fn shard_map(&self) -> &Arc<ShardMap> {
        &self.shard_map
    }

    /// These routes with each partition's placement epoch.
    pub fn with_epochs(mut self, epoch: impl Fn(PartitionId) -> u64) -> ClusterRoutes {
        self.epochs = self.partitions.iter().map(epoch).collect();
        self
    }

    /// These routes with the registry's live nodes.
    pub fn with_liveness(mut self, liveness: Liveness) -> ClusterRoutes {
        self.liveness = Some(liveness);
        self
    }

    /// Partition `p`'s placement epoch: larger after each move and each
    /// restart of its owner (0 if unknown).
    pub fn epoch(&self, p: PartitionId) -> u64 {
        self.epochs.get(p.0 as usize).copied().unwrap_or(0)
    }

    /// The incarnation of `node` if it is alive; without registry
    /// knowledge every node counts as alive (incarnation 0).
    pub fn incarnation_of(&self, node: &NodeId) -> Option<u64> {
        match &self.liveness {
            Some(l) => l.nodes.get(node).copied(),
            None => Some(0),
        }
    }

    /// This process's incarnation (0 if unknown).
    pub fn my_incarnation(&self) -> u64 {
        self.liveness.as_ref().map_or(0, |l| l.me)
    }

    /// How many times the NATS connection came back (0 if unknown).
    pub fn reconnects(&self) -> u64 {
        self.liveness.as_ref().map_or(0, |l| l.reconnects)
    }

    /// This node.
    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// The partition of `id` (a user, group or room).
    pub fn partition_of(&self, id: UserId) -> PartitionId {
        self.partitions.partition_of_wire_id(id.0)
    }

    /// The node holding partition `p`, if any.
    pub fn owner(&self, p: PartitionId) -> Option<&NodeId> {
        self.owners.get(p.0 as usize).and_then(Option::as_ref)
    }

    /// Every other node that holds a partition, with the partition a
    /// message for the node as a whole goes to (its lowest).
    pub fn other_nodes(&self) -> impl Iterator<Item = (&NodeId, PartitionId)> + '_ {
        self.entries.iter().map(|(n, p)| (n, *p))
    }

    /// The partition a message for node `node` as a whole goes to, if it
    /// holds any (and is not this node).
    pub fn entry_of(&self, node: &NodeId) -> Option<PartitionId> {
        self.entries
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, p)| *p)
    }

    /// The partitions placed on this node.
    pub fn owned_partitions(&self) -> impl Iterator<Item = PartitionId> + '_ {
        self.partitions.iter().filter(|p| self.is_local(*p))
    }

    fn is_local(&self, p: PartitionId) -> bool {
        self.owner(p) == Some(&self.me)
    }
}

/// Answers "who owns this id" for one shard (`me`) of a node of `shards`
/// shards, and in a cluster which node. Cheap to clone: the driver and the
/// tools build their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Router {
    me: ShardId,
    shards: u16,
    cluster: Option<Arc<ClusterRoutes>>,
}

impl Router {
    /// The router of shard `me` among `shards` shards (at least 1).
    pub fn new(me: ShardId, shards: u16) -> Router {
        Router {
            me,
            shards: shards.max(1),
            cluster: None,
        }
    }

    /// This router, routing by `routes` from now on (a cluster node).
    pub fn with_cluster(mut self, routes: Arc<ClusterRoutes>) -> Router {
        self.cluster = Some(routes);
        self
    }

    /// The cluster routes, on a cluster node.
    pub fn cluster(&self) -> Option<&Arc<ClusterRoutes>> {
        self.cluster.as_ref()
    }

    /// The shard of this node that holds partition `p` (a cluster node
    /// keeps a whole partition on one shard, the one its shard map names).
    pub fn shard_of_partition(&self, p: PartitionId) -> ShardId {
        match &self.cluster {
            Some(routes) => routes.shard_of(p),
            None => hashed_shard_of_partition(p, self.shards),
        }
    }

    /// A router for code that is on no shard (the accept path, tools): it
    /// answers owners; `me` is shard 0.
    pub fn of_node(shards: u16) -> Router {
        Router::new(ShardId(0), shards)
    }

    /// The shard this router answers for.
    pub fn me(&self) -> ShardId {
        self.me
    }

    /// Number of shards of the node.
    pub fn shards(&self) -> u16 {
        self.shards
    }

    /// Where partition `p` lives: this node's shard for it, or the
    /// partition's [`ShardId`] on another node.
    pub fn owner_of_partition(&self, p: PartitionId) -> ShardId {
        match &self.cluster {
            Some(routes) if !routes.is_local(p) => ShardId::remote(p),
            _ => self.shard_of_partition(p),
        }
    }

    /// Owner of the user, group or room `id`: a shard of this node, or
    /// (in a cluster) the [`ShardId`] naming its partition elsewhere.
    pub fn owner(&self, id: UserId) -> ShardId {
        let Some(routes) = &self.cluster else {
            return ShardId(jump_hash(splitmix64(id.0), self.shards));
        };
        let p = routes.partition_of(id);
        if routes.is_local(p) {
            self.shard_of_partition(p)
        } else {
            ShardId::remote(p)
        }
    }

    /// Where the owner of `id` is.
    pub fn address(&self, id: UserId) -> Address {
        let shard = self.owner(id);
        match (shard.target(), &self.cluster) {
            (PeerTarget::Partition(p), Some(routes)) => match routes.owner(p) {
                Some(node) => Address::Node(node.clone(), p),
                None => Address::Unplaced(p),
            },
            _ => Address::Shard(shard),
        }
    }

    /// Whether this shard owns `id`.
    pub fn is_mine(&self, id: UserId) -> bool {
        self.owner(id) == self.me
    }
}

/// The shard a node of `shards` shards put partition `p` on before shard
/// maps existed (jump hash of the partition): a node's first shard map, so
/// data dirs written before keep their layout.
pub fn hashed_shard_of_partition(p: PartitionId, shards: u16) -> ShardId {
    ShardId(jump_hash(splitmix64(u64::from(p.0)), shards))
}

/// Jump consistent hash of `key` into `0..buckets` (`buckets >= 1`).
fn jump_hash(mut key: u64, buckets: u16) -> u16 {
    let buckets = i64::from(buckets.max(1));
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u16
}

/// Mixes first: ids are often sequential, jump hash wants spread keys.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(user: u64, shards: u16) -> u16 {
        Router::of_node(shards).owner(UserId(user)).0
    }

    #[test]
    fn every_user_maps_inside_the_range() {
        for n in 1..=16u16 {
            for u in 0..2_000 {
                assert!(owner(u, n) < n);
            }
        }
    }

    #[test]
    fn sequential_users_spread_evenly() {
        let mut counts = [0u32; 4];
        for u in 0..40_000 {
            counts[usize::from(owner(u, 4))] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn growing_by_one_shard_moves_about_one_in_n_plus_one() {
        let moved = (0..30_000u64)
            .filter(|u| owner(*u, 3) != owner(*u, 4))
            .count();
        // Expect 1/4 of 30,000 = 7,500.
        assert!((6_500..8_500).contains(&moved), "moved {moved}");
        // And nobody moves except to the new shard.
        for u in 0..30_000u64 {
            let (a, b) = (owner(u, 3), owner(u, 4));
            assert!(a == b || b == 3);
        }
    }

    /// The owner decides where stored data lives: a changed hash would
    /// strand every existing log's data on the wrong shard.
    #[test]
    fn owners_never_change() {
        // Computed with the shard_of of before the router existed.
        let pinned = [3, 3, 0, 1, 3, 3, 0, 1, 0, 2, 2, 0];
        let got: Vec<u16> = (0..12).map(|u| owner(u, 4)).collect();
        assert_eq!(got, pinned);
    }

    #[test]
    fn is_mine_agrees_with_owner() {
        for me in 0..4 {
            let r = Router::new(ShardId(me), 4);
            for u in 0..500 {
                assert_eq!(r.is_mine(UserId(u)), r.owner(UserId(u)) == ShardId(me));
                assert_eq!(r.address(UserId(u)), Address::Shard(r.owner(UserId(u))));
            }
        }
    }

    fn cluster_router(
        me: u16,
        shards: u16,
        partitions: u64,
        owner: fn(u32) -> &'static str,
    ) -> Router {
        let routes = ClusterRoutes::new(
            NodeId::parse("a").expect("valid"),
            PartitionCount::new(partitions).expect("valid"),
            shards,
            |p| Some(NodeId::parse(owner(p.0)).expect("valid")),
        )
        .expect("routable");
        Router::new(ShardId(me), shards).with_cluster(Arc::new(routes))
    }

    /// Issue #20: in a cluster, an id whose partition is on another node is
    /// addressed to that node and partition; the rest stay on this node's
    /// shards, a whole partition on one shard.
    #[test]
    fn a_cluster_router_addresses_other_nodes_by_partition() {
        let r = cluster_router(0, 2, 64, |p| if p % 2 == 0 { "a" } else { "b" });
        let routes = r.cluster().expect("cluster").clone();
        let (mut local, mut remote) = (0, 0);
        for u in 0..2_000u64 {
            let id = UserId(u);
            let p = routes.partition_of(id);
            match r.address(id) {
                Address::Shard(s) => {
                    local += 1;
                    assert_eq!(p.0 % 2, 0, "user {u} local but partition {p:?} is b's");
                    assert_eq!(s, r.shard_of_partition(p));
                    assert_eq!(r.owner(id).target(), PeerTarget::Local(s));
                }
                Address::Node(node, q) => {
                    remote += 1;
                    assert_eq!(node.as_str(), "b");
                    assert_eq!(q, p);
                    assert_eq!(r.owner(id).target(), PeerTarget::Partition(p));
                    assert!(!r.is_mine(id));
                }
                Address::Unplaced(p) => panic!("{p:?} is placed"),
            }
        }
        assert!(
            local > 800 && remote > 800,
            "{local} local, {remote} remote"
        );
    }

    /// Issue #20: a cluster node routes each partition to the shard its
    /// shard map names; without a map, to the partition's jump hash (what
    /// data dirs from before shard maps were written with).
    #[test]
    fn a_cluster_router_routes_partitions_by_its_shard_map() {
        let r = cluster_router(0, 2, 16, |_| "a");
        let routes = r.cluster().expect("cluster").clone();
        for p in PartitionCount::new(16).expect("valid").iter() {
            assert_eq!(r.shard_of_partition(p), hashed_shard_of_partition(p, 2));
        }
        let moved = PartitionId(3);
        let mut map = (**routes.shard_map()).clone();
        let to = 1 - hashed_shard_of_partition(moved, 2).0;
        map.move_to(moved, to).expect("held");
        let routes = ClusterRoutes::new(
            NodeId::parse("a").expect("valid"),
            PartitionCount::new(16).expect("valid"),
            2,
            |_| Some(NodeId::parse("a").expect("valid")),
        )
        .and_then(|r| r.with_shard_map(2, Arc::new(map)))
        .expect("routable");
        let r = Router::new(ShardId(0), 2).with_cluster(Arc::new(routes));
        assert_eq!(r.shard_of_partition(moved), ShardId(to));
        for u in 0..2_000u64 {
            let p = r.cluster().expect("cluster").partition_of(UserId(u));
            assert_eq!(r.owner(UserId(u)), r.shard_of_partition(p));
            if p == moved {
                assert_eq!(r.owner(UserId(u)), ShardId(to));
            }
        }
        // A map of another partition count, or of more shards, is refused.
        let short = ShardMap::filled(PartitionCount::new(8).expect("valid"), 2, |_| 0);
        let wide = ShardMap::filled(PartitionCount::new(16).expect("valid"), 3, |_| 2);
        for map in [short, wide] {
            let routes = ClusterRoutes::new(
                NodeId::parse("a").expect("valid"),
                PartitionCount::new(16).expect("valid"),
                2,
                |_| None,
            )
            .expect("routable");
            let map = Arc::new(map.expect("map"));
            assert!(routes.with_shard_map(2, map).is_err());
        }
    }

    #[test]
    fn shard_ids_name_shards_tickets_and_partitions_apart() {
        assert_eq!(ShardId(3).target(), PeerTarget::Local(ShardId(3)));
        assert_eq!(ShardId::ticket(0).target(), PeerTarget::Ticket(0));
        assert_eq!(
            ShardId::ticket(MAX_TICKETS - 1).target(),
            PeerTarget::Ticket(MAX_TICKETS - 1)
        );
        assert_eq!(ShardId::ROOM_SUBJECTS.target(), PeerTarget::RoomSubjects);
        assert_eq!(
            ShardId::ROOM_SUBJECTS.target(),
            ShardId(ShardId::ticket(MAX_TICKETS - 1).0 + 1).target()
        );
        let last = PartitionId(MAX_CLUSTER_PARTITIONS - 1);
        assert_eq!(ShardId::remote(last).target(), PeerTarget::Partition(last));
        assert_eq!(
            ShardId::remote(PartitionId(0)).target(),
            PeerTarget::Partition(PartitionId(0))
        );
    }

    #[test]
    fn a_placement_too_large_for_shard_ids_is_refused() {
        let me = NodeId::parse("a").expect("valid");
        let big = PartitionCount::new(u64::from(MAX_CLUSTER_PARTITIONS) + 1).expect("valid");
        assert_eq!(
            ClusterRoutes::new(me.clone(), big, 2, |_| None),
            Err(RoutesError::TooManyPartitions(MAX_CLUSTER_PARTITIONS + 1))
        );
        let ok = PartitionCount::new(1024).expect("valid");
        assert!(ClusterRoutes::new(me, ok, FIRST_TICKET + 1, |_| None).is_err());
    }

    #[test]
    fn unplaced_partitions_are_named_not_guessed() {
        let r = cluster_router(1, 2, 8, |_| "a");
        let routes = ClusterRoutes::new(
            NodeId::parse("a").expect("valid"),
            PartitionCount::new(8).expect("valid"),
            2,
            |_| None,
        )
        .expect("routable");
        let empty = Router::new(ShardId(1), 2).with_cluster(Arc::new(routes));
        let id = UserId(42);
        assert!(matches!(empty.address(id), Address::Unplaced(_)));
        assert!(matches!(r.address(id), Address::Shard(_)));
    }
}
