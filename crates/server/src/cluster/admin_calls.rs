//! The admin API's reads and actions about a user placed on another node
//! (docs/CLUSTER.md "Admin reads on any node"): asked of the owner node as
//! an `AdminCall` over NATS (surepush-cluster's `admin_calls`), and the
//! calls other nodes send here, answered by this node's shards.
//!
//! Rules:
//! - a call is answered only for users this node owns: a node that does
//!   not own the user answers `NotOwner` and never asks further, so two
//!   nodes that disagree on an owner (a move half seen) cannot bounce a
//!   call between them; the caller answers 421 `wrong_node`;
//! - an owner that is down (NATS: no responders) or silent for
//!   [`CALL_TIMEOUT`] is `OwnerError::Unavailable` (503
//!   `owner_unavailable`) at once, not a wait for its return;
//! - at most [`CONCURRENT_CALLS`] calls from other nodes are carried out
//!   at once here; the rest wait in the cluster thread's bounded queue.

use std::rc::Rc;
use std::time::Duration;

use surepush_cluster::admin_calls::{AdminAnswer, AdminCall, IncomingCall, Refusal, UserPresence};
use surepush_cluster::NodeId;
use surepush_core::UnreadFrom;
use surepush_proto::UserId;

use super::link::ClusterLink;
use crate::admin_api::{
    ConversationAnswer, ConversationError, ConversationPage, ConversationRead, OwnerError,
    UserPresences,
};
use crate::runtime::ShardRuntime;

/// Longest wait for an owner node's answer: an HTTP caller waits for it.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Calls from other nodes carried out at once on this node.
const CONCURRENT_CALLS: u64 = 64;

impl ClusterLink {
    /// Asks `node` (the owner of what `call` is about).
    pub(crate) async fn call(
        &self,
        node: NodeId,
        call: AdminCall,
    ) -> Result<AdminAnswer, OwnerError> {
        let calls = self.cluster.admin_calls.clone();
        calls.call(node, call, CALL_TIMEOUT).await.map_err(|error| {
            tracing::debug!(%error, "an admin call to another node failed");
            OwnerError::Unavailable
        })
    }

