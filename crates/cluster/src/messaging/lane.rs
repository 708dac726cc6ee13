//! [`Lane`]: how one shard (or any thread) talks to other nodes.
//!
//! A node has a fixed number of lanes, normally one per shard. A lane
//! sends messages to peers and receives, on its own bounded event channel,
//! the requests routed to it, the replies to what it sent, room pushes it
//! subscribed to, and pongs. All its methods work from any async runtime
//! (glommio, tokio, or `futures_lite::future::block_on` on a plain thread).
//!
//! Backpressure, never drops:
//! - [`Lane::send`] waits while the peer's queue is full (a peer that is
//!   down or slow fills it); [`Lane::try_send`] hands the message back
//!   instead, so a shard can keep serving local work and retry later;
//! - the cluster thread waits while a lane's event channel is full, so a
//!   shard that does not drain its events slows its peers, not memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::batch::Envelope;
use super::inbound::BatchKey;
use super::outbound::ReplyTarget;
use crate::error::ClusterError;
use crate::node_id::NodeId;

/// Where the reply to one received message goes. Answer every request
/// exactly once: the sender's batch is acknowledged when all its messages
/// are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub(crate) key: BatchKey,
    pub(crate) index: u32,
}

/// Why a sent message will get no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// The peer has seen a newer process with this node's id: this one is
    /// stale and must stop.
    Stale,
    /// The peer lost the reply of a batch it handled (outcome unknown).
    Forgotten,
}

/// One message from another node, inside [`LaneEvent::Requests`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The message.
    pub envelope: Envelope,
    /// Where its answer goes ([`Lane::reply`]).
    pub reply: ReplyTo,
}

/// The reply to one message this lane sent, inside [`LaneEvent::Replies`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The token given to [`Lane::send`].
    pub token: u64,
    /// The receiver's reply body.
    pub body: Bytes,
}

/// What arrives on a lane.
///
/// Requests and replies come a batch at a time (issue #20): the messages
/// of one NATS batch for this lane are one event, so the lane's thread
/// wakes once per batch, not once per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneEvent {
    /// Messages from another node (those of one batch routed to this
    /// lane, in the sender's order); answer each with [`Lane::reply`] or
    /// [`Lane::reply_all`].
    Requests {
        /// The sending node.
        from: NodeId,
        /// The messages, in order (never empty).
        requests: Vec<Request>,
    },
    /// Replies to messages this lane sent (those of one batch, in the
    /// order they were sent).
    Replies {
        /// The node that answered.
        from: NodeId,
        /// The replies (never empty).
        replies: Vec<Reply>,
    },
    /// A message this lane sent will get no reply.
    Failed {
        /// The token given to [`Lane::send`].
        token: u64,
        /// The peer it was for.
        to: NodeId,
        /// Why.
        reason: FailReason,
    },
    /// A push published on a room this lane subscribed to, by another node.
    Room {
        /// The room.
        room: u64,
        /// The encoded push.
        payload: Bytes,
    },
    /// The answer to [`Lane::ping`].
    Pong {
        /// The ping's token.
        token: u64,
    },
}

/// A message on its way to a peer's link.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) envelope: Envelope,
    pub(crate) target: ReplyTarget,
}

/// A new peer queue: the cluster thread starts its link.
#[derive(Debug)]
pub(crate) struct NewLink {
    pub(crate) peer: NodeId,
    pub(crate) queue: flume::Receiver<Outbound>,
}

/// Work for the cluster thread's messaging service.
#[derive(Debug)]
pub(crate) enum Command {
    /// Answers, in the order given (one command for many: one wake-up of
    /// the cluster thread).
    Replies(Vec<(ReplyTo, Bytes)>),
    Subscribe {
        room: u64,
        lane: u16,
    },
    Unsubscribe {
        room: u64,
        lane: u16,
    },
    Publish {
        room: u64,
        payload: Bytes,
    },
    Ping {
        lane: u16,
        token: u64,
    },
}

/// Peer queues, shared by all lanes of a node: one queue (and one link)
/// per peer, so messages of every lane to that peer share batches. A new
/// queue is announced to the cluster thread under the same lock, on an
/// unbounded channel: it carries one item per peer ever addressed, not per
/// message, so it is bounded by the cluster's size and never makes a
/// sender wait or fail.
#[derive(Clone)]
struct PeerQueues {
    queues: Arc<Mutex<HashMap<NodeId, flume::Sender<Outbound>>>>,
    new_links: flume::Sender<NewLink>,
    capacity: usize,
}

