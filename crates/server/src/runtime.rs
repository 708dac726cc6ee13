//! One shard at run time: the sans-IO core plus the sockets, the log and the
//! clock it does not own.
//!
//! Everything here runs on the shard's own glommio executor; state is in
//! `RefCell`s that are never borrowed across an `.await`. [`ShardRuntime::drive`]
//! is the only place actions leave the core: after every input the caller
//! drives, and the runtime turns each action into a socket write, a log
//! append, a log read, a mesh message or a publish answer.

mod backend;
mod conversations;
mod ports;
mod presence;
mod wills;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use super::auth::NodeAuth;
use super::cluster::{ClusterLink, Redirect};
use super::config::Config;
use super::log_every::LogEvery;
use super::mesh::{MeshMsg, PeerQueue};
use super::metrics::ShardMetrics;
use super::transport::slow::{RoomLags, SlowConsumers};
use super::transport::{ConnIo, Handoff, Listener, MqttShard, Owner, ShardLoop, ShardPort};
use surepush_core::{
    Action, Address, AppendToken, AuthError, Claims, ConnId, CoreConfig, LiveLimits,
    MembersOutcome, PeerMsg, PeerTarget, Shard, StateDurability, StateKey, StoreOutcome,
    TokenVerifier,
};
use surepush_log::{InboxQuery, Lsn, SegmentLog};
use surepush_proto::{Frame, ProtoError, UserId};

/// State shared by every shard of the node (thread-safe, rarely touched).
#[derive(Debug)]
pub struct NodeShared {
    /// Stop the shards gracefully (a signal, or a restart after a storage
    /// failure).
    pub shutdown: Arc<AtomicBool>,
    /// Set by the SIGTERM/SIGINT handler only: the node exits.
    pub signalled: Arc<AtomicBool>,
    /// The shards stop in order to start again from their logs.
    pub restart: AtomicBool,
    /// Per shard: the log failed and the shard no longer stores.
    pub storage_failed: Vec<AtomicBool>,
    /// Per shard: recovered its log and serves (until it begins to stop).
    pub serving: Vec<AtomicBool>,
    /// The limits shards apply while running (SIGHUP, [`crate::reload`]).
    live_limits: Mutex<LiveLimits>,
    /// Bumped on each change of `live_limits`: a shard compares it with
    /// the generation it applied, once per timer tick.
    live_generation: AtomicU64,
}

impl NodeShared {
    /// Shared state for `shards` shards.
    pub fn new(shards: u16) -> Arc<NodeShared> {
        Arc::new(NodeShared {
            shutdown: Arc::new(AtomicBool::new(false)),
            signalled: Arc::new(AtomicBool::new(false)),
            restart: AtomicBool::new(false),
            storage_failed: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            serving: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            live_limits: Mutex::new(LiveLimits::of(&CoreConfig::default())),
            live_generation: AtomicU64::new(0),
        })
    }

    /// Liveness: `Err(why)` while the node stops or a shard's log has
    /// failed (it restarts the shards once the disk has room).
    pub fn health(&self) -> Result<(), String> {
        if self.shutdown.load(Ordering::Relaxed) {
            return Err("shutting down".into());
        }
        let failed = flagged(&self.storage_failed);
        if !failed.is_empty() {
            return Err(format!("log failure on shard(s) {failed:?}: not storing"));
        }
        Ok(())
    }

    /// Readiness: healthy, and every shard recovered its log and serves.
    pub fn readiness(&self) -> Result<(), String> {
        self.health()?;
        let waiting: Vec<usize> = (0..self.serving.len())
            .filter(|i| !self.serving[*i].load(Ordering::Relaxed))
            .collect();
        match waiting.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "shard(s) {waiting:?} of {} not serving yet (recovering their logs)",
                self.serving.len()
            )),
        }
    }

    /// Hands new live limits to every shard (each applies them at its
    /// next timer tick).
    pub fn set_live_limits(&self, limits: LiveLimits) {
        *self
            .live_limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = limits;
        self.live_generation.fetch_add(1, Ordering::Release);
    }

    /// The live limits in force and their generation.
    pub fn live_limits(&self) -> (LiveLimits, u64) {
        let generation = self.live_generation.load(Ordering::Acquire);
        let limits = *self
            .live_limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (limits, generation)
    }

    /// The generation of the live limits (cheap: one atomic load).
    pub fn live_generation(&self) -> u64 {
        self.live_generation.load(Ordering::Acquire)
    }
}

