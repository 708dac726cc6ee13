//! Partition moves on the server side (issue #20, docs/CLUSTER.md "Moving a
//! partition"): carrying out move orders as the target, reclaiming a
//! stalled partition as the source, and the shards' share of both.
//!
//! The copy itself is the core's (`surepush_core`'s `moving.rs`: fetches
//! and pages between the two partitions' shards over the node lanes); this
//! file adds what needs NATS KV and threads:
//! - an order ([`IncomingMove`]) is served on a thread of its own, one at a
//!   time: it reads the partition's placement entry (owner, revision), asks
//!   the partition's shard to import ([`MoveCommand::Start`]), waits for the
//!   core's `MoveImported` or `MoveFailed`, and on success flips the entry
//!   by CAS **with the revision read before the import began** — if the
//!   source reclaimed the partition meanwhile (its CAS bumped the
//!   revision), the flip fails and the source keeps it;
//! - a source shard reporting `MoveStalled` (its target went quiet) gets
//!   its partition reclaimed by a CAS to this node (epoch + 1), then
//!   [`MoveCommand::Reclaimed`] lifts the fence;
//! - a starting node bumps the epoch of every partition placed on it by
//!   CAS before any shard serves ([`bump_epochs`]): a source killed after
//!   its last page and restarted before its target's flip would otherwise
//!   take writes that the flip (with the revision read before the move)
//!   then strands on it. After the bump that flip fails and the partition
//!   stays here with everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use surepush_cluster::moves::{IncomingMove, MoveResult};
use surepush_cluster::{ClusterError, ClusterNode, NodeId, PartitionId};
use surepush_core::{Action, Shard};

use super::NodeCluster;

/// Longest an import may take before the order gives up on it.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(600);

/// Longest a placement CAS may take.
const CAS_TIMEOUT: Duration = Duration::from_secs(10);

/// Test hook (`tests/cluster_moves.rs`): a FIFO (or file) this variable
/// names is read before a finished import's flip, so a test holds the
/// flip until it writes to it — to crash the source in the window between
/// its last page and the flip. Unset, nothing waits.
pub(super) const FLIP_GATE_VAR: &str = "SUREPUSHTEST_MOVE_FLIP_GATE";

/// What a shard's core is told about a move.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MoveCommand {
    /// Import this partition from its owner (this node is the target).
    Start(u32),
    /// The stalled partition was reclaimed by CAS (`true`) or not.
    Reclaimed(u32, bool),
}

impl MoveCommand {
    /// Hands the command to the shard's core.
    pub(crate) fn apply(self, core: &mut Shard, now: u64) {
        match self {
            MoveCommand::Start(p) => core.handle_move_start(p, now),
            MoveCommand::Reclaimed(p, ok) => core.handle_move_reclaimed(p, ok, now),
        }
    }
}

/// The node's side of moves: per-shard command queues and the imports
/// being waited for.
pub(crate) struct Moves {
    commands: Vec<flume::Sender<MoveCommand>>,
    receivers: Mutex<Vec<Option<flume::Receiver<MoveCommand>>>>,
    waiting: Mutex<HashMap<u32, flume::Sender<Result<u64, &'static str>>>>,
}

impl Moves {
    pub(crate) fn new(shards: u16) -> Moves {
        let (commands, receivers) = (0..shards)
            .map(|_| {
                let (tx, rx) = flume::unbounded();
                (tx, Some(rx))
            })
            .unzip();
        Moves {
            commands,
            receivers: Mutex::new(receivers),
            waiting: Mutex::default(),
        }
    }

    /// Shard `shard`'s command queue (once).
    pub(crate) fn take_commands(&self, shard: u16) -> Option<flume::Receiver<MoveCommand>> {
        let mut all = self.receivers.lock().unwrap_or_else(|p| p.into_inner());
        all.get_mut(usize::from(shard)).and_then(Option::take)
    }

