//! Which shard of this node holds each partition the node owns.
//!
//! Placement says which *node* owns a partition; inside the node a
//! partition lives on one shard, and all its users, groups and rooms with
//! it. The map is explicit (not `partition % shards`) so that a node can
//! change its shard count, or even out load, by moving whole partitions
//! between shards: [`ShardMap::resize`] plans the fewest moves that leave
//! the shards balanced.
//!
//! Shard indices are plain `u16` here (the core's `ShardId` wraps the same
//! number); the map is pure data, persisted by the server with the node's
//! data dir.

use crate::partition::{PartitionCount, PartitionId};

/// Partition → shard for the partitions a node owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    /// Indexed by partition; `None` for partitions of other nodes.
    shard_of: Vec<Option<u16>>,
    /// Owned partitions per shard.
    load: Vec<u32>,
}

/// One step of a plan: move `partition` from shard `from` to shard `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardMove {
    /// The partition that moves.
    pub partition: PartitionId,
    /// Its shard now.
    pub from: u16,
    /// Its shard after the move.
    pub to: u16,
}

/// A request the map cannot satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShardMapError {
    /// A node has at least one shard.
    #[error("a node has at least one shard")]
    NoShards,
    /// The partition is not one of the cluster's.
    #[error("partition {0} is outside the cluster's partitions")]
    UnknownPartition(PartitionId),
    /// The shard index is not below the shard count.
    #[error("shard {shard} does not exist (the node has {shards})")]
    UnknownShard {
        /// The rejected index.
        shard: u16,
        /// The node's shard count.
        shards: u16,
    },
    /// The partition is not owned by this node.
    #[error("partition {0} is not held by this node")]
    NotHeld(PartitionId),
}

impl ShardMap {
    /// An empty map: the node owns no partition yet.
    pub fn new(partitions: PartitionCount, shards: u16) -> Result<ShardMap, ShardMapError> {
        if shards == 0 {
            return Err(ShardMapError::NoShards);
        }
        Ok(ShardMap {
            shard_of: vec![None; partitions.get() as usize],
            load: vec![0; usize::from(shards)],
        })
    }

    /// A map of `shards` shards holding every partition, each on the shard
    /// `shard_of` names (a node's first map: the hash it routed by before
    /// the map existed).
    pub fn filled(
        partitions: PartitionCount,
        shards: u16,
        shard_of: impl Fn(PartitionId) -> u16,
    ) -> Result<ShardMap, ShardMapError> {
        let mut map = ShardMap::new(partitions, shards)?;
        for p in partitions.iter() {
            map.place(p, shard_of(p))?;
        }
        Ok(map)
    }

    /// Number of partitions the map covers (the cluster's).
    pub fn partitions(&self) -> u32 {
        self.shard_of.len() as u32
    }