/// The indices of the set flags.
fn flagged(flags: &[AtomicBool]) -> Vec<usize> {
    (0..flags.len())
        .filter(|i| flags[*i].load(Ordering::Relaxed))
        .collect()
}

/// Mesh backlog (queued messages to one peer) above which readers pause.
const MESH_BACKLOG_LIMIT: usize = 64 * 1024;

/// At most one log line per this interval for a condition that can repeat
/// per message or per connection.
const LOG_REPEATS_EVERY: Duration = Duration::from_secs(1);

/// Shard `id`'s parker, if idle connections park.
fn parker(id: u16, config: &Config) -> Option<crate::transport::park::Parker> {
    if config.park_idle_ms == 0 {
        return None;
    }
    match crate::transport::park::Parker::new(id) {
        Ok(parker) => Some(parker),
        Err(e) => {
            tracing::warn!(shard = id, error = %e, "idle connections will not park");
            None
        }
    }
}

/// One shard's runtime state.
pub(crate) struct ShardRuntime {
    pub(crate) id: u16,
    pub(crate) config: Rc<Config>,
    pub(crate) verifier: TokenVerifier,
    auth: Arc<NodeAuth>,
    pub(crate) shared: Arc<NodeShared>,
    pub(crate) metrics: ShardMetrics,
    core: RefCell<Shard>,
    pub(crate) log: Rc<SegmentLog>,
    /// Looked up once per frame sent (a room message: once per
    /// subscriber), so hashed with foldhash rather than SipHash.
    conns: RefCell<surepush_core::hashing::FastHashMap<ConnId, Rc<ConnIo>>>,
    peers: Vec<Option<Rc<PeerQueue>>>,
    durability: RefCell<VecDeque<(AppendToken, Lsn)>>,
    durability_wake: LocalSender<()>,
    publishes: RefCell<HashMap<u64, LocalSender<StoreOutcome>>>,
    member_updates: RefCell<HashMap<u64, LocalSender<MembersOutcome>>>,
    conversation_reads: RefCell<HashMap<u64, LocalSender<Option<surepush_proto::ConvMsgs>>>>,
    next_publish: Cell<u64>,
    origin: Instant,
    wall_ms_at_origin: u64,
    /// Set when a sync failed: the shard refuses new stores.
    pub(crate) storage_failed: Cell<bool>,
    /// The MQTT front end, when enabled.
    pub(crate) mqtt: Option<MqttShard>,
    /// The output budgets of every connection (`transport/slow.rs`).
    pub(crate) slow: SlowConsumers,
    /// Failed log reads, likewise.
    read_failures_log: LogEvery,
    /// The generation of the node's live limits this shard applied.
    live_applied: Cell<Option<u64>>,
    /// This shard's lane to the other nodes, in a cluster.
    pub(crate) cluster: Option<Rc<ClusterLink>>,
    /// The webhook dispatcher, when `[webhooks]` is on.
    webhooks: Option<crate::webhooks::ShardLink>,
    /// Where idle connections park (`park_idle_ms > 0`).
    pub(crate) parker: Option<crate::transport::park::Parker>,
}

