//! Partitions: the unit of placement.
//!
//! A cluster has a fixed number of partitions `P`, chosen once at creation
//! and stored in the placement bucket. Every user, group and room belongs to
//! exactly one partition, by a hash that must never change: the partition of
//! an id decides on which node (and in which node's log) its data lives, so
//! a different hash would strand stored data. The function is
//!
//! ```text
//! key       = splitmix64(id XOR salt(kind))
//! partition = (key * P) >> 64          (128-bit product: Lemire's range reduction)
//! ```
//!
//! with the salts of [`EntityKind`] and splitmix64's published constants.
//! `id` is the id as it is on the wire, tag bits included (a group id has
//! `GROUP_BIT`, a room id `ROOM_BIT`). The kind salt keeps the three id
//! spaces independent even for callers that strip the tag bits. splitmix64
//! spreads sequential ids (the common case: ids from a database sequence);
//! the multiply-shift maps the 64-bit key onto `0..P` without a division
//! and with a bias below `P / 2^64`. Because `P` never changes, a plain
//! range reduction is enough: moving data between nodes happens by moving
//! whole partitions, not by rehashing.
//!
//! `golden_values_never_change` pins outputs of this function; if it fails,
//! the change would strand every existing cluster's data.

use std::fmt;

use surepush_proto::{is_room, UserId};

/// The three kinds of addressable entities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntityKind {
    /// A user: inbox, cursors, pending sends.
    User,
    /// A group (write fan-out): its membership list.
    Group,
    /// A room (read fan-out): its history and subscriber nodes.
    Room,
}

impl EntityKind {
    /// The kind a wire id names, from its tag bits.
    pub fn of_wire_id(id: u64) -> EntityKind {
        if UserId(id).is_group() {
            EntityKind::Group
        } else if is_room(id) {
            EntityKind::Room
        } else {
            EntityKind::User
        }
    }

    /// Part of the stable partition function: never change these values.
    const fn salt(self) -> u64 {
        match self {
            EntityKind::User => 0,
            EntityKind::Group => 0x6772_6f75_7073_7031, // "groupsp1"
            EntityKind::Room => 0x726f_6f6d_7370_3031,  // "roomsp01"
        }
    }
}

/// A partition number, `0..P`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId(pub u32);

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// The number of partitions of a cluster, `1..=`[`PartitionCount::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartitionCount(u32);

/// A partition count outside the accepted range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a cluster has 1 to {max} partitions, got {got}", max = PartitionCount::MAX)]
pub struct PartitionCountError {
    /// The rejected count.
    pub got: u64,
}

impl PartitionCount {
    /// Upper bound. Each partition is one KV key that every node watches
    /// and keeps in memory; 65,536 keeps start-up reads under a second and
    /// still allows a partition per shard on hundreds of nodes.
    pub const MAX: u32 = 1 << 16;

    /// Checks the range.
    pub fn new(count: u64) -> Result<PartitionCount, PartitionCountError> {
        match u32::try_from(count) {
            Ok(c) if (1..=Self::MAX).contains(&c) => Ok(PartitionCount(c)),
            _ => Err(PartitionCountError { got: count }),
        }
    }

    /// The count.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Every partition, in order.
    pub fn iter(self) -> impl Iterator<Item = PartitionId> {
        (0..self.0).map(PartitionId)
    }

    /// True if `p` is one of this cluster's partitions.
    pub fn contains(self, p: PartitionId) -> bool {
        p.0 < self.0
    }

    /// The partition of entity `id` of `kind` (see the module doc for the
    /// exact, stable function).
    pub fn partition_of(self, kind: EntityKind, id: u64) -> PartitionId {
        let key = splitmix64(id ^ kind.salt());
        PartitionId(((u128::from(key) * u128::from(self.0)) >> 64) as u32)
    }

    /// The partition of a wire id (kind from its tag bits).
    pub fn partition_of_wire_id(self, id: u64) -> PartitionId {
        self.partition_of(EntityKind::of_wire_id(id), id)
    }
}