    /// `tx` gets the outcome of `partition`'s import.
    pub(super) fn wait_for(&self, partition: u32, tx: flume::Sender<Result<u64, &'static str>>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.insert(partition, tx);
    }

    /// Nobody waits for `partition`'s import any more.
    pub(super) fn stop_waiting(&self, partition: u32) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.remove(&partition);
    }

    pub(super) fn command(&self, shard: u16, c: MoveCommand) -> bool {
        self.commands
            .get(usize::from(shard))
            .is_some_and(|tx| tx.send(c).is_ok())
    }
}

impl NodeCluster {
    /// A move action of shard `shard`'s core.
    pub(crate) fn on_move_action(self: &Arc<Self>, shard: u16, action: Action) {
        match action {
            Action::MoveImported { partition, records } => {
                self.import_ended(partition, Ok(records))
            }
            Action::MoveFailed { partition, why } => {
                tracing::warn!(partition, why, "partition import failed");
                self.import_ended(partition, Err(why));
            }
            Action::MoveStalled { partition } => {
                let cluster = Arc::downgrade(self);
                let spawned = std::thread::Builder::new()
                    .name("partition-reclaim".into())
                    .spawn(move || reclaim(cluster, shard, partition));
                if let Err(error) = spawned {
                    tracing::error!(%error, "cannot reclaim a stalled partition");
                }
            }
            _ => {}
        }
    }

    fn import_ended(&self, partition: u32, outcome: Result<u64, &'static str>) {
        let waiter = self
            .moves
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&partition);
        match waiter {
            Some(tx) => {
                let _ = tx.send(outcome);
            }
            None => tracing::warn!(partition, "an import ended that no order waits for"),
        }
    }

    /// Carries out one order as its target (see the module doc).
    fn take_partition(&self, p: PartitionId, me: &NodeId) -> MoveResult {
        let started = Instant::now();
        let result = |moved: bool, revision: u64, records: u64, message: &str| MoveResult {
            partition: p,
            moved,
            revision,
            records,
            elapsed_ms: started.elapsed().as_millis() as u64,
            message: message.to_string(),
        };
        let Some(before) = self.placement.assignment(p) else {
            return result(false, 0, 0, "the partition has no owner");
        };
        if &before.node == me {
            return result(true, before.revision, 0, "already here");
        }
        if self.nodes.get(&before.node).is_none() {
            return result(
                false,
                0,
                0,
                "its owner is not running (its data is on its disk)",
            );
        }
        let (tx, rx) = flume::bounded(1);
        self.moves.wait_for(p.0, tx);
        let shard = self.shard_of(p);
        tracing::info!(partition = p.0, from = %before.node, shard, "importing a partition");
        if !self.moves.command(shard, MoveCommand::Start(p.0)) {
            return result(false, 0, 0, "the partition's shard is gone");
        }
        let records = match rx.recv_timeout(IMPORT_TIMEOUT) {
            Ok(Ok(records)) => records,
            Ok(Err(why)) => return result(false, 0, 0, why),
            Err(_) => {
                self.moves.stop_waiting(p.0);
                return result(false, 0, 0, "the import timed out");
            }
        };
        if let Some(gate) = std::env::var_os(FLIP_GATE_VAR) {
            tracing::info!(
                partition = p.0,
                "import done; the flip waits for the test's gate"
            );
            let _ = std::fs::read(gate); // blocks until the test writes
        }
        let flipped = self.node_call(|node| {
            node.reassign(p, before.revision, me.clone())
                .wait_timeout(CAS_TIMEOUT)
        });
        match flipped {
            Some(Ok(Ok(revision))) => {
                tracing::info!(partition = p.0, records, revision, "partition moved here");
                result(true, revision, records, "")
            }
            Some(Ok(Err(error))) | Some(Err(error)) => result(
                false,
                0,
                records,
                &format!("the placement entry changed during the copy ({error}); nothing moved"),
            ),
            None => result(false, 0, records, "the node is shutting down"),
        }
    }

    fn node_call<T>(&self, f: impl FnOnce(&surepush_cluster::ClusterNode) -> T) -> Option<T> {
        let node = self.node.lock().unwrap_or_else(|p| p.into_inner());
        node.as_ref().map(f)
    }
}