    /// The calls other nodes send here (once, for one shard to serve).
    pub(crate) fn take_incoming_calls(&self) -> Option<flume::Receiver<IncomingCall>> {
        self.cluster
            .incoming_calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// The call that asks `user`'s owner node for `read`.
pub(crate) fn conversation_call(user: UserId, read: ConversationRead) -> AdminCall {
    match read {
        ConversationRead::Summaries { from, list } => AdminCall::Summaries {
            user,
            device: match from {
                UnreadFrom::Device(d) => Some(d),
                UnreadFrom::AnyDevice => None,
            },
            list,
        },
        ConversationRead::Messages(fetch) => AdminCall::Messages { user, fetch },
        ConversationRead::Inbox(fetch) => AdminCall::Inbox { user, fetch },
    }
}

/// The owner node's answer to a [`conversation_call`].
pub(crate) fn conversation_answer(answer: Result<AdminAnswer, OwnerError>) -> ConversationAnswer {
    match answer? {
        AdminAnswer::Summaries(page) => Ok(ConversationPage::Summaries(page)),
        AdminAnswer::Messages(page) => Ok(ConversationPage::Messages(page)),
        AdminAnswer::Refused { why, message } => Err(refused(why, message)),
        other => {
            tracing::error!(?other, "an answer of another kind to a conversation read");
            Err(ConversationError::Unavailable)
        }
    }
}

fn refused(why: Refusal, message: String) -> ConversationError {
    match why {
        Refusal::NotOwner => OwnerError::OtherNode.into(),
        Refusal::Invalid => ConversationError::Invalid(message),
        Refusal::Unavailable => ConversationError::Unavailable,
    }
}

/// The owner node's answer to a presence call about `asked`, each user
/// in the order asked.
pub(crate) fn presence_answer(
    asked: &[UserId],
    answer: Result<AdminAnswer, OwnerError>,
) -> UserPresences {
    let unknown = |e: OwnerError| asked.iter().map(|u| (*u, Err(e))).collect();
    match answer {
        Ok(AdminAnswer::Presence(users)) if users.len() == asked.len() => users
            .into_iter()
            .zip(asked)
            .map(|(p, asked)| match (p.owned, p.user == *asked) {
                (true, true) => (p.user, Ok(p.devices)),
                (false, true) => (p.user, Err(OwnerError::OtherNode)),
                (_, false) => (*asked, Err(OwnerError::Unavailable)),
            })
            .collect(),
        Ok(other) => {
            tracing::error!(?other, "an answer of another kind to a presence call");
            unknown(OwnerError::Unavailable)
        }
        Err(e) => unknown(e),
    }
}

/// The owner node's answer to a disconnect call.
pub(crate) fn disconnect_answer(
    answer: Result<AdminAnswer, OwnerError>,
) -> Result<usize, OwnerError> {
    match answer? {
        AdminAnswer::Disconnected(n) => Ok(n as usize),
        AdminAnswer::Refused {
            why: Refusal::NotOwner,
            ..
        } => Err(OwnerError::OtherNode),
        other => {
            tracing::error!(?other, "an unexpected answer to a disconnect call");
            Err(OwnerError::Unavailable)
        }
    }
}

/// Answers the calls other nodes send here (a task of one shard; each
/// call is carried out by the owner shards of its users, this or others).
pub(crate) async fn serve_admin_calls(
    rt: Rc<ShardRuntime>,
    incoming: flume::Receiver<IncomingCall>,
) {
    let permits = Rc::new(glommio::sync::Semaphore::new(CONCURRENT_CALLS));
    while let Ok(IncomingCall { call, answer }) = incoming.recv_async().await {
        let Ok(permit) = permits.acquire_static_permit(1).await else {
            return;
        };
        let rt = rt.clone();
        glommio::spawn_local(async move {
            let outcome = answer_call(&rt, call).await;
            let _ = answer.send(outcome); // the cluster thread may be gone
            drop(permit);
        })
        .detach();
    }
}

/// Carries out one call for users of this node only (never forwarded).
async fn answer_call(rt: &Rc<ShardRuntime>, call: AdminCall) -> AdminAnswer {
    let read = match call {
        AdminCall::Presence { users } => {
            let found = rt.presence_on_node(users).await;
            let users = found
                .into_iter()
                .map(|(user, devices)| UserPresence {
                    user,
                    owned: devices.is_ok(),
                    devices: devices.unwrap_or_default(),
                })
                .collect();
            return AdminAnswer::Presence(users);
        }
        AdminCall::Disconnect { user, device } => {
            return match rt.disconnect_on_node(user, device).await {
                Ok(n) => AdminAnswer::Disconnected(n as u64),
                Err(e) => refusal(e.into()),
            };
        }
        AdminCall::Summaries { user, device, list } => {
            let from = device.map_or(UnreadFrom::AnyDevice, UnreadFrom::Device);
            (user, ConversationRead::Summaries { from, list })
        }
        AdminCall::Messages { user, fetch } => (user, ConversationRead::Messages(fetch)),
        AdminCall::Inbox { user, fetch } => (user, ConversationRead::Inbox(fetch)),
    };
    match rt.conversations_on_node(read.0, read.1).await {
        Ok(ConversationPage::Summaries(page)) => AdminAnswer::Summaries(page),
        Ok(ConversationPage::Messages(page)) => AdminAnswer::Messages(page),
        Err(e) => refusal(e),
    }
}

fn refusal(e: ConversationError) -> AdminAnswer {
    let why = match &e {
        ConversationError::Limit(_) | ConversationError::Invalid(_) => Refusal::Invalid,
        ConversationError::Unavailable => Refusal::Unavailable,
        ConversationError::Owner(OwnerError::OtherNode) => Refusal::NotOwner,
        ConversationError::Owner(OwnerError::Unavailable) => Refusal::Unavailable,
    };
    AdminAnswer::Refused {
        why,
        message: e.to_string(),
    }
}
