//! A node's membership of a cluster (issue #20, docs/CLUSTER.md), on the
//! server side: joining at startup, the placement snapshot the shards
//! route by, and each shard's lane to the other nodes (`link.rs`).
//!
//! Only when `[cluster] nats` is set: a node without it starts no cluster
//! thread and routes as a single node.
//!
//! Startup ([`NodeCluster::join`]) waits, bounded by
//! `cluster.join_timeout_ms`, for NATS, the join and a complete placement
//! before any shard serves, so no shard routes by a half-loaded placement.
//! Later placement changes are rebuilt into a new [`ClusterRoutes`]
//! snapshot by a watcher thread; shards pick it up by comparing one atomic
//! generation per turn (no lock on the hot path). The snapshot also carries
//! the node's shard map (partition → shard, `shard_map_file.rs`), read
//! before the join and changed by moves between shards (`shard_moves.rs`).

mod admin_calls;
mod link;
mod metrics;
mod moves;
mod shard_map_file;
mod shard_moves;

pub(crate) use admin_calls::{
    conversation_answer, conversation_call, disconnect_answer, presence_answer, serve_admin_calls,
};

pub(crate) use link::{run_link_commands, ClusterLink, LinkLoad, LinkTasks};

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

pub(crate) use metrics::{ClusterCollector, MoveStats, RelayStats};
pub(crate) use moves::MoveCommand;
pub(crate) use shard_moves::{has_shard_map, running_shards};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use surepush_cluster::messaging::{Lane, MessagingConfig};
use surepush_cluster::placement::table::PlacementTable;
use surepush_cluster::placement::Placement;
use surepush_cluster::registry::Nodes;
use surepush_cluster::runtime::connect::NatsConfig;
use surepush_cluster::shard_map::ShardMap;
use surepush_cluster::{Addresses, ClusterNode, NodeConfig, NodeId, PartitionCount};
use surepush_core::{ClusterRoutes, Liveness};

use crate::config::Config;

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The settings do not make a node (checked by `Config::validate` too).
    #[error("cluster settings: {0}")]
    Settings(String),
    /// NATS, the join or the placement did not answer in time, or the
    /// cluster refused this node.
    #[error("joining the cluster: {0}")]
    Cluster(#[from] surepush_cluster::ClusterError),
    /// The node's shard map cannot be read or written.
    #[error("the node's shard map: {0}")]
    ShardMap(String),
}

/// Where other nodes send this node's clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Redirect {
    /// The owner node's address for this protocol.
    To(String),
    /// The owner is not reachable now (down, or no address for this
    /// protocol): the client should retry later.
    Unavailable,
}

/// The placement as the shards route by it: the newest snapshot and its
/// generation.
struct RoutesCell {
    generation: AtomicU64,
    routes: Mutex<Arc<ClusterRoutes>>,
}

/// The node's shard map: the one in force (guarded: a move between shards
/// and a placement change both publish routes under its lock), and each
/// partition's shard for the lanes to hand requests from other nodes to.
struct ShardMapCell {
    map: Mutex<ShardMap>,
    /// Indexed by partition; the cluster thread reads it per request.
    lane_of: Arc<Vec<AtomicU16>>,
}

