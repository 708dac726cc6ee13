//! [`ClusterNode`]: one surepush node's membership in the cluster.
//!
//! [`ClusterNode::start`] returns at once; on the cluster thread it then
//! connects to NATS (retrying forever), starts messaging, and joins:
//! creates the buckets and the cluster record if they do not exist yet,
//! refuses to join a cluster with another partition count, names the
//! initial node and assigns every unplaced partition to it (both by
//! compare-and-set, so nodes starting together agree), registers the node
//! and keeps its entry alive, and follows both buckets into the
//! [`Placement`] and [`Nodes`] views. If NATS is down, joining waits and
//! retries; nothing here blocks the caller's threads.
//!
//! Dropping the node stops the thread without any goodbye, as a crash
//! does: its registry entry stays until the TTL expires. [`ClusterNode::
//! shutdown`] deletes the entry first.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};

use crate::admin_calls::{self, AdminCalls, IncomingCall, OutgoingCall};
use crate::error::ClusterError;
use crate::messaging::service::Service;
use crate::messaging::{self, subjects, Lane, LaneWiring, MessagingConfig, MessagingStats};
use crate::moves::{IncomingMove, MoveOrder, MoveResult};
use crate::node_id::NodeId;
use crate::partition::{PartitionCount, PartitionId};
use crate::placement::record::ClusterMeta;
use crate::placement::{store, Placement};
use crate::registry::record::NodeRecord;
use crate::registry::{heartbeat, Nodes};
use crate::runtime::connect::{connect, InitialConnect, NatsConfig};
use crate::runtime::kv::{follow, nodes_bucket, open_or_create, placement_bucket};
use crate::runtime::latch::Latch;
use crate::runtime::thread::{ClusterThread, Pending};

/// Where clients and operators reach a node (advertised in the registry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// Native protocol listener (`host:port`).
    pub client: String,
    /// MQTT listener, if enabled.
    pub mqtt: Option<String>,
    /// WebSocket listener, if enabled.
    pub websocket: Option<String>,
    /// Admin HTTP listener.
    pub admin: String,
}

/// Everything a node needs to join.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// NATS connection.
    pub nats: NatsConfig,
    /// The partition count this node is built for: a new cluster gets it,
    /// an existing one must have it.
    pub partitions: PartitionCount,
    /// How long a registry entry outlives its last heartbeat (applies when
    /// this node creates the bucket; an existing bucket keeps its own).
    pub registry_ttl: Duration,
    /// Advertised addresses.
    pub addresses: Addresses,
    /// Lanes and links.
    pub messaging: MessagingConfig,
}

/// Pause between join attempts while NATS is unreachable.
const JOIN_RETRY: Duration = Duration::from_millis(200);

/// A running cluster member (see the module doc).
pub struct ClusterNode {
    id: NodeId,
    incarnation: u64,
    partitions: PartitionCount,
    thread: Option<ClusterThread>,
    placement: Placement,
    nodes: Nodes,
    lanes: Vec<Lane>,
    joined: Arc<Latch<Result<ClusterMeta, ClusterError>>>,
    stores: Arc<OnceLock<Stores>>,
    record: NodeRecord,
    stats: Arc<MessagingStats>,
    move_orders: Option<flume::Receiver<IncomingMove>>,
    admin_calls: AdminCalls,
    incoming_calls: Option<flume::Receiver<IncomingCall>>,
    reconnects: Option<flume::Receiver<()>>,
}

/// Admin calls from other nodes waiting for the owner (which answers
/// several at once).
const INCOMING_CALLS: usize = 64;

#[derive(Clone)]
struct Stores {
    placement: kv::Store,
    nodes: kv::Store,
}

