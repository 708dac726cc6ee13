//! [`ClusterLink`]: one shard's lane to the other nodes.
//!
//! Sending: the core addresses a message to a partition on another node
//! (`PeerTarget::Partition`); the link puts it in an envelope (kind
//! `CORE_PEER_MSG`, routed by the partition) in its backlog, and a task of
//! the shard moves the backlog onto this shard's lane with
//! `Lane::try_send` once the loop turn's runnable tasks have run, so the
//! shard never waits and the messages of one turn reach the cluster
//! thread together (one wake-up of it, one NATS batch per peer). Messages
//! the peer queue cannot take yet, or whose partition has no owner yet,
//! stay in the backlog, in order, and the task retries them.
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
//!
//! Rooms (docs/CLUSTER.md "Rooms across nodes"): a room's home shard sends
//! each push once to [`ShardId::ROOM_SUBJECTS`], which this link publishes
//! on the room's NATS subject; a shard with subscribers of a room homed
//! elsewhere subscribes its lane to that subject (on the core's
//! `RoomSubscribe`; off on its `RoomLeave`) and takes each push as a
//! `RoomFanout` from the mesh. The `RoomSubscribe` itself is a request
//! whose answers are the replay pages up to the last; a reply carries at
//! most [`ROOM_REPLY_BYTES`] of frames, and the subscriber's link asks
//! again from the last frame it got (`Continuation`).
//!
//! Presence (docs/CLUSTER.md "Presence across nodes") takes the same
//! subjects keyed by the user's id (`surepush.presence.<user>`): a
//! `PresenceNodeWatch` subscribes this lane to the watched user's subject
//! before it goes to the owner, a `PresenceNodeUnwatch` unsubscribes it,
//! and the owner's `PresenceUpdate`s to [`ShardId::ROOM_SUBJECTS`] are
//! published there once for every watching node.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use surepush_cluster::messaging::batch::Envelope;
use surepush_cluster::messaging::{
    FailReason, Lane, LaneEvent, Replier, Reply, ReplyTo, Request, TrySendError,
};
use surepush_cluster::wire::kinds::CORE_PEER_MSG;
use surepush_cluster::PartitionId;
use surepush_core::router::MAX_TICKETS;
use surepush_core::{
    decode_answers, encode_answers_into, Answers, ClusterRoutes, PeerMsg, PeerTarget, RoomPage,
    RoomSubscribe, Shard, ShardId, PEER_WIRE_VERSION,
};
use surepush_proto::{Seq, SubscribeFrom};

use super::NodeCluster;
use crate::log_every::LogEvery;

/// Pause before retrying a backlog that a full peer queue or a missing
/// owner holds up. Short: the queue drains as fast as NATS takes batches.
const BACKLOG_RETRY: Duration = Duration::from_millis(1);

/// At most one log line per this interval for a repeating condition.
const LOG_REPEATS_EVERY: Duration = Duration::from_secs(1);

/// Most bytes of room frames one reply to a room subscription carries
/// (at least one frame): replies of a batch travel as one reply, which is
/// chunked above the NATS server's `max_payload` (the cluster crate's
/// `chunks.rs`) — this keeps replies, and so chunking, rare.
pub(crate) const ROOM_REPLY_BYTES: usize = 32 * 1024;

/// Bytes of the buffer messages to other nodes are encoded into (issue
/// #20): each message is a slice of it (`BytesMut::split`), so encoding
/// costs an allocation per this many bytes, not one (or more, as the
/// buffer grows) per message. The block is reused once every slice of it
/// has been sent and dropped. A message that stays queued (its peer is
/// down) keeps its whole block alive, so the block is small: a full peer
/// queue (4,096 messages) pins at most 32 MiB, however the messages of
/// other peers interleave with it.
const ENCODE_ARENA: usize = 8 * 1024;

/// Below this much room left, the arena takes a fresh block first.
const ARENA_MIN_FREE: usize = 1024;

