//! [`ClusterLink`]: one shard's lane to the other nodes.
//!
//! Sending: the core addresses a message to a partition on another node
//! (`PeerTarget::Partition`); the link puts it in an envelope (kind
//! `CORE_PEER_MSG`, routed by the partition) on this shard's lane with
//! `Lane::try_send`, so the shard never waits. Messages the peer queue
//! cannot take yet, or whose partition has no owner yet, wait in order in
//! the link's backlog, which a task of the shard retries.
//!
//! Receiving: a request from another node goes to this shard (the lane is
//! the partition's shard). Its return address is replaced by a ticket
//! (`ShardId::ticket`), and every answer the core sends to that ticket is
//! collected; when the message's answers are all there (`PeerMsg::answers`,
//! e.g. one `Stored` after the copy is durable) they go back as the lane's
//! reply. So a request is acknowledged only once what it asked for is
//! durable, and the sender's link resends it to a receiver that died
//! first. Replies to this shard's own requests carry the answers, which
//! the core takes as if from the mesh.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use surepush_cluster::messaging::batch::Envelope;
use surepush_cluster::messaging::{FailReason, Lane, LaneEvent, Replier, ReplyTo, TrySendError};
use surepush_cluster::wire::kinds::CORE_PEER_MSG;
use surepush_cluster::PartitionId;
use surepush_core::router::MAX_TICKETS;
use surepush_core::{
    decode_answers, encode_answers, ClusterRoutes, PeerMsg, PeerTarget, Shard, ShardId,
    PEER_WIRE_VERSION,
};

use super::NodeCluster;
use crate::log_every::LogEvery;

/// Pause before retrying a backlog that a full peer queue or a missing
/// owner holds up. Short: the queue drains as fast as NATS takes batches.
const BACKLOG_RETRY: Duration = Duration::from_millis(1);

/// At most one log line per this interval for a repeating condition.
const LOG_REPEATS_EVERY: Duration = Duration::from_secs(1);

/// A message waiting for room in its peer's queue or for an owner.
struct Outgoing {
    partition: PartitionId,
    envelope: Envelope,
}

/// A request from another node being answered.
struct Pending {
    reply: ReplyTo,
    expected: usize,
    answers: Vec<PeerMsg>,
}

/// One shard's lane and its bookkeeping (see the module doc).
pub(crate) struct ClusterLink {
    me: ShardId,
    cluster: Arc<NodeCluster>,
    lane: RefCell<Lane>,
    routes: RefCell<Arc<ClusterRoutes>>,
    routes_seen: Cell<u64>,
    backlog: RefCell<VecDeque<Outgoing>>,
    backlog_wake: LocalSender<()>,
    replies: LocalSender<(ReplyTo, Bytes)>,
    tickets: RefCell<Vec<Option<Pending>>>,
    free_tickets: RefCell<Vec<u16>>,
    ticket_freed: LocalSender<()>,
    next_token: Cell<u64>,
    refused: LogEvery,
}

/// The tasks a link needs, for the shard to spawn once it has a runtime.
pub(crate) struct LinkTasks {
    /// Requests, replies and failures arriving on the lane.
    pub(crate) events: flume::Receiver<LaneEvent>,
    /// Wakes the backlog retry.
    pub(crate) backlog: LocalReceiver<()>,
    /// Replies to send.
    pub(crate) replies: (Replier, LocalReceiver<(ReplyTo, Bytes)>),
    /// Wakes the receiver when a ticket is free again.
    pub(crate) ticket_freed: LocalReceiver<()>,
}

impl ClusterLink {
    /// The link of shard `me`, with its lane taken from `cluster`.
    pub(crate) fn new(
        me: ShardId,
        cluster: Arc<NodeCluster>,
    ) -> Option<(Rc<ClusterLink>, LinkTasks)> {
        let lane = cluster.take_lane(me.0)?;
        let (_, routes) = cluster.routes_after(0)?;
        let (backlog_wake, backlog) = local_channel::new_bounded(1);
        let (replies, reply_rx) = local_channel::new_unbounded();
        let (ticket_freed, freed_rx) = local_channel::new_bounded(1);
        let tasks = LinkTasks {
            events: lane.events().clone(),
            backlog,
            replies: (lane.replier(), reply_rx),
            ticket_freed: freed_rx,
        };
        let link = Rc::new(ClusterLink {
            me,
            cluster,
            lane: RefCell::new(lane),
            routes: RefCell::new(routes),
            // The core has none yet: the first refresh hands them over.
            routes_seen: Cell::new(0),
            backlog: RefCell::new(VecDeque::new()),
            backlog_wake,
            replies,
            tickets: RefCell::new(Vec::new()),
            free_tickets: RefCell::new(Vec::new()),
            ticket_freed,
            next_token: Cell::new(0),
            refused: LogEvery::new(LOG_REPEATS_EVERY),
        });
        Some((link, tasks))
    }