/// Microseconds since the Unix epoch: a restarted node's incarnation is
/// larger than its previous one's.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl ClusterNode {
    /// Starts the cluster thread and the join (see the module doc).
    pub fn start(config: NodeConfig) -> Result<ClusterNode, ClusterError> {
        let incarnation = now_us();
        let partitions = config.partitions;
        let record = NodeRecord {
            id: config.id.clone(),
            incarnation,
            started_at_ms: incarnation / 1000,
            wire_version: crate::WIRE_VERSION,
            client_addr: config.addresses.client.clone(),
            mqtt_addr: config.addresses.mqtt.clone(),
            websocket_addr: config.addresses.websocket.clone(),
            admin_addr: config.addresses.admin.clone(),
        };
        let thread = ClusterThread::spawn(&format!("cluster-{}", config.id))?;
        let placement = Placement::new(config.partitions);
        let nodes = Nodes::new();
        let joined = Arc::new(Latch::new());
        let stores = Arc::new(OnceLock::new());
        let stats = Arc::new(MessagingStats::default());

        let (lanes, wiring) = messaging::lanes(&config.messaging);
        // Orders wait here until the owner takes them (one at a time).
        let (move_tx, move_rx) = flume::bounded(16);
        let (admin_calls, outgoing_calls) = AdminCalls::new();
        let (incoming_tx, incoming_rx) = flume::bounded(INCOMING_CALLS);
        let (reconnect_tx, reconnect_rx) = flume::unbounded();

        let task = JoinTask {
            config,
            record: record.clone(),
            placement: placement.clone(),
            nodes: nodes.clone(),
            joined: joined.clone(),
            stores: stores.clone(),
            stats: stats.clone(),
            move_orders: move_tx,
            outgoing_calls,
            incoming_calls: incoming_tx,
            reconnects: reconnect_tx,
        };
        thread.spawn_task(move || task.run(wiring));
        Ok(ClusterNode {
            id: record.id.clone(),
            incarnation,
            partitions,
            thread: Some(thread),
            placement,
            nodes,
            lanes,
            joined,
            stores,
            record,
            stats,
            move_orders: Some(move_rx),
            admin_calls,
            incoming_calls: Some(incoming_rx),
            reconnects: Some(reconnect_rx),
        })
    }

    /// One item each time the NATS connection comes back after it was
    /// lost (what was published meanwhile may be lost), once.
    pub fn take_reconnects(&mut self) -> Option<flume::Receiver<()>> {
        self.reconnects.take()
    }

    /// Sends admin calls to other nodes (`admin_calls`).
    pub fn admin_calls(&self) -> AdminCalls {
        self.admin_calls.clone()
    }

    /// Admin calls other nodes sent here, for the node's owner to answer
    /// (once).
    pub fn take_incoming_calls(&mut self) -> Option<flume::Receiver<IncomingCall>> {
        self.incoming_calls.take()
    }

    /// Partition move orders sent to this node (`surepush cluster move`),
    /// for its owner to carry out (once).
    pub fn take_move_orders(&mut self) -> Option<flume::Receiver<IncomingMove>> {
        self.move_orders.take()
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// This process's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The placement view.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The registry view.
    pub fn nodes(&self) -> &Nodes {
        &self.nodes
    }

    /// Messaging counters.
    pub fn stats(&self) -> &MessagingStats {
        &self.stats
    }

    /// The messaging counters, for a reader that outlives this borrow
    /// (a metrics collector).
    pub fn stats_handle(&self) -> Arc<MessagingStats> {
        self.stats.clone()
    }

    /// The lanes, for the shards to take (once).
    pub fn take_lanes(&mut self) -> Vec<Lane> {
        std::mem::take(&mut self.lanes)
    }

    /// The join's outcome, if it is known.
    pub fn joined(&self) -> Option<Result<ClusterMeta, ClusterError>> {
        self.joined.get()
    }

    /// Waits up to `timeout` for the join: the cluster record, or why the
    /// node may not join.
    pub fn wait_joined(&self, timeout: Duration) -> Result<ClusterMeta, ClusterError> {
        self.joined
            .wait(timeout)
            .unwrap_or(Err(ClusterError::Timeout("joining the cluster")))
    }

    fn thread(&self) -> &ClusterThread {
        self.thread.as_ref().expect("present until drop")
    }

    /// Gives partition `p` to `to` if its entry is still at
    /// `expected_revision` (compare-and-set); returns the new revision.
    /// Only after the join.
    pub fn reassign(
        &self,
        p: PartitionId,
        expected_revision: u64,
        to: NodeId,
    ) -> Pending<Result<u64, ClusterError>> {
        let stores = self.stores.clone();
        let partitions = self.partitions;
        self.thread().run(move || async move {
            let store = stores.get().ok_or(ClusterError::NotInitialized)?;
            store::reassign(&store.placement, partitions, p, expected_revision, &to).await
        })
    }

    /// Leaves cleanly: deletes the registry entry (peers see the node go
    /// at once), then stops. Waits at most `timeout` for NATS.
    pub fn shutdown(mut self, timeout: Duration) {
        let stores = self.stores.clone();
        let record = self.record.clone();
        let done = self.thread().run(move || async move {
            if let Some(s) = stores.get() {
                if let Err(error) = heartbeat::deregister(&s.nodes, &record).await {
                    tracing::warn!(%error, "could not deregister");
                }
            }
        });
        let _ = done.wait_timeout(timeout);
        if let Some(t) = self.thread.take() {
            t.stop();
        }
    }
}