/// This node in its cluster, shared by every shard (see the module doc).
pub(crate) struct NodeCluster {
    routes: RoutesCell,
    lanes: Mutex<Vec<Option<Lane>>>,
    nodes: Nodes,
    node: Mutex<Option<ClusterNode>>,
    /// Clients sent to another node (or told it is unavailable).
    redirects: Arc<AtomicU64>,
    /// Clients relayed to their user's node (MQTT 3.1.1).
    relays: Arc<RelayStats>,
    collector: Mutex<Option<ClusterCollector>>,
    /// This node.
    me: NodeId,
    /// The placement view (assignments with revisions, for moves).
    placement: Placement,
    /// Partition moves (`moves.rs`).
    moves: moves::Moves,
    /// Their counters in /metrics.
    move_stats: Arc<MoveStats>,
    /// Sends admin calls to other nodes (`admin_calls.rs`).
    admin_calls: surepush_cluster::admin_calls::AdminCalls,
    /// Admin calls from other nodes, until a shard takes them.
    incoming_calls: Mutex<Option<flume::Receiver<surepush_cluster::admin_calls::IncomingCall>>>,
    /// Partition → shard of this node.
    shard_map: ShardMapCell,
    /// Where the shard map is persisted.
    data_dir: std::path::PathBuf,
    /// The cluster's partitions and this node's shards.
    partitions: PartitionCount,
    shards: u16,
    /// Moves between this node's shards (`shard_moves.rs`).
    shard_moves: shard_moves::ShardMoves,
    /// This process's incarnation (its registry entry's).
    incarnation: u64,
    /// The NATS connection's reconnects so far (routes carry it: presence
    /// watches re-register after one).
    reconnects: AtomicU64,
}

