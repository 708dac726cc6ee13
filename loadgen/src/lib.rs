//! The surepush load generator: drives real client sessions against a
//! gateway, measures latency with hdrhistogram, and checks the delivery
//! guarantees of everything it sent.
//!
//! Scenario `one-to-one`: `pairs` senders each send `messages` messages to
//! their own receiver. Each payload carries the *intended* send time; with a
//! rate set, messages are scheduled on a fixed timetable and latency is
//! measured from that timetable, so a stalled gateway shows up as latency
//! instead of silently lowering the offered load (coordinated omission).
//!
//! This first version drives each connection from its own OS thread with
//! the SDK's blocking client, which is enough for correctness runs and
//! modest rates; the thread-per-core engine for large connection counts is
//! still to come.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use serde::Serialize;
use surepush_client::{BlockingClient, ClientConfig, Event, Gateway, TlsGateway, Transport};
use surepush_proto::{DeviceId, ErrorCode, Qos, Seq, UserId};
use surepush_token::{Claims, TokenVerifier};

mod backlog;
mod check;
pub mod cli;
mod cluster;
mod fault;
mod fleet;
mod floor;
mod group;
mod progress;
pub use progress::{latency_chart_svg, Progress};
pub mod compare;
mod idle;
mod mqtt_backlog;
mod mqtt_peer;
mod nats_peer;
pub mod nats_server;
mod poller;
pub mod procfs;
mod raw;
mod room;
mod routed;
mod rumqtt_peer;
mod storm;
mod ws;
pub use backlog::{run_backlog, BacklogReport, BacklogScenario};
pub use check::DeliveryCheck;
pub use cluster::{run_cluster, ClusterClass, ClusterReport};
pub use fault::FaultRun;
pub use fleet::DropMode;
pub use floor::{measure_floor, Floor};
pub use group::{run_group, GroupReport, GroupScenario};
pub use idle::{run_idle, IdleReport, IdleScenario};
pub use mqtt_backlog::{run_mqtt_backlog, MqttBacklogReport, MqttBacklogScenario};
pub use mqtt_peer::{run_mqtt, MqttTarget};
pub use nats_peer::run_jetstream;
pub use raw::{run_raw, start_relay, PairLoad, RawReport, Relay};
pub use room::{run_room, run_room_with_frozen, FrozenComparison, RoomReport, RoomScenario};
pub use rumqtt_peer::run_rumqttc;
pub use storm::{run_storm, StormReport, StormRound, StormScenario};

