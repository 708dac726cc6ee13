//! The messaging service on the cluster thread: one task per peer link,
//! one for arriving requests, one for arriving replies, one for lane
//! commands, one publisher, one per subscribed room (or watched user:
//! a lane's "room" subscriptions and publishes take the subject of the id,
//! `subjects::of_id`, so a user's presence travels like a room's pushes).
//!
//! Waiting, by design:
//! - a peer task waits on its NATS publishes and on lanes with full event
//!   channels; other peers are not held up by it;
//! - the request task waits on lanes with full event channels (so a slow
//!   shard slows its senders);
//! - nothing waits on a publish that NATS cannot take: replies and room
//!   pushes go through a bounded publisher queue and are dropped when it
//!   is full. Both are safe to lose: the sender resends the batch and gets
//!   the cached reply; a room gap is repaired from the room's home node.
//!
//! Sizes: every NATS message stays within the server's `max_payload`
//! (from its INFO, which the client keeps): request batches are cut below
//! it, and a reply above it goes as chunks (`chunks.rs`).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_lite::StreamExt;

use super::batch::{BatchReply, BatchRequest, RoomPublish};
use super::chunks::{reply_chunks, ReplyAssembly, ReplyChunk};
use super::inbound::{InboundLinks, Verdict};
use super::lane::{Command, FailReason, LaneEvent, LaneWiring, NewLink, Outbound};
use super::outbound::{LinkFailure, OutboundLink, ReplyTarget};
use super::subjects;
use super::MessagingConfig;
use crate::node_id::NodeId;
use crate::registry::record::NodeRecord;
use crate::wire::{self, Wire};

/// Counters of the messaging service, readable from any thread.
#[derive(Debug, Default)]
pub struct MessagingStats {
    /// Request batches sent for the first time.
    pub batches_sent: AtomicU64,
    /// Messages in them.
    pub messages_sent: AtomicU64,
    /// Batches sent again (timeouts, gaps).
    pub batches_resent: AtomicU64,
    /// Bytes of request batches published (first sends and resends).
    pub request_bytes_sent: AtomicU64,
    /// Reply batches received from peers.
    pub replies_received: AtomicU64,
    /// Bytes of them.
    pub reply_bytes_received: AtomicU64,
    /// Request batches received and handed on.
    pub batches_received: AtomicU64,
    /// NATS messages that did not decode (skipped).
    pub decode_errors: AtomicU64,
    /// Replies and room pushes dropped because NATS could not take them.
    pub publishes_dropped: AtomicU64,
    /// Room pushes handed to lanes.
    pub room_pushes_received: AtomicU64,
    /// Messages received on room subjects from other nodes (one per room
    /// push per node, whatever its subscriber count).
    pub room_messages_received: AtomicU64,
    /// Room pushes this node published on room subjects (once each).
    pub room_messages_published: AtomicU64,
    /// Bytes of those published pushes.
    pub room_bytes_published: AtomicU64,
    /// Replies sent as chunks because they outgrew NATS `max_payload`.
    pub replies_chunked: AtomicU64,
    /// Presence changes this node published on user subjects (once per
    /// change, whatever the number of watching nodes).
    pub presence_messages_published: AtomicU64,
    /// Presence changes received on user subjects from other nodes (one
    /// per change per node, whatever its watcher count).
    pub presence_messages_received: AtomicU64,
}

/// Bytes a request batch adds around its envelopes (frame header, the
/// longest node id, incarnation, seq, first unacked, item count).
const BATCH_OVERHEAD: usize = wire::FRAME_HEADER + 2 + NodeId::MAX_LEN + 3 * 8 + 4;

/// Replies sent to a peer's link task before they are dropped (the peer
/// resends and gets the cached copy).
const REPLY_QUEUE: usize = 256;

/// The service's shared state (one per node, on the cluster thread).
pub(crate) struct Service {
    client: async_nats::Client,
    me: NodeId,
    incarnation: u64,
    config: MessagingConfig,
    lanes: Vec<flume::Sender<LaneEvent>>,
    inbound: RefCell<InboundLinks>,
    /// Replies to each link task.
    links: RefCell<HashMap<NodeId, flume::Sender<BatchReply>>>,
    rooms: RefCell<HashMap<u64, Room>>,
    publish: flume::Sender<(String, Bytes)>,
    /// Chunked replies being put back together.
    assembly: RefCell<ReplyAssembly>,
    stats: Arc<MessagingStats>,
}

