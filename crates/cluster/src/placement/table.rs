//! A node's picture of the placement bucket (pure data).
//!
//! Built from the bucket's entries in revision order; every entry carries
//! the KV revision it was written at, so an older entry arriving late (a
//! re-watch replays history) never overwrites a newer one.

use std::collections::BTreeMap;

use super::record::PlacementRecord;
use crate::node_id::NodeId;
use crate::partition::{PartitionCount, PartitionId};

/// The owner of a partition, as of one KV revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The owning node.
    pub node: NodeId,
    /// The record's epoch (+1 per change of owner).
    pub epoch: u64,
    /// The KV revision of the entry: the expected revision of the next
    /// compare-and-set on this partition.
    pub revision: u64,
}

/// One partition changed owner (or got its first one, or lost it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementChange {
    /// The partition.
    pub partition: PartitionId,
    /// Its owner before.
    pub before: Option<Assignment>,
    /// Its owner now.
    pub after: Option<Assignment>,
}

/// Partition → owner, with the highest revision applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementTable {
    owners: Vec<Option<Assignment>>,
    revision: u64,
}

impl PlacementTable {
    /// A table with no owners for a cluster of `partitions`.
    pub fn new(partitions: PartitionCount) -> PlacementTable {
        PlacementTable {
            owners: vec![None; partitions.get() as usize],
            revision: 0,
        }
    }

    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        self.owners.len() as u32
    }

    /// The owner of `p`, if it has one.
    pub fn owner(&self, p: PartitionId) -> Option<&NodeId> {
        self.assignment(p).map(|a| &a.node)
    }

    /// The owner of `p` with epoch and revision.
    pub fn assignment(&self, p: PartitionId) -> Option<&Assignment> {
        self.owners.get(p.0 as usize)?.as_ref()
    }

    /// The highest KV revision applied: the table reflects the bucket as of
    /// this revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// True when every partition has an owner.
    pub fn is_complete(&self) -> bool {
        self.owners.iter().all(Option::is_some)
    }

    /// Partitions per owning node.
    pub fn counts(&self) -> BTreeMap<NodeId, u32> {
        let mut counts = BTreeMap::new();
        for a in self.owners.iter().flatten() {
            *counts.entry(a.node.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// The partitions `node` owns, ascending.
    pub fn partitions_of<'a>(&'a self, node: &'a NodeId) -> impl Iterator<Item = PartitionId> + 'a {
        self.owners
            .iter()
            .enumerate()
            .filter(move |(_, a)| a.as_ref().is_some_and(|a| &a.node == node))
            .map(|(p, _)| PartitionId(p as u32))
    }

    /// Applies the entry of `p` written at `revision` (`None`: the key was
    /// deleted). Returns the change, or `None` if nothing changed or the
    /// entry is older than what the table holds.
    pub fn apply(
        &mut self,
        p: PartitionId,
        record: Option<PlacementRecord>,
        revision: u64,
    ) -> Option<PlacementChange> {
        let slot = self.owners.get_mut(p.0 as usize)?;
        if slot.as_ref().is_some_and(|a| a.revision >= revision) {
            return None;
        }
        self.revision = self.revision.max(revision);
        let after = record.map(|r| Assignment {
            node: r.node,
            epoch: r.epoch,
            revision,
        });
        let before = std::mem::replace(slot, after.clone());
        let same_owner = match (&before, &after) {
            (Some(b), Some(a)) => b.node == a.node && b.epoch == a.epoch,
            (None, None) => true,
            _ => false,
        };
        (!same_owner).then_some(PlacementChange {
            partition: p,
            before,
            after,
        })
    }

    /// Notes a revision seen on a key that is not a partition (the cluster
    /// record), so [`PlacementTable::revision`] covers the whole bucket.
    pub fn note_revision(&mut self, revision: u64) {
        self.revision = self.revision.max(revision);
    }

    /// The changes that turn `self` into `other` (same partition count).
    pub fn diff(&self, other: &PlacementTable) -> Vec<PlacementChange> {
        self.owners
            .iter()
            .zip(&other.owners)
            .enumerate()
            .filter(|(_, (a, b))| {
                a.as_ref().map(|a| (&a.node, a.epoch)) != b.as_ref().map(|b| (&b.node, b.epoch))
            })
            .map(|(p, (a, b))| PlacementChange {
                partition: PartitionId(p as u32),
                before: a.clone(),
                after: b.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(node: &str, epoch: u64) -> Option<PlacementRecord> {
        Some(PlacementRecord {
            node: NodeId::parse(node).unwrap(),
            epoch,
        })
    }

    #[test]
    fn entries_apply_in_revision_order_and_late_old_ones_are_ignored() {
        let mut t = PlacementTable::new(PartitionCount::new(4).unwrap());
        let p = PartitionId(2);
        let c = t.apply(p, rec("a", 1), 10).unwrap();
        assert_eq!(
            (c.before, c.after.map(|a| a.node.to_string())),
            (None, Some("a".into()))
        );
        let c = t.apply(p, rec("b", 2), 12).unwrap();
        assert_eq!(c.before.unwrap().node.as_str(), "a");
        assert_eq!(t.owner(p).unwrap().as_str(), "b");
        // A replay of revision 10 arrives late: ignored.
        assert_eq!(t.apply(p, rec("a", 1), 10), None);
        assert_eq!(t.owner(p).unwrap().as_str(), "b");
        assert_eq!(t.assignment(p).unwrap().revision, 12);
        assert_eq!(t.revision(), 12);
        assert!(!t.is_complete());
    }

    #[test]
    fn a_rewrite_with_the_same_owner_is_no_change_but_moves_the_revision() {
        let mut t = PlacementTable::new(PartitionCount::new(1).unwrap());
        t.apply(PartitionId(0), rec("a", 1), 3);
        assert_eq!(t.apply(PartitionId(0), rec("a", 1), 5), None);
        assert_eq!(t.assignment(PartitionId(0)).unwrap().revision, 5);
        assert!(t.is_complete());
    }

    #[test]
    fn counts_partitions_of_and_diff() {
        let mut t = PlacementTable::new(PartitionCount::new(4).unwrap());
        for p in 0..4 {
            t.apply(
                PartitionId(p),
                rec(if p < 3 { "a" } else { "b" }, 1),
                u64::from(p) + 1,
            );
        }
        let a = NodeId::parse("a").unwrap();
        assert_eq!(t.counts().get(&a), Some(&3));
        assert_eq!(
            t.partitions_of(&a).map(|p| p.0).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let mut u = t.clone();
        u.apply(PartitionId(1), rec("b", 2), 9);
        let d = t.diff(&u);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].partition, PartitionId(1));
        assert!(
            t.apply(PartitionId(9), rec("a", 1), 20).is_none(),
            "out of range"
        );
    }
}
