//! # surepush-cluster
//!
//! The parts of a surepush cluster that live outside a node's shards:
//!
//! - **Partitions** ([`partition`]): a cluster has a fixed number `P`; every
//!   user, group and room belongs to one by a stable hash. Inside a node a
//!   [`shard_map::ShardMap`] says which shard holds each partition.
//! - **Placement** ([`placement`]): partition → node in the NATS JetStream
//!   KV bucket `surepush-placement`, changed only by compare-and-set, and
//!   watched by every node.
//! - **Registry** ([`registry`]): live nodes and their addresses in the
//!   bucket `surepush-nodes`, whose entries expire unless heartbeated.
//! - **Messaging** ([`messaging`]): batched, ordered, deduplicated
//!   request/reply between nodes over NATS subjects, and publish-once room
//!   fan-out.
//! - **Admin calls** ([`admin_calls`]): the admin API's reads and actions
//!   about one user, asked of the node it is placed on.
//! - **Wire** ([`wire`]): the binary encoding of everything above.
//!
//! With the `nats` feature (the default) the crate also runs the NATS side:
//! one dedicated thread with a tokio current-thread runtime and async-nats
//! ([`runtime`]), reached from glommio shards (or any thread) through
//! bounded channels. Without it, the crate is the runtime-free model, as
//! the fuzz targets use it.
//!
//! docs/CLUSTER.md describes the model, the failure model and what comes
//! next.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "nats")]
pub mod admin;
pub mod admin_calls;
#[cfg(feature = "nats")]
mod error;
pub mod messaging;
pub mod moves;
#[cfg(feature = "nats")]
mod node;
pub mod node_id;
pub mod partition;
pub mod placement;
pub mod registry;
#[cfg(feature = "nats")]
pub mod runtime;
pub mod shard_map;
pub mod wire;

#[cfg(feature = "nats")]
pub use error::ClusterError;
#[cfg(feature = "nats")]
pub use node::{Addresses, ClusterNode, NodeConfig};
pub use node_id::{NodeId, NodeIdError};
pub use partition::{EntityKind, PartitionCount, PartitionId};

/// The newest cluster wire version this build reads and writes.
pub const WIRE_VERSION: u8 = 1;