/// What to run (`one-to-one`'s options; the secret and the first user are
/// filled in by the command, not given as options).
#[derive(Clone, Debug, clap::Args)]
pub struct Scenario {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub server: SocketAddr,
    /// The gateway's token secret.
    #[arg(skip)]
    pub secret: Vec<u8>,
    /// Sender/receiver pairs.
    #[arg(long, default_value_t = 4)]
    pub pairs: u32,
    /// Messages per sender.
    #[arg(long, default_value_t = 1000)]
    pub messages: u32,
    /// QoS 0, 1 or 2 (QoS 0: no SENDACK; losses are counted, not failed).
    #[arg(long, default_value = "1", value_parser = cli::parse_qos)]
    pub qos: Qos,
    /// Messages per second per sender; 0 = closed loop (next after SENDACK).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// Payload bytes (at least 16: timestamp and index).
    #[arg(long, default_value_t = 256)]
    pub payload: usize,
    /// Seconds to wait for stragglers.
    #[arg(long = "timeout-s", value_name = "SECONDS", default_value = "30", value_parser = cli::parse_seconds)]
    pub timeout: Duration,
    /// First user id used (runs use fresh users so old inboxes do not interfere).
    #[arg(skip = fresh_user_base())]
    pub first_user: u64,
    /// The (sender, receiver) users of each pair, when chosen by the
    /// caller (`cluster` picks node-local and cross-node pairs); empty:
    /// pair `p` is `first_user + 2p` → `first_user + 2p + 1`. When set,
    /// `pairs` is its length.
    #[arg(skip)]
    pub pair_users: Vec<(u64, u64)>,
    /// Print a progress line to stderr every second.
    #[arg(skip)]
    pub progress: bool,
    /// Fault: when half the messages are acknowledged, run this shell
    /// command (e.g. kill the gateway with SIGKILL and start it again);
    /// clients reconnect and resume, and the checker still applies.
    /// `{receiver}` in it becomes the first pair's receiver (e.g.
    /// `surepush cluster move --user {receiver} --to n1`) and
    /// `{receiver_node}` the address that receiver is connected to.
    #[arg(long)]
    pub restart_cmd: Option<String>,
    /// Fault: receivers pause this long after every event, so their ACKs
    /// are late (past the gateway's ack timeout it retransmits).
    #[arg(long = "ack-delay-ms", value_name = "MS", default_value = "0", value_parser = cli::parse_millis)]
    pub ack_delay: Duration,
    /// The gateway's pid, for its CPU time per message; default: the
    /// process listening on the `--server` port, if one is found.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The nodes of a cluster (comma-separated): the client of user `u`
    /// connects to the `u mod n`-th and follows the gateway's redirect to
    /// its user's node (docs/CLUSTER.md); server CPU is the sum over every
    /// node found listening. Empty: everything goes to `--server`.
    #[arg(long, value_delimiter = ',')]
    pub servers: Vec<SocketAddr>,
    /// TLS to the gateway (`--tls --ca FILE`).
    #[command(flatten)]
    pub tls: TlsOptions,
    /// Connect over the gateway's WebSocket listener at this address
    /// (native protocol in binary messages, subprotocol `surepush.v1`)
    /// instead of `--server` (same node).
    #[arg(long)]
    pub ws: Option<SocketAddr>,
}

/// TLS to the gateway: `--server` is a TLS listener (`tls.listen`), or
/// with `--ws` the WebSocket one is (`tls.ws_listen`, `wss://`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TlsOptions {
    /// The `--server` address is the gateway's TLS listener.
    #[arg(long, requires = "ca")]
    pub tls: bool,
    /// The CA certificate (PEM) that signed the gateway's certificate.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The name the gateway's certificate must carry.
    #[arg(long, default_value = "localhost")]
    pub tls_name: String,
}

impl TlsOptions {
    /// How to reach `addr`: plain, or TLS verified with the CA.
    pub fn gateway(&self, addr: SocketAddr) -> Result<Gateway, String> {
        let tls = match (&self.tls, &self.ca) {
            (false, _) => None,
            (true, None) => return Err("--tls needs --ca".into()),
            (true, Some(ca)) => Some(
                TlsGateway::with_ca_file(ca, &self.tls_name)
                    .map_err(|e| format!("--ca {}: {e}", ca.display()))?,
            ),
        };
        Ok(Gateway { addr, tls })
    }
}

impl Scenario {
    /// `one-to-one` with its documented defaults (every option left out)
    /// against `server` with `secret`: the one place those defaults live
    /// (the command's own) for callers that set a few fields.
    pub fn new(server: SocketAddr, secret: Vec<u8>) -> Scenario {
        use clap::{Args, FromArgMatches};
        let command = Scenario::augment_args(clap::Command::new("one-to-one"));
        let matches = command.get_matches_from(["one-to-one"]);
        let defaults = Scenario::from_arg_matches(&matches).expect("the defaults parse");
        Scenario {
            server,
            secret,
            ..defaults
        }
    }

    /// The (sender, receiver) users of pair `p`.
    fn pair(&self, p: u32) -> (u64, u64) {
        match self.pair_users.get(p as usize) {
            Some(&users) => users,
            None => {
                let sender = self.first_user + 2 * u64::from(p);
                (sender, sender + 1)
            }
        }
    }

    /// Where the clients connect, and how.
    fn endpoint(&self) -> (SocketAddr, Transport) {
        match self.ws {
            Some(ws) => (ws, websocket()),
            None => (self.server, Transport::Tcp),
        }
    }
}

/// The gateway's WebSocket listener, on its default path.
fn websocket() -> Transport {
    Transport::WebSocket { path: "/".into() }
}