impl PeerQueues {
    fn new(new_links: flume::Sender<NewLink>, capacity: usize) -> PeerQueues {
        PeerQueues {
            queues: Arc::default(),
            new_links,
            capacity,
        }
    }

    /// The queue to `peer`, created (and announced) on first use.
    fn get(&self, peer: &NodeId) -> Result<flume::Sender<Outbound>, ClusterError> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = queues.get(peer) {
            return Ok(q.clone());
        }
        let (tx, rx) = flume::bounded(self.capacity);
        self.new_links
            .send(NewLink {
                peer: peer.clone(),
                queue: rx,
            })
            .map_err(|_| ClusterError::Stopped)?;
        queues.insert(peer.clone(), tx.clone());
        Ok(tx)
    }
}

/// A message [`Lane::try_send`] could not queue, handed back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError {
    /// The peer's queue is full; retry later.
    Full(Envelope),
    /// The cluster thread has stopped.
    Stopped(Envelope),
}

/// The cluster thread's ends of a node's lanes.
pub(crate) struct LaneWiring {
    /// Events to each lane, by index.
    pub(crate) events: Vec<flume::Sender<LaneEvent>>,
    /// Commands from every lane.
    pub(crate) commands: flume::Receiver<Command>,
    /// New peer queues.
    pub(crate) new_links: flume::Receiver<NewLink>,
}

/// Creates `config.lanes` lanes and the cluster thread's ends of them.
pub(crate) fn lanes(config: &super::MessagingConfig) -> (Vec<Lane>, LaneWiring) {
    let (commands, command_rx) = flume::bounded::<Command>(config.command_queue);
    let (new_links, new_link_rx) = flume::unbounded();
    let queues = PeerQueues::new(new_links, config.peer_queue);
    let mut events = Vec::new();
    let mut lanes = Vec::new();
    for index in 0..config.lanes.max(1) {
        let (tx, rx) = flume::bounded::<LaneEvent>(config.lane_queue);
        events.push(tx);
        lanes.push(Lane::new(index, commands.clone(), rx, queues.clone()));
    }
    let wiring = LaneWiring {
        events,
        commands: command_rx,
        new_links: new_link_rx,
    };
    (lanes, wiring)
}

/// A lane's commands from a task that does not hold the [`Lane`] (a shard
/// keeps its lane for sending and answers, publishes and (un)subscribes
/// rooms from another task, in the order it queued them).
#[derive(Clone)]
pub struct Replier {
    lane: u16,
    commands: flume::Sender<Command>,
}

impl Replier {
    /// Answers a [`Request`], as [`Lane::reply`].
    pub async fn reply(&self, reply: ReplyTo, body: Bytes) -> Result<(), ClusterError> {
        self.command(Command::Replies(vec![(reply, body)])).await
    }

    /// Answers many requests in one command, as [`Lane::reply_all`].
    pub async fn reply_all(&self, replies: Vec<(ReplyTo, Bytes)>) -> Result<(), ClusterError> {
        if replies.is_empty() {
            return Ok(());
        }
        self.command(Command::Replies(replies)).await
    }

    /// As [`Lane::subscribe_room`].
    pub async fn subscribe_room(&self, room: u64) -> Result<(), ClusterError> {
        let lane = self.lane;
        self.command(Command::Subscribe { room, lane }).await
    }

    /// As [`Lane::unsubscribe_room`].
    pub async fn unsubscribe_room(&self, room: u64) -> Result<(), ClusterError> {
        let lane = self.lane;
        self.command(Command::Unsubscribe { room, lane }).await
    }

    /// As [`Lane::publish_room`].
    pub async fn publish_room(&self, room: u64, payload: Bytes) -> Result<(), ClusterError> {
        self.command(Command::Publish { room, payload }).await
    }

    async fn command(&self, c: Command) -> Result<(), ClusterError> {
        self.commands
            .send_async(c)
            .await
            .map_err(|_| ClusterError::Stopped)
    }
}

/// One lane of a node (see the module doc).
pub struct Lane {
    index: u16,
    commands: flume::Sender<Command>,
    events: flume::Receiver<LaneEvent>,
    queues: PeerQueues,
    /// This lane's copy of the queues it used, to skip the shared lock.
    cache: HashMap<NodeId, flume::Sender<Outbound>>,
}

