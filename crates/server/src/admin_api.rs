//! The seam between the admin HTTP front end and the shards.
//!
//! The HTTP layer (`admin.rs`) parses and authenticates requests. A
//! [`NodeStatus`] answers health, readiness and metrics from the moment
//! the admin port listens, before any shard has recovered its log; an
//! [`AdminBackend`] (implemented by the shard runtime) carries out the API
//! requests once it is attached to the [`BackendSlot`] (after shard 0
//! recovered); until then they answer 503 `not_ready`.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use surepush_core::auth::Revocation;
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

/// Why a revocation was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    /// Invalid (a bad `jti`) (HTTP 400).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// As many revocations are held as allowed (HTTP 507).
    #[error("too many revocations held")]
    Full,
    /// Not stored (HTTP 503); nothing changed.
    #[error("revocation not stored: {0}")]
    StorageUnavailable(String),
}

/// Health or readiness of the node (/healthz, /readyz).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Yes.
    Ok,
    /// No (HTTP 503 with the reason).
    Degraded(String),
}

/// What the admin server answers without the shards: available from the
/// moment it listens. Lives on one executor (not `Send`).
pub trait NodeStatus: 'static {
    /// OpenMetrics text exposition of every metric (`# EOF` included).
    fn metrics_text(&self) -> String;
    /// Liveness (/healthz): up, and not failed or stopping.
    fn health(&self) -> Health;
    /// Readiness (/readyz): every shard recovered its log and serves.
    fn readiness(&self) -> Health;
}

/// Where the [`AdminBackend`] is put once it exists.
pub struct BackendSlot<B>(std::cell::RefCell<Option<std::rc::Rc<B>>>);

impl<B> Default for BackendSlot<B> {
    fn default() -> Self {
        BackendSlot(std::cell::RefCell::new(None))
    }
}

impl<B> BackendSlot<B> {
    /// A slot holding `backend` already.
    pub fn with(backend: std::rc::Rc<B>) -> Self {
        BackendSlot(std::cell::RefCell::new(Some(backend)))
    }

    /// Puts the backend in.
    pub fn attach(&self, backend: std::rc::Rc<B>) {
        *self.0.borrow_mut() = Some(backend);
    }

    /// The backend, once attached.
    pub fn get(&self) -> Option<std::rc::Rc<B>> {
        self.0.borrow().clone()
    }
}

/// What the admin HTTP server needs from the node to carry out API
/// requests. Lives on one executor (not `Send`); futures are local.
pub trait AdminBackend: 'static {
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
    /// Stores a revocation durably and puts it in force on every shard;
    /// resolves with the number of revocations held.
    fn revoke(&self, r: Revocation) -> Pin<Box<dyn Future<Output = Result<usize, RevokeError>>>>;
    /// Closes the sessions of `user` (only `device`'s, if given) with
    /// DISCONNECT `Kicked` on the user's owner shard (in a cluster, on its
    /// node, asked over NATS); resolves with how many were closed.
    fn disconnect(
        &self,
        user: UserId,
        device: Option<DeviceId>,
    ) -> Pin<Box<dyn Future<Output = Result<usize, OwnerError>>>>;
    /// The online devices of each of `users`, in the order asked, from
    /// each user's owner shard (in a cluster, on its node).
    fn presence(&self, users: Vec<UserId>) -> Pin<Box<dyn Future<Output = UserPresences>>>;
    /// Reads `user`'s conversation summaries or one conversation's
    /// messages on the user's owner shard (in a cluster, on its node).
    fn conversations(
        &self,
        user: UserId,
        read: ConversationRead,
    ) -> Pin<Box<dyn Future<Output = ConversationAnswer>>>;
}

/// Users with their online devices (or why the owner could not say), as
/// [`AdminBackend::presence`] answers.
pub type UserPresences = Vec<(
    UserId,
    Result<Vec<surepush_proto::OnlineDevice>, OwnerError>,
)>;

/// Why a user's owner node did not carry out a read or action about the
/// user (a cluster only; docs/CLUSTER.md "Admin reads on any node").
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    /// The node asked does not own the user either: two nodes disagree
    /// on the placement while a partition moves (HTTP 421 `wrong_node`;
    /// retry).
    #[error("the user is placed on another node")]
    OtherNode,
    /// The owner node is down, not answering, or the partition has no
    /// owner yet (HTTP 503 `owner_unavailable`; retry).
    #[error("the user's node is not reachable")]
    Unavailable,
}

/// A read of one user's conversations (docs/PROTOCOL.md "Conversations"),
/// as the CONVLIST and CONVFETCH frames ask it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConversationRead {
    /// A page of summaries, unread counted from `from`'s cursor
    /// (`request_id` unused).
    Summaries {
        /// Whose cursor.
        from: surepush_core::UnreadFrom,
        /// Which page.
        list: surepush_proto::ConvList,
    },
    /// A page of one conversation's messages (`request_id` unused).
    Messages(surepush_proto::ConvFetch),
    /// A page of the user's whole inbox, as a conversation page over every
    /// sequence (`request_id` and `peer` unused).
    Inbox(surepush_proto::ConvFetch),
}

/// The answer to a [`ConversationRead`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConversationPage {
    /// Summaries, newest first.
    Summaries(surepush_proto::ConvPage),
    /// Messages, ascending by sequence.
    Messages(surepush_proto::ConvMsgs),
}

/// What [`AdminBackend::conversations`] resolves with.
pub type ConversationAnswer = Result<ConversationPage, ConversationError>;

/// Why a conversation read was not answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    /// The page size is outside 1..=max_sync_limit (HTTP 400).
    #[error(transparent)]
    Limit(#[from] surepush_core::BadConversationLimit),
    /// The owner node refused the page size (HTTP 400; the message is
    /// the owner's).
    #[error("{0}")]
    Invalid(String),
    /// The owner shard could not read its log, or stopped (HTTP 503).
    #[error("the inbox could not be read")]
    Unavailable,
    /// The owner node could not be asked (see [`OwnerError`]).
    #[error(transparent)]
    Owner(#[from] OwnerError),
}
