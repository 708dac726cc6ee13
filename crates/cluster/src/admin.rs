//! Cluster operations outside a node: `surepush cluster init`, `status`,
//! `move`, `rebalance` and `leave`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::error::ClusterError;
use crate::moves::{plan_rebalance, MoveOrder, MoveResult, PlannedMove};
use crate::node_id::NodeId;
use crate::partition::PartitionCount;
use crate::partition::PartitionId;
use crate::placement::record::ClusterMeta;
use crate::placement::{store, Placement};
use crate::registry::record::NodeRecord;
use crate::registry::Nodes;
use crate::runtime::connect::{connect, InitialConnect, NatsConfig};
use crate::runtime::kv::{
    follow, nodes_bucket, open, open_or_create, placement_bucket, NODES_BUCKET, PLACEMENT_BUCKET,
};
use crate::runtime::thread::ClusterThread;
use crate::wire;

/// Registry TTL used when `init` creates the registry bucket.
pub const DEFAULT_REGISTRY_TTL: Duration = Duration::from_secs(10);

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// The cluster was created.
    Created(ClusterMeta),
    /// It existed already, with the same partition count.
    Existed(ClusterMeta),
}

/// Creates the buckets and the cluster record with `partitions`
/// partitions. With `spread` nodes, every unplaced partition is given to
/// them round-robin (a new cluster whose nodes are known); without, no
/// partition is assigned until the first node joins, which takes them all.
/// Fails with [`ClusterError::PartitionCountMismatch`] if a cluster with
/// another count exists.
pub fn init(
    nats: &NatsConfig,
    partitions: PartitionCount,
    spread: &[NodeId],
    registry_ttl: Duration,
    timeout: Duration,
) -> Result<InitOutcome, ClusterError> {
    let spread = spread.to_vec();
    let thread = ClusterThread::spawn("cluster-cli")?;
    let nats = nats.clone();
    let out = thread.run(move || async move {
        let (_client, js) = connect(&nats, "surepush-cli", InitialConnect::Fail).await?;
        let placement = open_or_create(&js, placement_bucket(nats.kv_replicas)).await?;
        open_or_create(&js, nodes_bucket(nats.kv_replicas, registry_ttl)).await?;
        let existed = store::read_cluster(&placement).await?.is_some();
        let meta = store::ensure_cluster(&placement, partitions).await?;
        store::spread_unplaced(&placement, partitions, &spread).await?;
        Ok(if existed {
            InitOutcome::Existed(meta)
        } else {
            InitOutcome::Created(meta)
        })
    });
    let result = out.wait_timeout(timeout)?;
    thread.stop();
    result
}

/// The cluster as `status` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The cluster record.
    pub meta: ClusterMeta,
    /// Revision of the placement bucket the numbers reflect.
    pub placement_revision: u64,
    /// Revision of the registry bucket.
    pub nodes_revision: u64,
    /// Live nodes.
    pub nodes: Vec<NodeRecord>,
    /// Partitions per owning node (live or not).
    pub partitions_per_node: BTreeMap<NodeId, u32>,
    /// Partitions without an owner.
    pub unassigned: u32,
}

/// The placement and registry as one reader sees them (loaded).
struct Views {
    thread: ClusterThread,
    meta: ClusterMeta,
    placement: Placement,
    nodes: Nodes,
}

fn open_views(nats: &NatsConfig, timeout: Duration) -> Result<Views, ClusterError> {
    let thread = ClusterThread::spawn("cluster-cli")?;
    let nats = nats.clone();
    let opened = thread.run(move || async move {
        let (_client, js) = connect(&nats, "surepush-cli", InitialConnect::Fail).await?;
        let placement = open(&js, PLACEMENT_BUCKET)
            .await?
            .ok_or(ClusterError::NotInitialized)?;
        let nodes = open(&js, NODES_BUCKET)
            .await?
            .ok_or(ClusterError::NotInitialized)?;
        let (meta, _) = store::read_cluster(&placement)
            .await?
            .ok_or(ClusterError::NotInitialized)?;
        let placement_view = Placement::new(meta.partitions);
        let nodes_view = Nodes::new();
        let mut pf = placement_view.follower();
        let mut nf = nodes_view.follower();
        tokio::task::spawn_local(async move { follow(placement, &mut pf).await });
        tokio::task::spawn_local(async move { follow(nodes, &mut nf).await });
        // The client must outlive this job: the followers use it.
        tokio::task::spawn_local(async move {
            let _keep = _client;
            std::future::pending::<()>().await
        });
        Ok::<_, ClusterError>((meta, placement_view, nodes_view))
    });
    let (meta, placement, nodes) = opened.wait_timeout(timeout)??;
    placement.wait_ready(timeout)?;
    nodes.wait_until(timeout, |_| true)?;
    Ok(Views {
        thread,
        meta,
        placement,
        nodes,
    })
}

