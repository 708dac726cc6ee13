//! The per-shard delivery state machine: state, entry points, dispatch.
//!
//! Call order for a driver (the server's shard loop or the simulator):
//! 1. feed inputs with the `handle_*` methods, each with the current
//!    monotonic time `now` (ns since an origin the driver picks);
//! 2. drain [`Shard::poll_action`] until `None` and carry each action out;
//! 3. sleep until [`Shard::poll_timeout`] (or the next input), then call
//!    [`Shard::handle_timeout`].
//!
//! `Shard` is the dispatcher: it keeps the clock, timers, actions, router,
//! configuration, auth and counters, and routes each input to the code of
//! its concern, which works on parts that own their state: [`Sessions`]
//! (`sessions.rs`: inboxes, devices, connections, dirty cursors),
//! `Sends` (`sends.rs`: dedup window, copies in flight, pending sends),
//! `RoomReplicas` (`room_replicas.rs`), `Storage`, `Members`, `Fanouts`,
//! `RoomShards`, `KeyedState`, ... The concern-specific halves of the
//! dispatcher live in sibling files: `session.rs` (connect, limits,
//! close), `send.rs` (store, SENDACK), `deliver.rs` (push window, ACK,
//! retransmit) and `sync.rs` (paged replay).
//!
//! [`Sessions`]: super::sessions::Sessions

use std::collections::VecDeque;
use std::sync::Arc;

use std::time::Duration;

use super::action::{Action, AppendToken, ConnId, ReadId};
use super::config::{CoreConfig, LiveLimits};
use super::sessions::Conn;
use super::stats::CoreStats;
use super::storage::Storage;
pub(super) use super::storage::{AppendPurpose, ReadPurpose};
use crate::peer::PeerMsg;
use crate::router::{ClusterRoutes, Router, ShardId};
use crate::timer::TimerWheel;
use crate::{InboxQuery, MessageRecord, Record, RecoveredState};
use surepush_proto::{DeviceId, Frame, Qos, Seq, UserId};
use surepush_token::TokenVerifier;

/// Nanoseconds per millisecond.
pub(super) const NS_PER_MS: u64 = 1_000_000;

/// Static facts about one shard.
#[derive(Clone, Debug)]
pub struct ShardParams {
    /// This shard.
    pub id: ShardId,
    /// Number of shards in the node.
    pub shards: u16,
    /// Wall-clock time (ms since the Unix epoch) at monotonic time 0; used
    /// for message timestamps and token expiry only.
    pub wall_ms_at_zero: u64,
}

/// What a timer means when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TimerEvent {
    Retransmit {
        conn: ConnId,
        seq: Seq,
    },
    Idle {
        conn: ConnId,
    },
    FlushCursors,
    /// The presence coalescing window ended (`presence/`).
    PresenceFlush,
    /// Check whether the target of a fenced partition went quiet (`moving.rs`).
    MoveIdle {
        partition: u32,
    },
    /// Shard 0's window for its node's filter changes ended (`topic_nodes.rs`).
    FilterAnnounce,
    /// New filters' waits for other nodes' answers may be over
    /// (`topic_nodes.rs`).
    NodeAnswers,
    /// A persistent share group member's session may have expired
    /// (`share_groups.rs`).
    ShareExpiry {
        user: UserId,
        device: surepush_proto::DeviceId,
        key: u64,
    },
}

/// The delivery state machine of one shard. See the module docs for the call order.
#[derive(Debug)]
pub struct Shard {
    pub(super) params: ShardParams,
    pub(super) router: Router,
    pub(super) config: CoreConfig,
    pub(super) auth: TokenVerifier,
    pub(super) now_ns: u64,
    /// Inboxes, devices, connections and dirty cursors (`sessions.rs`).
    pub(super) sessions: super::sessions::Sessions,
    /// The send path's dedup window, copies in flight and pending sends
    /// (`sends.rs`).
    pub(super) sends: super::sends::Sends,
    /// Members of the groups and rooms homed here (`members.rs`).
    pub(super) members: super::members::Members,
    /// Group sends waiting for their member copies (home shard).
    pub(super) fanouts: super::group::Fanouts,
    /// Rooms with subscribers on this shard.
    pub(super) rooms: super::room_replicas::RoomReplicas,
    /// Rooms homed here: which shards have subscribers.
    pub(super) room_shards: super::room::RoomShards,
    /// Keyed state of the layers above owned here (`keyed.rs`).
    pub(super) keyed: super::keyed::KeyedState,
    /// Webhook events not delivered yet (`webhook/`).
    pub(super) webhooks: super::webhook::Webhooks,
    /// Conversation summaries of the inboxes here (`conversation.rs`).
    pub(super) conversations: super::conversation::Conversations,
    /// Presence watches, as owner and as watcher (`presence/`).
    pub(super) presence: super::presence::Watches,
    /// Partition moves this shard exports or imports (`moving.rs`).
    pub(super) moves: super::moving::Moves,
    /// Wildcard topic filters and the stream names homed here
    /// (`topic_filters.rs`).
    pub(super) topics: super::topic_filters::Topics,
    /// Share groups: memberships of connections here, and the groups'
    /// state for the streams homed here (`share_groups.rs`).
    pub(super) shares: super::share_groups::Shares,
    pub(super) timers: TimerWheel<TimerEvent>,
    pub(super) actions: VecDeque<Action>,
    /// Appends and reads in flight, and whether the log failed.
    pub(super) storage: Storage,
    pub(super) shutting_down: bool,
    pub(super) stats: CoreStats,
}

