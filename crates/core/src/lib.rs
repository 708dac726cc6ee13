//! The sans-IO delivery core: one [`Shard`] state machine per shard, the
//! hierarchical timer wheel it keeps its deadlines in, the [`Router`] that
//! says which shard owns an id, the messages shards send each other
//! ([`PeerMsg`]), and the record model the segment log stores
//! (`surepush-log` persists it; the state folded from it is the core's).
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
//! # Parts and call order
//!
//! [`Shard`] (`shard.rs`) is the dispatcher: the driver calls its
//! `handle_*` methods with `now`, drains [`Shard::poll_action`], and sleeps
//! until [`Shard::poll_timeout`]. It routes each input to the code of its
//! concern and each completion back to whoever started it:
//!
//! | part | file | owns |
//! |---|---|---|
//! | [`Router`] | `router.rs` | who owns a user, group or room; its [`Address`] |
//! | `Storage` | `storage.rs` | append tokens and reads in flight with their purposes; the failed flag |
//! | `Members` | `members.rs` | member lists of the groups and rooms homed here |
//! | `Fanouts` | `group.rs` | group sends waiting for their member copies |
//! | `RoomShards` | `room.rs` | per room homed here, the shards with subscribers |
//! | `KeyedState` | `keyed.rs` | keyed state of the layers above (MQTT sessions, retained) |
//! | `Webhooks` | `webhook/` | webhook events until delivered: numbering, window, backlog cap |
//! | [`Conversations`] | `conversation.rs`, `conversation/serve.rs` | per inbox: conversation summaries and each conversation's sequence index (CONVLIST, CONVFETCH) |
//! | messages | `peer/` | one struct per shard-to-shard message, and its wire encoding |
//!
//! Sessions and limits (`session.rs`), the send path and dedup (`send.rs`,
//! `retry.rs`), delivery (`deliver.rs`, `sync.rs`), group and room fan-out
//! (`group.rs`, `room.rs`, `room_access.rs`) are still `impl Shard` blocks
//! over the dispatcher's remaining fields; they move into parts of their own
//! the same way (issue #18 item 3).
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
pub mod conversation;
mod deliver;
pub mod durations;
pub mod filter_trie;
mod group;
pub mod hashing;
mod keyed;
mod members;
mod moving;
mod peer;
mod presence;
pub mod record;
mod retry;
mod room;
mod room_access;
mod room_replicas;
pub mod router;
mod send;
mod sends;
mod session;
mod sessions;
mod shard;
pub mod share_group;
mod share_groups;
pub mod state;
mod stats;
mod storage;
mod sync;
pub mod timer;
mod topic_filters;
mod topic_nodes;
mod webhook;

pub use action::{
    Action, AppendToken, ConnId, MembersOutcome, Publish, Publisher, ReadId, StoreOutcome,
};
/// The transport name of MQTT connections (plain, WebSocket or TLS): the
/// bridge that checks topic-stream permissions by name (`room_access.rs`).
pub const MQTT_TRANSPORT: &str = "mqtt";

pub use auth::{Acl, AclAction, AclError, MAX_ACL_FILTERS, MAX_ACL_FILTER_LEN};
pub use auth::{AuthError, Claims, TokenVerifier};
pub use config::{CoreConfig, LiveLimits};
pub use conversation::{BadConversationLimit, ConversationConfig, Conversations, UnreadFrom};
pub use keyed::{StateDurability, StateReport};
pub use moving::{MOVE_IDLE_NS, PAGE_BYTES as MOVE_PAGE_BYTES};
pub use peer::{decode_answers, encode_answers, encode_answers_into, Answers};
pub use peer::{
    Ephemeral, GroupEphemeral, GroupStore, GroupStored, MembersUpdate, MembersUpdated, PeerMsg,
    PeerWireError, PresenceChanged, PresenceNodeUnwatch, PresenceNodeWatch, PresenceUnwatch,
    PresenceUpdate, PresenceWatch, QueryState, Release, ReleaseMany, Revoked, RoomFanout,
    RoomLeave, RoomPage, RoomPublish, RoomRefused, RoomRevoke, RoomSubscribe, StateStored,
    StateValue, StoreCopy, StoreMany, StoreState, Stored, PEER_WIRE_VERSION,
};
pub use peer::{MoveCursor, MoveFetch, MovePage, MoveRoundFetch, MoveStatus};
pub use record::{InboxQuery, MessageRecord, Record, StateKey};
pub use router::{
    hashed_shard_of_partition, Address, ClusterRoutes, Liveness, PeerTarget, Router, RoutesError,
    ShardId,
};
pub use shard::{Shard, ShardParams};
pub use state::{apply_membership, DedupConfig, DedupEntry, DedupWindow, RecoveredState, SendKey};
pub use stats::CoreStats;
pub use webhook::{WebhookEvent, WebhookKind, WebhookOutcome, WebhookRules};

#[cfg(test)]
mod tests;