struct Room {
    lanes: BTreeSet<u16>,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    /// Starts every task of the service on the current `LocalSet`.
    pub(crate) async fn start(
        client: async_nats::Client,
        me: &NodeRecord,
        config: MessagingConfig,
        wiring: LaneWiring,
        stats: Arc<MessagingStats>,
    ) -> Result<(), crate::error::ClusterError> {
        let (me, incarnation) = (me.id.clone(), me.incarnation);
        let LaneWiring {
            events: lanes,
            commands,
            new_links,
        } = wiring;
        let requests = client
            .subscribe(subjects::requests(&me))
            .await
            .map_err(|e| crate::error::ClusterError::nats("subscribe requests", e))?;
        let replies = client
            .subscribe(subjects::replies(&me))
            .await
            .map_err(|e| crate::error::ClusterError::nats("subscribe replies", e))?;
        let (publish, publish_rx) = flume::bounded(config.publish_queue);
        let service = Rc::new(Service {
            client: client.clone(),
            inbound: RefCell::new(InboundLinks::new(me.clone())),
            me,
            incarnation,
            config,
            lanes,
            links: RefCell::default(),
            rooms: RefCell::default(),
            publish,
            assembly: RefCell::new(ReplyAssembly::default()),
            stats,
        });
        tokio::task::spawn_local(run_publisher(client, publish_rx));
        tokio::task::spawn_local(service.clone().run_requests(requests));
        tokio::task::spawn_local(service.clone().run_replies(replies));
        tokio::task::spawn_local(service.clone().run_commands(commands));
        tokio::task::spawn_local(service.run_new_links(new_links));
        Ok(())
    }

    fn lane(&self, index: u16) -> Option<&flume::Sender<LaneEvent>> {
        let lane = self.lanes.get(usize::from(index));
        if lane.is_none() {
            tracing::error!(index, "no such lane; event dropped");
        }
        lane
    }