/// What a shard's command task does for the link, in the order queued.
pub(crate) enum LinkCommand {
    /// Answer a request from another node.
    Reply(ReplyTo, Bytes),
    /// Receive the pushes of a room homed elsewhere on this lane.
    Subscribe(u64),
    /// Stop receiving them.
    Unsubscribe(u64),
    /// Publish one push (an encoded `PeerMsg`) on a room homed here.
    Publish(u64, Bytes),
}

/// A message waiting for room in its peer's queue or for an owner.
struct Outgoing {
    partition: PartitionId,
    envelope: Envelope,
    /// The room subscription it carries, to ask again from where a
    /// truncated reply stopped.
    subscribe: Option<RoomSubscribe>,
}

/// A room subscription sent to another node, by its token.
struct Continuation {
    partition: PartitionId,
    subscribe: RoomSubscribe,
}

/// A request from another node being answered.
struct Pending {
    /// `None` once answered (a stream's reply went early, at
    /// [`ROOM_REPLY_BYTES`]; the ticket lives until the stream ends).
    reply: Option<ReplyTo>,
    expected: Answers,
    answers: Vec<PeerMsg>,
    /// Bytes of room frames in `answers`.
    frame_bytes: usize,
}

/// One shard's lane and its bookkeeping (see the module doc).
pub(crate) struct ClusterLink {
    me: ShardId,
    pub(super) cluster: Arc<NodeCluster>,
    lane: RefCell<Lane>,
    routes: RefCell<Arc<ClusterRoutes>>,
    routes_seen: Cell<u64>,
    /// The registry revision last checked for nodes gone.
    nodes_seen: Cell<u64>,
    backlog: RefCell<VecDeque<Outgoing>>,
    backlog_wake: LocalSender<()>,
    commands: LocalSender<LinkCommand>,
    subscribes: RefCell<std::collections::HashMap<u64, Continuation>>,
    tickets: RefCell<Vec<Option<Pending>>>,
    free_tickets: RefCell<Vec<u16>>,
    ticket_freed: LocalSender<()>,
    next_token: Cell<u64>,
    refused: LogEvery,
    /// Where envelopes and replies are encoded ([`ENCODE_ARENA`]).
    arena: RefCell<BytesMut>,
}

/// A link's queues at one moment ([`ClusterLink::load`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LinkLoad {
    /// Requests from other nodes being served (each holds a ticket until
    /// its reply is sent; at `MAX_TICKETS` the shard takes no more).
    pub(crate) tickets_in_use: usize,
    /// Messages for other nodes waiting because their peer queue was full.
    pub(crate) backlog: usize,
    /// Requests, replies and failures the cluster thread queued for this
    /// shard, not yet taken.
    pub(crate) lane_events: usize,
}