/// What a shard's runtime is made of (named, so a new part is one field
/// here and one at the call site, not another positional argument).
pub(crate) struct RuntimeParts {
    /// This shard.
    pub id: u16,
    /// The node's configuration.
    pub config: Rc<Config>,
    /// Verifies client tokens.
    pub verifier: TokenVerifier,
    /// The node's keys and revocations (asked for a JWKS refetch).
    pub auth: Arc<NodeAuth>,
    /// State shared by every shard of the node.
    pub shared: Arc<NodeShared>,
    /// This shard's metrics.
    pub metrics: ShardMetrics,
    /// The delivery core, recovered.
    pub core: Shard,
    /// This shard's segment log.
    pub log: Rc<SegmentLog>,
    /// Queues to the other shards (`None` at this shard's own index).
    pub peers: Vec<Option<Rc<PeerQueue>>>,
    /// The node's monotonic origin.
    pub origin: Instant,
    /// Wall-clock ms at `origin`.
    pub wall_ms_at_origin: u64,
    /// The MQTT side, when the listener is enabled.
    pub mqtt: Option<MqttShard>,
    /// This shard's lane to the other nodes, in a cluster.
    pub cluster: Option<Rc<ClusterLink>>,
    /// The webhook dispatcher, when `[webhooks]` is on.
    pub webhooks: Option<crate::webhooks::ShardLink>,
}

impl ShardRuntime {
    pub(crate) fn new(parts: RuntimeParts) -> (Rc<ShardRuntime>, LocalReceiver<()>) {
        let RuntimeParts {
            id,
            config,
            verifier,
            auth,
            shared,
            metrics,
            core,
            log,
            peers,
            origin,
            wall_ms_at_origin,
            mqtt,
            cluster,
            webhooks,
        } = parts;
        let (durability_wake, rx) = local_channel::new_bounded(1);
        let rt = Rc::new(ShardRuntime {
            id,
            config: config.clone(),
            verifier,
            auth,
            shared,
            metrics,
            core: RefCell::new(core),
            log,
            conns: RefCell::default(),
            peers,
            durability: RefCell::new(VecDeque::new()),
            durability_wake,
            publishes: RefCell::new(HashMap::new()),
            member_updates: RefCell::new(HashMap::new()),
            conversation_reads: RefCell::new(HashMap::new()),
            next_publish: Cell::new(0),
            origin,
            wall_ms_at_origin,
            storage_failed: Cell::new(false),
            slow: SlowConsumers::new(config.max_write_buffer_bytes, config.room_lag_bytes),
            mqtt,
            read_failures_log: LogEvery::new(LOG_REPEATS_EVERY),
            live_applied: Cell::new(None),
            cluster,
            webhooks,
            parker: parker(id, &config),
        });
        (rt, rx)
    }

    /// Applies the node's live limits (SIGHUP) if they changed since this
    /// shard last looked: one atomic load when they did not.
    pub(crate) fn refresh_live_limits(&self) {
        if self.live_applied.get() == Some(self.shared.live_generation()) {
            return;
        }
        let (limits, generation) = self.shared.live_limits();
        self.core.borrow_mut().set_live_limits(limits);
        if self.live_applied.replace(Some(generation)).is_some() {
            tracing::info!(shard = self.id, ?limits, "live limits applied");
        }
    }

    /// Monotonic ns since the node's origin: the core's clock.
    pub(crate) fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Wall-clock ms since the Unix epoch, on the node's monotonic clock
    /// (token expiry).
    pub(crate) fn wall_ms(&self) -> u64 {
        self.wall_ms_at_origin + self.now() / 1_000_000
    }

    /// Wall-clock seconds (token minting).
    pub(crate) fn wall_s(&self) -> u64 {
        self.wall_ms() / 1000
    }

    /// Wall clock now, ms since the Unix epoch (used once at start).
    pub(crate) fn wall_ms_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    pub(crate) fn open_connection(&self, io: Rc<ConnIo>, transport: &'static str) -> ConnId {
        let now = self.now();
        let conn = self.core.borrow_mut().handle_open_via(transport, now);
        self.conns.borrow_mut().insert(conn, io);
        conn
    }

    /// The output side of an open connection.
    pub(crate) fn conn_io(&self, conn: ConnId) -> Option<Rc<ConnIo>> {
        self.conns.borrow().get(&conn).cloned()
    }

    /// Writes keyed state (see `core/keyed.rs`).
    pub(crate) fn write_state(
        &self,
        key: StateKey,
        value: Option<Bytes>,
        durability: StateDurability,
    ) {
        let now = self.now();
        self.core
            .borrow_mut()
            .handle_state(key, value, durability, now);
    }