    /// Queues a publish that may be lost (see the module doc).
    fn publish_lossy(&self, subject: String, payload: Bytes) {
        if self.publish.try_send((subject, payload)).is_err() {
            self.stats.publishes_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a reply to `to`, in chunks if it outgrew `max_payload` (lossy
    /// as every reply: a lost chunk is repaired by the sender's resend).
    fn publish_reply(&self, to: &NodeId, reply: Bytes) {
        let subject = subjects::replies(to);
        let max_payload = self.client.max_payload();
        if reply.len() <= max_payload {
            return self.publish_lossy(subject, reply);
        }
        self.stats.replies_chunked.fetch_add(1, Ordering::Relaxed);
        for chunk in reply_chunks(&self.me, reply, max_payload) {
            self.publish_lossy(subject.clone(), chunk);
        }
    }

    /// A reply batch, or the whole reply once `payload`, a chunk of one,
    /// completes it; `None` while chunks are missing.
    fn reply_of(&self, payload: &Bytes) -> Result<Option<BatchReply>, wire::WireError> {
        let frame = wire::Frames::new(payload)
            .next()
            .ok_or(wire::WireError::Truncated {
                needed: wire::FRAME_HEADER,
            })??;
        if frame.kind != ReplyChunk::KIND {
            return wire::decode::<BatchReply>(payload).map(Some);
        }
        let chunk = wire::decode::<ReplyChunk>(payload)?;
        match self.assembly.borrow_mut().push(chunk) {
            Some(whole) => wire::decode::<BatchReply>(&whole).map(Some),
            None => Ok(None),
        }
    }

    async fn run_requests(self: Rc<Self>, mut sub: async_nats::Subscriber) {
        while let Some(msg) = sub.next().await {
            let req = match wire::decode::<BatchRequest>(&msg.payload) {
                Ok(r) => r,
                Err(error) => {
                    self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "request batch does not decode; skipped");
                    continue;
                }
            };
            let from = req.from.clone();
            let verdict = self.inbound.borrow_mut().handle(req);
            match verdict {
                Verdict::Deliver { key, items } => {
                    self.stats.batches_received.fetch_add(1, Ordering::Relaxed);
                    for (index, envelope) in items.into_iter().enumerate() {
                        let lane = (self.config.route_to_lane)(envelope.route);
                        let reply = super::lane::ReplyTo {
                            key: key.clone(),
                            index: index as u32,
                        };
                        let event = LaneEvent::Request {
                            from: key.from.clone(),
                            envelope,
                            reply,
                        };
                        if let Some(lane) = self.lane(lane) {
                            // Err only if the lane was dropped (shutdown).
                            let _ = lane.send_async(event).await;
                        }
                    }
                }
                Verdict::Answer(bytes) => self.publish_reply(&from, bytes),
                Verdict::InProgress => {}
            }
        }
    }

    async fn run_replies(self: Rc<Self>, mut sub: async_nats::Subscriber) {
        while let Some(msg) = sub.next().await {
            self.stats
                .reply_bytes_received
                .fetch_add(msg.payload.len() as u64, Ordering::Relaxed);
            let reply = match self.reply_of(&msg.payload) {
                Ok(Some(r)) => r,
                Ok(None) => continue, // a chunk of a reply not yet whole
                Err(error) => {
                    self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "reply batch does not decode; skipped");
                    continue;
                }
            };
            self.stats.replies_received.fetch_add(1, Ordering::Relaxed);
            let link = self.links.borrow().get(&reply.from).cloned();
            if let Some(link) = link {
                // Full: dropped; the link resends and gets it again.
                let _ = link.try_send(reply);
            }
        }
    }

    async fn run_new_links(self: Rc<Self>, new_links: flume::Receiver<NewLink>) {
        while let Ok(NewLink { peer, queue }) = new_links.recv_async().await {
            let (tx, replies) = flume::bounded(REPLY_QUEUE);
            self.links.borrow_mut().insert(peer.clone(), tx);
            tokio::task::spawn_local(self.clone().run_link(peer, queue, replies));
        }
    }

    async fn run_commands(self: Rc<Self>, commands: flume::Receiver<Command>) {
        while let Ok(command) = commands.recv_async().await {
            match command {
                Command::Reply { reply, body } => {
                    let done =
                        self.inbound
                            .borrow_mut()
                            .complete(&reply.key, reply.index as usize, body);
                    if let Some(bytes) = done {
                        self.publish_reply(&reply.key.from, bytes);
                    }
                }
                Command::Subscribe { room, lane } => self.subscribe(room, lane).await,
                Command::Unsubscribe { room, lane } => self.unsubscribe(room, lane),
                Command::Publish { room, payload } => {
                    let msg = RoomPublish {
                        origin: self.me.clone(),
                        room,
                        payload,
                    };
                    let bytes = wire::to_bytes(&msg);
                    if surepush_proto::is_room(room) {
                        self.stats
                            .room_messages_published
                            .fetch_add(1, Ordering::Relaxed);
                        self.stats
                            .room_bytes_published
                            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    } else {
                        self.stats
                            .presence_messages_published
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    self.publish_lossy(subjects::of_id(room), bytes);
                }
                Command::Ping { lane, token } => {
                    if let Some(lane) = self.lane(lane) {
                        let _ = lane.send_async(LaneEvent::Pong { token }).await;
                    }
                }
            }
        }
    }

    async fn subscribe(self: &Rc<Self>, room: u64, lane: u16) {
        if let Some(r) = self.rooms.borrow_mut().get_mut(&room) {
            r.lanes.insert(lane);
            return;
        }
        let sub = match self.client.subscribe(subjects::of_id(room)).await {
            Ok(s) => s,
            Err(error) => {
                // Only when the client is closed (the thread is stopping).
                tracing::error!(room, %error, "room subscription failed");
                return;
            }
        };
        let task = tokio::task::spawn_local(self.clone().run_room(room, sub));
        self.rooms.borrow_mut().insert(
            room,
            Room {
                lanes: BTreeSet::from([lane]),
                task,
            },
        );
    }

    fn unsubscribe(&self, room: u64, lane: u16) {
        let mut rooms = self.rooms.borrow_mut();
        if let Some(r) = rooms.get_mut(&room) {
            r.lanes.remove(&lane);
            if r.lanes.is_empty() {
                // Dropping the task drops its subscriber: NATS unsubscribes.
                r.task.abort();
                rooms.remove(&room);
            }
        }
    }

    async fn run_room(self: Rc<Self>, room: u64, mut sub: async_nats::Subscriber) {
        while let Some(msg) = sub.next().await {
            let push = match wire::decode::<RoomPublish>(&msg.payload) {
                Ok(p) if p.room == room => p,
                Ok(_) | Err(_) => {
                    self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            if push.origin == self.me {
                continue; // local subscribers are served by the home shard
            }
            if surepush_proto::is_room(room) {
                self.stats
                    .room_messages_received
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                self.stats
                    .presence_messages_received
                    .fetch_add(1, Ordering::Relaxed);
            }
            let lanes: Vec<u16> = match self.rooms.borrow().get(&room) {
                Some(r) => r.lanes.iter().copied().collect(),
                None => return,
            };
            for lane in lanes {
                if let Some(tx) = self.lane(lane) {
                    self.stats
                        .room_pushes_received
                        .fetch_add(1, Ordering::Relaxed);
                    let event = LaneEvent::Room {
                        room,
                        payload: push.payload.clone(),
                    };
                    let _ = tx.send_async(event).await;
                }
            }
        }
    }

    /// Drives the link to `peer` (module doc of `outbound.rs`).
    async fn run_link(
        self: Rc<Self>,
        peer: NodeId,
        queue: flume::Receiver<Outbound>,
        replies: flume::Receiver<BatchReply>,
    ) {
        let mut link =
            OutboundLink::new(self.me.clone(), self.incarnation, self.config.link.clone());
        let to = subjects::requests(&peer);
        let reply_to = subjects::replies(&self.me);
        let mut queue_open = true;
        loop {
            // Take what the lanes queued this turn, up to one batch.
            while queue_open && link.accepts() {
                match queue.try_recv() {
                    Ok(o) => link.push(o.envelope, o.target),
                    Err(flume::TryRecvError::Empty) => break,
                    Err(flume::TryRecvError::Disconnected) => queue_open = false,
                }
            }
            // The server's limit, from its INFO (one atomic load).
            link.cap_batch_bytes(self.client.max_payload().saturating_sub(BATCH_OVERHEAD));
            let before = link.stats();
            while let Some(payload) = link.poll_transmit(Instant::now()) {
                self.stats
                    .request_bytes_sent
                    .fetch_add(payload.len() as u64, Ordering::Relaxed);
                if let Err(error) = self
                    .client
                    .publish_with_reply(to.clone(), reply_to.clone(), payload)
                    .await
                {
                    // The client is closed; the retry timer resends.
                    tracing::warn!(%peer, %error, "request publish failed");
                }
            }
            self.count(before, link.stats());
            let deadline = link.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                item = queue.recv_async(), if queue_open && link.accepts() => match item {
                    Ok(o) => link.push(o.envelope, o.target),
                    Err(_) => queue_open = false,
                },
                reply = replies.recv_async() => {
                    let Ok(reply) = reply else { return };
                    match link.handle_reply(reply, Instant::now()) {
                        Ok(done) => {
                            for c in done {
                                self.deliver(c.target, LaneEvent::Reply {
                                    token: c.target.token,
                                    from: peer.clone(),
                                    body: c.body,
                                }).await;
                            }
                        }
                        Err(failure) => self.fail(&peer, failure).await,
                    }
                }
                _ = sleep => link.handle_timeout(Instant::now()),
            }
            if link.is_stale() {
                // This process is stale: fail whatever else arrives.
                while let Ok(o) = queue.recv_async().await {
                    let event = LaneEvent::Failed {
                        token: o.target.token,
                        to: peer.clone(),
                        reason: FailReason::Stale,
                    };
                    self.deliver(o.target, event).await;
                }
                return;
            }
        }
    }

    fn count(&self, before: super::outbound::LinkStats, after: super::outbound::LinkStats) {
        let s = &self.stats;
        s.batches_sent
            .fetch_add(after.batches - before.batches, Ordering::Relaxed);
        s.messages_sent
            .fetch_add(after.messages - before.messages, Ordering::Relaxed);
        s.batches_resent
            .fetch_add(after.resent - before.resent, Ordering::Relaxed);
    }

    async fn deliver(&self, target: ReplyTarget, event: LaneEvent) {
        if let Some(lane) = self.lane(target.lane) {
            let _ = lane.send_async(event).await;
        }
    }

    async fn fail(&self, peer: &NodeId, failure: LinkFailure) {
        let (targets, reason) = match failure {
            LinkFailure::Stale(t) => (t, FailReason::Stale),
            LinkFailure::Forgotten(t) => (t, FailReason::Forgotten),
        };
        tracing::error!(%peer, ?reason, messages = targets.len(), "messages to peer failed");
        for target in targets {
            let event = LaneEvent::Failed {
                token: target.token,
                to: peer.clone(),
                reason,
            };
            self.deliver(target, event).await;
        }
    }
}

async fn run_publisher(client: async_nats::Client, rx: flume::Receiver<(String, Bytes)>) {
    while let Ok((subject, payload)) = rx.recv_async().await {
        if let Err(error) = client.publish(subject, payload).await {
            tracing::warn!(%error, "publish failed");
        }
    }
}
