//! The NATS side of admin calls (module doc of [`super`]): tasks of the
//! cluster thread that send this node's calls as NATS requests and serve
//! the calls other nodes send here.
//!
//! Callers on glommio shards hold an [`AdminCalls`] (a bounded channel
//! into the cluster thread) and await the answer on a flume channel; the
//! node's owner takes [`IncomingCall`]s and answers each once.

use std::time::Duration;

use bytes::Bytes;

use super::{AdminAnswer, AdminCall};
use crate::messaging::subjects;
use crate::node_id::NodeId;
use crate::wire;

/// Calls waiting for the cluster thread; callers wait when it is full.
pub(crate) const CALL_QUEUE: usize = 256;

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Nobody serves the owner's subject: the node is down (or its NATS
    /// connection is).
    #[error("node {0} is not reachable (no responders)")]
    Unreachable(NodeId),
    /// The owner did not answer within the timeout.
    #[error("node {0} did not answer in time")]
    TimedOut(NodeId),
    /// The request could not be sent, or the answer did not decode.
    #[error("admin call to {node} failed: {detail}")]
    Failed {
        /// The node asked.
        node: NodeId,
        /// What went wrong.
        detail: String,
    },
    /// The cluster thread stopped (this node is going down).
    #[error("the cluster thread has stopped")]
    Stopped,
}

/// A call of this node, for the cluster thread to send.
pub struct OutgoingCall {
    to: NodeId,
    call: AdminCall,
    timeout: Duration,
    answer: flume::Sender<Result<AdminAnswer, CallError>>,
}

/// A call from another node, for this node's owner to answer once on
/// `answer` (dropping it unanswered lets the caller time out).
#[derive(Debug)]
pub struct IncomingCall {
    /// What is asked.
    pub call: AdminCall,
    /// Where the answer goes.
    pub answer: flume::Sender<AdminAnswer>,
}

/// Sends admin calls to other nodes (cheap to clone; `Send`).
#[derive(Clone)]
pub struct AdminCalls {
    queue: flume::Sender<OutgoingCall>,
}

impl AdminCalls {
    /// A handle and the queue [`send_calls`] drains.
    pub fn new() -> (AdminCalls, flume::Receiver<OutgoingCall>) {
        let (queue, rx) = flume::bounded(CALL_QUEUE);
        (AdminCalls { queue }, rx)
    }

    /// Asks node `to`, waiting at most `timeout` for its answer (from any
    /// async runtime).
    pub async fn call(
        &self,
        to: NodeId,
        call: AdminCall,
        timeout: Duration,
    ) -> Result<AdminAnswer, CallError> {
        let (answer, rx) = flume::bounded(1);
        let out = OutgoingCall {
            to,
            call,
            timeout,
            answer,
        };
        self.queue
            .send_async(out)
            .await
            .map_err(|_| CallError::Stopped)?;
        rx.recv_async().await.unwrap_or(Err(CallError::Stopped))
    }
}

/// Sends each queued call as a NATS request (a task of the cluster
/// thread; each call waits in a task of its own).
pub async fn send_calls(client: async_nats::Client, queue: flume::Receiver<OutgoingCall>) {
    while let Ok(out) = queue.recv_async().await {
        let client = client.clone();
        tokio::task::spawn_local(async move {
            let answer = request(&client, &out.to, &out.call, out.timeout).await;
            let _ = out.answer.send(answer); // the caller may have given up
        });
    }
}

async fn request(
    client: &async_nats::Client,
    to: &NodeId,
    call: &AdminCall,
    timeout: Duration,
) -> Result<AdminAnswer, CallError> {
    use async_nats::RequestErrorKind as Kind;
    let request = async_nats::Request::new()
        .payload(wire::to_bytes(call))
        .timeout(Some(timeout));
    let reply = client
        .send_request(subjects::admin(to), request)
        .await
        .map_err(|e| match e.kind() {
            Kind::NoResponders => CallError::Unreachable(to.clone()),
            Kind::TimedOut => CallError::TimedOut(to.clone()),
            _ => CallError::Failed {
                node: to.clone(),
                detail: e.to_string(),
            },
        })?;
    wire::decode::<AdminAnswer>(&reply.payload).map_err(|e| CallError::Failed {
        node: to.clone(),
        detail: e.to_string(),
    })
}

/// Hands each call on this node's admin subject to the node's owner and
/// publishes its answer as the reply, cut to NATS `max_payload` (a task
/// of the cluster thread).
pub async fn serve_calls(
    client: async_nats::Client,
    me: NodeId,
    incoming: flume::Sender<IncomingCall>,
) {
    use futures_lite::StreamExt;
    let mut sub = match client.subscribe(subjects::admin(&me)).await {
        Ok(s) => s,
        Err(error) => {
            tracing::error!(%error, "cannot take admin calls from other nodes");
            return;
        }
    };
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let call = match wire::decode::<AdminCall>(&msg.payload) {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "an admin call that does not decode; ignored");
                continue;
            }
        };
        let direction = match &call {
            AdminCall::Messages { fetch, .. } | AdminCall::Inbox { fetch, .. } => {
                Some(fetch.direction)
            }
            _ => None,
        };
        let (answer, answered) = flume::bounded(1);
        if incoming
            .send_async(IncomingCall { call, answer })
            .await
            .is_err()
        {
            return; // nobody answers: the node is going down
        }
        let client = client.clone();
        tokio::task::spawn_local(async move {
            let Ok(mut answer) = answered.recv_async().await else {
                return; // not answered: the caller times out
            };
            answer.fit(client.max_payload(), direction);
            let body: Bytes = wire::to_bytes(&answer);
            if let Err(error) = client.publish(reply, body).await {
                tracing::warn!(%error, "could not answer an admin call");
            }
        });
    }
}
