//! The seam between the admin HTTP front end and the shards.
//!
//! The HTTP layer (`admin.rs`) parses and authenticates requests; an
//! [`AdminBackend`] (implemented by the shard runtime) carries them out.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use surepush_proto::{DeviceId, Qos, Seq, UserId};

/// A message published by an application backend (POST /v1/publish).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishRequest {
    /// Addressee: a user, a group (an id with [`UserId::GROUP_BIT`]) or a
    /// room (`surepush_proto::ROOM_BIT`).
    pub to: UserId,
    /// Sender shown to the receiver; `UserId(0)` is the system sender.
    pub from: UserId,
    /// QoS 1 or 2 (stored); 0 pushes to online devices only.
    pub qos: Qos,
    /// Payload.
    pub payload: Bytes,
    /// Idempotency key: a retried publish with the same key is stored once.
    pub id: Option<u64>,
}

/// Outcome of a stored publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishResult {
    /// Sequence in the addressee's inbox (0 for QoS 0).
    pub seq: Seq,
    /// True when an earlier publish with the same id was stored already.
    pub duplicate: bool,
}

/// Why a publish was not stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The log cannot store (HTTP 503).
    #[error("storage unavailable")]
    StorageUnavailable,
    /// The gateway is shutting down (HTTP 503).
    #[error("shutting down")]
    ShuttingDown,
    /// The request is invalid (HTTP 400).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Published to a group that has no members (HTTP 404).
    #[error("no such group")]
    NoSuchGroup,
    /// The `id` was used before for a different message (HTTP 409).
    #[error("id used before for a different message")]
    Conflict,
}

/// Health of the node for /healthz.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Serving and storing.
    Ok,
    /// Up but not storing (HTTP 503 with the reason).
    Degraded(String),
}

/// What the admin HTTP server needs from the node. Lives on one executor
/// (not `Send`); futures are local.
pub trait AdminBackend: 'static {
    /// Prometheus text exposition of every metric.
    fn metrics_text(&self) -> String;
    /// Node health.
    fn health(&self) -> Health;
    /// Stores (QoS 1/2) or pushes (QoS 0) a message; resolves when durable.
    fn publish(
        &self,
        req: PublishRequest,
    ) -> Pin<Box<dyn Future<Output = Result<PublishResult, PublishError>>>>;
    /// Mints a client token for (user, device) valid for `ttl_s` seconds.
    fn mint_token(&self, user: UserId, device: DeviceId, ttl_s: u64) -> String;
    /// Adds, then removes members of the group or room `id`; resolves with
    /// the members once the change is durable (no change: just the members).
    fn update_members(
        &self,
        id: UserId,
        add: Vec<UserId>,
        remove: Vec<UserId>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<UserId>, PublishError>>>>;
}
