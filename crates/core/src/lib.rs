//! The sans-IO delivery core: one [`Shard`] state machine per shard, the
//! hierarchical timer wheel it keeps its deadlines in, and the record model
//! the segment log stores (`surepush-log` persists it; the state folded
//! from it is the core's).
//!
//! This crate depends on no runtime and holds no `unsafe`: sans-IO is a
//! compiler fact here, as in quinn-proto.
//!
//! Ground rules (as in quinn-proto):
//! - no sockets, no files, no threads and no clock reads: every input comes
//!   with `now` (monotonic ns) and every effect leaves as an [`Action`];
//! - all state of a user (inbox head, device cursors, pending ACKs, the send
//!   dedup window for copies stored here) is touched by its owner shard only
//!   ([`Router::owner`]); other shards reach it with [`PeerMsg`]s;
//! - a SENDACK leaves only after every copy it covers is durable, and a
//!   PUSH only carries durable messages, so nothing acknowledged can be lost
//!   by a crash and nothing lost can have been seen.
//!
//! The deterministic simulator in `tests/sim/` drives shards and clients
//! with an injected clock over a lossy network; it is the main test of this
//! module.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod action;
/// Session tokens (the `surepush-token` crate): what the core verifies.
pub use surepush_token as auth;
mod config;
mod deliver;
pub mod durations;
mod group;
pub mod hashing;
mod keyed;
mod members;
mod peer;
pub mod record;
mod retry;
mod room;
mod room_access;
pub mod router;
mod send;
mod session;
mod shard;
pub mod state;
mod stats;
mod storage;
mod sync;
pub mod timer;

pub use action::{
    Action, AppendToken, ConnId, MembersOutcome, Publish, Publisher, ReadId, StoreOutcome,
};
pub use auth::{Acl, AclAction, AclError, MAX_ACL_FILTERS, MAX_ACL_FILTER_LEN};
pub use auth::{AuthError, Claims, TokenVerifier};
pub use config::{CoreConfig, LiveLimits};
pub use keyed::{StateDurability, StateReport};
pub use peer::{
    Ephemeral, GroupEphemeral, GroupStore, GroupStored, MembersUpdate, MembersUpdated, PeerMsg,
    PeerWireError, QueryState, Release, ReleaseMany, Revoked, RoomFanout, RoomLeave, RoomPage,
    RoomPublish, RoomRefused, RoomRevoke, RoomSubscribe, StateStored, StateValue, StoreCopy,
    StoreMany, StoreState, Stored, PEER_WIRE_VERSION,
};
pub use record::{InboxQuery, MessageRecord, Record, StateKey};
pub use router::{Address, Router, ShardId};
pub use shard::{Shard, ShardParams};
pub use state::{apply_membership, DedupConfig, DedupEntry, DedupWindow, RecoveredState, SendKey};
pub use stats::CoreStats;

#[cfg(test)]
mod tests;