impl Shard {
    /// A shard resuming from `recovered` (use `RecoveredState::default()` for an empty log).
    pub fn new(
        params: ShardParams,
        config: CoreConfig,
        auth: TokenVerifier,
        mut recovered: RecoveredState,
    ) -> Shard {
        let webhooks = super::webhook::Webhooks::recovered(&mut recovered.keyed);
        let sessions =
            super::sessions::Sessions::recovered(recovered.heads.into_iter(), recovered.cursors);
        let tick = Duration::from_micros(config.timer_tick_us.max(1));
        Shard {
            router: Router::new(params.id, params.shards),
            params,
            auth,
            now_ns: 0,
            sessions,
            sends: super::sends::Sends::recovered(recovered.dedup, config.dedup),
            members: super::members::Members::recovered(recovered.groups),
            fanouts: Default::default(),
            rooms: Default::default(),
            room_shards: Default::default(),
            keyed: super::keyed::KeyedState::recovered(recovered.keyed),
            webhooks,
            conversations: {
                let mut c = recovered.conversations;
                c.set_limits(config.conversations);
                c
            },
            presence: Default::default(),
            moves: Default::default(),
            topics: Default::default(),
            shares: Default::default(),
            timers: TimerWheel::new(tick),
            actions: VecDeque::new(),
            storage: Storage::default(),
            shutting_down: false,
            stats: CoreStats::default(),
            config,
        }
    }

    /// Reads back the names of the topic streams homed here (a new
    /// wildcard filter must find them; `topic_filters.rs`). Call once,
    /// after [`Shard::new`] with a recovered log.
    pub fn load_topic_names(&mut self) {
        let streams: Vec<UserId> = self
            .sessions
            .inboxes()
            .filter(|(id, inbox)| {
                surepush_proto::topic_stream::is_topic_stream(id.0) && inbox.durable != Seq::ZERO
            })
            .map(|(id, _)| id)
            .collect();
        for id in streams {
            self.topics.loading += 1;
            let query = InboxQuery::Latest { limit: 1 };
            self.read(id, query, ReadPurpose::TopicName);
        }
        self.load_retained_names();
        self.load_share_groups();
    }

    /// This shard.
    pub fn id(&self) -> ShardId {
        self.params.id
    }

    /// Routes by `routes` from now on (a cluster node; a new placement is
    /// a new snapshot).
    /// Partitions this shard no longer holds (their node moved, or their
    /// shard in the node's shard map) drop their state here (a move ended,
    /// `moving.rs`).
    pub fn set_cluster_routes(&mut self, routes: Arc<ClusterRoutes>) {
        let me = self.params.id;
        let lost: Vec<surepush_cluster::PartitionId> = match self.router.cluster() {
            Some(old) => old
                .owned_partitions()
                .filter(|p| old.shard_of(*p) == me)
                .filter(|p| routes.owner(*p) != Some(routes.me()) || routes.shard_of(*p) != me)
                .collect(),
            None => Vec::new(),
        };
        let old = self.router.cluster().cloned();
        self.router = self.router.clone().with_cluster(routes);
        self.drop_moved_partitions(&lost);
        self.greet_nodes();
        self.presence_routes_changed(old.as_deref());
    }

    /// The router in force.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }

    /// The configuration in force.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Replaces the limits that may change while running (SIGHUP).
    pub fn set_live_limits(&mut self, limits: LiveLimits) {
        self.config.max_connections_per_user = limits.max_connections_per_user;
        self.config.max_frames_per_sec = limits.max_frames_per_sec;
    }

    /// Highest durable sequence of `user`'s inbox (0 if unknown here).
    pub fn durable_head(&self, user: UserId) -> Seq {
        self.sessions.durable_head(user)
    }

    /// Acknowledged position of one device, if the device is known.
    pub fn device_cursor(&self, user: UserId, device: DeviceId) -> Option<Seq> {
        let inbox = self.sessions.inbox(user)?;
        inbox
            .devices
            .iter()
            .find(|d| d.id == device)
            .map(|d| d.cursor)
    }

    /// The highest acknowledged position of any of `user`'s devices, if
    /// one is known.
    pub fn highest_cursor(&self, user: UserId) -> Option<Seq> {
        let inbox = self.sessions.inbox(user)?;
        inbox.devices.iter().map(|d| d.cursor).max()
    }

    /// How long (ns) the driver should stop reading `conn`: the rest of the
    /// current one-second window once the connection has sent
    /// `max_frames_per_sec` frames in it, else `None`. Frames already read
    /// are served; pausing the reads lets TCP flow control slow the client
    /// (a publisher over the limit is throttled, not closed).
    pub fn read_pause(&self, conn: ConnId, now: u64) -> Option<u64> {
        let c = self.conn(conn)?;
        let window_end = c.rate_window_start_ns.saturating_add(1_000 * NS_PER_MS);
        (c.rate_count >= self.config.max_frames_per_sec && now < window_end)
            .then(|| window_end - now)
    }

    /// True once a log append failed: the shard refuses QoS 1/2 sends.
    pub fn storage_failed(&self) -> bool {
        self.storage.failed()
    }

    // ----- inputs -----------------------------------------------------------

    /// A connection was accepted (or handed over); returns its id.
    pub fn handle_open(&mut self, now: u64) -> ConnId {
        self.handle_open_via("native", now)
    }

    /// As [`Shard::handle_open`], naming the transport the client came over
    /// (reported in the session webhooks).
    pub fn handle_open_via(&mut self, transport: &'static str, now: u64) -> ConnId {
        self.set_now(now);
        self.open_connection(transport)
    }

    /// A frame arrived on `conn`.
    pub fn handle_frame(&mut self, conn: ConnId, frame: Frame, now: u64) {
        self.set_now(now);
        self.on_frame(conn, frame);
    }

    /// The connection's byte stream failed to decode: answer with a typed
    /// ERROR and close.
    pub fn handle_decode_error(
        &mut self,
        conn: ConnId,
        error: &surepush_proto::ProtoError,
        now: u64,
    ) {
        self.set_now(now);
        self.stats.protocol_errors += 1;
        self.fail(conn, error.code(), &error.to_string());
    }

    /// The transport of `conn` is gone (peer closed, reset, write error).
    pub fn handle_closed(&mut self, conn: ConnId, now: u64) {
        self.set_now(now);
        self.forget_connection(conn);
    }

    /// A message from another shard.
    pub fn handle_peer(&mut self, msg: PeerMsg, now: u64) {
        self.set_now(now);
        self.on_peer(msg);
    }

    /// The append `token` (and, since the log is ordered, every earlier one)
    /// is durable, or failed.
    pub fn handle_appended(&mut self, token: AppendToken, result: Result<(), ()>, now: u64) {
        self.set_now(now);
        while let Some(purpose) = self.storage.complete_append(token) {
            self.on_appended(purpose, result.is_ok());
        }
        self.resume_moves();
    }

