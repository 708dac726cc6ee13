//! Moves of a partition between the shards of this node (issue #20,
//! docs/CLUSTER.md "Moving a partition between shards"), and the resize
//! of a node restarted with another shard count.
//!
//! The copy is the node move's (the core's `moving/`): the target shard
//! imports the partition from the shard holding it, which exports a
//! snapshot and tail rounds and fences the last one; fetches and pages
//! cross the shard mesh instead of NATS. What differs is the flip: not a
//! placement CAS but the node's shard map, written to the data dir
//! (crash-safe, `shard_map_file.rs`) and then published to every shard in
//! a new routes snapshot. The source shard drops the partition's state
//! when it sees the new routes (closing the moved users' sessions: they
//! reconnect and are handed to the new shard); until then it stays fenced
//! and refuses writes, which clients retry.
//!
//! Crash safety follows from the order: the map names the new shard only
//! after every imported record is durable on it; a crash before that
//! leaves the map naming the source, which has every record (the target's
//! partial import is inert: nothing routes to it, and the next import of
//! the partition clears its stale members and keyed state first).
//!
//! A move's source may report the partition stalled (its target shard
//! sent no fetch for `MOVE_IDLE_NS`); [`NodeCluster::stalled_on_shard`]
//! then aborts the move before the fence is lifted, so a late import can
//! no longer flip the map.
//!
//! One move at a time per node: orders (`surepush cluster move`,
//! `move-shard`) and the resize at start take [`ShardMoves::one_at_a_time`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use surepush_cluster::moves::MoveResult;
use surepush_cluster::shard_map::ShardMap;
use surepush_cluster::{PartitionCount, PartitionId};
use surepush_core::hashed_shard_of_partition;

use super::moves::MoveCommand;
use super::{shard_map_file, JoinError, NodeCluster};

/// Longest a move between shards may take before it is given up.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(600);