/// The join, run on the cluster thread.
struct JoinTask {
    config: NodeConfig,
    record: NodeRecord,
    placement: Placement,
    nodes: Nodes,
    joined: Arc<Latch<Result<ClusterMeta, ClusterError>>>,
    stores: Arc<OnceLock<Stores>>,
    stats: Arc<MessagingStats>,
    move_orders: flume::Sender<IncomingMove>,
    outgoing_calls: flume::Receiver<OutgoingCall>,
    incoming_calls: flume::Sender<IncomingCall>,
    reconnects: flume::Sender<()>,
}

/// How often the NATS client's connect count is looked at for reconnects.
const RECONNECT_POLL: Duration = Duration::from_millis(100);

/// Sends one item on `to` for each connect of `client` after its first
/// (a task of the cluster thread; ends with the receiver).
///
/// Counted, not sampled: the client's `connects` statistic grows by one
/// on every successful (re)connect, so a NATS restart shorter than the
/// poll (tens of ms when the server comes straight back) is still seen.
/// Sampling the connection state missed those (issue #20: the watchers
/// on other nodes then never re-read a presence change lost meanwhile).
/// What is published after the report reaches NATS after the client's
/// resubscriptions: the client sends them before any later command.
async fn watch_reconnects(client: async_nats::Client, to: flume::Sender<()>) {
    use std::sync::atomic::Ordering;
    let stats = client.statistics();
    // The first connect (maybe still to come) is no reconnect.
    let mut seen = stats.connects.load(Ordering::Relaxed).max(1);
    loop {
        tokio::time::sleep(RECONNECT_POLL).await;
        let connects = stats.connects.load(Ordering::Relaxed);
        while seen < connects {
            if to.send(()).is_err() {
                return;
            }
            seen += 1;
        }
    }
}