    /// Result of [`Action::Read`] `id`: records in ascending seq order.
    pub fn handle_read(&mut self, id: ReadId, result: Result<Vec<MessageRecord>, ()>, now: u64) {
        self.set_now(now);
        let Some(purpose) = self.storage.complete_read(id) else {
            return;
        };
        match purpose {
            ReadPurpose::Sync {
                conn,
                request,
                head,
            } => self.on_sync_read(conn, request, head, result),
            ReadPurpose::Refill { conn, head } => self.on_refill_read(conn, id, head, result),
            ReadPurpose::RoomReplay(target) => self.on_room_read(target, result),
            ReadPurpose::Retry(check) => self.on_retry_read(check, result),
            ReadPurpose::Copy(check) => self.on_copy_check_read(check, result),
            ReadPurpose::Conversation(read) => self.on_conv_read(read, result),
            ReadPurpose::Move(serving) => self.on_move_read(serving, result),
            ReadPurpose::TopicName => self.on_topic_name_read(result),
            ReadPurpose::ShareReplay { key, stream } => self.on_share_replay(key, stream, result),
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        self.set_now(now);
        while let Some(event) = self.timers.poll(self.now_ns) {
            match event {
                TimerEvent::Retransmit { conn, seq } => self.on_retransmit_timer(conn, seq),
                TimerEvent::Idle { conn } => self.on_idle_timer(conn),
                TimerEvent::FlushCursors => {
                    self.flush_cursors();
                    self.flush_deferred_state();
                    self.flush_webhooks();
                }
                TimerEvent::PresenceFlush => self.flush_presence(),
                TimerEvent::MoveIdle { partition } => self.on_move_idle(partition),
                TimerEvent::FilterAnnounce => self.announce_filters(),
                TimerEvent::NodeAnswers => self.expire_node_waits(),
                TimerEvent::ShareExpiry { user, device, key } => {
                    self.on_share_expiry(user, device, key)
                }
            }
        }
    }

    /// Starts a graceful shutdown: every session gets DISCONNECT
    /// (`ShuttingDown`, with `redirect`) and is closed; cursors are flushed.
    pub fn begin_shutdown(&mut self, redirect: &str, now: u64) {
        self.set_now(now);
        self.shutting_down = true;
        let conns: Vec<ConnId> = self.sessions.conns().map(|(id, _)| id).collect();
        for conn in conns {
            self.close_with(
                conn,
                Frame::disconnect(surepush_proto::ErrorCode::ShuttingDown, redirect),
            );
        }
        self.flush_cursors();
        self.flush_deferred_state();
        self.flush_webhooks();
    }

    // ----- outputs ----------------------------------------------------------

    /// Next instruction for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Shard::handle_timeout`] should next be called (ns), if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.next_deadline()
    }

    // ----- shared plumbing --------------------------------------------------

    pub(super) fn set_now(&mut self, now: u64) {
        self.now_ns = self.now_ns.max(now);
    }

    pub(super) fn wall_ms(&self) -> u64 {
        self.params.wall_ms_at_zero + self.now_ns / NS_PER_MS
    }

