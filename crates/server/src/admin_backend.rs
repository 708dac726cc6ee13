//! The node's side of the admin API: publishes enter the core on shard 0
//! (which routes them to the owner shard like any send); metrics come from
//! the shared registry, health and readiness from the shards' flags
//! ([`NodeStatusView`], available before any log is recovered).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::admin_api::{
    AdminBackend, Health, NodeStatus, PublishError, PublishRequest, PublishResult, RevokeError,
};
use super::auth::{NodeAuth, RevokeFailure};
use super::metrics::Metrics;
use super::runtime::{NodeShared, ShardRuntime};
use surepush_core::auth::{Revocation, RevokeError as Refused};
use surepush_core::{Claims, MembersOutcome, Publish, Publisher, StoreOutcome};
use surepush_log::SendKey;
use surepush_proto::{DeviceId, UserId};

/// The device id under which backend publishes are deduplicated.
pub const API_DEVICE: DeviceId = DeviceId(u64::MAX);

/// Publishes without an idempotency key get ids from this range, which
/// backends must not use for their own keys.
const AUTO_ID_BASE: u64 = 1 << 63;

/// Health, readiness and metrics of the node.
pub(crate) struct NodeStatusView {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shared: Arc<NodeShared>,
}

fn as_health(state: Result<(), String>) -> Health {
    state.map_or_else(Health::Degraded, |()| Health::Ok)
}

impl NodeStatus for NodeStatusView {
    fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    fn health(&self) -> Health {
        as_health(self.shared.health())
    }

    fn readiness(&self) -> Health {
        as_health(self.shared.readiness())
    }
}

/// Admin backend of a running node.
pub(crate) struct NodeAdmin {
    rt: Rc<ShardRuntime>,
    shared: Arc<NodeShared>,
    auth: Arc<NodeAuth>,
    next_auto_id: Cell<u64>,
}

impl NodeAdmin {
    pub(crate) fn new(rt: Rc<ShardRuntime>, shared: Arc<NodeShared>, auth: Arc<NodeAuth>) -> Self {
        // Start automatic ids at the current time in µs so ids stay unique
        // across restarts without persisting a counter.
        let start = ShardRuntime::wall_ms_now() * 1000;
        NodeAdmin {
            rt,
            shared,
            auth,
            next_auto_id: Cell::new(AUTO_ID_BASE | start),
        }
    }
}

impl AdminBackend for NodeAdmin {
    fn publish(
        &self,
        req: PublishRequest,
    ) -> Pin<Box<dyn Future<Output = Result<PublishResult, PublishError>>>> {
        let id = req.id.unwrap_or_else(|| {
            let id = self.next_auto_id.get();
            self.next_auto_id.set(id + 1);
            id
        });
        if req.id.is_some_and(|id| id >= AUTO_ID_BASE) {
            return Box::pin(async { Err(PublishError::Invalid("id must be below 2^63".into())) });
        }
        let key = SendKey {
            from: req.from,
            from_device: API_DEVICE,
            client_msg_id: id,
        };
        let rt = self.rt.clone();
        let shutting_down = self.shared.shutdown.load(Ordering::Relaxed);
        Box::pin(async move {
            if shutting_down {
                return Err(PublishError::ShuttingDown);
            }
            match rt
                .publish(Publish {
                    request: 0,
                    key,
                    to: req.to,
                    qos: req.qos,
                    attrs: Bytes::new(),
                    payload: req.payload,
                    by: Publisher::Backend,
                    confirm: false,
                })
                .await
            {
                StoreOutcome::Stored(seq) => Ok(PublishResult {
                    seq,
                    duplicate: false,
                }),
                StoreOutcome::Duplicate(seq) => Ok(PublishResult {
                    seq,
                    duplicate: true,
                }),
                StoreOutcome::Failed => Err(PublishError::StorageUnavailable),
                StoreOutcome::Rejected => Err(PublishError::NoSuchGroup),
                StoreOutcome::Conflict => Err(PublishError::Conflict),
            }
        })
    }