impl JoinTask {
    async fn run(self, wiring: LaneWiring) {
        let name = format!("surepush-{}", self.config.id);
        let (client, js) = match connect(&self.config.nats, &name, InitialConnect::Background).await
        {
            Ok(c) => c,
            Err(e) => {
                // Only for a malformed URL: background connects retry.
                self.joined.set(Err(e));
                return;
            }
        };
        let orders_client = client.clone();
        tokio::task::spawn_local(watch_reconnects(client.clone(), self.reconnects.clone()));
        // Admin calls both ways from the start: a read of a user placed
        // elsewhere waits for NATS, not for this node's join.
        tokio::task::spawn_local(admin_calls::send_calls(
            client.clone(),
            self.outgoing_calls.clone(),
        ));
        tokio::task::spawn_local(admin_calls::serve_calls(
            client.clone(),
            self.config.id.clone(),
            self.incoming_calls.clone(),
        ));
        // Messaging first: peers can reach this node while it joins.
        if let Err(e) = Service::start(
            client,
            &self.record,
            self.config.messaging.clone(),
            wiring,
            self.stats.clone(),
        )
        .await
        {
            self.joined.set(Err(e));
            return;
        }
        let (stores, meta) = loop {
            match self.join_once(&js).await {
                Ok(joined) => break joined,
                Err(e @ ClusterError::PartitionCountMismatch { .. }) => {
                    tracing::error!(error = %e, "this node may not join");
                    self.joined.set(Err(e));
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "joining the cluster failed; retrying");
                    tokio::time::sleep(JOIN_RETRY).await;
                }
            }
        };
        let interval = heartbeat::interval(&stores.nodes);
        let _ = self.stores.set(stores.clone());
        let mut placement = self.placement.follower();
        let placement_store = stores.placement.clone();
        tokio::task::spawn_local(async move { follow(placement_store, &mut placement).await });
        let mut nodes = self.nodes.follower();
        let nodes_store = stores.nodes.clone();
        tokio::task::spawn_local(async move { follow(nodes_store, &mut nodes).await });
        tokio::task::spawn_local(heartbeat::run(stores.nodes, self.record.clone(), interval));
        tokio::task::spawn_local(serve_move_orders(
            orders_client,
            self.config.id.clone(),
            self.move_orders.clone(),
        ));
        self.joined.set(Ok(meta));
    }

    async fn join_once(
        &self,
        js: &jetstream::Context,
    ) -> Result<(Stores, ClusterMeta), ClusterError> {
        let replicas = self.config.nats.kv_replicas;
        let placement = open_or_create(js, placement_bucket(replicas)).await?;
        store::ensure_cluster(&placement, self.config.partitions).await?;
        let meta = store::claim_initial_node(&placement, &self.config.id).await?;
        let written = store::assign_unplaced(&placement, &meta).await?;
        if written > 0 {
            tracing::info!(written, initial = ?meta.initial_node, "assigned unplaced partitions");
        }
        let nodes = open_or_create(js, nodes_bucket(replicas, self.config.registry_ttl)).await?;
        heartbeat::register(&nodes, &self.record).await?;
        Ok((Stores { placement, nodes }, meta))
    }
}

/// Hands each move order on this node's subject to the node's owner and
/// publishes its result as the reply (a task of the cluster thread).
async fn serve_move_orders(
    client: async_nats::Client,
    me: NodeId,
    orders: flume::Sender<IncomingMove>,
) {
    use futures_lite::StreamExt;
    let mut sub = match client.subscribe(subjects::moves(&me)).await {
        Ok(s) => s,
        Err(error) => {
            tracing::error!(%error, "cannot take partition move orders");
            return;
        }
    };
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let order = match crate::wire::decode::<MoveOrder>(&msg.payload) {
            Ok(o) => o,
            Err(error) => {
                tracing::warn!(%error, "a move order that does not decode; ignored");
                continue;
            }
        };
        let partition = order.partition;
        let (done, result) = flume::bounded(1);
        if orders
            .send_async(IncomingMove { order, done })
            .await
            .is_err()
        {
            return; // nobody takes orders: the node is going down
        }
        let client = client.clone();
        tokio::task::spawn_local(async move {
            let result = result.recv_async().await.unwrap_or_else(|_| MoveResult {
                partition,
                moved: false,
                revision: 0,
                records: 0,
                elapsed_ms: 0,
                message: "the node stopped before the move ended".into(),
            });
            if let Err(error) = client.publish(reply, crate::wire::to_bytes(&result)).await {
                tracing::warn!(%error, "could not answer a move order");
            }
        });
    }
}