    /// Asks for keyed state wherever it lives; `conn` hears
    /// [`Action::StateValue`].
    pub(crate) fn query_state(&self, conn: ConnId, key: StateKey) {
        let now = self.now();
        self.core.borrow_mut().handle_state_query(conn, key, now);
    }

    /// The newest value of keyed state this shard owns.
    pub(crate) fn stored_state(&self, key: &StateKey) -> Option<Bytes> {
        self.core.borrow().state(key).cloned()
    }

    pub(crate) fn frame(&self, conn: ConnId, frame: Frame) {
        let now = self.now();
        self.core.borrow_mut().handle_frame(conn, frame, now);
    }

    pub(crate) fn decode_error(self: &Rc<Self>, conn: ConnId, e: &ProtoError) {
        let now = self.now();
        self.core.borrow_mut().handle_decode_error(conn, e, now);
        self.drive();
    }

    /// The socket failed or the peer closed it.
    pub(crate) fn transport_closed(self: &Rc<Self>, conn: ConnId) {
        if self.forget_connection(conn).is_some() {
            self.drive();
        }
    }

    /// Takes a connection the core still serves out of the core and the
    /// runtime (and so out of every room's fan-out) and closes its socket.
    fn forget_connection(self: &Rc<Self>, conn: ConnId) -> Option<Rc<ConnIo>> {
        let io = self.conns.borrow_mut().remove(&conn)?;
        // Let the writer task finish too: it holds the other half of the
        // socket, and the descriptor closes only when both halves are gone
        // (regression: one fd leaked per closed connection, found by
        // tests/soak.rs).
        io.close();
        self.finish_session(&io);
        let now = self.now();
        self.core.borrow_mut().handle_closed(conn, now);
        Some(io)
    }

    /// A connection is over: its protocol keeps or forgets what it must.
    fn finish_session(self: &Rc<Self>, io: &Rc<ConnIo>) {
        let Some(session) = io.take_session() else {
            return;
        };
        if let Some(will) = session.finish(self.as_ref(), io) {
            self.publish_will(will);
        }
    }

    /// A connection's writer emptied its queue (its protocol may wait for
    /// that: an MQTT room out of live fan-out after ROOMLAG).
    pub(crate) fn output_drained(self: &Rc<Self>, conn: ConnId, io: &Rc<ConnIo>) {
        if io.with_session(|s| s.output_drained(self.as_ref(), conn, io)) == Some(true) {
            self.drive();
        }
    }

    /// Drops a connection whose client does not read (issue #25, rules in
    /// `transport/slow.rs`), counted in
    /// `surepush_slow_consumers_total{action="dropped"}`.
    fn drop_slow(self: &Rc<Self>, conn: ConnId) {
        let Some(io) = self.conn_io(conn) else {
            return;
        };
        self.slow.drop_output(self.id, conn, &io);
        self.metrics.count_slow_drop();
        self.forget_connection(conn);
    }

    pub(crate) fn peer(&self, msg: PeerMsg) {
        let now = self.now();
        self.core.borrow_mut().handle_peer(msg, now);
    }

    pub(crate) fn handoff(&self, owner: u16, msg: MeshMsg) {
        self.peers[owner as usize]
            .as_ref()
            .expect("handoff targets another shard")
            .handoff(msg);
    }

    /// Whether the mesh backlog to any peer is above its limit (readers
    /// pause meanwhile).
    fn mesh_congested(&self) -> bool {
        self.peers
            .iter()
            .flatten()
            .any(|p| p.backlog.get() > MESH_BACKLOG_LIMIT)
    }