/// Reads the cluster's state: the record, both buckets, as of now.
pub fn status(nats: &NatsConfig, timeout: Duration) -> Result<ClusterStatus, ClusterError> {
    let Views {
        thread,
        meta,
        placement,
        nodes,
    } = open_views(nats, timeout)?;
    let table = placement.snapshot();
    let unassigned = table.partitions() - table.counts().values().sum::<u32>();
    let status = ClusterStatus {
        meta,
        placement_revision: table.revision(),
        nodes_revision: nodes.revision(),
        nodes: nodes.all(),
        partitions_per_node: table.counts(),
        unassigned,
    };
    thread.stop();
    Ok(status)
}

/// Asks node `to` to take partition `p` and waits up to `timeout` for the
/// move to end (docs/CLUSTER.md "Moving a partition").
pub fn move_partition(
    nats: &NatsConfig,
    p: PartitionId,
    to: &NodeId,
    timeout: Duration,
) -> Result<MoveResult, ClusterError> {
    order_move(
        nats,
        MoveOrder {
            partition: p,
            shard: None,
        },
        to,
        timeout,
    )
}

/// Asks node `node`, which holds partition `p`, to move it to its shard
/// `shard` and waits up to `timeout` for the move to end (docs/CLUSTER.md
/// "Moving a partition between shards").
pub fn move_partition_to_shard(
    nats: &NatsConfig,
    p: PartitionId,
    node: &NodeId,
    shard: u16,
    timeout: Duration,
) -> Result<MoveResult, ClusterError> {
    let order = MoveOrder {
        partition: p,
        shard: Some(shard),
    };
    order_move(nats, order, node, timeout)
}

fn order_move(
    nats: &NatsConfig,
    order: MoveOrder,
    to: &NodeId,
    timeout: Duration,
) -> Result<MoveResult, ClusterError> {
    let thread = ClusterThread::spawn("cluster-cli")?;
    let nats = nats.clone();
    let subject = crate::messaging::subjects::moves(to);
    let body = wire::to_bytes(&order);
    let asked = thread.run(move || async move {
        let (client, _js) = connect(&nats, "surepush-cli", InitialConnect::Fail).await?;
        let request = async_nats::Request::new()
            .payload(body)
            .timeout(Some(timeout));
        let reply = client
            .send_request(subject, request)
            .await
            .map_err(|e| ClusterError::nats("move order (is the target node up?)", e))?;
        wire::decode::<MoveResult>(&reply.payload).map_err(|error| ClusterError::Decode {
            key: "move result".into(),
            error,
        })
    });
    let result = asked.wait_timeout(timeout + Duration::from_secs(1))?;
    thread.stop();
    result
}

/// The moves that spread the partitions evenly over the live nodes, minus
/// `leaving` (whose partitions all move): `surepush cluster rebalance` and
/// `leave`.
pub fn plan(
    nats: &NatsConfig,
    leaving: Option<&NodeId>,
    timeout: Duration,
) -> Result<Vec<PlannedMove>, ClusterError> {
    let views = open_views(nats, timeout)?;
    let nodes: Vec<NodeId> = views
        .nodes
        .all()
        .into_iter()
        .map(|n| n.id)
        .filter(|id| Some(id) != leaving)
        .collect();
    let plan = plan_rebalance(&views.placement.snapshot(), &nodes);
    views.thread.stop();
    Ok(plan)
}

impl fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.meta;
        writeln!(
            f,
            "cluster: {} partitions, initial node {}, created {} ms after the epoch",
            m.partitions.get(),
            m.initial_node.as_ref().map_or("(none yet)", NodeId::as_str),
            m.created_at_ms
        )?;
        writeln!(
            f,
            "placement revision {}, registry revision {}",
            self.placement_revision, self.nodes_revision
        )?;
        writeln!(f, "nodes ({} live):", self.nodes.len())?;
        writeln!(
            f,
            "  {:<20} {:>10}  {:<22} {:<22} {:<22} {:<22}",
            "id", "partitions", "client", "mqtt", "websocket", "admin"
        )?;
        for n in &self.nodes {
            writeln!(
                f,
                "  {:<20} {:>10}  {:<22} {:<22} {:<22} {:<22}",
                n.id.as_str(),
                self.partitions_per_node.get(&n.id).copied().unwrap_or(0),
                n.client_addr,
                n.mqtt_addr.as_deref().unwrap_or("-"),
                n.websocket_addr.as_deref().unwrap_or("-"),
                n.admin_addr
            )?;
        }
        let dead: Vec<_> = self
            .partitions_per_node
            .iter()
            .filter(|(id, _)| !self.nodes.iter().any(|n| &n.id == *id))
            .collect();
        for (id, count) in dead {
            writeln!(
                f,
                "  {:<20} {:>10}  (not registered: down)",
                id.as_str(),
                count
            )?;
        }
        if self.unassigned > 0 {
            writeln!(f, "unassigned partitions: {}", self.unassigned)?;
        }
        Ok(())
    }
}