/// splitmix64's finaliser (Steele, Lea & Flood, 2014): a bijection on u64
/// whose output bits each depend on every input bit. Not shared with the
/// core's shard hash (`surepush-core` routing.rs) on purpose: this copy is
/// frozen with the partition function (`golden_values_never_change`), the
/// core's may change with its shard routing, and this crate does not
/// depend on the core.
const fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use surepush_proto::ROOM_BIT;

    fn count(p: u64) -> PartitionCount {
        PartitionCount::new(p).expect("valid count")
    }

    #[test]
    fn the_count_is_bounded() {
        assert!(PartitionCount::new(0).is_err());
        assert!(PartitionCount::new(u64::from(PartitionCount::MAX) + 1).is_err());
        assert!(PartitionCount::new(u64::from(u32::MAX) + 2).is_err());
        assert_eq!(count(1).get(), 1);
        assert_eq!(count(65_536).get(), 65_536);
    }

    #[test]
    fn every_id_lands_inside_the_range() {
        for p in [1, 2, 3, 7, 1024, 65_536] {
            let c = count(p);
            for id in (0..5_000u64).chain([u64::MAX, u64::MAX - 1, ROOM_BIT, UserId::GROUP_BIT]) {
                for kind in [EntityKind::User, EntityKind::Group, EntityKind::Room] {
                    assert!(c.contains(c.partition_of(kind, id)), "p={p} id={id}");
                }
            }
        }
    }

    /// Chi-square of the partition counts of `ids` against the uniform
    /// distribution, over `p` partitions.
    fn chi_square(p: u64, ids: impl Iterator<Item = (EntityKind, u64)>) -> (f64, u64) {
        let c = count(p);
        let mut counts = vec![0u64; p as usize];
        let mut n = 0u64;
        for (kind, id) in ids {
            counts[c.partition_of(kind, id).0 as usize] += 1;
            n += 1;
        }
        let expected = n as f64 / p as f64;
        let chi = counts
            .iter()
            .map(|&k| (k as f64 - expected).powi(2) / expected)
            .sum();
        (chi, n)
    }

    #[test]
    fn sequential_users_groups_and_rooms_spread_evenly() {
        // 1,024 partitions, 100 ids each on average. For 1,023 degrees of
        // freedom the chi-square's mean is 1,023 and its standard deviation
        // ~45; 1,250 is five deviations out: an uneven hash fails, a fair
        // one passes (the ids are fixed, so the result is deterministic).
        let p = 1024;
        let users = (0..102_400u64).map(|i| (EntityKind::User, i));
        let groups = (0..102_400u64).map(|i| (EntityKind::Group, UserId::GROUP_BIT | i));
        let rooms = (0..102_400u64).map(|i| (EntityKind::Room, ROOM_BIT | i));
        // Strided ids (a sharded id allocator hands out every 1,024th).
        let strided = (0..102_400u64).map(|i| (EntityKind::User, i * 1024));
        for (name, (chi, n)) in [
            ("users", chi_square(p, users)),
            ("groups", chi_square(p, groups)),
            ("rooms", chi_square(p, rooms)),
            ("strided users", chi_square(p, strided)),
        ] {
            assert_eq!(n, 102_400);
            assert!(chi < 1_250.0, "{name}: chi-square {chi:.0} over 1,023 dof");
        }
    }

    #[test]
    fn kinds_are_independent_for_the_same_number() {
        // With the tag bits stripped, user n, group n and room n must not
        // share a partition more often than chance (1/P).
        let c = count(1024);
        let same = (0..100_000u64)
            .filter(|&i| {
                c.partition_of(EntityKind::User, i) == c.partition_of(EntityKind::Group, i)
                    || c.partition_of(EntityKind::User, i) == c.partition_of(EntityKind::Room, i)
            })
            .count();
        // Expected ~2 * 100,000 / 1,024 = 195.
        assert!(same < 300, "{same} collisions across kinds");
    }

    #[test]
    fn the_wire_id_names_its_kind() {
        assert_eq!(EntityKind::of_wire_id(42), EntityKind::User);
        assert_eq!(
            EntityKind::of_wire_id(UserId::GROUP_BIT | 42),
            EntityKind::Group
        );
        assert_eq!(EntityKind::of_wire_id(ROOM_BIT | 42), EntityKind::Room);
        let c = count(1024);
        let room = ROOM_BIT | 42;
        assert_eq!(
            c.partition_of_wire_id(room),
            c.partition_of(EntityKind::Room, room)
        );
    }

    #[test]
    fn golden_values_never_change() {
        // Outputs of the published function (module doc), recorded when it
        // was introduced. Stored cluster data is placed by them: this test
        // failing means existing clusters would lose track of their data.
        let c = count(1024);
        let got: Vec<u32> = [
            (EntityKind::User, 0u64),
            (EntityKind::User, 1),
            (EntityKind::User, 1_000_000),
            (EntityKind::Group, UserId::GROUP_BIT | 7),
            (EntityKind::Room, ROOM_BIT | 7),
        ]
        .iter()
        .map(|&(k, id)| c.partition_of(k, id).0)
        .collect();
        assert_eq!(got, GOLDEN);
    }

    // Computed independently (a Python transcription of the module doc's
    // formula), not by this code.
    const GOLDEN: [u32; 5] = [904, 580, 416, 616, 731];
}