    pub(crate) fn timeout(self: &Rc<Self>) {
        let now = self.now();
        self.core.borrow_mut().handle_timeout(now);
        self.drive();
    }

    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        self.core.borrow().poll_timeout()
    }

    pub(crate) fn begin_shutdown(self: &Rc<Self>) {
        let now = self.now();
        self.core
            .borrow_mut()
            .begin_shutdown(&self.config.shutdown_redirect, now);
        self.drive();
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Shuts down every socket still open (after the shutdown grace): the
    /// peers see the close even if a task never runs again.
    pub(crate) fn shutdown_connections(&self) {
        for io in self.conns.borrow().values() {
            io.shutdown();
        }
    }

    pub(crate) fn record_metrics(&self) {
        self.metrics.record_core(self.core.borrow().stats());
        self.metrics.set_connections(self.open_connections() as u64);
        if let Some(parker) = &self.parker {
            self.metrics.set_parked(parker.parked() as u64);
            self.metrics.count_resumed(parker.take_resumed());
        }
        if let Some(link) = &self.cluster {
            self.metrics.set_link_load(link.load());
        }
        let s = self.log.stats();
        self.metrics
            .record_log(s.bytes_appended, s.syncs, s.segments);
    }

    /// Other cluster nodes gone from the registry lose their wildcard
    /// filters here (called once a second).
    pub(crate) fn forget_dead_nodes(&self) {
        if let Some(link) = &self.cluster {
            link.forget_dead_nodes(&mut self.core.borrow_mut());
        }
    }

    /// Carries out every action the core has queued.
    pub(crate) fn drive(self: &Rc<Self>) {
        if let Some(link) = &self.cluster {
            link.refresh_routes(&mut self.core.borrow_mut());
        }
        let mut dirty: Vec<Rc<ConnIo>> = Vec::new();
        let mut lagged = RoomLags::default();
        loop {
            if let Some((conn, room)) = lagged.next_to_report() {
                let now = self.now();
                self.core.borrow_mut().handle_room_lagged(conn, room, now);
            }
            let slow = self.slow.next_to_drop();
            if let Some(conn) = slow {
                self.drop_slow(conn);
                continue;
            }
            let action = self.core.borrow_mut().poll_action();
            let Some(action) = action else {
                if lagged.all_reported() && self.slow.none_to_drop() {
                    break;
                }
                continue;
            };
            match action {
                Action::Send { conn, frame } => {
                    if let Some(io) = self.conn_io(conn) {
                        io.with_session(|s| s.send(self.as_ref(), conn, &io, frame));
                        dirty.push(io);
                    }
                }
                Action::SendShared { conn, room, bytes } => {
                    let io = self.conn_io(conn);
                    if self
                        .slow
                        .room_frame_fits(&mut lagged, conn, io.as_deref(), room)
                    {
                        let io = io.expect("fits only if open");
                        io.with_session(|s| s.send_shared(self.as_ref(), conn, &io, bytes));
                        dirty.push(io);
                    }
                }
                Action::StateStored { conn, id, ok } => {
                    if let Some(io) = self.conn_io(conn) {
                        io.with_session(|s| s.state_stored(self.as_ref(), conn, &io, id, ok));
                    }
                }
                Action::StateValue { conn, key, value } => {
                    if let Some(io) = self.conn_io(conn) {
                        io.with_session(|s| s.state_value(self.as_ref(), conn, &io, key, value));
                    }
                }
                Action::Close { conn } => {
                    let removed = self.conns.borrow_mut().remove(&conn);
                    if let Some(io) = removed {
                        io.close();
                        self.finish_session(&io);
                    }
                }
                Action::Append { token, record } => match self.log.append(&record) {
                    Ok(lsn) => {
                        self.durability.borrow_mut().push_back((token, lsn));
                        let _ = self.durability_wake.try_send(());
                    }
                    Err(e) => {
                        self.mark_storage_failed(&e.to_string());
                        let now = self.now();
                        self.core.borrow_mut().handle_appended(token, Err(()), now);
                    }
                },
                Action::Read { id, user, query } => self.spawn_read(id, user, query),
                Action::Peer { shard, msg } => match (shard.target(), &self.cluster) {
                    (PeerTarget::Local(_), _) => match &self.peers[shard.index()] {
                        Some(q) => q.push(msg),
                        None => self.peer(msg),
                    },
                    (target, Some(link)) => link.send(target, msg),
                    (target, None) => {
                        tracing::error!(
                            ?target,
                            ?msg,
                            "a message for another node on a single node"
                        );
                    }
                },
                Action::Published { request, outcome } => {
                    if let Some(tx) = self.publishes.borrow_mut().remove(&request) {
                        let _ = tx.try_send(outcome);
                    }
                }
                Action::MembersUpdated { request, outcome } => {
                    if let Some(tx) = self.member_updates.borrow_mut().remove(&request) {
                        let _ = tx.try_send(outcome);
                    }
                }
                a @ (Action::MoveImported { .. }
                | Action::MoveFailed { .. }
                | Action::MoveStalled { .. }) => {
                    if let Some(link) = &self.cluster {
                        link.move_action(a);
                    }
                }
                Action::ConversationMessages { request, page } => {
                    if let Some(tx) = self.conversation_reads.borrow_mut().remove(&request) {
                        let _ = tx.try_send(page);
                    }
                }
                Action::Webhook(event) => {
                    // Without a dispatcher (webhooks turned off) the event
                    // stays in the log and in the core's window.
                    if let Some(link) = &self.webhooks {
                        link.send(event);
                    }
                }
            }
        }
        for io in dirty {
            io.wake();
        }
    }

    /// A partition move command for the core (`cluster/moves.rs`).
    pub(crate) fn move_command(self: &Rc<Self>, command: crate::cluster::MoveCommand) {
        let now = self.now();
        command.apply(&mut self.core.borrow_mut(), now);
        self.drive();
    }

    fn spawn_read(self: &Rc<Self>, id: u64, user: UserId, query: InboxQuery) {
        let log = self.log.clone();
        let me = self.clone();
        glommio::spawn_local(async move {
            // glommio runs a spawned task at once, inside `drive`; a read
            // served from memory would then drive again from in there, and
            // a chain of replay pages (10,000 room subscribers resuming)
            // overflowed the stack. Start from the run queue instead.
            futures_lite::future::yield_now().await;
            let result = log.read_inbox(user, query).await;
            let result = result.map_err(|e| {
                if let Some(failures) = me.read_failures_log.tick() {
                    tracing::error!(shard = me.id, %user, error = %e, failures, "inbox read failed");
                }
            });
            let now = me.now();
            me.core.borrow_mut().handle_read(id, result, now);
            me.drive();
        })
        .detach();
    }

    fn mark_storage_failed(&self, why: &str) {
        if !self.storage_failed.replace(true) {
            tracing::error!(
                shard = self.id,
                error = why,
                "log failure: this shard stops acknowledging sends"
            );
            self.shared.storage_failed[self.id as usize].store(true, Ordering::Relaxed);
            self.metrics.set_storage_failed(true);
        }
    }

    /// The dispatcher finished with webhook event `id` (the caller drives).
    pub(crate) fn webhook_done(&self, id: u64, outcome: surepush_core::WebhookOutcome) {
        let now = self.now();
        self.core.borrow_mut().handle_webhook_done(id, outcome, now);
    }

    /// Hands the webhook events recovered from the log to the dispatcher
    /// (the caller drives).
    pub(crate) fn hand_out_webhooks(&self) {
        self.core.borrow_mut().hand_out_webhooks();
    }

    /// Reports durability to the core as group commits complete.
    pub(crate) async fn durability_loop(self: Rc<Self>, wake: LocalReceiver<()>) {
        while wake.recv().await.is_some() {
            loop {
                let target = self.durability.borrow().back().map(|(_, lsn)| *lsn);
                let Some(target) = target else { break };
                let started = Instant::now();
                let result = self.log.wait_durable(target).await;
                self.metrics.observe_fsync(started.elapsed());
                let mut last = None;
                {
                    let mut q = self.durability.borrow_mut();
                    while q.front().is_some_and(|(_, lsn)| *lsn <= target) {
                        last = q.pop_front().map(|(t, _)| t);
                    }
                }
                if let Err(e) = &result {
                    self.mark_storage_failed(&e.to_string());
                }
                if let Some(token) = last {
                    let now = self.now();
                    self.core.borrow_mut().handle_appended(
                        token,
                        result.as_ref().map(|_| ()).map_err(|_| ()),
                        now,
                    );
                    self.drive();
                }
            }
        }
    }
}