impl Lane {
    fn new(
        index: u16,
        commands: flume::Sender<Command>,
        events: flume::Receiver<LaneEvent>,
        queues: PeerQueues,
    ) -> Lane {
        Lane {
            index,
            commands,
            events,
            queues,
            cache: HashMap::new(),
        }
    }

    /// This lane's number.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// The lane's events. Drain them: a full channel stalls the peers.
    pub fn events(&self) -> &flume::Receiver<LaneEvent> {
        &self.events
    }

    /// The queue to `peer` (from this lane's cache, else the shared map).
    fn queue(&mut self, peer: &NodeId) -> Result<&flume::Sender<Outbound>, ClusterError> {
        if !self.cache.contains_key(peer) {
            let q = self.queues.get(peer)?;
            self.cache.insert(peer.clone(), q);
        }
        Ok(&self.cache[peer])
    }

    /// Sends `envelope` to `to`; its reply comes back as a [`Reply`] with
    /// `token` in [`LaneEvent::Replies`]. Waits while the peer's queue is
    /// full. Messages to one peer arrive in the order they were sent.
    pub async fn send(
        &mut self,
        to: &NodeId,
        envelope: Envelope,
        token: u64,
    ) -> Result<(), ClusterError> {
        let target = ReplyTarget {
            lane: self.index,
            token,
        };
        self.queue(to)?
            .send_async(Outbound { envelope, target })
            .await
            .map_err(|_| ClusterError::Stopped)
    }

    /// Like [`Lane::send`], but hands the message back instead of waiting.
    pub fn try_send(
        &mut self,
        to: &NodeId,
        envelope: Envelope,
        token: u64,
    ) -> Result<(), TrySendError> {
        let target = ReplyTarget {
            lane: self.index,
            token,
        };
        let Ok(queue) = self.queue(to) else {
            return Err(TrySendError::Stopped(envelope));
        };
        queue
            .try_send(Outbound { envelope, target })
            .map_err(|e| match e {
                flume::TrySendError::Full(o) => TrySendError::Full(o.envelope),
                flume::TrySendError::Disconnected(o) => TrySendError::Stopped(o.envelope),
            })
    }

    /// A [`Replier`] for this lane's requests.
    pub fn replier(&self) -> Replier {
        Replier {
            lane: self.index,
            commands: self.commands.clone(),
        }
    }

    /// Answers a [`Request`].
    pub async fn reply(&self, reply: ReplyTo, body: Bytes) -> Result<(), ClusterError> {
        self.command(Command::Replies(vec![(reply, body)])).await
    }

    /// Answers many requests at once (in order), one command for the
    /// cluster thread instead of one per answer.
    pub async fn reply_all(&self, replies: Vec<(ReplyTo, Bytes)>) -> Result<(), ClusterError> {
        if replies.is_empty() {
            return Ok(());
        }
        self.command(Command::Replies(replies)).await
    }

    /// Receives `room`'s pushes from other nodes on this lane.
    pub async fn subscribe_room(&self, room: u64) -> Result<(), ClusterError> {
        let lane = self.index;
        self.command(Command::Subscribe { room, lane }).await
    }

    /// Stops receiving `room`'s pushes on this lane.
    pub async fn unsubscribe_room(&self, room: u64) -> Result<(), ClusterError> {
        let lane = self.index;
        self.command(Command::Unsubscribe { room, lane }).await
    }

    /// Publishes one room push, once, for every node subscribed to the
    /// room. Fire and forget: a push lost while NATS is down leaves a gap
    /// that subscribers' nodes repair from the room's home node.
    pub async fn publish_room(&self, room: u64, payload: Bytes) -> Result<(), ClusterError> {
        self.command(Command::Publish { room, payload }).await
    }

    /// A round trip through the cluster thread: [`LaneEvent::Pong`] with
    /// `token` follows on this lane.
    pub async fn ping(&self, token: u64) -> Result<(), ClusterError> {
        let lane = self.index;
        self.command(Command::Ping { lane, token }).await
    }

    async fn command(&self, c: Command) -> Result<(), ClusterError> {
        self.commands
            .send_async(c)
            .await
            .map_err(|_| ClusterError::Stopped)
    }
}