    /// Every partition and its shard (`None` if not held), ascending.
    pub fn entries(&self) -> impl Iterator<Item = (PartitionId, Option<u16>)> + '_ {
        self.shard_of
            .iter()
            .enumerate()
            .map(|(p, s)| (PartitionId(p as u32), *s))
    }

    /// Puts `p` on `shard`, held or not before.
    pub fn place(&mut self, p: PartitionId, shard: u16) -> Result<(), ShardMapError> {
        if usize::from(shard) >= self.load.len() {
            return Err(ShardMapError::UnknownShard {
                shard,
                shards: self.shards(),
            });
        }
        let slot = self
            .shard_of
            .get_mut(p.0 as usize)
            .ok_or(ShardMapError::UnknownPartition(p))?;
        if let Some(from) = slot.replace(shard) {
            self.load[usize::from(from)] -= 1;
        }
        self.load[usize::from(shard)] += 1;
        Ok(())
    }

    /// Number of shards.
    pub fn shards(&self) -> u16 {
        self.load.len() as u16
    }

    /// The shard holding `p`, if this node holds it.
    pub fn shard_of(&self, p: PartitionId) -> Option<u16> {
        self.shard_of.get(p.0 as usize).copied().flatten()
    }

    /// Partitions held per shard.
    pub fn load(&self) -> &[u32] {
        &self.load
    }

    /// The partitions held by `shard`, ascending.
    pub fn partitions_of(&self, shard: u16) -> impl Iterator<Item = PartitionId> + '_ {
        self.shard_of
            .iter()
            .enumerate()
            .filter(move |(_, s)| **s == Some(shard))
            .map(|(p, _)| PartitionId(p as u32))
    }

    /// Takes `p` onto the least loaded shard (the lowest index among equals)
    /// and returns that shard; a partition already held stays where it is.
    pub fn adopt(&mut self, p: PartitionId) -> Result<u16, ShardMapError> {
        let slot = self
            .shard_of
            .get_mut(p.0 as usize)
            .ok_or(ShardMapError::UnknownPartition(p))?;
        if let Some(shard) = *slot {
            return Ok(shard);
        }
        let (shard, _) = self
            .load
            .iter()
            .enumerate()
            .min_by_key(|&(i, l)| (*l, i))
            .expect("at least one shard (checked in new)");
        *slot = Some(shard as u16);
        self.load[shard] += 1;
        Ok(shard as u16)
    }

    /// Gives `p` up (it moved to another node); returns the shard it left.
    pub fn release(&mut self, p: PartitionId) -> Option<u16> {
        let shard = self.shard_of.get_mut(p.0 as usize)?.take()?;
        self.load[usize::from(shard)] -= 1;
        Some(shard)
    }

    /// Moves a held partition to `to`.
    pub fn move_to(&mut self, p: PartitionId, to: u16) -> Result<(), ShardMapError> {
        if usize::from(to) >= self.load.len() {
            return Err(ShardMapError::UnknownShard {
                shard: to,
                shards: self.shards(),
            });
        }
        let slot = self
            .shard_of
            .get_mut(p.0 as usize)
            .ok_or(ShardMapError::UnknownPartition(p))?;
        let from = slot.ok_or(ShardMapError::NotHeld(p))?;
        *slot = Some(to);
        self.load[usize::from(from)] -= 1;
        self.load[usize::from(to)] += 1;
        Ok(())
    }

    /// The fewest moves that spread the held partitions evenly over
    /// `shards` shards (loads differ by at most one afterwards). Shards at
    /// or above the new count are emptied. Apply it with
    /// [`ShardMap::resized`].
    pub fn resize(&self, shards: u16) -> Result<Vec<ShardMove>, ShardMapError> {
        if shards == 0 {
            return Err(ShardMapError::NoShards);
        }
        let n: u32 = self.load.iter().sum();
        let kept = usize::from(shards);
        let current = |s: usize| self.load.get(s).copied().unwrap_or(0);
        // Every kept shard gets n / shards; the remainder goes to the kept
        // shards that hold the most already, so they keep them.
        let mut order: Vec<usize> = (0..kept).collect();
        order.sort_by_key(|&s| (std::cmp::Reverse(current(s)), s));
        let mut target = vec![n / u32::from(shards); kept];
        for &s in order.iter().take((n % u32::from(shards)) as usize) {
            target[s] += 1;
        }
        // Surplus: partitions past a shard's target (its highest ids), and
        // everything on a removed shard.
        let mut surplus = Vec::new();
        for from in 0..self.load.len() {
            let keep = target.get(from).copied().unwrap_or(0);
            let held: Vec<PartitionId> = self.partitions_of(from as u16).collect();
            surplus.extend(
                held.into_iter()
                    .skip(keep as usize)
                    .map(|p| (p, from as u16)),
            );
        }
        let mut moves = Vec::with_capacity(surplus.len());
        let mut surplus = surplus.into_iter();
        for (to, &want) in target.iter().enumerate() {
            for _ in current(to)..want {
                let (partition, from) = surplus.next().expect("surplus equals deficit");
                moves.push(ShardMove {
                    partition,
                    from,
                    to: to as u16,
                });
            }
        }
        debug_assert!(surplus.next().is_none(), "every surplus partition placed");
        Ok(moves)
    }

    /// This map with `shards` shards after the moves of
    /// [`ShardMap::resize`].
    pub fn resized(&self, shards: u16, moves: &[ShardMove]) -> Result<ShardMap, ShardMapError> {
        if shards == 0 {
            return Err(ShardMapError::NoShards);
        }
        let mut next = self.clone();
        let old = self.load.len().max(usize::from(shards));
        next.load.resize(old, 0);
        for m in moves {
            next.move_to(m.partition, m.to)?;
        }
        if next.load[usize::from(shards)..].iter().any(|&l| l > 0) {
            return Err(ShardMapError::UnknownShard {
                shard: shards,
                shards,
            });
        }
        next.load.truncate(usize::from(shards));
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_with(partitions: u64, shards: u16, held: impl Iterator<Item = u32>) -> ShardMap {
        let mut m = ShardMap::new(PartitionCount::new(partitions).unwrap(), shards).unwrap();
        for p in held {
            m.adopt(PartitionId(p)).unwrap();
        }
        m
    }

    fn spread(m: &ShardMap) -> u32 {
        m.load().iter().max().unwrap() - m.load().iter().min().unwrap()
    }

    #[test]
    fn adopting_balances_and_is_idempotent() {
        let mut m = map_with(64, 3, (0..64).step_by(3));
        assert_eq!(m.load().iter().sum::<u32>(), 22);
        assert!(spread(&m) <= 1, "{:?}", m.load());
        let s = m.shard_of(PartitionId(3)).unwrap();
        assert_eq!(m.adopt(PartitionId(3)), Ok(s));
        assert_eq!(m.load().iter().sum::<u32>(), 22);
        assert_eq!(m.shard_of(PartitionId(1)), None);
        assert_eq!(
            m.adopt(PartitionId(64)),
            Err(ShardMapError::UnknownPartition(PartitionId(64)))
        );
    }

    #[test]
    fn release_and_move_keep_the_load_counts() {
        let mut m = map_with(16, 2, 0..16);
        assert_eq!(m.release(PartitionId(0)), Some(0));
        assert_eq!(m.release(PartitionId(0)), None);
        assert_eq!(m.load(), &[7, 8]);
        m.move_to(PartitionId(1), 0).unwrap();
        assert_eq!(m.shard_of(PartitionId(1)), Some(0));
        assert_eq!(m.load(), &[8, 7]);
        assert_eq!(
            m.move_to(PartitionId(0), 1),
            Err(ShardMapError::NotHeld(PartitionId(0)))
        );
        assert_eq!(
            m.move_to(PartitionId(1), 2),
            Err(ShardMapError::UnknownShard {
                shard: 2,
                shards: 2
            })
        );
    }

    /// Resizing from every shard count to every other leaves the shards
    /// balanced, moves each partition at most once, and moves only from
    /// shards over their share to shards under it (so no move is wasted).
    #[test]
    fn resize_is_balanced_and_minimal() {
        for held in [0u32, 1, 7, 100, 257] {
            for from in 1..=9u16 {
                let m = map_with(1024, from, (0..held).map(|i| i * 3));
                for to in 1..=9u16 {
                    let moves = m.resize(to).unwrap();
                    let next = m.resized(to, &moves).unwrap();
                    assert_eq!(next.shards(), to);
                    assert_eq!(next.load().iter().sum::<u32>(), held);
                    assert!(spread(&next) <= 1, "{from}->{to}: {:?}", next.load());
                    let mut seen = std::collections::HashSet::new();
                    for mv in &moves {
                        assert!(seen.insert(mv.partition), "moved twice: {mv:?}");
                        assert_eq!(m.shard_of(mv.partition), Some(mv.from));
                        assert_eq!(next.shard_of(mv.partition), Some(mv.to));
                        assert_ne!(mv.from, mv.to);
                    }
                    // Lower bound on moves: what sits on removed shards,
                    // plus each kept shard's excess over the ceiling share.
                    let ceil = held.div_ceil(u32::from(to));
                    let floor = held / u32::from(to);
                    let removed: u32 = m.load().iter().skip(usize::from(to)).sum();
                    let over_ceiling: u32 = m
                        .load()
                        .iter()
                        .take(usize::from(to))
                        .map(|&l| l.saturating_sub(ceil))
                        .sum();
                    assert!(moves.len() as u32 >= removed + over_ceiling);
                    // And no shard both gives and receives.
                    for mv in &moves {
                        assert!(!moves.iter().any(|o| o.to == mv.from), "{from}->{to}");
                    }
                    // Receivers were below the floor-or-ceiling share.
                    for mv in &moves {
                        assert!(
                            m.load().get(usize::from(mv.to)).copied().unwrap_or(0)
                                < ceil.max(floor)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_filled_map_holds_every_partition_where_told() {
        let p = PartitionCount::new(10).unwrap();
        let mut m = ShardMap::filled(p, 3, |q| (q.0 % 3) as u16).unwrap();
        assert_eq!(m.partitions(), 10);
        assert_eq!(m.load(), &[4, 3, 3]);
        assert!(m.entries().all(|(q, s)| s == Some((q.0 % 3) as u16)));
        m.place(PartitionId(0), 2).unwrap();
        assert_eq!(m.load(), &[3, 3, 4]);
        assert_eq!(
            m.place(PartitionId(0), 3),
            Err(ShardMapError::UnknownShard {
                shard: 3,
                shards: 3
            })
        );
        assert!(ShardMap::filled(p, 2, |_| 2).is_err());
    }

    #[test]
    fn zero_shards_is_refused() {
        let p = PartitionCount::new(8).unwrap();
        assert_eq!(ShardMap::new(p, 0), Err(ShardMapError::NoShards));
        let m = ShardMap::new(p, 2).unwrap();
        assert_eq!(m.resize(0), Err(ShardMapError::NoShards));
    }
}