/// Serves move orders, one at a time, until the node goes (a thread): a
/// partition to take from its owner, or (with a shard) to move between
/// this node's shards (`shard_moves.rs`).
pub(crate) fn serve_orders(
    cluster: Weak<NodeCluster>,
    orders: flume::Receiver<IncomingMove>,
    me: NodeId,
) {
    while let Ok(IncomingMove { order, done }) = orders.recv() {
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        let one = cluster
            .shard_moves
            .one_at_a_time
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let result = match order.shard {
            Some(shard) => {
                let result = cluster.move_to_shard(order.partition, shard);
                cluster.move_stats.shard_move_ended(&result);
                result
            }
            None => {
                cluster.move_stats.started();
                let result = cluster.take_partition(order.partition, &me);
                cluster.move_stats.ended(&result);
                result
            }
        };
        drop(one);
        if !result.moved {
            tracing::warn!(partition = order.partition.0, why = %result.message, "partition not moved");
        }
        let _ = done.send(result);
    }
}

/// Reclaims stalled `partition` for this node by CAS, then tells the shard.
fn reclaim(cluster: Weak<NodeCluster>, shard: u16, partition: u32) {
    let Some(cluster) = cluster.upgrade() else {
        return;
    };
    if let Some(lift) = cluster.stalled_on_shard(shard, partition) {
        tracing::warn!(partition, lift, "a move between shards stalled");
        cluster
            .moves
            .command(shard, MoveCommand::Reclaimed(partition, lift));
        return;
    }
    let p = PartitionId(partition);
    let me = cluster.me.clone();
    let ok = match cluster.placement.assignment(p) {
        Some(a) if a.node == me => matches!(
            cluster.node_call(|node| node.reassign(p, a.revision, me).wait_timeout(CAS_TIMEOUT)),
            Some(Ok(Ok(_)))
        ),
        _ => false,
    };
    tracing::warn!(partition, reclaimed = ok, "a move's target went quiet");
    cluster
        .moves
        .command(shard, MoveCommand::Reclaimed(partition, ok));
}

/// Bumps the epoch of every partition placed on `me` by CAS (see the
/// module doc), all at once, and waits until the placement view shows the
/// bumps. A partition whose CAS lost (its entry changed meanwhile: a
/// move's flip landed first) is looked at again once the view shows the
/// change: it is bumped if it is still placed here. Returns how many were
/// bumped.
pub(crate) fn bump_epochs(
    node: &ClusterNode,
    me: &NodeId,
    timeout: Duration,
) -> Result<usize, ClusterError> {
    let placement = node.placement();
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let table = placement.snapshot();
    let mut todo: Vec<PartitionId> = table.partitions_of(me).collect();
    let (mut bumped, mut newest) = (0, 0);
    while !todo.is_empty() {
        let table = placement.snapshot();
        let pending: Vec<_> = todo
            .iter()
            .filter_map(|p| {
                let a = table.assignment(*p).filter(|a| &a.node == me)?;
                Some((*p, a.revision, node.reassign(*p, a.revision, me.clone())))
            })
            .collect();
        let mut lost = Vec::new();
        for (p, revision, done) in pending {
            match done.wait_timeout(left())? {
                Ok(now) => {
                    bumped += 1;
                    newest = newest.max(now);
                }
                Err(ClusterError::Conflict { .. }) => lost.push((p, revision)),
                Err(error) => return Err(error),
            }
        }
        placement.wait_until(left(), |t| {
            t.revision() >= newest
                && lost
                    .iter()
                    .all(|(p, r)| t.assignment(*p).is_some_and(|a| a.revision != *r))
        })?;
        todo = lost.into_iter().map(|(p, _)| p).collect();
    }
    Ok(bumped)
}