    fn update_members(
        &self,
        id: UserId,
        add: Vec<UserId>,
        remove: Vec<UserId>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<UserId>, PublishError>>>> {
        let rt = self.rt.clone();
        let shutting_down = self.shared.shutdown.load(Ordering::Relaxed);
        Box::pin(async move {
            if shutting_down {
                return Err(PublishError::ShuttingDown);
            }
            match rt.update_members(id, add, remove).await {
                MembersOutcome::Members(m) => Ok(m),
                MembersOutcome::Invalid(why) => Err(PublishError::Invalid(why.into())),
                MembersOutcome::Failed => Err(PublishError::StorageUnavailable),
            }
        })
    }

    fn mint_token(&self, user: UserId, device: DeviceId, ttl_s: u64) -> String {
        self.auth.verifier().mint(&Claims {
            user,
            device,
            expires_s: self.rt.wall_s() + ttl_s,
            acl: Default::default(),
        })
    }

    fn revoke(&self, r: Revocation) -> Pin<Box<dyn Future<Output = Result<usize, RevokeError>>>> {
        let auth = self.auth.clone();
        let now_s = self.rt.wall_s();
        Box::pin(async move {
            // The file write and its syncs run on glommio's blocking
            // thread, not on the admin shard's event loop.
            let stored = glommio::executor()
                .spawn_blocking(move || auth.revoke(r, now_s))
                .await;
            stored.map_err(|e| match e {
                RevokeFailure::Refused(Refused::Full) => RevokeError::Full,
                RevokeFailure::Refused(why) => RevokeError::Invalid(why.to_string()),
                RevokeFailure::Storage(e) => {
                    tracing::error!(error = %e, "cannot store a revocation");
                    RevokeError::StorageUnavailable(e.to_string())
                }
            })
        })
    }

    fn disconnect(
        &self,
        user: UserId,
        device: Option<DeviceId>,
    ) -> Pin<Box<dyn Future<Output = Result<usize, crate::admin_api::OwnerError>>>> {
        let rt = self.rt.clone();
        Box::pin(async move { rt.disconnect_user(user, device).await })
    }

    fn presence(
        &self,
        users: Vec<UserId>,
    ) -> Pin<Box<dyn Future<Output = crate::admin_api::UserPresences>>> {
        let rt = self.rt.clone();
        Box::pin(async move { rt.presence_of(users).await })
    }

    fn conversations(
        &self,
        user: UserId,
        read: crate::admin_api::ConversationRead,
    ) -> Pin<Box<dyn Future<Output = crate::admin_api::ConversationAnswer>>> {
        let rt = self.rt.clone();
        Box::pin(async move { rt.conversations_of(user, read).await })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    fn view(shards: u16) -> NodeStatusView {
        NodeStatusView {
            metrics: Metrics::new(shards),
            shared: NodeShared::new(shards),
        }
    }

    fn reason(h: Health) -> String {
        match h {
            Health::Ok => "ok".into(),
            Health::Degraded(why) => why,
        }
    }

    /// Issue 22 item 6: ready only once every shard serves; alive meanwhile.
    #[test]
    fn readiness_waits_for_every_shard_and_health_does_not() {
        let v = view(3);
        assert_eq!(v.health(), Health::Ok);
        assert!(reason(v.readiness()).contains("[0, 1, 2] of 3 not serving yet"));
        v.shared.serving[0].store(true, Ordering::Relaxed);
        v.shared.serving[2].store(true, Ordering::Relaxed);
        assert!(reason(v.readiness()).contains("[1] of 3 not serving yet"));
        v.shared.serving[1].store(true, Ordering::Relaxed);
        assert_eq!(v.readiness(), Health::Ok);
    }

    #[test]
    fn a_failed_log_or_a_shutdown_withdraws_both() {
        let v = view(2);
        v.shared
            .serving
            .iter()
            .for_each(|s| s.store(true, Ordering::Relaxed));
        v.shared.storage_failed[1].store(true, Ordering::Relaxed);
        assert_eq!(
            reason(v.health()),
            "log failure on shard(s) [1]: not storing"
        );
        assert_eq!(
            reason(v.readiness()),
            "log failure on shard(s) [1]: not storing"
        );
        v.shared.storage_failed[1].store(false, Ordering::Relaxed);
        v.shared.shutdown.store(true, Ordering::Relaxed);
        assert_eq!(reason(v.readiness()), "shutting down");
        assert_eq!(reason(v.health()), "shutting down");
    }
}
