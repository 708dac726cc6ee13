//! [`Nodes`]: every node's live view of the registry bucket.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;

use super::record::{parse_node_key, NodeRecord};
use super::table::{NodeChange, NodesTable};
use crate::error::ClusterError;
use crate::node_id::NodeId;
use crate::runtime::kv::{BucketEvent, Follower};
use crate::runtime::view::ViewCell;
use crate::wire;

/// A live view of the registered nodes. Cheap to clone; usable from any
/// thread.
#[derive(Clone)]
pub struct Nodes {
    cell: Arc<ViewCell<NodesTable, NodeChange>>,
}

impl Nodes {
    pub(crate) fn new() -> Nodes {
        Nodes {
            cell: Arc::new(ViewCell::new(NodesTable::default())),
        }
    }

    /// One node's record, if it is alive.
    pub fn get(&self, id: &NodeId) -> Option<NodeRecord> {
        self.cell.read(|t| t.get(id).cloned())
    }

    /// Every live node, by id.
    pub fn all(&self) -> Vec<NodeRecord> {
        self.cell.read(|t| t.iter().cloned().collect())
    }

    /// The bucket revision the view reflects.
    pub fn revision(&self) -> u64 {
        self.cell.read(NodesTable::revision)
    }

    /// A copy of the table and every change after it (see
    /// [`crate::placement::Placement::changes`] for the draining rule).
    pub fn changes(&self) -> (NodesTable, flume::Receiver<NodeChange>) {
        self.cell.subscribe()
    }

    /// Blocks until the view is loaded and `pred` holds on it.
    pub fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&NodesTable) -> bool,
    ) -> Result<(), ClusterError> {
        self.cell
            .wait_until(timeout, "the node registry view", pred)
    }

    pub(crate) fn follower(&self) -> NodesFollower {
        NodesFollower {
            view: self.clone(),
            shadow: None,
        }
    }
}

/// Applies the registry bucket's events to a [`Nodes`] view.
pub(crate) struct NodesFollower {
    view: Nodes,
    shadow: Option<NodesTable>,
}

impl NodesFollower {
    async fn apply(&mut self, entry: kv::Entry) {
        let Some(id) = parse_node_key(&entry.key) else {
            tracing::warn!(key = %entry.key, "unexpected key in the node registry; skipped");
            return;
        };
        let record = if entry.operation == kv::Operation::Put {
            match wire::decode::<NodeRecord>(&entry.value) {
                Ok(r) if r.id == id => Some(r),
                Ok(r) => {
                    tracing::error!(key = %entry.key, id = %r.id, "registry record names another node; skipped");
                    return;
                }
                Err(error) => {
                    tracing::error!(key = %entry.key, %error, "registry entry does not decode; skipped");
                    return;
                }
            }
        } else {
            None
        };
        let revision = entry.revision;
        match &mut self.shadow {
            Some(shadow) => {
                shadow.apply(id, record, revision);
            }
            None => {
                self.view
                    .cell
                    .update(|t| t.apply(id, record, revision).into_iter().collect())
                    .await
            }
        }
    }
}

impl Follower for NodesFollower {
    async fn on_event(&mut self, event: BucketEvent) {
        match event {
            BucketEvent::Entry(entry) => self.apply(entry).await,
            BucketEvent::Resync => self.shadow = Some(NodesTable::default()),
            BucketEvent::Current => {
                let rebuilt = self.shadow.take();
                self.view.cell.caught_up(rebuilt, NodesTable::diff).await;
            }
        }
    }
}
