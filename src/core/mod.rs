//! The sans-IO delivery core: one [`Shard`] state machine per shard.
//!
//! Ground rules (as in quinn-proto):
//! - no sockets, no files, no threads and no clock reads: every input comes
//!   with `now` (monotonic ns) and every effect leaves as an [`Action`];
//! - all state of a user (inbox head, device cursors, pending ACKs, the send
//!   dedup window for copies stored here) is touched by its owner shard only
//!   ([`routing::shard_of`]); other shards reach it with [`PeerMsg`]s;
//! - a SENDACK leaves only after every copy it covers is durable, and a
//!   PUSH only carries durable messages, so nothing acknowledged can be lost
//!   by a crash and nothing lost can have been seen.
//!
//! The deterministic simulator in `tests/sim/` drives shards and clients
//! with an injected clock over a lossy network; it is the main test of this
//! module.

mod action;
pub mod auth;
mod config;
mod deliver;
mod group;
mod keyed;
mod retry;
mod room;
pub mod routing;
mod send;
mod session;
mod shard;
mod stats;
mod sync;

pub use action::{Action, AppendToken, ConnId, GroupOutcome, PeerMsg, ReadId, StoreOutcome};
pub use auth::{AuthError, Claims, TokenVerifier};
pub use config::CoreConfig;
pub use keyed::{StateDurability, StateReport};
pub use routing::shard_of;
pub use shard::{Shard, ShardParams};
pub use stats::CoreStats;

#[cfg(test)]
mod tests;
