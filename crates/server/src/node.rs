//! Starting and stopping a node: one glommio executor per shard, the mesh
//! between them, the listeners, graceful shutdown on SIGTERM/SIGINT, and
//! configuration reloads on SIGHUP ([`crate::reload`]).

mod process;
mod storage_watch;

use crate::webhooks::{Dispatcher, ShardLink};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

use super::admin::{self, AdminHttpConfig, StaticFiles};
use super::admin_api::BackendSlot;
use super::admin_backend::{NodeAdmin, NodeStatusView};
use super::auth::{AuthPart, NodeAuth};
use super::cluster::{run_link_commands, ClusterLink, JoinError, LinkTasks, NodeCluster};
use super::config::{Config, ConfigError, ConfigSources};
use super::data_dir::{DataDirError, DataDirLock};
use super::limits;
use super::listeners::BoundListeners;
use super::logging::LogControl;
use super::mesh::{MeshMsg, PeerQueue};
use super::metrics::Metrics;
use super::reload::{self, LimitsPart, LogLevelPart, Reloader};
use super::runtime::{NodeShared, RuntimeParts, ShardRuntime};
use super::tls::{NodeTls, TlsPart};
use super::transport::{self, mqtt::MqttHandshake, NativeHandshake, Opening};
use surepush_cluster::messaging::LaneEvent;
use surepush_core::{Shard, ShardParams};
use surepush_log::SegmentLog;

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A TLS certificate, key or CA file cannot be used.
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
    /// The data directory holds logs of a different shard count.
    #[error("{0}")]
    Layout(String),
    /// The data directory is in use by another process, or cannot be locked.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// A listener address is taken (by another process) or cannot be bound.
    #[error("cannot listen for {what} connections on {addr}: {source}")]
    Bind {
        /// Which listener ("client", "MQTT", "admin").
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// Cause (`AddrInUse` when another process holds it).
        source: std::io::Error,
    },
    /// An OS-level failure (bind, executor creation, ...).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Token keys or revocations could not be loaded.
    #[error(transparent)]
    Auth(#[from] super::auth::AuthStartError),
    /// The node could not join its cluster (`[cluster]`).
    #[error(transparent)]
    Cluster(#[from] JoinError),
    /// A shard failed.
    #[error("shard {shard}: {message}")]
    Shard {
        /// Shard index.
        shard: usize,
        /// What went wrong.
        message: String,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let context = context.into();
    move |source| ServeError::Io { context, source }
}

/// What a node reloads on SIGHUP: the sources its settings came from (read
/// again) and the log filter (if this process installed one).
#[derive(Debug, Default)]
pub struct Reload {
    /// Where `config` was loaded from.
    pub sources: ConfigSources,
    /// The log filter to change.
    pub log: Option<LogControl>,
}

/// Ends the SIGHUP thread when the node stops.
struct SighupThread(signal_hook::iterator::Handle);

impl Drop for SighupThread {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Runs a node until SIGTERM/SIGINT (then shuts down gracefully) or a shard
/// fails; SIGHUP reloads `config` from `reload.sources`.
pub fn serve(config: Config, reload: Reload) -> Result<(), ServeError> {
    config.validate()?;
    // Before the node allocates most of what it keeps.
    process::tune(&config);
    std::fs::create_dir_all(&config.data_dir)
        .map_err(io_err(format!("create {}", config.data_dir.display())))?;
    // Before anything in the data dir is read or written; held until the
    // process ends.
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    let shards = super::layout::node_shards(&config)?;
    let secret = config.load_token_secret()?;
    let auth = NodeAuth::start(&config, &secret)?;
    let admin_token = config.load_admin_token()?;
    let tls = NodeTls::load(&config.tls)?;
    let io_memory = limits::io_memory_per_shard(config.io_memory_kib, shards);
    let shared = NodeShared::new(shards);
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        for flag in [&shared.shutdown, &shared.signalled] {
            signal_hook::flag::register(sig, flag.clone())
                .map_err(io_err("install signal handler"))?;
        }
    }
    shared.set_live_limits(surepush_core::LiveLimits::of(&config.core));
    let mut reloader = Reloader::new(reload.sources, config.clone())
        .with(Box::new(LimitsPart(shared.clone())))
        .with(Box::new(AuthPart(auth.clone())));
    if let Some(log) = reload.log {
        reloader = reloader.with(Box::new(LogLevelPart(log)));
    }
    if let Some(tls) = &tls {
        reloader = reloader.with(Box::new(TlsPart(tls.clone())));
    }
    let _sighup =
        SighupThread(reload::on_sighup(reloader).map_err(io_err("install the SIGHUP handler"))?);
    // Before any shard serves: a cluster node routes by a complete
    // placement from its first connection on.
    let cluster = match config.cluster.enabled() {
        true => Some(NodeCluster::join(&config, shards)?),
        false => None,
    };
    let collector = cluster.as_ref().and_then(|c| c.take_collector());
    let metrics = Metrics::with_cluster(shards, collector);
    // Lives as long as the node: shards restarted after a storage failure
    // keep their links (reports of the old generation are ignored by the
    // new one, which hands its recovered events out again).
    let (_dispatcher, webhook_links) = match config.webhooks.enabled() {
        true => {
            if config.webhooks.secret.is_empty() {
                tracing::warn!("webhooks.secret is empty: webhook requests are not signed");
            }
            let (d, links) = Dispatcher::start(&config.webhooks, shards, metrics.webhooks())
                .map_err(io_err("start the webhook dispatcher"))?;
            tracing::info!(url = %config.webhooks.url, "webhooks on");
            (Some(d), Some(Arc::new(links)))
        }
        false => (None, None),
    };
    let config = Arc::new(config);
    loop {
        let keys = NodeKeys {
            auth: auth.clone(),
            admin_token: admin_token.clone(),
            tls: tls.clone(),
        };
        let ends = (&shared, &metrics, &webhook_links, &cluster);
        let run = run_shards(&config, shards, keys, io_memory, ends);
        if run.is_err()
            || !shared.restart.load(Ordering::Relaxed)
            || shared.signalled.load(Ordering::Relaxed)
        {
            if let Some(cluster) = &cluster {
                cluster.leave();
            }
            run?;
            tracing::info!("stopped cleanly");
            return Ok(());
        }
        // A shard's log failed and the disk has room again: start every
        // shard from its log, exactly as after a crash (the durable prefix
        // is all that counts), without leaving the process.
        tracing::warn!("restarting the shards from their logs after a storage failure");
        shared.restart.store(false, Ordering::Relaxed);
        shared
            .storage_failed
            .iter()
            .for_each(|f| f.store(false, Ordering::Relaxed));
        shared.shutdown.store(false, Ordering::Relaxed);
    }
}

/// Runs one generation of the shard executors until they all stop.
fn run_shards(
    config: &Arc<Config>,
    shards: u16,
    keys: NodeKeys,
    io_memory: usize,
    (shared, metrics, webhooks, cluster): (
        &Arc<NodeShared>,
        &Arc<Metrics>,
        &WebhookLinks,
        &Option<Arc<NodeCluster>>,
    ),
) -> Result<(), ServeError> {
    let mesh = MeshBuilder::<MeshMsg, _>::full(shards as usize, config.mesh_channel_size);
    let (origin, wall_ms) = clock_origin();
    let placement = if config.pin_cores {
        PoolPlacement::MaxSpread(shards as usize, None)
    } else {
        PoolPlacement::Unbound(shards as usize)
    };
    tracing::info!(
        shards,
        listen = %config.listen,
        admin = %config.admin_listen,
        data_dir = %config.data_dir.display(),
        io_memory,
        "starting"
    );
    // MQTT state files of an earlier build: moved into the logs before
    // any shard serves.
    let legacy = super::mqtt_legacy::LegacyMqttState::read(
        &config.data_dir,
        config.log.recovery == surepush_log::RecoveryMode::Salvage,
        shards as usize,
    )
    .map_err(io_err("read the MQTT state files of an earlier build"))?
    .map(Arc::new);
    let bind_at = |what, addr: Option<std::net::SocketAddr>| {
        addr.map(|addr| BoundListeners::bind(what, addr, shards as usize))
            .transpose()
    };
    // Bound here, before any shard runs, so a taken address stops the node
    // with its name instead of failing one shard (see `listeners`).
    let (mqtt, ws) = (&config.mqtt, &config.websocket);
    let listeners = Arc::new(NodeListeners {
        client: BoundListeners::bind("client", config.listen, shards as usize)?,
        mqtt: bind_at("MQTT", mqtt.enabled.then_some(mqtt.listen))?,
        websocket: bind_at("WebSocket", ws.enabled.then_some(ws.listen))?,
        admin: BoundListeners::bind("admin", config.admin_listen, 1)?,
        tls: bind_at("TLS client", config.tls.listen)?,
        mqtt_tls: bind_at("MQTT TLS", config.tls.mqtt_listen)?,
        ws_tls: bind_at("WebSocket TLS", config.tls.ws_listen)?,
    });
    let (config, shared, metrics) = (config.clone(), shared.clone(), metrics.clone());
    let cluster = cluster.clone();
    let webhooks = webhooks.clone();
    let mut builder = LocalExecutorPoolBuilder::new(placement)
        .name("surepush")
        .io_memory(io_memory);
    if config.spin_before_park_us > 0 {
        builder = builder.spin_before_park(Duration::from_micros(config.spin_before_park_us));
    }
    let handles = builder
        .on_all_shards(move || {
            let ctx = ShardContext {
                config: (*config).clone(),
                listeners: listeners.clone(),
                legacy: legacy.clone(),
                shards,
                keys: keys.clone(),
                shared,
                metrics,
                origin,
                wall_ms,
                cluster,
                webhooks,
            };
            async move {
                let shared = ctx.shared.clone();
                let result = shard_main(ctx, mesh).await;
                if let Err(message) = &result {
                    // Say it now and stop the other shards: the node waits
                    // for every shard before it reports, and a serving
                    // shard never ends by itself (the process would hang,
                    // half up, with the reason unsaid).
                    tracing::error!(%message, "a shard failed; stopping the node");
                    shared.shutdown.store(true, Ordering::Relaxed);
                }
                result
            }
        })
        .map_err(|e| ServeError::Io {
            context: "start shard executors".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
    let mut first_error = None;
    for (shard, result) in handles.join_all().into_iter().enumerate() {
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(message)) => Some(message),
            Err(e) => Some(format!("executor failed: {e}")),
        };
        if let Some(message) = failure {
            tracing::error!(shard, %message, "shard stopped with an error");
            first_error.get_or_insert(ServeError::Shard { shard, message });
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The node's listening sockets, bound before the shards start.
struct NodeListeners {
    client: BoundListeners,
    mqtt: Option<BoundListeners>,
    websocket: Option<BoundListeners>,
    /// Served by shard 0 only.
    admin: BoundListeners,
    /// The native protocol over TLS (`tls.listen`).
    tls: Option<BoundListeners>,
    /// MQTT over TLS (`tls.mqtt_listen`).
    mqtt_tls: Option<BoundListeners>,
    /// WebSocket over TLS (`tls.ws_listen`).
    ws_tls: Option<BoundListeners>,
}

/// The node's secrets and certificates, loaded once before the first
/// generation of shards.
#[derive(Clone)]
struct NodeKeys {
    /// Token verification (secret, public keys, revocations).
    auth: Arc<NodeAuth>,
    admin_token: String,
    /// The TLS configs in force, when a listener speaks TLS.
    tls: Option<Arc<NodeTls>>,
}

struct ShardContext {
    config: Config,
    listeners: Arc<NodeListeners>,
    legacy: Option<Arc<super::mqtt_legacy::LegacyMqttState>>,
    shards: u16,
    keys: NodeKeys,
    shared: Arc<NodeShared>,
    metrics: Arc<Metrics>,
    origin: Instant,
    wall_ms: u64,
    cluster: Option<Arc<NodeCluster>>,
    webhooks: WebhookLinks,
}

/// Each shard's link to the webhook dispatcher, when `[webhooks]` is on.
type WebhookLinks = Option<Arc<Vec<ShardLink>>>;

async fn shard_main(
    ctx: ShardContext,
    mesh: MeshBuilder<MeshMsg, glommio::channels::channel_mesh::Full>,
) -> Result<(), String> {
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|_| "mesh join failed".to_string())?;
    let id = senders.peer_id() as u16;
    // Shard 0 serves the admin port from before recovery: liveness,
    // readiness (no, with the reason) and metrics answer while logs are
    // recovered; the API once its backend is attached below.
    let admin = match id {
        0 => Some(AdminTask::start(&ctx)?),
        _ => None,
    };
    let config = Rc::new(ctx.config);
    let (log, mut recovered, report) = SegmentLog::open(config.log_config(id))
        .await
        .map_err(|e| format!("cannot open the log: {e}"))?;
    tracing::info!(shard = id, records = report.records, segments = report.segments, sidecars = report.sidecars, checkpoint = ?report.checkpoint, truncated = ?report.truncated, elapsed = ?report.elapsed, "log recovered");
    if let Some(salvage) = &report.salvage {
        tracing::error!(
            shard = id,
            lost = salvage.lost.len(),
            skipped = salvage.skipped.len(),
            "log salvaged (log.recovery = \"salvage\"):\n{salvage}"
        );
    }
    let verifier = ctx.keys.auth.verifier().clone();
    let params = ShardParams {
        id: surepush_core::ShardId(id),
        shards: ctx.shards,
        wall_ms_at_zero: ctx.wall_ms,
    };
    if let Some(legacy) = &ctx.legacy {
        legacy
            .move_into(id, &log, &mut recovered, &ctx.shared.shutdown)
            .await?;
    }
    let mut core = Shard::new(params, config.core.clone(), verifier.clone(), recovered);
    let link = match &ctx.cluster {
        Some(cluster) => Some(
            ClusterLink::new(surepush_core::ShardId(id), cluster.clone()).ok_or(
                "this shard's cluster lane is gone (after a storage failure a cluster node \
                 restarts as a process)",
            )?,
        ),
        None => None,
    };
    if let Some((link, _)) = &link {
        link.refresh_routes(&mut core); // before the first connection is routed
    }
    core.set_webhook_rules(config.webhooks.rules(&config.core));
    // Names of the topic streams homed here, for wildcard filters: read
    // back by the first actions this shard carries out.
    core.load_topic_names();
    let webhooks = ctx.webhooks.as_ref().map(|l| l[id as usize].clone());
    let mqtt = config.mqtt.enabled.then(|| {
        let params = surepush_mqtt::bridge::BridgeParams {
            page: config.mqtt.page,
            inflight: config.mqtt.inflight,
            // Half the output budget at most: a replay alone never makes
            // a reading client a slow consumer.
            inflight_bytes: config
                .mqtt
                .inflight_bytes
                .min(config.max_write_buffer_bytes / 2)
                .max(1),
            max_packet: config.mqtt.max_packet,
            receive_max: config.core.max_pending_sends.min(u32::from(u16::MAX)) as u16,
            room_window: config.core.room_window,
            topics_open: config.mqtt.topics_open,
        };
        transport::MqttShard::new(params, ctx.wall_ms)
    });
    let senders = Rc::new(senders);
    let mut peers = Vec::new();
    for p in 0..ctx.shards {
        if p == id {
            peers.push(None);
            continue;
        }
        let (queue, wake) = PeerQueue::new();
        glommio::spawn_local(queue.clone().forward(senders.clone(), p as usize, wake)).detach();
        peers.push(Some(queue));
    }
    let (rt, durability_wake) = ShardRuntime::new(RuntimeParts {
        id,
        config: config.clone(),
        verifier: verifier.clone(),
        auth: ctx.keys.auth.clone(),
        shared: ctx.shared.clone(),
        metrics: ctx.metrics.shard(id),
        core,
        log: Rc::new(log),
        peers,
        origin: ctx.origin,
        wall_ms_at_origin: ctx.wall_ms,
        mqtt,
        cluster: link.as_ref().map(|(link, _)| link.clone()),
        webhooks: webhooks.clone(),
    });
    if let Some((link, tasks)) = link {
        start_link_tasks(&rt, link, tasks);
    }
    rt.metrics.set_storage_failed(false);
    rt.refresh_live_limits();
    rt.resume_delayed_wills();
    if let Some(salvage) = &report.salvage {
        rt.metrics.count_salvaged(salvage.lost.len() as u64);
    }
    glommio::spawn_local(rt.clone().durability_loop(durability_wake)).detach();
    glommio::spawn_local(transport::park::run(rt.clone())).detach();
    if let Some(link) = webhooks {
        glommio::spawn_local(crate::webhooks::report_loop(rt.clone(), link)).detach();
        rt.hand_out_webhooks();
        rt.drive();
    }
    for (_, rx) in receivers.streams() {
        let rt = rt.clone();
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                match msg {
                    MeshMsg::Batch(batch) => {
                        for m in batch {
                            rt.peer(m);
                        }
                        rt.drive();
                    }
                    MeshMsg::Handoff(handoff) => transport::adopt(&rt, *handoff),
                    MeshMsg::Kick(kick) => {
                        let closed = rt.kick_here(kick.user, kick.device);
                        let _ = kick.reply.try_send(closed);
                    }
                    MeshMsg::Presence(q) => {
                        let _ = q.reply.try_send(rt.presence_here(q.users));
                    }
                    MeshMsg::Conversations(q) => rt.answer_conversations(q),
                }
            }
        })
        .detach();
    }
    let tls = ctx.keys.tls.clone().map(Opening::Tls);
    let l = &ctx.listeners;
    let mut accepting = spawn_accepting::<NativeHandshake>(
        &rt,
        [
            (Some(&l.client), Some(Opening::Plain)),
            (l.tls.as_ref(), tls.clone()),
        ],
    )?;
    accepting.extend(spawn_accepting::<MqttHandshake>(
        &rt,
        [
            (l.mqtt.as_ref(), Some(Opening::Plain)),
            (l.mqtt_tls.as_ref(), tls.clone()),
        ],
    )?);
    for (l, opening) in [(&l.websocket, Some(Opening::Plain)), (&l.ws_tls, tls)] {
        let Some(l) = l else { continue };
        let opening = opening.ok_or("a TLS listener without TLS settings")?;
        accepting.push(glommio::spawn_local(accept_loop(
            rt.clone(),
            l.take()?,
            opening,
            transport::accept_ws::<ShardRuntime>,
        )));
    }
    if let Some(admin) = &admin {
        let backend = NodeAdmin::new(rt.clone(), ctx.shared.clone(), ctx.keys.auth.clone());
        admin.backend.attach(Rc::new(backend));
        let need = 2 * (config.log.segment_mib << 20) + (1 << 20);
        glommio::spawn_local(storage_watch::watch_storage(
            ctx.shared.clone(),
            config.data_dir.clone(),
            need,
        ))
        .detach();
    }
    ctx.shared.serving[usize::from(id)].store(true, Ordering::Relaxed);
    tracing::info!(shard = id, "serving");
    run_timers(&rt).await;
    ctx.shared.serving[usize::from(id)].store(false, Ordering::Relaxed);
    // Graceful shutdown: stop accepting, tell clients, flush, close the log.
    for task in accepting {
        task.cancel().await;
    }
    rt.begin_shutdown();
    // The admin port answers through the grace period (readiness: no,
    // "shutting down"), so a balancer sees the node leave.
    let grace = Instant::now() + Duration::from_millis(config.shutdown_grace_ms);
    while rt.open_connections() > 0 && Instant::now() < grace {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    // Close the listening sockets before this generation ends: a listener
    // left open (tasks of a finished executor are never run again) would
    // take a share of new connections under SO_REUSEPORT after an
    // in-process restart, and never answer them.
    if let Some(admin) = admin {
        admin.stop().await;
    }
    rt.shutdown_connections();
    rt.record_metrics();
    let log = rt.log.clone();
    let failed = rt.storage_failed.get();
    drop(rt);
    if failed {
        // Nothing more can be written; what is durable is what recovery
        // will find.
        tracing::warn!(shard = id, "stopped with a failed log");
        return Ok(());
    }
    match Rc::try_unwrap(log) {
        Ok(log) => log
            .close()
            .await
            .map_err(|e| format!("closing the log: {e}"))?,
        Err(log) => log
            .flush()
            .await
            .map_err(|e| format!("flushing the log: {e}"))?,
    }
    tracing::info!(shard = id, "stopped");
    Ok(())
}

/// The admin HTTP server of a generation (on shard 0).
struct AdminTask {
    serving: glommio::Task<()>,
    stop: Rc<std::cell::Cell<bool>>,
    /// Where the API backend goes once shard 0 recovered.
    backend: Rc<BackendSlot<NodeAdmin>>,
}

impl AdminTask {
    /// Serves the admin listener: status at once, the API once attached.
    fn start(ctx: &ShardContext) -> Result<AdminTask, String> {
        let listener = ctx.listeners.admin.take()?;
        let status = Rc::new(NodeStatusView {
            metrics: ctx.metrics.clone(),
            shared: ctx.shared.clone(),
        });
        let backend = Rc::new(BackendSlot::default());
        let settings = &ctx.config.admin;
        let static_files = (!settings.static_dir.as_os_str().is_empty())
            .then(|| StaticFiles::new(settings.static_dir.clone(), settings.static_path.clone()));
        if settings.demo_tokens {
            tracing::warn!(
                admin = %ctx.config.admin_listen,
                "[admin] demo_tokens is on: POST /demo/token gives anyone who reaches the admin port a token for any user (demos only)"
            );
        }
        let http = AdminHttpConfig {
            admin_token: Some(ctx.keys.admin_token.clone()),
            tls: ctx
                .keys
                .tls
                .as_ref()
                .and_then(|t| t.admin().map(|_| t.clone())),
            static_files,
            demo_token_ttl_s: settings.demo_tokens.then_some(settings.demo_token_ttl_s),
            ..AdminHttpConfig::default()
        };
        let stop = Rc::new(std::cell::Cell::new(false));
        let serving = glommio::spawn_local(admin::serve(
            listener,
            status,
            backend.clone(),
            http,
            stop.clone(),
        ));
        Ok(AdminTask {
            serving,
            stop,
            backend,
        })
    }

    /// Stops accepting, closes idle connections, waits for the server.
    async fn stop(self) {
        self.stop.set(true);
        self.serving.await;
    }
}

/// The shard's tick task: fires the core's timers (retransmits, keepalive,
/// cursor flushes), refreshes metrics and runs retention, until shutdown.
/// Runs a cluster shard's lane: requests and replies from other nodes go
/// to the core as if from the mesh; the backlog and replies drain.
fn start_link_tasks(rt: &Rc<ShardRuntime>, link: Rc<ClusterLink>, tasks: LinkTasks) {
    let LinkTasks {
        events,
        backlog,
        commands: (replier, commands),
        ticket_freed,
    } = tasks;
    glommio::spawn_local(link.clone().drain_backlog(backlog)).detach();
    if let Some(calls) = link.take_incoming_calls() {
        glommio::spawn_local(crate::cluster::serve_admin_calls(rt.clone(), calls)).detach();
    }
    if let Some(moves) = link.take_move_commands() {
        let rt = rt.clone();
        glommio::spawn_local(async move {
            while let Ok(command) = moves.recv_async().await {
                rt.move_command(command);
            }
        })
        .detach();
    }
    glommio::spawn_local(run_link_commands(replier, commands)).detach();
    let rt = rt.clone();
    glommio::spawn_local(async move {
        loop {
            let Ok(event) = events.recv_async().await else {
                return; // the cluster thread stopped
            };
            match event {
                // A batch's requests: one wake-up for all (issue #20), a
                // ticket each (all taken: the rest wait for answers).
                LaneEvent::Requests { from, requests } => {
                    for request in requests {
                        while link.tickets_exhausted() {
                            rt.drive();
                            if ticket_freed.recv().await.is_none() {
                                return;
                            }
                        }
                        link.request(&from, request)
                            .into_iter()
                            .for_each(|m| rt.peer(m));
                    }
                }
                event => link.receive(event).into_iter().for_each(|m| rt.peer(m)),
            }
            rt.drive();
        }
    })
    .detach();
}

async fn run_timers(rt: &Rc<ShardRuntime>) {
    // New timers can be armed while this task sleeps; waking at least this
    // often bounds how late such a timer fires.
    const MAX_SLEEP: Duration = Duration::from_millis(10);
    let mut last_metrics = Instant::now();
    let mut last_retention = Instant::now();
    let retention_every = Duration::from_secs(rt.config.log.retention_interval_s.max(1));
    while !rt.shared.shutdown.load(Ordering::Relaxed) {
        rt.refresh_live_limits();
        let now = rt.now();
        let wait = rt
            .poll_timeout()
            .map_or(MAX_SLEEP, |t| Duration::from_nanos(t.saturating_sub(now)))
            .min(MAX_SLEEP);
        if !wait.is_zero() {
            glommio::timer::sleep(wait).await;
        }
        rt.timeout();
        if last_metrics.elapsed() >= Duration::from_secs(1) {
            last_metrics = Instant::now();
            rt.record_metrics();
            rt.forget_dead_nodes();
        }
        if last_retention.elapsed() >= retention_every {
            last_retention = Instant::now();
            let rt = rt.clone();
            glommio::spawn_local(async move {
                match rt.log.enforce_retention(ShardRuntime::wall_ms_now()).await {
                    Ok(r) => {
                        rt.metrics.count_unacked_expired(r.unacked_messages());
                        tracing::debug!(shard = rt.id, ?r, "retention");
                    }
                    Err(e) => tracing::warn!(shard = rt.id, error = %e, "retention failed"),
                }
            })
            .detach();
        }
    }
}

/// The accept tasks of protocol `H` on each of its listeners that is
/// bound (plain, TLS), each with its stream layer.
fn spawn_accepting<H: transport::Handshake + 'static>(
    rt: &Rc<ShardRuntime>,
    listeners: [(Option<&BoundListeners>, Option<Opening>); 2],
) -> Result<Vec<glommio::Task<()>>, String> {
    let mut tasks = Vec::new();
    for (listener, opening) in listeners {
        let Some(listener) = listener else { continue };
        let opening = opening.ok_or("a TLS listener without TLS settings")?;
        tasks.push(glommio::spawn_local(accept_loop(
            rt.clone(),
            listener.take()?,
            opening,
            transport::accept::<H, ShardRuntime>,
        )));
    }
    Ok(tasks)
}

async fn accept_loop<F, Fut>(
    rt: Rc<ShardRuntime>,
    listener: TcpListener,
    opening: Opening,
    serve: F,
) where
    F: Fn(Rc<ShardRuntime>, glommio::net::TcpStream, Opening) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let failures_log = super::log_every::LogEvery::new(Duration::from_secs(10));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(serve(rt.clone(), stream, opening.clone())).detach();
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, and
                // say so once in a while, not 20 times a second.
                if let Some(failures) = failures_log.tick() {
                    tracing::warn!(shard = rt.id, error = %e, failures, "accept failed");
                }
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The node's monotonic origin and the wall-clock ms at that instant. The
/// origin is put on the wall clock's last whole millisecond, so the
/// node's wall time (`wall_ms_at_origin + elapsed ms`, message and
/// presence timestamps) is the wall clock's floor, not up to 2 ms behind
/// it from truncating both terms.
fn clock_origin() -> (Instant, u64) {
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let past_ms = Duration::from_nanos(u64::from(wall.subsec_nanos() % 1_000_000));
    let origin = now.checked_sub(past_ms).unwrap_or(now);
    (origin, wall.as_millis() as u64)
}
