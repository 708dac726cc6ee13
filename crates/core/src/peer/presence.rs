//! Presence watches between nodes (issue #20, docs/CLUSTER.md "Presence
//! across nodes"): a node with watchers of a user placed elsewhere
//! registers once with the user's owner ([`PresenceNodeWatch`]), which
//! answers with the state now and publishes each later change once on the
//! user's subject ([`PresenceUpdate`]), for every watching node at once.

use surepush_cluster::NodeId;
use surepush_proto::{OnlineDevice, UserId};

use crate::router::ShardId;

/// To a user's owner shard, from another node: `node` (this incarnation
/// of it) has connections watching `user`. The owner answers `origin`
/// with one [`PresenceUpdate`] (the state now) and publishes every later
/// change on the user's subject until [`PresenceNodeUnwatch`], or until
/// that incarnation leaves the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceNodeWatch {
    /// The watched user.
    pub user: UserId,
    /// The watching node.
    pub node: NodeId,
    /// Its incarnation (a restarted node's registrations are dropped).
    pub incarnation: u64,
    /// Where the answer goes (the receiving driver's ticket).
    pub origin: ShardId,
}

/// To a user's owner shard, from another node: `node` has no watchers of
/// `user` left. No answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceNodeUnwatch {
    /// The watched user.
    pub user: UserId,
    /// The node that stops watching.
    pub node: NodeId,
    /// Its incarnation.
    pub incarnation: u64,
}

/// A user's online devices, from its owner shard on another node: the
/// answer to a [`PresenceNodeWatch`], or a change published on the
/// user's subject. `(epoch, version)` grows with every update of the user:
/// `epoch` is the partition's placement epoch (bumped by every move and
/// every restart of its owner), `version` a counter of the owner shard.
/// A watching shard ignores an update not newer than the last it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceUpdate {
    /// The watched user.
    pub user: UserId,
    /// The placement epoch of the user's partition on the owner.
    pub epoch: u64,
    /// The owner shard's update counter.
    pub version: u64,
    /// Its online devices, by device id (empty: offline).
    pub devices: Vec<OnlineDevice>,
}

impl PresenceUpdate {
    /// The order of updates of one user.
    pub fn stamp(&self) -> (u64, u64) {
        (self.epoch, self.version)
    }
}