/// The tasks a link needs, for the shard to spawn once it has a runtime.
pub(crate) struct LinkTasks {
    /// Requests, replies and failures arriving on the lane.
    pub(crate) events: flume::Receiver<LaneEvent>,
    /// Wakes the backlog retry.
    pub(crate) backlog: LocalReceiver<()>,
    /// Replies, room publishes and room (un)subscriptions to carry out.
    pub(crate) commands: (Replier, LocalReceiver<LinkCommand>),
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
        let (commands, command_rx) = local_channel::new_unbounded();
        let (ticket_freed, freed_rx) = local_channel::new_bounded(1);
        let tasks = LinkTasks {
            events: lane.events().clone(),
            backlog,
            commands: (lane.replier(), command_rx),
            ticket_freed: freed_rx,
        };
        let link = Rc::new(ClusterLink {
            me,
            cluster,
            lane: RefCell::new(lane),
            routes: RefCell::new(routes),
            // The core has none yet: the first refresh hands them over.
            routes_seen: Cell::new(0),
            nodes_seen: Cell::new(0),
            backlog: RefCell::new(VecDeque::new()),
            backlog_wake,
            commands,
            subscribes: RefCell::default(),
            tickets: RefCell::new(Vec::new()),
            free_tickets: RefCell::new(Vec::new()),
            ticket_freed,
            next_token: Cell::new(0),
            refused: LogEvery::new(LOG_REPEATS_EVERY),
            arena: RefCell::new(BytesMut::new()),
        });
        Some((link, tasks))
    }

    /// Where a client of `node` goes (see [`NodeCluster::redirect`]).
    pub(crate) fn redirect(&self, node: &surepush_cluster::NodeId, mqtt: bool) -> super::Redirect {
        self.cluster.redirect(node, mqtt)
    }

    /// A partition move action of the core (`moves.rs`).
    pub(crate) fn move_action(&self, action: surepush_core::Action) {
        self.cluster.on_move_action(self.me.0, action);
    }

    /// This shard's partition move commands (once).
    pub(crate) fn take_move_commands(&self) -> Option<flume::Receiver<super::MoveCommand>> {
        self.cluster.take_move_commands(self.me.0)
    }

    /// A client relayed to its user's node opened, closed or was refused.
    pub(crate) fn count_relay(&self, event: crate::transport::RelayEvent) {
        self.cluster.relays.count(event);
    }

    /// Hands `core` the newest placement if it changed (one atomic load).
    pub(crate) fn refresh_routes(&self, core: &mut Shard) {
        if let Some((generation, routes)) = self.cluster.routes_after(self.routes_seen.get()) {
            self.routes_seen.set(generation);
            *self.routes.borrow_mut() = routes.clone();
            core.set_cluster_routes(routes);
        }
    }

    /// Tells `core` of the other nodes gone from the registry since the
    /// last call (their wildcard filters go, docs/CLUSTER.md "Wildcard
    /// filters across nodes"). Cheap when nothing changed (one read).
    pub(crate) fn forget_dead_nodes(&self, core: &mut Shard) {
        let revision = self.cluster.nodes.revision();
        if revision == self.nodes_seen.get() {
            return;
        }
        self.nodes_seen.set(revision);
        let routes = self.routes.borrow().clone();
        for (node, _) in routes.other_nodes() {
            if self.cluster.nodes.get(node).is_none() {
                core.forget_node(node);
            }
        }
    }

    /// The core sent `msg` to `target` (not a local shard).
    pub(crate) fn send(&self, target: PeerTarget, msg: PeerMsg) {
        match target {
            PeerTarget::Local(_) => debug_assert!(false, "local messages take the mesh"),
            PeerTarget::Ticket(t) => self.answer(t, msg),
            PeerTarget::RoomSubjects => self.publish_room(msg),
            PeerTarget::Partition(p) => self.send_to_partition(p, msg),
        }
    }

    /// A push (or revocation) of a room homed here, once for every other
    /// node with subscribers.
    fn publish_room(&self, msg: PeerMsg) {
        let room = match &msg {
            PeerMsg::RoomFanout(m) => m.room,
            PeerMsg::RoomRevoke(m) => m.room,
            PeerMsg::PresenceUpdate(m) => m.user.0,
            other => {
                debug_assert!(false, "{other:?} on a room subject");
                return;
            }
        };
        let body = self.encoded(|out| msg.encode(out));
        self.command(LinkCommand::Publish(room, body));
    }

    /// What `write` appends, as a slice of the arena.
    fn encoded(&self, write: impl FnOnce(&mut BytesMut)) -> Bytes {
        let mut arena = self.arena.borrow_mut();
        if arena.capacity() < ARENA_MIN_FREE {
            // Reclaims the block if every slice of it is gone, else
            // allocates a new one.
            arena.reserve(ENCODE_ARENA);
        }
        write(&mut arena);
        arena.split().freeze()
    }

    fn command(&self, c: LinkCommand) {
        // Unbounded: the command task drains it into the cluster thread's
        // bounded queue, in order.
        let _ = self.commands.try_send(c);
    }

    fn send_to_partition(&self, partition: PartitionId, mut msg: PeerMsg) {
        let subscribe = match &msg {
            PeerMsg::RoomLeave(m) => {
                // The last subscriber of this shard left: the home node
                // publishes on the subject whoever listens.
                self.command(LinkCommand::Unsubscribe(m.room));
                return;
            }
            PeerMsg::RoomSubscribe(m) => {
                self.command(LinkCommand::Subscribe(m.room));
                Some(*m)
            }
            PeerMsg::NodeFilters(_)
            | PeerMsg::FilterQuery(_)
            | PeerMsg::TopicRelay(_)
            | PeerMsg::StreamsAnswered(_)
                if !self.owner_alive(partition) =>
            {
                // Wildcard filter notices to a node that is down would
                // only pile up here: it asks for every node's filters
                // when it is back, and its sessions then learn of each
                // stream at its next message (docs/CLUSTER.md "Wildcard
                // filters across nodes").
                return;
            }
            PeerMsg::PresenceNodeWatch(m) => {
                // The subscription is asked for first. It takes the command
                // path and the request the lane's, so it is not ordered
                // with the request: normally NATS has the SUB long before
                // the owner's first publish; a change published in between
                // waits for the next change or re-read (docs/CLUSTER.md).
                self.command(LinkCommand::Subscribe(m.user.0));
                None
            }
            PeerMsg::PresenceNodeUnwatch(m) => {
                self.command(LinkCommand::Unsubscribe(m.user.0));
                None
            }
            _ => None,
        };
        if msg.answers().is_none() {
            if let Some(count) = self.refused.tick() {
                tracing::error!(count, ?msg, "messages that cannot cross nodes dropped");
            }
            return;
        }
        if let Some(origin) = msg.return_address_mut() {
            // Answers come back on this lane, to this shard.
            debug_assert_eq!(
                *origin, self.me,
                "a request to another node names its sender"
            );
            *origin = self.me;
        }
        let envelope = Envelope {
            kind: CORE_PEER_MSG,
            version: PEER_WIRE_VERSION,
            route: partition.0,
            body: self.encoded(|out| msg.encode(out)),
        };
        self.backlog.borrow_mut().push_back(Outgoing {
            partition,
            envelope,
            subscribe,
        });
        // Sent by the backlog task after the tasks already runnable in
        // this loop turn (issue #20): sent here, message by message, the
        // cluster thread woke for the first and published it alone while
        // the turn produced the next.
        let _ = self.backlog_wake.try_send(());
    }

    /// Whether the node holding `partition` is in the registry (alive).
    fn owner_alive(&self, partition: PartitionId) -> bool {
        let routes = self.routes.borrow();
        routes
            .owner(partition)
            .is_some_and(|node| self.cluster.nodes.get(node).is_some())
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
                Ok(()) => {
                    if let Some(subscribe) = next.subscribe {
                        let partition = next.partition;
                        let c = Continuation {
                            partition,
                            subscribe,
                        };
                        self.subscribes.borrow_mut().insert(token, c);
                    }
                }
                Err(TrySendError::Full(envelope)) => {
                    backlog.push_front(Outgoing {
                        partition: next.partition,
                        envelope,
                        subscribe: next.subscribe,
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

    /// Sends the backlog when woken (after the turn that queued it), and
    /// retries it while it is held up (a task of the shard).
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
    /// return address replaced, or the answers replies carry). Requests
    /// take a ticket each: a receiver that must stay within the tickets
    /// hands them over one at a time with [`ClusterLink::request`].
    pub(crate) fn receive(&self, event: LaneEvent) -> Vec<PeerMsg> {
        match event {
            LaneEvent::Requests { from, requests } => requests
                .into_iter()
                .flat_map(|r| self.request(&from, r))
                .collect(),
            LaneEvent::Replies { from, replies } => {
                let mut msgs = Vec::new();
                for Reply { token, body } in replies {
                    match decode_answers(&body) {
                        Ok(answers) => {
                            let subscribe = self.subscribes.borrow_mut().remove(&token);
                            if let Some(c) = subscribe {
                                self.continue_replay(c, &answers);
                            }
                            msgs.extend(answers);
                        }
                        Err(error) => {
                            tracing::error!(%from, %error, "undecodable answers from another node");
                        }
                    }
                }
                msgs
            }
            LaneEvent::Failed { to, reason, token } => {
                let subscribe = self.subscribes.borrow_mut().remove(&token);
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
                // A subscription whose replay is lost: the failed page
                // ends it with ROOMLAG, and the client resumes.
                subscribe
                    .map(|c| vec![failed_page(&c.subscribe)])
                    .unwrap_or_default()
            }
            LaneEvent::Room { room, payload } => match PeerMsg::decode(&payload) {
                Ok(
                    msg @ (PeerMsg::RoomFanout(_)
                    | PeerMsg::RoomRevoke(_)
                    | PeerMsg::PresenceUpdate(_)),
                ) if room_of(&msg) == room => {
                    vec![msg]
                }
                Ok(_) | Err(_) => {
                    tracing::error!(room, "a room push from another node that is not ours");
                    Vec::new()
                }
            },
            LaneEvent::Pong { .. } => Vec::new(),
        }
    }

    /// A reply to room subscription `c` that stopped at
    /// [`ROOM_REPLY_BYTES`] (its last page is not the last): asks again
    /// from the last frame it carried, for the same subscription.
    fn continue_replay(&self, c: Continuation, answers: &[PeerMsg]) {
        let Some(PeerMsg::RoomPage(page)) = answers.last() else {
            return;
        };
        if answers.last().is_some_and(PeerMsg::ends_answers) {
            return;
        }
        let Some((last, _)) = page.frames.last() else {
            return;
        };
        let subscribe = RoomSubscribe {
            from: SubscribeFrom::After(*last),
            ..c.subscribe
        };
        self.send_to_partition(c.partition, subscribe.into());
    }

    /// What the core must handle for one request from another node (its
    /// return address replaced by a ticket; check
    /// [`ClusterLink::tickets_exhausted`] first).
    pub(crate) fn request(
        &self,
        from: &surepush_cluster::NodeId,
        Request { envelope, reply }: Request,
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
            tracing::error!(%from, ?msg, "a message that cannot cross nodes; answered empty");
            self.reply(reply, Vec::new());
            return Vec::new();
        };
        if expected == Answers::Count(0) {
            self.reply(reply, Vec::new());
            return vec![msg];
        }
        let ticket = self.take_ticket(Pending {
            reply: Some(reply),
            expected,
            answers: Vec::new(),
            frame_bytes: 0,
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

    /// How loaded the link is now (the shard's `/metrics` gauges).
    pub(crate) fn load(&self) -> LinkLoad {
        LinkLoad {
            tickets_in_use: self.tickets.borrow().len() - self.free_tickets.borrow().len(),
            backlog: self.backlog.borrow().len(),
            lane_events: self.lane.borrow().events().len(),
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
        let last = match pending.expected {
            Answers::Count(n) => {
                pending.answers.push(msg);
                pending.answers.len() >= n
            }
            Answers::Stream => {
                let last = msg.ends_answers();
                if pending.reply.is_some() {
                    pending.push_page(msg);
                }
                if !last && pending.frame_bytes >= ROOM_REPLY_BYTES {
                    // Enough for one reply: it goes now; the rest of the
                    // stream is dropped (the subscriber asks again).
                    if let Some(reply) = pending.reply.take() {
                        let answers = std::mem::take(&mut pending.answers);
                        drop(tickets);
                        self.reply(reply, answers);
                        return;
                    }
                }
                last
            }
        };
        if !last {
            return;
        }
        let done = tickets[usize::from(ticket)].take().expect("checked above");
        drop(tickets);
        self.free_tickets.borrow_mut().push(ticket);
        let _ = self.ticket_freed.try_send(());
        if let Some(reply) = done.reply {
            self.reply(reply, done.answers);
        }
    }

    fn reply(&self, reply: ReplyTo, answers: Vec<PeerMsg>) {
        let body = self.encoded(|out| encode_answers_into(&answers, out));
        self.command(LinkCommand::Reply(reply, body));
    }
}

impl Pending {
    /// Adds one answer of a room subscription's stream, keeping at most
    /// [`ROOM_REPLY_BYTES`] of frames (at least one frame): a page cut
    /// short is no longer the last.
    fn push_page(&mut self, mut msg: PeerMsg) {
        if let PeerMsg::RoomPage(page) = &mut msg {
            let mut keep = 0;
            for (_, frame) in &page.frames {
                if self.frame_bytes > 0 && self.frame_bytes + frame.len() > ROOM_REPLY_BYTES {
                    break;
                }
                self.frame_bytes += frame.len();
                keep += 1;
            }
            if keep < page.frames.len() {
                page.frames.truncate(keep);
                page.done = false;
                self.frame_bytes = self.frame_bytes.max(ROOM_REPLY_BYTES);
            }
        }
        self.answers.push(msg);
    }
}

/// The room (or user, for presence) a pushed message is about.
fn room_of(msg: &PeerMsg) -> u64 {
    match msg {
        PeerMsg::RoomFanout(m) => m.room,
        PeerMsg::RoomRevoke(m) => m.room,
        PeerMsg::PresenceUpdate(m) => m.user.0,
        _ => 0,
    }
}

/// The page that ends a subscription whose replay was lost (the core
/// answers it with ROOMLAG, as a failed log read).
fn failed_page(s: &RoomSubscribe) -> PeerMsg {
    RoomPage {
        room: s.room,
        conn: s.conn,
        sub: s.sub,
        head: Seq::ZERO,
        first: Seq::ZERO,
        gap: false,
        frames: Vec::new(),
        skip_to: Seq::ZERO,
        done: false,
    }
    .into()
}

/// Carries out what the link queued (a task of the shard: the cluster
/// thread's command queue may make it wait), in order. Replies queued
/// back to back (a commit answers many requests at once) go to the
/// cluster thread as one command: one wake-up of it, not one per reply.
pub(crate) async fn run_link_commands(replier: Replier, queued: LocalReceiver<LinkCommand>) {
    let mut replies = Vec::new();
    while let Some(first) = queued.recv().await {
        let mut next = Some(first);
        while let Some(command) = next.take() {
            let sent = match command {
                LinkCommand::Reply(reply, body) => {
                    replies.push((reply, body));
                    Ok(())
                }
                other => match flush_replies(&replier, &mut replies).await {
                    Ok(()) => run_command(&replier, other).await,
                    Err(e) => Err(e),
                },
            };
            if sent.is_err() {
                return; // the cluster thread stopped: the node is going down
            }
            // What else is queued now, without waiting.
            next = futures_lite::future::poll_once(queued.recv())
                .await
                .flatten();
        }
        if flush_replies(&replier, &mut replies).await.is_err() {
            return;
        }
    }
}

async fn flush_replies(
    replier: &Replier,
    replies: &mut Vec<(ReplyTo, Bytes)>,
) -> Result<(), surepush_cluster::ClusterError> {
    if replies.is_empty() {
        return Ok(());
    }
    replier.reply_all(std::mem::take(replies)).await
}

async fn run_command(
    replier: &Replier,
    command: LinkCommand,
) -> Result<(), surepush_cluster::ClusterError> {
    match command {
        LinkCommand::Reply(reply, body) => replier.reply(reply, body).await,
        LinkCommand::Subscribe(room) => replier.subscribe_room(room).await,
        LinkCommand::Unsubscribe(room) => replier.unsubscribe_room(room).await,
        LinkCommand::Publish(room, body) => replier.publish_room(room, body).await,
    }
}