    pub(super) fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.sessions.conn(id)
    }

    pub(super) fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.sessions.conn_mut(id)
    }

    pub(super) fn send_frame(&mut self, conn: ConnId, frame: Frame) {
        self.release_echoes(conn);
        if let Some((_, queued)) = self.conn_mut(conn).and_then(|c| c.held.as_deref_mut()) {
            queued.push(frame); // behind a CONNACK not sent yet
            return;
        }
        self.actions.push_back(Action::Send { conn, frame });
    }

    pub(super) fn append(&mut self, record: Record, purpose: AppendPurpose) {
        let token = self.storage.start_append(purpose);
        self.actions.push_back(Action::Append { token, record });
    }

    pub(super) fn read(&mut self, user: UserId, query: InboxQuery, purpose: ReadPurpose) -> ReadId {
        let id = self.storage.start_read(purpose);
        self.actions.push_back(Action::Read { id, user, query });
        id
    }

    /// Sends `msg` to `shard`, or handles it here when it is this shard.
    pub(super) fn route_to(&mut self, shard: ShardId, msg: impl Into<PeerMsg>) {
        let msg = msg.into();
        if shard == self.params.id {
            self.on_peer(msg);
        } else {
            self.actions.push_back(Action::Peer { shard, msg });
        }
    }

    /// Sends `msg` to the owner of `id` (see [`Router`]): a shard of this
    /// node, or another node, whose [`ShardId`] the driver recognises.
    pub(super) fn route_to_owner(&mut self, id: UserId, msg: impl Into<PeerMsg>) {
        let owner = self.router.owner(id);
        self.route_to(owner, msg)
    }

    fn on_peer(&mut self, msg: PeerMsg) {
        match msg {
            PeerMsg::StoreCopy(m) => {
                let reply = super::group::Reply::Send(m.origin);
                self.store_copy(reply, super::send::NewCopy::from(m))
            }
            PeerMsg::Stored(m) => self.on_stored(m),
            PeerMsg::RoomPublish(m) => self.on_room_publish(m),
            PeerMsg::Ephemeral(m) => self.push_ephemeral(m),
            PeerMsg::Release(m) if m.to.is_group() => self.release_group(m),
            PeerMsg::Release(m) => self.release(m.key, m.to),
            PeerMsg::GroupStore(m) => self.on_group_store(m),
            PeerMsg::StoreMany(m) => self.on_store_many(m),
            PeerMsg::GroupStored(m) => self.on_group_stored(m),
            PeerMsg::GroupEphemeral(m) => self.on_group_ephemeral(m),
            PeerMsg::ReleaseMany(m) => self.on_release_many(m),
            PeerMsg::MembersUpdate(m) => self.on_members_update(m),
            PeerMsg::MembersUpdated(m) => self.actions.push_back(Action::MembersUpdated {
                request: m.request,
                outcome: m.outcome,
            }),
            PeerMsg::RoomSubscribe(m) => self.on_room_subscribe(m),
            PeerMsg::RoomRefused(m) => self.on_room_refused(m),
            PeerMsg::RoomRevoke(m) => self.on_room_revoke(m),
            PeerMsg::RoomLeave(m) => self.on_room_leave(m),
            PeerMsg::RoomPage(m) => self.on_room_page(m),
            PeerMsg::RoomFanout(m) => self.on_room_fanout(m),
            PeerMsg::StoreState(m) => self.store_state(m.key, m.value, m.report),
            PeerMsg::StateStored(m) => self.actions.push_back(Action::StateStored {
                conn: m.conn,
                id: m.id,
                ok: m.ok,
            }),
            PeerMsg::QueryState(m) => self.answer_state_query(m),
            PeerMsg::StateValue(m) => self.actions.push_back(Action::StateValue {
                conn: m.conn,
                key: m.key,
                value: m.value,
            }),
            PeerMsg::PresenceWatch(m) => self.on_presence_watch(m),
            PeerMsg::PresenceUnwatch(m) => self.on_presence_unwatch(m),
            PeerMsg::PresenceChanged(m) => self.on_presence_changed(m),
            PeerMsg::PresenceNodeWatch(m) => self.on_presence_node_watch(m),
            PeerMsg::PresenceNodeUnwatch(m) => self.on_presence_node_unwatch(m),
            PeerMsg::PresenceUpdate(m) => self.on_presence_update(m),
            PeerMsg::MoveFetch(m) => self.on_move_fetch(m),
            PeerMsg::MovePage(m) => self.on_move_page(m),
            PeerMsg::MoveRoundFetch(m) => self.on_move_round_fetch(m),
            PeerMsg::FilterJoin(m) => self.on_filter_join(m),
            PeerMsg::FilterLeave(m) => self.on_filter_leave(m),
            PeerMsg::TopicNotice(m) => self.on_topic_notice(m),
            PeerMsg::FilterJoined(m) => self.on_filter_joined(m),
            PeerMsg::NodeFilters(m) => self.on_node_filters(m),
            PeerMsg::FilterQuery(m) => self.on_filter_query(m),
            PeerMsg::TopicRelay(m) => self.on_topic_relay(m),
            PeerMsg::StreamsAnswered(m) => self.on_streams_answered(m),
            PeerMsg::ShareJoin(m) => self.on_share_join(m),
            PeerMsg::ShareJoined(m) => self.on_share_joined(m),
            PeerMsg::ShareDeliver(m) => self.on_share_deliver(m),
            PeerMsg::ShareDone(m) => self.on_share_done(m),
            PeerMsg::ShareAway(m) => self.on_share_away(m),
        }
    }

    fn on_appended(&mut self, purpose: AppendPurpose, ok: bool) {
        if !ok && self.storage.mark_failed() {
            self.stats.storage_failures += 1;
            tracing::error!(
                shard = self.params.id.0,
                "log append failed: refusing QoS 1/2 sends from now on"
            );
        }
        match purpose {
            AppendPurpose::Copy { key, inbox } => self.on_copy_durable(key, inbox, ok),
            AppendPurpose::Membership {
                origin,
                request,
                members,
            } => self.on_membership_durable(origin, request, members, ok),
            AppendPurpose::Raise { conn, user, seq } => self.on_raise_durable(conn, user, seq, ok),
            AppendPurpose::State(Some(report)) => self.state_stored(report, ok),
            AppendPurpose::Webhook(id) => self.on_webhook_durable(id, ok),
            AppendPurpose::ShareHandout(sends) => self.share_handout_stored(sends, ok),
            AppendPurpose::State(None) | AppendPurpose::Bookkeeping => {}
        }
    }

    pub(super) fn qos_needs_store(qos: Qos) -> bool {
        qos != Qos::AtMostOnce
    }
}