/// This node's moves between its shards.
#[derive(Debug, Default)]
pub(crate) struct ShardMoves {
    /// Held by whoever runs a move (orders, the resize at start).
    pub(super) one_at_a_time: Mutex<()>,
    /// Moves under way: partition → aborted (its source reclaimed it).
    active: Mutex<HashMap<u32, bool>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads the node's shard map from `data_dir` for a node running `shards`
/// shards (or makes the first one: the hashed shards, written at once).
/// Returns the map and whether its shard count differs from `configured`
/// (the node was restarted with another count: [`resize_in_background`]).
pub(super) fn open_map(
    data_dir: &Path,
    partitions: PartitionCount,
    shards: u16,
    configured: u16,
) -> Result<(ShardMap, bool), JoinError> {
    let failed = |e: &dyn std::fmt::Display| JoinError::ShardMap(e.to_string());
    let Some(map) = shard_map_file::load(data_dir).map_err(|e| failed(&e))? else {
        let map = ShardMap::filled(partitions, shards, |p| {
            hashed_shard_of_partition(p, shards).0
        })
        .map_err(|e| failed(&e))?;
        shard_map_file::store(data_dir, &map).map_err(|e| failed(&e))?;
        return Ok((map, false));
    };
    if map.partitions() != partitions.get() {
        return Err(JoinError::ShardMap(format!(
            "written for {} partitions; the cluster has {}",
            map.partitions(),
            partitions.get()
        )));
    }
    let resize = map.shards() != configured || shard_map_file::resizing(data_dir);
    if resize {
        shard_map_file::mark_resizing(data_dir).map_err(|e| failed(&e))?;
    }
    // A node that grows runs its new shards from the start (empty until
    // partitions move there); one that shrinks runs the old count until
    // the removed shards are empty (`running_shards`).
    let map = match map.shards() < shards {
        true => map.resized(shards, &[]).map_err(|e| failed(&e))?,
        false => map,
    };
    Ok((map, resize))
}

/// How many shards a cluster node with data in `data_dir` runs when
/// configured for `configured`: at least as many as its shard map names, so
/// a node restarted with fewer shards can move partitions off the removed
/// ones first.
pub(crate) fn running_shards(data_dir: &Path, configured: u16) -> Result<u16, String> {
    match shard_map_file::load(data_dir) {
        Ok(Some(map)) => Ok(map.shards().max(configured)),
        Ok(None) => Ok(configured),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether `data_dir` has a shard map (a cluster node that started with
/// shard maps before).
pub(crate) fn has_shard_map(data_dir: &Path) -> Result<bool, String> {
    shard_map_file::load(data_dir)
        .map(|m| m.is_some())
        .map_err(|e| e.to_string())
}

impl NodeCluster {
    /// The shard holding (or that would hold) partition `p`.
    pub(super) fn shard_of(&self, p: PartitionId) -> u16 {
        lock(&self.shard_map.map).shard_of(p).unwrap_or(0)
    }

    /// Moves partition `p`, placed on this node, to shard `to` (see the
    /// module doc). The caller holds [`ShardMoves::one_at_a_time`].
    pub(super) fn move_to_shard(&self, p: PartitionId, to: u16) -> MoveResult {
        let started = Instant::now();
        let result = |moved: bool, records: u64, message: &str| MoveResult {
            partition: p,
            moved,
            revision: 0,
            records,
            elapsed_ms: started.elapsed().as_millis() as u64,
            message: message.to_string(),
        };
        if p.0 >= self.partitions.get() {
            return result(false, 0, "no such partition");
        }
        if to >= self.shards {
            return result(false, 0, &format!("the node runs {} shards", self.shards));
        }
        if self.placement.assignment(p).map(|a| a.node) != Some(self.me.clone()) {
            return result(false, 0, "the partition is not placed on this node");
        }
        let from = self.shard_of(p);
        if from == to {
            return result(true, 0, "already there");
        }
        let (tx, rx) = flume::bounded(1);
        self.moves.wait_for(p.0, tx);
        lock(&self.shard_moves.active).insert(p.0, false);
        tracing::info!(
            partition = p.0,
            from,
            to,
            "moving a partition between shards"
        );
        if !self.moves.command(to, MoveCommand::Start(p.0)) {
            lock(&self.shard_moves.active).remove(&p.0);
            self.moves.stop_waiting(p.0);
            return result(false, 0, "the target shard is gone");
        }
        let outcome = rx.recv_timeout(IMPORT_TIMEOUT);
        if outcome.is_err() {
            self.moves.stop_waiting(p.0);
        }
        if let (Ok(Ok(_)), Some(gate)) = (&outcome, std::env::var_os(super::moves::FLIP_GATE_VAR)) {
            tracing::info!(
                partition = p.0,
                "import done; the flip waits for the test's gate"
            );
            let _ = std::fs::read(gate); // blocks until the test writes
        }
        // Held through the flip: a stalled source's abort either comes
        // first (no flip) or sees the partition gone from its shard.
        let mut active = lock(&self.shard_moves.active);
        let aborted = active.remove(&p.0).unwrap_or(true);
        let records = match outcome {
            Ok(Ok(records)) if !aborted => records,
            Ok(Ok(records)) => {
                return result(false, records, "the source shard reclaimed the partition")
            }
            Ok(Err(why)) => return result(false, 0, why),
            Err(_) => return result(false, 0, "the import timed out"),
        };
        let mut map = lock(&self.shard_map.map);
        let mut next = map.clone();
        if let Err(e) = next.move_to(p, to) {
            return result(false, records, &e.to_string());
        }
        if let Err(error) = shard_map_file::store(&self.data_dir, &next) {
            tracing::error!(%error, partition = p.0, "cannot write the shard map; the move is abandoned");
            drop(map);
            self.moves.command(from, MoveCommand::Reclaimed(p.0, true));
            return result(
                false,
                records,
                &format!("cannot write the shard map: {error}"),
            );
        }
        *map = next;
        if let Err(error) = self.publish_routes_with(&map) {
            // The map is on disk; the next placement change (or restart)
            // routes by it.
            tracing::error!(%error, "cannot route the new shard map");
        }
        drop(map);
        drop(active);
        let r = result(true, records, "");
        tracing::info!(
            partition = p.0,
            from,
            to,
            records,
            elapsed_ms = r.elapsed_ms,
            "partition moved between shards"
        );
        r
    }

    /// Shard `shard` reports `partition` stalled (its move's target went
    /// quiet after the fence). `Some(lift)` if this is about a move between
    /// shards or a partition no longer on `shard`: lift the fence or not,
    /// with no placement CAS; `None` for a node move (the caller reclaims
    /// by CAS).
    pub(super) fn stalled_on_shard(&self, shard: u16, partition: u32) -> Option<bool> {
        let mut active = lock(&self.shard_moves.active);
        if let Some(aborted) = active.get_mut(&partition) {
            *aborted = true; // no flip after this: the source serves again
            return Some(true);
        }
        drop(active);
        (self.shard_of(PartitionId(partition)) != shard).then_some(false)
    }

    /// Carries out the resize planned at start (see [`open_map`]) to
    /// `target` shards: the fewest moves of the partitions placed here
    /// ([`ShardMap::resize`]), one at a time, then the map with `target`
    /// shards (partitions placed elsewhere only change entries).
    fn resize(&self, target: u16) {
        let _one = lock(&self.shard_moves.one_at_a_time);
        let mut held = lock(&self.shard_map.map).clone();
        let table = self.placement.snapshot();
        for (p, _) in held.clone().entries() {
            if table.owner(p) != Some(&self.me) {
                held.release(p);
            }
        }
        let plan = match held.resize(target) {
            Ok(plan) => plan,
            Err(error) => {
                tracing::error!(%error, "cannot plan the resize");
                return;
            }
        };
        tracing::info!(
            moves = plan.len(),
            from = held.shards(),
            to = target,
            "resizing: moving partitions between shards"
        );
        for m in &plan {
            let r = self.move_to_shard(m.partition, m.to);
            self.move_stats.shard_move_ended(&r);
            if !r.moved {
                tracing::warn!(partition = m.partition.0, why = %r.message, "a resize move failed");
            }
        }
        let mut map = lock(&self.shard_map.map);
        let mut next = map.clone();
        for (p, shard) in map.entries() {
            if shard.is_some_and(|s| s >= target) && table.owner(p) != Some(&self.me) {
                let kept = hashed_shard_of_partition(p, target).0;
                next.place(p, kept).expect("a kept shard");
            }
        }
        let next = match next.resized(target, &[]) {
            Ok(next) => next,
            Err(_) => {
                tracing::error!("partitions of this node are still on removed shards; restart to retry the resize");
                return;
            }
        };
        if let Err(error) = shard_map_file::store(&self.data_dir, &next) {
            tracing::error!(%error, "cannot write the resized shard map");
            return;
        }
        *map = next;
        if let Err(error) = self.publish_routes_with(&map) {
            tracing::error!(%error, "cannot route the resized shard map");
        }
        if let Err(error) = shard_map_file::resize_done(&self.data_dir) {
            tracing::warn!(%error, "the resize is done; its mark stays (the next start plans no move)");
        }
        tracing::info!(
            shards = target,
            moves = plan.len(),
            "resized: the shard map names {target} shards"
        );
    }
}

/// Runs the resize to `target` shards on a thread of its own; the moves'
/// commands wait in the shards' queues until they run.
pub(super) fn resize_in_background(cluster: &Arc<NodeCluster>, target: u16) {
    let weak = Arc::downgrade(cluster);
    let spawned = std::thread::Builder::new()
        .name("shard-resize".into())
        .spawn(move || {
            if let Some(cluster) = weak.upgrade() {
                cluster.resize(target);
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot resize the node's shards");
    }
}
