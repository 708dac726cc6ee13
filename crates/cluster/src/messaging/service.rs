//! The messaging service on the cluster thread: one task per peer link,
//! one for arriving requests, one for arriving replies, one for lane
//! commands, one publisher, one per subscribed room (or watched user:
//! a lane's "room" subscriptions and publishes take the subject of the id,
//! `subjects::of_id`, so a user's presence travels like a room's pushes),
//! and with `spin_before_park` a spinner (`spin.rs`).
//!
//! A batch reaches each lane it concerns as one event (its requests, or
//! its replies), so a shard wakes once per batch, not per message.
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
//!   A presence state has no such repair: one that does not fit is kept,
//!   the latest per user, and queued again as the queue drains (a watcher
//!   drops a state older than one it has, by its stamp).
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

use async_nats::Subject;
use bytes::Bytes;
use futures_lite::StreamExt;

use super::batch::{BatchReply, BatchRequest, Envelope, RoomPublish};
use super::chunks::{reply_chunks, ReplyAssembly, ReplyChunk};
use super::inbound::{BatchKey, InboundLinks, Verdict};
use super::lane::{
    Command, FailReason, LaneEvent, LaneWiring, NewLink, Outbound, Reply, ReplyTo, Request,
};
use super::outbound::{Completion, LinkFailure, OutboundLink, ReplyTarget};
use super::spin::Activity;
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
    /// Presence states the publish queue could not take at once, kept to
    /// be queued again (the latest per user).
    pub presence_states_delayed: AtomicU64,
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
    publish: flume::Sender<(Subject, Bytes)>,
    /// Presence states the publish queue could not take, the latest per
    /// user, for [`Service::run_presence_later`].
    presence_later: RefCell<HashMap<u64, Bytes>>,
    presence_wake: tokio::sync::Notify,
    /// Reply subjects of the peers answered so far (built once: a subject
    /// per reply was an allocation per batch).
    reply_subjects: RefCell<HashMap<NodeId, Subject>>,
    /// Keeps the thread from parking while traffic flows
    /// ([`MessagingConfig::spin_before_park`]).
    activity: Rc<Activity>,
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
        let activity = Rc::new(Activity::new(config.spin_before_park));
        if !config.spin_before_park.is_zero() {
            tokio::task::spawn_local(activity.clone().spin());
        }
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
            presence_later: RefCell::default(),
            presence_wake: tokio::sync::Notify::new(),
            reply_subjects: RefCell::default(),
            activity,
            assembly: RefCell::new(ReplyAssembly::default()),
            stats,
        });
        tokio::task::spawn_local(run_publisher(client, publish_rx));
        tokio::task::spawn_local(service.clone().run_requests(requests));
        tokio::task::spawn_local(service.clone().run_replies(replies));
        tokio::task::spawn_local(service.clone().run_commands(commands));
        tokio::task::spawn_local(service.clone().run_presence_later());
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
    fn publish_lossy(&self, subject: Subject, payload: Bytes) {
        if self.publish.try_send((subject, payload)).is_err() {
            self.stats.publishes_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a presence state of `user`; one the queue cannot take now is
    /// kept (replacing an older one kept) and queued again later.
    fn publish_presence(&self, user: u64, subject: Subject, state: Bytes) {
        match self.publish.try_send((subject, state)) {
            Ok(()) => {
                // A state kept from before is older than this one.
                let mut later = self.presence_later.borrow_mut();
                if !later.is_empty() {
                    later.remove(&user);
                }
            }
            Err(e) => {
                let (_, state) = e.into_inner();
                self.stats
                    .presence_states_delayed
                    .fetch_add(1, Ordering::Relaxed);
                self.presence_later.borrow_mut().insert(user, state);
                self.presence_wake.notify_one();
            }
        }
    }

    /// Queues the presence states kept by [`Service::publish_presence`],
    /// waiting for room in the publish queue.
    async fn run_presence_later(self: Rc<Self>) {
        loop {
            self.presence_wake.notified().await;
            loop {
                let later = std::mem::take(&mut *self.presence_later.borrow_mut());
                if later.is_empty() {
                    break;
                }
                for (user, state) in later {
                    let subject = Subject::from(subjects::of_id(user));
                    if self.publish.send_async((subject, state)).await.is_err() {
                        return; // the publisher is gone: the node stops
                    }
                }
            }
        }
    }

    /// Queues a reply to `to`, in chunks if it outgrew `max_payload` (lossy
    /// as every reply: a lost chunk is repaired by the sender's resend).
    fn publish_reply(&self, to: &NodeId, reply: Bytes) {
        let subject = self
            .reply_subjects
            .borrow_mut()
            .entry(to.clone())
            .or_insert_with(|| Subject::from(subjects::replies(to)))
            .clone();
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
                    self.activity.touch();
                    self.stats.batches_received.fetch_add(1, Ordering::Relaxed);
                    for (lane, requests) in requests_by_lane(&key, items, &self.config) {
                        let event = LaneEvent::Requests {
                            from: key.from.clone(),
                            requests,
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
            self.activity.touch();
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
            self.activity.touch();
            match command {
                Command::Replies(replies) => {
                    for (reply, body) in replies {
                        let done = self.inbound.borrow_mut().complete(
                            &reply.key,
                            reply.index as usize,
                            body,
                        );
                        if let Some(bytes) = done {
                            self.publish_reply(&reply.key.from, bytes);
                        }
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
                    let subject = Subject::from(subjects::of_id(room));
                    if surepush_proto::is_room(room) {
                        self.stats
                            .room_messages_published
                            .fetch_add(1, Ordering::Relaxed);
                        self.stats
                            .room_bytes_published
                            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        self.publish_lossy(subject, bytes);
                    } else {
                        self.stats
                            .presence_messages_published
                            .fetch_add(1, Ordering::Relaxed);
                        self.publish_presence(room, subject, bytes);
                    }
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
        // Subjects are shared bytes: a clone per publish, no allocation.
        let to = Subject::from(subjects::requests(&peer));
        let reply_to = Subject::from(subjects::replies(&self.me));
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
                    Ok(o) => {
                        self.activity.touch();
                        link.push(o.envelope, o.target);
                    }
                    Err(_) => queue_open = false,
                },
                reply = replies.recv_async() => {
                    let Ok(reply) = reply else { return };
                    match link.handle_reply(reply, Instant::now()) {
                        Ok(done) => {
                            for (lane, replies) in replies_by_lane(done) {
                                let event = LaneEvent::Replies {
                                    from: peer.clone(),
                                    replies,
                                };
                                if let Some(lane) = self.lane(lane) {
                                    let _ = lane.send_async(event).await;
                                }
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

/// A delivered batch's messages grouped by the lane each is routed to, in
/// order within a lane (one event per lane, not per message).
fn requests_by_lane(
    key: &BatchKey,
    items: Vec<Envelope>,
    config: &MessagingConfig,
) -> Vec<(u16, Vec<Request>)> {
    let mut groups: Vec<(u16, Vec<Request>)> = Vec::new();
    for (index, envelope) in items.into_iter().enumerate() {
        let lane = (config.route_to_lane)(envelope.route);
        let request = Request {
            envelope,
            reply: ReplyTo {
                key: key.clone(),
                index: index as u32,
            },
        };
        // Few lanes (one per shard): a linear search beats a map.
        match groups.iter_mut().find(|(l, _)| *l == lane) {
            Some((_, requests)) => requests.push(request),
            None => groups.push((lane, vec![request])),
        }
    }
    groups
}

/// A batch's replies grouped by the lane that sent each message, in the
/// order sent.
fn replies_by_lane(done: Vec<Completion>) -> Vec<(u16, Vec<Reply>)> {
    let mut groups: Vec<(u16, Vec<Reply>)> = Vec::new();
    for c in done {
        let reply = Reply {
            token: c.target.token,
            body: c.body,
        };
        match groups.iter_mut().find(|(l, _)| *l == c.target.lane) {
            Some((_, replies)) => replies.push(reply),
            None => groups.push((c.target.lane, vec![reply])),
        }
    }
    groups
}

async fn run_publisher(client: async_nats::Client, rx: flume::Receiver<(Subject, Bytes)>) {
    while let Ok((subject, payload)) = rx.recv_async().await {
        if let Err(error) = client.publish(subject, payload).await {
            tracing::warn!(%error, "publish failed");
        }
    }
}

#[cfg(test)]
mod tests {
    //! The per-batch lane events (issue #20): a batch's requests reach
    //! each lane as one event, its replies likewise, in order and matched.

    use std::time::{Duration, Instant};

    use super::*;
    use crate::messaging::outbound::LinkConfig;
    use crate::wire::MessageKind;

    fn message(n: u64) -> Envelope {
        Envelope {
            kind: MessageKind(crate::wire::kinds::FIRST_TEST_KIND),
            version: 1,
            route: (n % 3) as u32,
            body: Bytes::from(n.to_le_bytes().to_vec()),
        }
    }

    fn number(env: &Envelope) -> u64 {
        u64::from_le_bytes(env.body[..8].try_into().unwrap())
    }

    /// Messages 0..12 from lanes 0 and 1 of node a, to node b with two
    /// lanes (route % 2): through a's link and b's inbound state, one
    /// batch; b's lanes answer in reverse order; the reply comes back.
    #[test]
    fn a_batch_reaches_each_lane_as_one_event_and_its_replies_find_their_senders() {
        let (a, b) = (NodeId::parse("a").unwrap(), NodeId::parse("b").unwrap());
        let now = Instant::now();
        let mut link = OutboundLink::new(a.clone(), 7, LinkConfig::default());
        for n in 0..12u64 {
            let target = ReplyTarget {
                lane: (n % 2) as u16,
                token: 100 + n,
            };
            link.push(message(n), target);
        }
        let payload = link.poll_transmit(now).expect("one batch");
        assert!(link.poll_transmit(now).is_none(), "all twelve in one batch");
        let mut inbound = InboundLinks::new(b.clone());
        let req = wire::decode::<BatchRequest>(&payload).unwrap();
        let Verdict::Deliver { key, items } = inbound.handle(req) else {
            panic!("a new batch is delivered");
        };
        let config = MessagingConfig::new(2);
        let groups = requests_by_lane(&key, items, &config);
        // Lane 0 gets routes 0 and 2, lane 1 route 1; each group in the
        // batch's order, each reply address naming its message's place.
        assert_eq!(groups.len(), 2, "one event per lane");
        let mut all = Vec::new();
        for (lane, requests) in &groups {
            let numbers: Vec<u64> = requests.iter().map(|r| number(&r.envelope)).collect();
            let mut sorted = numbers.clone();
            sorted.sort_unstable();
            assert_eq!(numbers, sorted, "lane {lane} keeps the sender's order");
            for r in requests {
                assert_eq!(u32::from(*lane), r.envelope.route % 2, "routed to its lane");
                assert_eq!(u64::from(r.reply.index), number(&r.envelope), "reply index");
                all.push((r.reply.clone(), number(&r.envelope)));
            }
        }
        assert_eq!(all.len(), 12);
        // Answers in reverse order: the batch completes with the last.
        all.reverse();
        let last = all.len() - 1;
        let mut reply = None;
        for (i, (to, n)) in all.into_iter().enumerate() {
            let body = Bytes::from(format!("ok {n}"));
            let done = inbound.complete(&to.key, to.index as usize, body);
            assert_eq!(
                done.is_some(),
                i == last,
                "complete only with the last answer"
            );
            reply = done.or(reply);
        }
        let reply = wire::decode::<BatchReply>(&reply.unwrap()).unwrap();
        let done = link.handle_reply(reply, now).expect("answered");
        let groups = replies_by_lane(done);
        assert_eq!(groups.len(), 2, "one replies event per sending lane");
        for (lane, replies) in groups {
            let tokens: Vec<u64> = replies.iter().map(|r| r.token).collect();
            let expected: Vec<u64> = (0..12).filter(|n| n % 2 == u64::from(lane)).collect();
            assert_eq!(
                tokens,
                expected.iter().map(|n| 100 + n).collect::<Vec<_>>(),
                "lane {lane}: its tokens, in the order sent"
            );
            for r in replies {
                assert_eq!(
                    r.body,
                    Bytes::from(format!("ok {}", r.token - 100)),
                    "matched"
                );
            }
        }
        assert_eq!(link.outstanding(), 0);
    }

    /// A batch whose reply is lost is sent again whole (the same number,
    /// every message); the receiver hands it on once and answers the
    /// resend from its cache with the same reply for every message.
    #[test]
    fn a_batch_whose_reply_is_lost_is_resent_whole_and_answered_once() {
        let (a, b) = (NodeId::parse("a").unwrap(), NodeId::parse("b").unwrap());
        let start = Instant::now();
        let config = LinkConfig::default();
        let retry = config.retry_initial;
        let mut link = OutboundLink::new(a, 1, config);
        for n in 0..5u64 {
            link.push(message(n), ReplyTarget { lane: 0, token: n });
        }
        let first = link.poll_transmit(start).unwrap();
        let mut inbound = InboundLinks::new(b);
        let req = wire::decode::<BatchRequest>(&first).unwrap();
        let Verdict::Deliver { key, items } = inbound.handle(req) else {
            panic!("delivered");
        };
        let groups = requests_by_lane(&key, items, &MessagingConfig::new(1));
        let mut reply = None;
        for r in &groups[0].1 {
            let body = Bytes::from(format!("ok {}", number(&r.envelope)));
            reply = inbound.complete(&r.reply.key, r.reply.index as usize, body);
        }
        let lost = reply.expect("the batch completed");
        // The reply is lost: after the retry interval the batch goes again.
        let later = start + retry + Duration::from_millis(1);
        link.handle_timeout(later);
        let again = link.poll_transmit(later).expect("resent");
        let resent = wire::decode::<BatchRequest>(&again).unwrap();
        let original = wire::decode::<BatchRequest>(&first).unwrap();
        assert_eq!(resent.seq, original.seq, "same batch number");
        assert_eq!(resent.items, original.items, "every message, in order");
        match inbound.handle(resent) {
            Verdict::Answer(bytes) => assert_eq!(bytes, lost, "the cached reply"),
            other => panic!("a resend is answered from the cache, got {other:?}"),
        }
        let reply = wire::decode::<BatchReply>(&lost).unwrap();
        let groups = replies_by_lane(link.handle_reply(reply, later).unwrap());
        let tokens: Vec<u64> = groups[0].1.iter().map(|r| r.token).collect();
        assert_eq!(tokens, vec![0, 1, 2, 3, 4]);
    }
}