    /// Where a client of `node` goes (see [`NodeCluster::redirect`]).
    pub(crate) fn redirect(&self, node: &surepush_cluster::NodeId, mqtt: bool) -> super::Redirect {
        self.cluster.redirect(node, mqtt)
    }

    /// Hands `core` the newest placement if it changed (one atomic load).
    pub(crate) fn refresh_routes(&self, core: &mut Shard) {
        if let Some((generation, routes)) = self.cluster.routes_after(self.routes_seen.get()) {
            self.routes_seen.set(generation);
            *self.routes.borrow_mut() = routes.clone();
            core.set_cluster_routes(routes);
        }
    }

    /// The core sent `msg` to `target` (not a local shard). Returns what
    /// the core must take back at once: the refusal of a message that
    /// cannot cross nodes yet ([`PeerMsg::refusal`]).
    pub(crate) fn send(&self, target: PeerTarget, msg: PeerMsg) -> Option<PeerMsg> {
        match target {
            PeerTarget::Local(_) => debug_assert!(false, "local messages take the mesh"),
            PeerTarget::Ticket(t) => self.answer(t, msg),
            PeerTarget::Partition(p) => return self.send_to_partition(p, msg),
        }
        None
    }

    fn send_to_partition(&self, partition: PartitionId, mut msg: PeerMsg) -> Option<PeerMsg> {
        if msg.answers().is_none() {
            if let Some(count) = self.refused.tick() {
                tracing::error!(
                    count,
                    ?msg,
                    "messages that cannot cross nodes yet (rooms, keyed state) refused"
                );
            }
            return msg.refusal();
        }
        if let Some(origin) = msg.return_address_mut() {
            // Answers come back on this lane, to this shard.
            debug_assert_eq!(
                *origin, self.me,
                "a request to another node names its sender"
            );
            *origin = self.me;
        }
        let mut body = BytesMut::new();
        msg.encode(&mut body);
        let envelope = Envelope {
            kind: CORE_PEER_MSG,
            version: PEER_WIRE_VERSION,
            route: partition.0,
            body: body.freeze(),
        };
        self.backlog.borrow_mut().push_back(Outgoing {
            partition,
            envelope,
        });
        if !self.flush() {
            let _ = self.backlog_wake.try_send(());
        }
        None
    }

    /// Sends what the backlog holds, in order, until a peer queue is full
    /// or a partition has no owner; true if the backlog is empty.
    fn flush(&self) -> bool {
        let mut backlog = self.backlog.borrow_mut();
        let mut lane = self.lane.borrow_mut();
        let routes = self.routes.borrow();
        while let Some(next) = backlog.pop_front() {
            let Some(owner) = routes.owner(next.partition) else {
                backlog.push_front(next);
                return false;
            };
            let token = self.next_token.get();
            self.next_token.set(token + 1);
            match lane.try_send(owner, next.envelope, token) {
                Ok(()) => {}
                Err(TrySendError::Full(envelope)) => {
                    backlog.push_front(Outgoing {
                        partition: next.partition,
                        envelope,
                    });
                    return false;
                }
                Err(TrySendError::Stopped(_)) => {
                    tracing::error!(
                        dropped = backlog.len() + 1,
                        "the cluster thread stopped; messages to other nodes dropped"
                    );
                    backlog.clear();
                    return true;
                }
            }
        }
        true
    }

    /// Retries the backlog whenever it is held up (a task of the shard).
    pub(crate) async fn drain_backlog(self: Rc<Self>, wake: LocalReceiver<()>) {
        while wake.recv().await.is_some() {
            while !self.flush() {
                glommio::timer::sleep(BACKLOG_RETRY).await;
                let routes = self.cluster.routes_after(self.routes_seen.get());
                if let Some((_, routes)) = routes {
                    // The core picks it up on its next turn; owners for
                    // the backlog are needed now.
                    *self.routes.borrow_mut() = routes;
                }
            }
        }
    }