/// A client that, when the gateway goes away, reconnects and resumes its
/// session (outbox and position carry over), trying for up to `patience`.
struct Reconnecting {
    c: Option<BlockingClient>,
    addr: Gateway,
    /// TCP (plain or TLS, as `addr` says) or WebSocket.
    transport: Transport,
    patience: Duration,
}

impl Reconnecting {
    fn client(&mut self) -> &mut BlockingClient {
        self.c.as_mut().expect("present between calls")
    }

    fn recover(&mut self) -> Result<(), String> {
        let mut session = self.c.take().expect("present between calls").into_session();
        let deadline = Instant::now() + self.patience;
        loop {
            let wait = Duration::from_secs(1);
            let resumed = match &self.transport {
                Transport::Tcp => BlockingClient::try_resume(self.addr.clone(), session, wait),
                ws => BlockingClient::try_resume_over(self.addr.clone(), ws, session, wait),
            };
            match resumed {
                Ok(c) => {
                    self.c = Some(c);
                    return Ok(());
                }
                Err(failed) => {
                    let (e, back) = *failed;
                    if Instant::now() > deadline {
                        return Err(format!("gateway did not come back: {e}"));
                    }
                    session = back;
                    // Retry backoff while the gateway restarts.
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// The next event; `Ok(None)` on timeout or after a reconnect. A
    /// DISCONNECT `WrongNode` (the user's partition moved to another node
    /// of a cluster) reconnects to the node it names.
    fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>, String> {
        match self.client().next_event(timeout) {
            Ok(Some(Event::Disconnected(code, to))) if code == ErrorCode::WrongNode as u16 => {
                use std::net::ToSocketAddrs;
                let to = to.to_socket_addrs().ok().and_then(|mut a| a.next());
                self.addr.addr = to.ok_or("a redirect names no address")?;
                self.recover().map(|()| None)
            }
            Ok(e) => Ok(e),
            Err(_) => self.recover().map(|()| None),
        }
    }

    /// Sends; a message that could not be written goes out after the
    /// reconnect (it is in the session's outbox).
    fn send(&mut self, to: UserId, qos: Qos, payload: Bytes) -> Result<u64, String> {
        let (id, written) = self.client().queue_send(to, qos, payload);
        if written.is_err() {
            self.recover()?;
        }
        Ok(id)
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

impl Latency {
    /// `p50 … ms  p99 … ms  p99.9 … ms  max … ms`.
    pub fn to_text(&self) -> String {
        format!(
            "p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
            self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms
        )
    }
}

/// What a run measured and checked.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Messages sent (SEND issued).
    pub sent: u64,
    /// Messages acknowledged stored.
    pub acked: u64,
    /// Distinct messages delivered.
    pub delivered: u64,
    /// Deliveries of a message already delivered.
    pub duplicates: u64,
    /// Acknowledged messages never delivered.
    pub lost: u64,
    /// Deliveries out of per-sender order.
    pub out_of_order: u64,
    /// Send to SENDACK.
    pub ack_latency: Latency,
    /// Send to delivery at the receiver.
    pub deliver_latency: Latency,
    /// Acknowledged messages per second over the run.
    pub acked_per_sec: f64,
    /// Wall time of the run (s).
    pub seconds: f64,
    /// The gateway's CPU time (user + system, all threads, from /proc)
    /// over the run per acknowledged message (µs); none when its process
    /// was not found or changed (a restart).
    pub server_cpu_us_per_msg: Option<f64>,
    /// Send to SENDACK, every sample (ns).
    #[serde(skip)]
    pub ack_histogram: Histogram<u64>,
    /// Send to delivery, every sample (ns).
    #[serde(skip)]
    pub deliver_histogram: Histogram<u64>,
    /// Each pair's longest send to SENDACK (ms), in pair order.
    pub ack_max_ms_by_pair: Vec<f64>,
    /// The `--restart-cmd` fault, when one ran.
    pub fault: Option<FaultRun>,
}

impl Report {
    /// True when the delivery guarantees held for this QoS: QoS 0 may lose
    /// (at most once) but never repeats, QoS 1 never loses, QoS 2 neither.
    pub fn passed(&self, qos: Qos) -> bool {
        self.out_of_order == 0
            && match qos {
                Qos::AtMostOnce => self.duplicates == 0,
                Qos::AtLeastOnce => self.lost == 0,
                Qos::ExactlyOnce => self.lost == 0 && self.duplicates == 0,
            }
    }

    /// A table for people.
    pub fn to_text(&self) -> String {
        format!(
            "sent {}  acked {}  delivered {}  duplicates {}  lost {}  out-of-order {}\n\
             acked/s {:.0} over {:.2} s\n\
             send->ack     {}\n\
             send->deliver {}\n\
             gateway CPU {} per message\n",
            self.sent,
            self.acked,
            self.delivered,
            self.duplicates,
            self.lost,
            self.out_of_order,
            self.acked_per_sec,
            self.seconds,
            self.ack_latency.to_text(),
            self.deliver_latency.to_text(),
            procfs::format_cpu(self.server_cpu_us_per_msg),
        ) + &self.fault_text()
    }
}

pub(crate) fn latency(h: &Histogram<u64>) -> Latency {
    let ms = |ns: u64| ns as f64 / 1e6;
    Latency {
        p50_ms: ms(h.value_at_quantile(0.5)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 600_000_000_000, 3).expect("valid bounds")
}

/// A user id range no earlier run used: the wall clock in ms, scaled.
pub fn fresh_user_base() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ms * 1_000
}

/// A token for `user`, device 1, valid for an hour.
pub(crate) fn mint_token(secret: &[u8], user: u64) -> String {
    mint_token_granting(secret, user, Default::default())
}

/// [`mint_token`] with an `acl` claim.
pub(crate) fn mint_token_granting(secret: &[u8], user: u64, acl: surepush_token::Acl) -> String {
    TokenVerifier::new(secret).mint(&Claims {
        user: UserId(user),
        device: DeviceId(1),
        expires_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + 3600,
        acl,
    })
}

pub(crate) fn client(s: &Scenario, user: u64) -> Result<BlockingClient, String> {
    let mut config = ClientConfig::new(mint_token(&s.secret, user), DeviceId(1));
    config.page = 500;
    let timeout = Duration::from_secs(10);
    let connected = match s.servers.len() {
        _ if s.ws.is_some() => {
            let (addr, transport) = s.endpoint();
            let gateway = s.tls.gateway(addr)?;
            BlockingClient::connect_over(gateway, &transport, config, Some(Seq::ZERO), timeout)
        }
        0 => BlockingClient::connect(s.tls.gateway(s.server)?, config, Some(Seq::ZERO), timeout),
        n => {
            let first = s.servers[(user % n as u64) as usize];
            BlockingClient::connect_routed(first, config, Some(Seq::ZERO), timeout)
        }
    };
    connected.map_err(|e| format!("connect as {user}: {e}"))
}

/// Where a connected client landed (its user's node in a cluster).
pub(crate) fn landed(c: &BlockingClient, s: &Scenario) -> SocketAddr {
    c.peer_addr().unwrap_or(s.server)
}

/// How fast connections are set up, one after another.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConnectRate {
    /// What was connected to.
    pub name: String,
    /// Connections per second (each: connect, CONNECT, CONNACK, replay
    /// done, close; one at a time).
    pub per_s: f64,
    /// Server CPU time per connection (µs); none when its process could
    /// not be read.
    pub server_cpu_us_per_connect: Option<f64>,
}

/// Opens `count` sessions of fresh users one after another and times them.
pub fn connect_rate(
    name: &str,
    gateway: &Gateway,
    secret: &[u8],
    count: u32,
) -> Result<ConnectRate, String> {
    let first = fresh_user_base();
    let cpu = procfs::CpuMeter::start(procfs::listener_pid(gateway.addr.port()).ok());
    let started = Instant::now();
    for i in 0..u64::from(count) {
        let config = ClientConfig::new(mint_token(secret, first + i), DeviceId(1));
        let mut c = BlockingClient::connect(gateway.clone(), config, None, Duration::from_secs(10))
            .map_err(|e| format!("{name}: connect: {e}"))?;
        wait_live(&mut c)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(ConnectRate {
        name: name.to_string(),
        per_s: f64::from(count) / elapsed.max(1e-9),
        server_cpu_us_per_connect: cpu.and_then(|m| m.per_message(u64::from(count))),
    })
}

fn wait_live(c: &mut BlockingClient) -> Result<(), String> {
    match c.wait_for(Duration::from_secs(10), |e| {
        matches!(e, Event::CaughtUp | Event::Error(_))
    }) {
        Ok(Some(Event::CaughtUp)) => Ok(()),
        other => Err(format!("session did not become live: {other:?}")),
    }
}

/// Delivery as seen by a receiver: (sender index, message index, latency ns).
type Delivery = (u32, u32, u64);

/// Runs the scenario and checks it.
pub fn run(s: &Scenario) -> Result<Report, String> {
    if s.payload < 16 {
        return Err("payload must be at least 16 bytes".into());
    }
    if !s.pair_users.is_empty() && s.pair_users.len() != s.pairs as usize {
        return Err("pair_users must name every pair".into());
    }
    let origin = Instant::now();
    let progress = Progress::new();
    let printer = s
        .progress
        .then(|| progress.print_every(Duration::from_secs(1)));
    let (deliveries_tx, deliveries_rx) = mpsc::channel::<(u32, Vec<Delivery>)>();
    let mut receivers = Vec::new();
    let mut receiver_nodes = Vec::new();
    for pair in 0..s.pairs {
        let mut c = client(s, s.pair(pair).1)?;
        wait_live(&mut c)?;
        let addr = landed(&c, s);
        receiver_nodes.push(addr);
        let tx = deliveries_tx.clone();
        let (expect, timeout, ack_delay) = (s.messages, s.timeout, s.ack_delay);
        let progress = progress.clone();
        let deadline = Instant::now() + timeout;
        let mut c = Reconnecting {
            c: Some(c),
            addr: s.tls.gateway(addr)?,
            transport: s.endpoint().1,
            patience: timeout,
        };
        receivers.push(std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut distinct = std::collections::HashSet::new();
            while distinct.len() < expect as usize && Instant::now() < deadline {
                if !ack_delay.is_zero() {
                    // Fault injection: a slow device acknowledges late.
                    std::thread::sleep(ack_delay);
                }
                match c.next_event(Duration::from_millis(200)) {
                    Ok(Some(Event::Message(p) | Event::Ephemeral(p))) if p.payload.len() >= 16 => {
                        let sent_at =
                            u64::from_le_bytes(p.payload[..8].try_into().expect("8 bytes"));
                        let index =
                            u32::from_le_bytes(p.payload[8..12].try_into().expect("4 bytes"));
                        let now = origin.elapsed().as_nanos() as u64;
                        if distinct.insert(index) {
                            progress.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        got.push((pair, index, now.saturating_sub(sent_at)));
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send((pair, got));
        }));
    }
    drop(deliveries_tx);
    let started = Instant::now();
    let cpu = match s.servers.is_empty() {
        true => procfs::CpuMeter::start(
            s.server_pid
                .or_else(|| procfs::listener_pid(s.server.port()).ok()),
        ),
        false => procfs::CpuMeter::start_all(
            s.servers
                .iter()
                .filter_map(|a| procfs::listener_pid(a.port()).ok())
                .collect(),
        ),
    };
    let mut cross_pairs = 0;
    let senders_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fault = s.restart_cmd.as_ref().map(|cmd| {
        let (progress, done) = (progress.clone(), senders_done.clone());
        let half = u64::from(s.pairs) * u64::from(s.messages) / 2;
        let cmd = fault::fill(cmd, s.pair(0).1, receiver_nodes[0]);
        std::thread::spawn(move || fault::run_at(&progress, half, &done, cmd))
    });
    let mut senders = Vec::new();
    for pair in 0..s.pairs {
        let (from, to) = s.pair(pair);
        let mut c = client(s, from)?;
        wait_live(&mut c)?;
        let addr = landed(&c, s);
        cross_pairs += u32::from(addr != receiver_nodes[pair as usize]);
        let to = UserId(to);
        let (messages, qos, rate, size, timeout) =
            (s.messages, s.qos, s.rate, s.payload, s.timeout);
        let progress = progress.clone();
        let mut c = Reconnecting {
            c: Some(c),
            addr: s.tls.gateway(addr)?,
            transport: s.endpoint().1,
            patience: timeout,
        };
        senders.push(std::thread::spawn(
            move || -> Result<(Histogram<u64>, u64, u64), String> {
                let mut h = histogram();
                let mut sent_at: HashMap<u64, u64> = HashMap::new();
                let (mut sent, mut acked) = (0u64, 0u64);
                let start = origin.elapsed().as_nanos() as u64;
                let interval = if rate == 0 {
                    0
                } else {
                    1_000_000_000 / u64::from(rate)
                };
                // Reads SENDACKs until `until` (open loop: the next scheduled
                // send), or until one arrives (`None`: closed loop).
                let mut wait_ack = |c: &mut Reconnecting,
                                    sent_at: &mut HashMap<u64, u64>,
                                    until: Option<Instant>|
                 -> Result<u64, String> {
                    let mut n = 0;
                    loop {
                        let wait = match until {
                            Some(t) => t.saturating_duration_since(Instant::now()),
                            None => Duration::from_secs(10),
                        };
                        let Some(e) = c.next_event(wait)? else {
                            return Ok(n);
                        };
                        if let Event::SendAcked(a) = e {
                            if let Some(t) = sent_at.remove(&a.client_msg_id) {
                                let latency =
                                    (origin.elapsed().as_nanos() as u64).saturating_sub(t);
                                h.saturating_record(latency);
                                progress.acked(latency);
                                n += 1;
                                if until.is_none() {
                                    return Ok(n);
                                }
                            }
                        }
                    }
                };
                for index in 0..messages {
                    // Open loop: the intended time is on a fixed timetable.
                    let intended = if interval == 0 {
                        origin.elapsed().as_nanos() as u64
                    } else {
                        let t = start + u64::from(index) * interval;
                        // Until then, collect acknowledgements as they arrive.
                        acked +=
                            wait_ack(&mut c, &mut sent_at, Some(origin + Duration::from_nanos(t)))?;
                        t
                    };
                    let mut payload = BytesMut::with_capacity(size);
                    payload.put_u64_le(intended);
                    payload.put_u32_le(index);
                    payload.resize(size, 0x5A);
                    let id = c.send(to, qos, Bytes::from(payload))?;
                    sent += 1;
                    progress.sent.fetch_add(1, Ordering::Relaxed);
                    if qos == Qos::AtMostOnce {
                        continue; // no SENDACK: fire and forget
                    }
                    sent_at.insert(id, intended);
                    if interval == 0 {
                        acked += wait_ack(&mut c, &mut sent_at, None)?;
                    }
                }
                let deadline = Instant::now() + timeout;
                while !sent_at.is_empty() && Instant::now() < deadline {
                    acked += wait_ack(&mut c, &mut sent_at, None)?;
                }
                Ok((h, sent, acked))
            },
        ));
    }
    let mut ack_h = histogram();
    let (mut sent, mut acked) = (0, 0);
    let mut ack_max_ms_by_pair = Vec::with_capacity(senders.len());
    for t in senders {
        let (h, s_, a) = t.join().map_err(|_| "sender thread panicked")??;
        ack_max_ms_by_pair.push(h.max() as f64 / 1e6);
        ack_h.add(h).map_err(|e| e.to_string())?;
        sent += s_;
        acked += a;
    }
    senders_done.store(true, Ordering::Relaxed);
    let acked_at = started.elapsed();
    let mut deliver_h = histogram();
    let (mut delivered, mut duplicates, mut out_of_order, mut lost) = (0, 0, 0, 0);
    for (_, got) in deliveries_rx.iter() {
        let mut seen = std::collections::HashSet::new();
        let mut last: Option<u32> = None;
        for (_, index, lat) in &got {
            if !seen.insert(*index) {
                duplicates += 1;
                continue;
            }
            if last.is_some_and(|l| *index < l) {
                out_of_order += 1;
            }
            last = Some(*index);
            deliver_h.saturating_record(*lat);
            delivered += 1;
        }
        lost += u64::from(s.messages).saturating_sub(seen.len() as u64);
    }
    for r in receivers {
        let _ = r.join();
    }
    let server_cpu_us_per_msg = cpu.and_then(|m| m.per_message(acked));
    if !s.servers.is_empty() {
        // Which pairs crossed nodes, to tell cross-node from node-local cost.
        eprintln!(
            "cluster: {cross_pairs} of {} pairs cross nodes ({} nodes measured)",
            s.pairs,
            s.servers.len()
        );
    }
    if let Some(printer) = printer {
        progress.finish(printer);
    }
    let fault = match fault {
        Some(f) => Some(f.join().map_err(|_| "fault thread panicked")??),
        None => None,
    };
    Ok(Report {
        sent,
        acked,
        delivered,
        duplicates,
        lost,
        out_of_order,
        ack_latency: latency(&ack_h),
        deliver_latency: latency(&deliver_h),
        acked_per_sec: acked as f64 / acked_at.as_secs_f64(),
        seconds: started.elapsed().as_secs_f64(),
        server_cpu_us_per_msg,
        ack_histogram: ack_h,
        deliver_histogram: deliver_h,
        ack_max_ms_by_pair,
        fault,
    })
}

/// Wall clock in ns since the Unix epoch (timestamps carried in payloads).
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Sends queued in the SDK beyond its window (`max_pending_sends`): enough
/// to keep the window full, few enough that its outbox stays cheap to scan.
const PUBLISH_QUEUE: usize = 1024;

/// Publishes `messages` QoS 1 messages of `payload` bytes, message `i` to
/// `address(i).0`, each carrying its send time and the index
/// `address(i).1`, keeping the SDK's window full (pipelined, not closed
/// loop), and waits for their SENDACKs until `deadline`. Returns how many
/// were acknowledged.
pub(crate) fn publish_timed(
    p: &mut BlockingClient,
    messages: u32,
    payload: usize,
    deadline: Instant,
    address: impl Fn(u32) -> (UserId, u64),
) -> Result<u64, String> {
    let mut acked = 0u64;
    for i in 0..messages {
        let (to, index) = address(i);
        let mut b = BytesMut::with_capacity(payload);
        b.put_u64_le(now_ns());
        b.put_u64_le(index);
        b.resize(payload, 0);
        p.send(to, Qos::AtLeastOnce, Bytes::from(b))
            .map_err(|e| format!("publish: {e}"))?;
        while let Some(ack) = next_ack(p, Duration::ZERO)? {
            acked += u64::from(ack);
        }
        while p.session().unfinished_sends() >= PUBLISH_QUEUE && Instant::now() < deadline {
            acked += u64::from(next_ack(p, Duration::from_millis(50))? == Some(true));
        }
    }
    while acked < u64::from(messages) && Instant::now() < deadline {
        acked += u64::from(next_ack(p, Duration::from_millis(50))? == Some(true));
    }
    Ok(acked)
}

/// The publisher's next event within `wait`: `Some(true)` for a SENDACK,
/// `Some(false)` for anything else, `None` for nothing; a gateway ERROR
/// (say `RateLimited`) is an error.
fn next_ack(p: &mut BlockingClient, wait: Duration) -> Result<Option<bool>, String> {
    match p.next_event(wait).map_err(|e| format!("publisher: {e}"))? {
        Some(Event::SendAcked(_)) => Ok(Some(true)),
        Some(Event::Error(e)) => Err(format!("publisher: gateway error {e:?}")),
        Some(_) => Ok(Some(false)),
        None => Ok(None),
    }
}
