//! Writing the placement bucket: creating the cluster, the initial
//! assignment, and compare-and-set changes of owner. Runs on the cluster
//! thread.
//!
//! Every write is a KV create (only if absent) or update (only if the
//! revision is still the one read): two processes racing on the same key
//! never both win, and the loser re-reads. So two nodes starting a new
//! cluster at once agree on one initial node, and every partition entry is
//! written once.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use futures_lite::StreamExt;

use super::record::{partition_key, ClusterMeta, PlacementRecord, META_KEY};
use crate::error::ClusterError;
use crate::node_id::NodeId;
use crate::partition::{PartitionCount, PartitionId};
use crate::wire;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The cluster record and its revision, if the cluster exists.
pub async fn read_cluster(store: &kv::Store) -> Result<Option<(ClusterMeta, u64)>, ClusterError> {
    let entry = store
        .entry(META_KEY)
        .await
        .map_err(|e| ClusterError::nats("read cluster record", e))?;
    match entry {
        Some(e) if e.operation == kv::Operation::Put => {
            let meta =
                wire::decode::<ClusterMeta>(&e.value).map_err(|error| ClusterError::Decode {
                    key: META_KEY.into(),
                    error,
                })?;
            Ok(Some((meta, e.revision)))
        }
        _ => Ok(None),
    }
}

/// Creates the cluster with `partitions` if it does not exist; otherwise
/// checks that it has that many partitions.
pub async fn ensure_cluster(
    store: &kv::Store,
    partitions: PartitionCount,
) -> Result<ClusterMeta, ClusterError> {
    loop {
        if let Some((meta, _)) = read_cluster(store).await? {
            if meta.partitions != partitions {
                return Err(ClusterError::PartitionCountMismatch {
                    cluster: meta.partitions.get(),
                    configured: partitions.get(),
                });
            }
            return Ok(meta);
        }
        let meta = ClusterMeta {
            partitions,
            initial_node: None,
            created_at_ms: now_ms(),
        };
        match store.create(META_KEY, wire::to_bytes(&meta)).await {
            Ok(_) => return Ok(meta),
            // Someone else created it first: read theirs.
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ClusterError::nats("create cluster record", e)),
        }
    }
}

/// Names `me` the initial node unless one is named already; returns the
/// record with the winner.
pub async fn claim_initial_node(
    store: &kv::Store,
    me: &NodeId,
) -> Result<ClusterMeta, ClusterError> {
    loop {
        let (meta, revision) = read_cluster(store)
            .await?
            .ok_or(ClusterError::NotInitialized)?;
        if meta.initial_node.is_some() {
            return Ok(meta);
        }
        let claimed = ClusterMeta {
            initial_node: Some(me.clone()),
            ..meta
        };
        match store
            .update(META_KEY, wire::to_bytes(&claimed), revision)
            .await
        {
            Ok(_) => return Ok(claimed),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => return Err(ClusterError::nats("claim initial node", e)),
        }
    }
}

/// Writes an entry for every partition that has none, owned by the
/// cluster's initial node at epoch 1. Returns how many this call wrote.
pub async fn assign_unplaced(store: &kv::Store, meta: &ClusterMeta) -> Result<u32, ClusterError> {
    let initial = meta
        .initial_node
        .clone()
        .ok_or(ClusterError::NotInitialized)?;
    create_missing(store, meta.partitions, |_| initial.clone()).await
}

/// Writes an entry for every partition that has none, spread round-robin
/// over `nodes` (partition `n` to `nodes[n % len]`) at epoch 1: the
/// initial placement of a new cluster whose nodes are known, so no
/// partition has to move later. Returns how many this call wrote.
pub async fn spread_unplaced(
    store: &kv::Store,
    partitions: PartitionCount,
    nodes: &[NodeId],
) -> Result<u32, ClusterError> {
    if nodes.is_empty() {
        return Ok(0);
    }
    create_missing(store, partitions, |p| {
        nodes[p.0 as usize % nodes.len()].clone()
    })
    .await
}

/// Creates `p.<n>` for every partition without one, owned by `owner(p)`.
async fn create_missing(
    store: &kv::Store,
    partitions: PartitionCount,
    owner: impl Fn(PartitionId) -> NodeId,
) -> Result<u32, ClusterError> {
    let mut present = HashSet::new();
    let mut keys = store
        .keys()
        .await
        .map_err(|e| ClusterError::nats("list placement keys", e))?;
    while let Some(key) = keys.next().await {
        present.insert(key.map_err(|e| ClusterError::nats("list placement keys", e))?);
    }
    let mut written = 0;
    for p in partitions.iter() {
        let key = partition_key(p);
        if present.contains(&key) {
            continue;
        }
        let value = wire::to_bytes(&PlacementRecord {
            node: owner(p),
            epoch: 1,
        });
        match store.create(&key, value).await {
            Ok(_) => written += 1,
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(ClusterError::nats("assign partition", e)),
        }
    }
    Ok(written)
}

/// Gives partition `p` to `to`, if its entry is still at
/// `expected_revision` (from [`crate::placement::Placement::assignment`]).
/// Returns the new revision; [`ClusterError::Conflict`] if someone else
/// changed it first.
pub async fn reassign(
    store: &kv::Store,
    partitions: PartitionCount,
    p: PartitionId,
    expected_revision: u64,
    to: &NodeId,
) -> Result<u64, ClusterError> {
    if !partitions.contains(p) {
        return Err(ClusterError::UnknownPartition(p));
    }
    let key = partition_key(p);
    let current = store
        .entry(key.as_str())
        .await
        .map_err(|e| ClusterError::nats("read partition", e))?;
    let (epoch, revision) = match current {
        Some(e) if e.operation == kv::Operation::Put => {
            let rec = wire::decode::<PlacementRecord>(&e.value).map_err(|error| {
                ClusterError::Decode {
                    key: key.clone(),
                    error,
                }
            })?;
            (rec.epoch, e.revision)
        }
        Some(e) => (0, e.revision),
        None => (0, 0),
    };
    if revision != expected_revision {
        return Err(ClusterError::Conflict {
            partition: p,
            current: revision,
        });
    }
    let value = wire::to_bytes(&PlacementRecord {
        node: to.clone(),
        epoch: epoch + 1,
    });
    match store.update(key.as_str(), value, expected_revision).await {
        Ok(revision) => Ok(revision),
        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
            let now = store
                .entry(key.as_str())
                .await
                .ok()
                .flatten()
                .map_or(0, |e| e.revision);
            Err(ClusterError::Conflict {
                partition: p,
                current: now,
            })
        }
        Err(e) => Err(ClusterError::nats("reassign partition", e)),
    }
}
