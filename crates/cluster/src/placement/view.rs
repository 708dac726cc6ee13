//! [`Placement`]: every node's live view of the placement bucket.
//!
//! The cluster thread follows the bucket and applies each entry; shards and
//! other threads read the view (`owner`, `revision`) or subscribe to its
//! changes to keep a copy of their own (the router will). Entries that do
//! not decode are logged and skipped: a bad value in KV never stops a node.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;

use super::record::{parse_partition_key, ClusterMeta, PlacementRecord, META_KEY};
use super::table::{Assignment, PlacementChange, PlacementTable};
use crate::error::ClusterError;
use crate::node_id::NodeId;
use crate::partition::{PartitionCount, PartitionId};
use crate::runtime::kv::{BucketEvent, Follower};
use crate::runtime::view::ViewCell;
use crate::wire;

/// A live view of partition → node. Cheap to clone; usable from any
/// thread.
#[derive(Clone)]
pub struct Placement {
    cell: Arc<ViewCell<PlacementTable, PlacementChange>>,
}

impl Placement {
    /// An empty view for `partitions` partitions.
    pub(crate) fn new(partitions: PartitionCount) -> Placement {
        Placement {
            cell: Arc::new(ViewCell::new(PlacementTable::new(partitions))),
        }
    }

    /// The owner of `p`.
    pub fn owner(&self, p: PartitionId) -> Option<NodeId> {
        self.cell.read(|t| t.owner(p).cloned())
    }

    /// The owner of `p` with its epoch and revision (for a compare-and-set).
    pub fn assignment(&self, p: PartitionId) -> Option<Assignment> {
        self.cell.read(|t| t.assignment(p).cloned())
    }

    /// The bucket revision the view reflects.
    pub fn revision(&self) -> u64 {
        self.cell.read(PlacementTable::revision)
    }

    /// A copy of the whole table.
    pub fn snapshot(&self) -> PlacementTable {
        self.cell.read(Clone::clone)
    }

    /// A copy of the table and every change after it, in the bucket's
    /// order. Drain the channel (or drop it): a full one makes the view's
    /// follower wait.
    pub fn changes(&self) -> (PlacementTable, flume::Receiver<PlacementChange>) {
        self.cell.subscribe()
    }

    /// True once the bucket's content at start has been loaded.
    pub fn is_ready(&self) -> bool {
        self.cell.is_ready()
    }

    /// Blocks until the view is loaded.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        self.wait_until(timeout, |_| true)
    }

    /// Blocks until the view is loaded and `pred` holds on it.
    pub fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&PlacementTable) -> bool,
    ) -> Result<(), ClusterError> {
        self.cell.wait_until(timeout, "the placement view", pred)
    }

    /// The follower that keeps this view up to date.
    pub(crate) fn follower(&self) -> PlacementFollower {
        PlacementFollower {
            view: self.clone(),
            shadow: None,
        }
    }
}

/// Applies the placement bucket's events to a [`Placement`].
pub(crate) struct PlacementFollower {
    view: Placement,
    /// During a resync: the table being rebuilt.
    shadow: Option<PlacementTable>,
}

impl PlacementFollower {
    async fn apply(&mut self, entry: kv::Entry) {
        let revision = entry.revision;
        let removed = entry.operation != kv::Operation::Put;
        if entry.key == META_KEY {
            if !removed {
                check_meta(&entry, &self.view);
            }
            self.on_table(|t| {
                t.note_revision(revision);
                Vec::new()
            })
            .await;
            return;
        }
        let Some(p) = parse_partition_key(&entry.key) else {
            tracing::warn!(key = %entry.key, "unexpected key in the placement bucket; skipped");
            return;
        };
        let record = if removed {
            None
        } else {
            match wire::decode::<PlacementRecord>(&entry.value) {
                Ok(r) => Some(r),
                Err(error) => {
                    tracing::error!(key = %entry.key, %error, "placement entry does not decode; skipped");
                    return;
                }
            }
        };
        self.on_table(|t| t.apply(p, record, revision).into_iter().collect())
            .await;
    }

    async fn on_table(&mut self, f: impl FnOnce(&mut PlacementTable) -> Vec<PlacementChange>) {
        match &mut self.shadow {
            Some(shadow) => {
                f(shadow);
            }
            None => self.view.cell.update(f).await,
        }
    }
}

fn check_meta(entry: &kv::Entry, view: &Placement) {
    match wire::decode::<ClusterMeta>(&entry.value) {
        Ok(meta) if meta.partitions.get() == view.cell.read(PlacementTable::partitions) => {}
        Ok(meta) => tracing::error!(
            cluster = meta.partitions.get(),
            "the cluster record's partition count changed; this node keeps its own"
        ),
        Err(error) => tracing::error!(%error, "the cluster record does not decode"),
    }
}

impl Follower for PlacementFollower {
    async fn on_event(&mut self, event: BucketEvent) {
        match event {
            BucketEvent::Entry(entry) => self.apply(entry).await,
            BucketEvent::Resync => {
                let partitions = self.view.cell.read(PlacementTable::partitions);
                let count = PartitionCount::new(u64::from(partitions))
                    .expect("the table was built from a valid count");
                self.shadow = Some(PlacementTable::new(count));
            }
            BucketEvent::Current => {
                let rebuilt = self.shadow.take();
                self.view
                    .cell
                    .caught_up(rebuilt, PlacementTable::diff)
                    .await;
            }
        }
    }
}
