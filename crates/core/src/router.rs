//! Who owns a user, group or room, and how to address it: the one place
//! that decides.
//!
//! Every piece of per-id state (an inbox and its cursors, a group's or a
//! room's members, a room's history, keyed state) lives on exactly one
//! shard, its owner, and everything else reaches it with a message
//! ([`crate::PeerMsg`]). The core's parts, the server's accept paths and
//! the tools ask [`Router::owner`]; nobody hashes ids themselves.
//!
//! Today a node's ids are spread over its shards by jump consistent hashing
//! (Lamping & Veach, 2014): when the shard count changes from n to n+1 only
//! 1/(n+1) of the ids move, which keeps a later resharding of a node's log
//! cheap.
//!
//! Tomorrow (issue #20, `surepush-cluster`) an id belongs to a partition
//! placed on some node: [`Router::address`] then answers
//! `Address::Node(node, shard)` for ids placed elsewhere, from a placement
//! table the router holds. The parts already route through
//! [`Address`] and never compare shard numbers themselves, so that change
//! stays inside this file and the driver's handling of the new address.

use std::fmt;

use surepush_proto::UserId;

/// One shard of this node, `0..shards`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

impl ShardId {
    /// The index into per-shard tables (mesh queues, metrics).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where the owner of an id is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A shard of this node (the only kind while a node is alone; a cluster
    /// adds a node-qualified variant).
    Shard(ShardId),
}

/// Answers "who owns this id" for one shard (`me`) of a node of `shards`
/// shards. Cheap to copy: the driver and the tools build their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Router {
    me: ShardId,
    shards: u16,
}

impl Router {
    /// The router of shard `me` among `shards` shards (at least 1).
    pub fn new(me: ShardId, shards: u16) -> Router {
        Router {
            me,
            shards: shards.max(1),
        }
    }

    /// A router for code that is on no shard (the accept path, tools): it
    /// answers owners; `me` is shard 0.
    pub fn of_node(shards: u16) -> Router {
        Router::new(ShardId(0), shards)
    }

    /// The shard this router answers for.
    pub fn me(&self) -> ShardId {
        self.me
    }

    /// Number of shards of the node.
    pub fn shards(&self) -> u16 {
        self.shards
    }

    /// Owner shard of the user, group or room `id`.
    pub fn owner(&self, id: UserId) -> ShardId {
        ShardId(jump_hash(splitmix64(id.0), self.shards))
    }

    /// Where the owner of `id` is.
    pub fn address(&self, id: UserId) -> Address {
        Address::Shard(self.owner(id))
    }

    /// Whether this shard owns `id`.
    pub fn is_mine(&self, id: UserId) -> bool {
        self.owner(id) == self.me
    }
}

/// Jump consistent hash of `key` into `0..buckets` (`buckets >= 1`).
fn jump_hash(mut key: u64, buckets: u16) -> u16 {
    let buckets = i64::from(buckets.max(1));
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u16
}

/// Mixes first: ids are often sequential, jump hash wants spread keys.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(user: u64, shards: u16) -> u16 {
        Router::of_node(shards).owner(UserId(user)).0
    }

    #[test]
    fn every_user_maps_inside_the_range() {
        for n in 1..=16u16 {
            for u in 0..2_000 {
                assert!(owner(u, n) < n);
            }
        }
    }

    #[test]
    fn sequential_users_spread_evenly() {
        let mut counts = [0u32; 4];
        for u in 0..40_000 {
            counts[usize::from(owner(u, 4))] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn growing_by_one_shard_moves_about_one_in_n_plus_one() {
        let moved = (0..30_000u64)
            .filter(|u| owner(*u, 3) != owner(*u, 4))
            .count();
        // Expect 1/4 of 30,000 = 7,500.
        assert!((6_500..8_500).contains(&moved), "moved {moved}");
        // And nobody moves except to the new shard.
        for u in 0..30_000u64 {
            let (a, b) = (owner(u, 3), owner(u, 4));
            assert!(a == b || b == 3);
        }
    }

    /// The owner decides where stored data lives: a changed hash would
    /// strand every existing log's data on the wrong shard.
    #[test]
    fn owners_never_change() {
        // Computed with the shard_of of before the router existed.
        let pinned = [3, 3, 0, 1, 3, 3, 0, 1, 0, 2, 2, 0];
        let got: Vec<u16> = (0..12).map(|u| owner(u, 4)).collect();
        assert_eq!(got, pinned);
    }

    #[test]
    fn is_mine_agrees_with_owner() {
        for me in 0..4 {
            let r = Router::new(ShardId(me), 4);
            for u in 0..500 {
                assert_eq!(r.is_mine(UserId(u)), r.owner(UserId(u)) == ShardId(me));
                assert_eq!(r.address(UserId(u)), Address::Shard(r.owner(UserId(u))));
            }
        }
    }
}