    /// What the core must handle for one lane event (requests with their
    /// return address replaced, or the answers a reply carries).
    pub(crate) fn receive(&self, event: LaneEvent) -> Vec<PeerMsg> {
        match event {
            LaneEvent::Request {
                from,
                envelope,
                reply,
            } => self.request(&from, envelope, reply),
            LaneEvent::Reply { from, body, .. } => match decode_answers(&body) {
                Ok(answers) => answers,
                Err(error) => {
                    tracing::error!(%from, %error, "undecodable answers from another node");
                    Vec::new()
                }
            },
            LaneEvent::Failed { to, reason, token } => {
                match reason {
                    FailReason::Stale => tracing::error!(
                        %to,
                        "a newer process runs with this node's id: this one is stale"
                    ),
                    FailReason::Forgotten => tracing::warn!(
                        %to,
                        token,
                        "a request's answers were lost by its receiver; the client's retry resends it"
                    ),
                }
                Vec::new()
            }
            LaneEvent::Room { .. } | LaneEvent::Pong { .. } => Vec::new(),
        }
    }

    fn request(
        &self,
        from: &surepush_cluster::NodeId,
        envelope: Envelope,
        reply: ReplyTo,
    ) -> Vec<PeerMsg> {
        let decoded = match envelope.kind {
            CORE_PEER_MSG => PeerMsg::decode(&envelope.body).map_err(|e| e.to_string()),
            kind => Err(format!("unknown message kind {}", kind.0)),
        };
        let mut msg = match decoded {
            Ok(msg) => msg,
            Err(error) => {
                tracing::error!(%from, %error, "a message from another node is not ours; answered empty");
                self.reply(reply, Vec::new());
                return Vec::new();
            }
        };
        let Some(expected) = msg.answers() else {
            tracing::error!(%from, ?msg, "a message that cannot cross nodes yet; answered empty");
            self.reply(reply, Vec::new());
            return Vec::new();
        };
        if expected == 0 {
            self.reply(reply, Vec::new());
            return vec![msg];
        }
        let ticket = self.take_ticket(Pending {
            reply,
            expected,
            answers: Vec::with_capacity(expected),
        });
        if let Some(origin) = msg.return_address_mut() {
            *origin = ShardId::ticket(ticket);
        }
        vec![msg]
    }

    fn take_ticket(&self, pending: Pending) -> u16 {
        let mut tickets = self.tickets.borrow_mut();
        match self.free_tickets.borrow_mut().pop() {
            Some(t) => {
                tickets[usize::from(t)] = Some(pending);
                t
            }
            None => {
                tickets.push(Some(pending));
                (tickets.len() - 1) as u16
            }
        }
    }

    /// Whether every ticket is in use (the receiver waits for one).
    pub(crate) fn tickets_exhausted(&self) -> bool {
        self.free_tickets.borrow().is_empty()
            && self.tickets.borrow().len() >= usize::from(MAX_TICKETS)
    }

    fn answer(&self, ticket: u16, msg: PeerMsg) {
        let mut tickets = self.tickets.borrow_mut();
        let Some(Some(pending)) = tickets.get_mut(usize::from(ticket)) else {
            tracing::error!(ticket, ?msg, "an answer for no request from another node");
            return;
        };
        pending.answers.push(msg);
        if pending.answers.len() < pending.expected {
            return;
        }
        let done = tickets[usize::from(ticket)].take().expect("checked above");
        drop(tickets);
        self.free_tickets.borrow_mut().push(ticket);
        let _ = self.ticket_freed.try_send(());
        self.reply(done.reply, done.answers);
    }

    fn reply(&self, reply: ReplyTo, answers: Vec<PeerMsg>) {
        let _ = self.replies.try_send((reply, encode_answers(&answers)));
    }
}

/// Sends the replies a shard queued (a task of the shard: `Replier::reply`
/// may wait for the cluster thread's command queue).
pub(crate) async fn send_replies(replier: Replier, queued: LocalReceiver<(ReplyTo, Bytes)>) {
    while let Some((reply, body)) = queued.recv().await {
        if replier.reply(reply, body).await.is_err() {
            return; // the cluster thread stopped: the node is going down
        }
    }
}