impl NodeCluster {
    /// Joins the cluster configured in `config.cluster` with `shards`
    /// lanes; blocks until the placement is complete or the join timeout.
    pub(crate) fn join(config: &Config, shards: u16) -> Result<Arc<NodeCluster>, JoinError> {
        let settings = &config.cluster;
        let id = NodeId::parse(&settings.node_id)
            .map_err(|e| JoinError::Settings(format!("node_id: {e}")))?;
        let partitions = PartitionCount::new(u64::from(settings.partitions))
            .map_err(|e| JoinError::Settings(format!("partitions: {e}")))?;
        let configured = config.shard_count();
        let (shard_map, resize) =
            shard_moves::open_map(&config.data_dir, partitions, shards, configured)?;
        let lane_of: Arc<Vec<AtomicU16>> = Arc::new(
            shard_map
                .entries()
                .map(|(_, s)| AtomicU16::new(s.unwrap_or(0)))
                .collect(),
        );
        let mut messaging = MessagingConfig::new(shards);
        messaging.link.linger = Duration::from_micros(settings.batch_linger_us);
        messaging.spin_before_park = Duration::from_micros(settings.spin_before_park_us);
        let lanes_of = lane_of.clone();
        messaging.route_to_lane = Arc::new(move |route| {
            lanes_of
                .get(route as usize)
                .map_or(0, |s| s.load(Ordering::Acquire))
        });
        let or_listen = |advertised: &str, listen: std::net::SocketAddr| match advertised {
            "" => listen.to_string(),
            a => a.to_string(),
        };
        let node_config = NodeConfig {
            id: id.clone(),
            nats: NatsConfig::new(settings.nats.clone()),
            partitions,
            registry_ttl: Duration::from_millis(settings.registry_ttl_ms),
            addresses: Addresses {
                client: or_listen(&settings.advertise, config.listen),
                mqtt: config
                    .mqtt
                    .enabled
                    .then(|| or_listen(&settings.advertise_mqtt, config.mqtt.listen)),
                websocket: None,
                admin: config.admin_listen.to_string(),
            },
            messaging,
        };
        let timeout = Duration::from_millis(settings.join_timeout_ms);
        let mut node = ClusterNode::start(node_config)?;
        let meta = node.wait_joined(timeout)?;
        node.placement()
            .wait_until(timeout, PlacementTable::is_complete)?;
        // Before any shard serves (docs/CLUSTER.md "Crashes mid-move").
        let bumped = moves::bump_epochs(&node, &id, timeout)?;
        tracing::info!(node = %id, partitions = meta.partitions.get(), bumped, "joined the cluster");
        let incarnation = node.incarnation();
        let liveness = liveness_of(node.nodes(), incarnation, 0);
        let routes = routes_of(
            &id,
            partitions,
            shards,
            node.placement(),
            &shard_map,
            liveness,
        )?;
        let redirects = Arc::new(AtomicU64::new(0));
        let relays = Arc::new(RelayStats::default());
        let move_stats = Arc::new(MoveStats::default());
        let collector = ClusterCollector::new(
            node.stats_handle(),
            node.placement().clone(),
            redirects.clone(),
            relays.clone(),
            move_stats.clone(),
        );
        let cluster = Arc::new(NodeCluster {
            routes: RoutesCell {
                generation: AtomicU64::new(1),
                routes: Mutex::new(Arc::new(routes)),
            },
            lanes: Mutex::new(node.take_lanes().into_iter().map(Some).collect()),
            nodes: node.nodes().clone(),
            node: Mutex::new(None),
            redirects,
            relays,
            collector: Mutex::new(Some(collector)),
            me: id.clone(),
            placement: node.placement().clone(),
            moves: moves::Moves::new(shards),
            move_stats,
            admin_calls: node.admin_calls(),
            incoming_calls: Mutex::new(node.take_incoming_calls()),
            shard_map: ShardMapCell {
                map: Mutex::new(shard_map),
                lane_of,
            },
            data_dir: config.data_dir.clone(),
            partitions,
            shards,
            shard_moves: shard_moves::ShardMoves::default(),
            incarnation,
            reconnects: AtomicU64::new(0),
        });
        if let Some(orders) = node.take_move_orders() {
            let weak = Arc::downgrade(&cluster);
            let me = id.clone();
            let spawned = std::thread::Builder::new()
                .name("partition-moves".into())
                .spawn(move || moves::serve_orders(weak, orders, me));
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot take partition move orders");
            }
        }
        watch_placement(&cluster, node.take_reconnects());
        *cluster.node.lock().unwrap_or_else(|p| p.into_inner()) = Some(node);
        if resize {
            shard_moves::resize_in_background(&cluster, configured);
        }
        Ok(cluster)
    }

    /// Shard `shard`'s partition move commands (once).
    pub(crate) fn take_move_commands(&self, shard: u16) -> Option<flume::Receiver<MoveCommand>> {
        self.moves.take_commands(shard)
    }

    /// Shard `shard`'s lane (once).
    pub(crate) fn take_lane(&self, shard: u16) -> Option<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes.get_mut(usize::from(shard)).and_then(Option::take)
    }

    /// The newest routes if they are newer than `seen` (a generation).
    pub(crate) fn routes_after(&self, seen: u64) -> Option<(u64, Arc<ClusterRoutes>)> {
        let generation = self.routes.generation.load(Ordering::Acquire);
        if generation == seen {
            return None;
        }
        let routes = self.routes.routes.lock().unwrap_or_else(|p| p.into_inner());
        Some((generation, routes.clone()))
    }

    /// The node's series for `/metrics` (once).
    pub(crate) fn take_collector(&self) -> Option<ClusterCollector> {
        self.collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Where a client of `node` goes: its native or MQTT address (counted
    /// as a redirect, also when the client is relayed there).
    pub(crate) fn redirect(&self, node: &NodeId, mqtt: bool) -> Redirect {
        self.redirects.fetch_add(1, Ordering::Relaxed);
        let Some(record) = self.nodes.get(node) else {
            return Redirect::Unavailable;
        };
        let to = if mqtt {
            record.mqtt_addr
        } else {
            Some(record.client_addr)
        };
        to.filter(|a| !a.is_empty())
            .map_or(Redirect::Unavailable, Redirect::To)
    }

    /// Leaves the cluster cleanly (deletes the registry entry).
    pub(crate) fn leave(&self) {
        let node = self.node.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(node) = node {
            node.shutdown(Duration::from_secs(2));
        }
    }
}

fn routes_of(
    me: &NodeId,
    partitions: PartitionCount,
    shards: u16,
    placement: &Placement,
    shard_map: &ShardMap,
    liveness: Liveness,
) -> Result<ClusterRoutes, JoinError> {
    let table = placement.snapshot();
    ClusterRoutes::new(me.clone(), partitions, shards, |p| table.owner(p).cloned())
        .and_then(|r| r.with_shard_map(shards, Arc::new(shard_map.clone())))
        .map(|r| {
            r.with_epochs(|p| table.assignment(p).map_or(0, |a| a.epoch))
                .with_liveness(liveness)
        })
        .map_err(|e| JoinError::Settings(e.to_string()))
}

/// The registry as routes see it: the live nodes' incarnations, this
/// process's, and the NATS connection's reconnects so far.
fn liveness_of(nodes: &Nodes, me: u64, reconnects: u64) -> Liveness {
    Liveness {
        nodes: nodes
            .all()
            .into_iter()
            .map(|n| (n.id, n.incarnation))
            .collect(),
        me,
        reconnects,
    }
}

impl NodeCluster {
    /// Builds the routes from the placement view, the registry and the
    /// shard map in force and hands them to the shards (under the map's
    /// lock, so a placement change and a move between shards never
    /// publish out of order).
    fn publish_routes(&self) -> Result<(), JoinError> {
        let map = self.shard_map.map.lock().unwrap_or_else(|p| p.into_inner());
        self.publish_routes_with(&map)
    }

    /// [`NodeCluster::publish_routes`] for a caller holding the map's lock.
    fn publish_routes_with(&self, map: &ShardMap) -> Result<(), JoinError> {
        let liveness = liveness_of(
            &self.nodes,
            self.incarnation,
            self.reconnects.load(Ordering::Acquire),
        );
        let routes = routes_of(
            &self.me,
            self.partitions,
            self.shards,
            &self.placement,
            map,
            liveness,
        )?;
        for (p, shard) in map.entries() {
            if let Some(lane) = self.shard_map.lane_of.get(p.0 as usize) {
                lane.store(shard.unwrap_or(0), Ordering::Release);
            }
        }
        *self.routes.routes.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
        self.routes.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

/// Rebuilds the routes on every placement change, registry change (a
/// node joined, restarted or left: presence watches follow it) and NATS
/// reconnect (a thread of its own: it blocks on the change channels;
/// changes are rare).
fn watch_placement(cluster: &Arc<NodeCluster>, reconnects: Option<flume::Receiver<()>>) {
    let weak = Arc::downgrade(cluster);
    let (_, placement_changes) = cluster.placement.changes();
    let (_, node_changes) = cluster.nodes.changes();
    // Never sends when the node gave none: the thread just never wakes on it.
    let (keep, idle) = flume::bounded::<()>(1);
    let reconnects = reconnects.unwrap_or(idle);
    let spawned = std::thread::Builder::new()
        .name("placement-watch".into())
        .spawn(move || {
            let _keep = keep;
            let mut reconnected = 0u64;
            loop {
                let woke = flume::Selector::new()
                    .recv(&placement_changes, |r| r.is_ok())
                    .recv(&node_changes, |r| r.is_ok())
                    .recv(&reconnects, |r| r.map(|()| reconnected += 1).is_ok())
                    .wait();
                if !woke {
                    return;
                }
                // One rebuild per burst.
                while placement_changes.try_recv().is_ok() || node_changes.try_recv().is_ok() {}
                while reconnects.try_recv().is_ok() {
                    reconnected += 1;
                }
                let Some(cluster) = weak.upgrade() else {
                    return;
                };
                cluster.reconnects.store(reconnected, Ordering::Release);
                match cluster.publish_routes() {
                    Ok(()) => {
                        tracing::info!(
                            revision = cluster.placement.revision(),
                            reconnected,
                            "placement, registry or NATS connection changed"
                        );
                    }
                    Err(error) => tracing::error!(%error, "cannot route the new placement"),
                }
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot watch the placement; routing by the one at startup");
    }
}
