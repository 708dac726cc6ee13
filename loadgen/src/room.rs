//! Scenario `room`: one publisher, many subscribers of one room (read
//! diffusion). Measures room pushes delivered per second and publish-to-
//! receive latency, and checks that every subscriber got every message in
//! room order, once.
//!
//! Subscribers are not SDK threads: each of `threads` OS threads owns a
//! share of the sockets and serves them from one epoll loop, so 10,000
//! subscribers cost 2 threads (the load generator must not be the
//! bottleneck). Each socket sends CONNECT and SUBSCRIBE as raw frames and
//! decodes with the gateway's own decoder; with `mqtt` set, the subscribers
//! are MQTT 3.1.1 clients of the gateway's MQTT listener instead
//! (`room/{n}`, checked by the message index in the payload), while the
//! publisher stays native.
//!
//! Slow consumers (issue #25): `frozen` of the subscribers stop reading
//! their socket right after their SUBACK, as a stopped process would; they
//! are left out of the delivery check. [`run_room_with_frozen`] runs the
//! room three times in one invocation — without them, with them, without
//! them again (each on a fresh room and fresh users) — so their cost to
//! everyone else is the ratio of the middle throughput to the mean of the
//! two around it (a run that is faster for coming later, or slower for a
//! busy neighbour, weighs on both sides).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::poller::Poller;
use crate::procfs::CpuMeter;
use crate::raw::new_histogram;
use crate::routed::connect_routed;
use crate::{cli, now_ns};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use serde::Serialize;
use surepush_client::{BlockingClient, ClientConfig, Transport};
use surepush_proto::{
    Connect, Decoder, DeviceId, Frame, Qos, Seq, SubResult, Subscribe, SubscribeFrom, UserId,
    ROOM_BIT,
};

use crate::Latency;

/// What to run (`room`'s options; the secret, the first user and the
/// frozen count are filled in by the command).
#[derive(Clone, Debug, clap::Args)]
pub struct RoomScenario {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub server: SocketAddr,
    /// The gateway's token secret.
    #[arg(skip)]
    pub secret: Vec<u8>,
    /// Subscriber connections (each needs a file descriptor here and
    /// one in the server).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: u32,
    /// Messages published.
    #[arg(long, default_value_t = 1000)]
    pub messages: u32,
    /// Payload bytes (at least 16: timestamp and index).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Subscription QoS: 0, or 1 (native: ROOMACK every 32 messages;
    /// MQTT: a PUBACK for each).
    #[arg(long, default_value = "0", value_parser = cli::parse_sub_qos)]
    pub sub_qos: Qos,
    /// Subscriber threads (one epoll loop each).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seconds before giving up.
    #[arg(long = "timeout-s", value_name = "SECONDS", default_value = "60", value_parser = cli::parse_seconds)]
    pub timeout: Duration,
    /// First user id used.
    #[arg(skip = crate::fresh_user_base())]
    pub first_user: u64,
    /// Subscribers that stop reading after their SUBACK (slow consumers).
    #[arg(skip)]
    pub frozen: u32,
    /// Subscribe over MQTT 3.1.1 at this address: the gateway's MQTT
    /// listener (same node as `--server`; `room/{n}`, tokens as
    /// passwords), or with `--mqtt-broker` any MQTT broker.
    #[arg(long)]
    pub mqtt: Option<SocketAddr>,
    /// `--mqtt` is a plain MQTT broker (e.g. mosquitto): no tokens, a
    /// topic of this run's own, and the publisher publishes there over
    /// MQTT too (QoS 1, 256 in flight).
    #[arg(long, requires = "mqtt")]
    pub mqtt_broker: bool,
    /// With `--mqtt` on surepush: publish over MQTT too (QoS 1, 256 in
    /// flight) instead of the native protocol, as against a broker.
    #[arg(long, requires = "mqtt")]
    pub mqtt_publish: bool,
    /// With `--mqtt` and `--mqtt-publish` on surepush: a free-form topic
    /// of this run's own (`surepush-lg/{first user}/room/{n}`, a topic
    /// stream, issue #21) instead of `room/{n}`; the gateway needs
    /// `mqtt.topics_open = true`.
    #[arg(long, requires = "mqtt_publish")]
    pub mqtt_topic: bool,
    /// With a free-form topic (`--mqtt-topic`, or `--mqtt-broker`): the
    /// subscribers subscribe the wildcard filter `surepush-lg/{first
    /// user}/room/+` instead of the topic itself (issue #21 item 1).
    #[arg(long)]
    pub mqtt_wildcard: bool,
    /// The server's pid, for its CPU time per push; default: the process
    /// listening on the `--mqtt` port, else on the `--server` port.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Subscribe and publish over the gateway's WebSocket listener at this
    /// address (native protocol in binary messages, subprotocol
    /// `surepush.v1`) instead of `--server` (same node).
    #[arg(long, conflicts_with = "mqtt")]
    pub ws: Option<SocketAddr>,
    /// Cluster nodes (comma-separated) instead of `--server`: each
    /// subscriber and the publisher connect to `servers[user % n]` and
    /// follow its redirect to their user's node; CPU is summed over the
    /// nodes (native protocol only).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["mqtt", "ws"])]
    pub servers: Vec<SocketAddr>,
}

impl RoomScenario {
    /// The MQTT topic of room `room` (with its room bit).
    fn mqtt_topic(&self, room: u64) -> String {
        let n = room & !ROOM_BIT;
        if self.mqtt_broker || self.mqtt_topic {
            format!("surepush-lg/{}/room/{n}", self.first_user)
        } else {
            format!("room/{n}")
        }
    }

    /// What the MQTT subscribers of room `room` subscribe: its topic, or
    /// with `--mqtt-wildcard` a filter whose last level is `+`.
    fn mqtt_filter(&self, room: u64) -> String {
        let topic = self.mqtt_topic(room);
        match topic.rsplit_once('/') {
            Some((parent, _)) if self.mqtt_wildcard => format!("{parent}/+"),
            _ => topic,
        }
    }

    /// The MQTT password of `user`: a token for surepush, none for a broker.
    fn mqtt_password(&self, user: u64) -> Option<String> {
        (!self.mqtt_broker).then(|| crate::mint_token(&self.secret, user))
    }

    /// Meters the CPU time of the server process, or of every node.
    fn cpu_meter(&self) -> Option<CpuMeter> {
        if self.servers.is_empty() {
            return CpuMeter::start(self.measured_pid());
        }
        let pids = self.servers.iter();
        let pids = pids.filter_map(|a| crate::procfs::listener_pid(a.port()).ok());
        CpuMeter::start_all(pids.collect())
    }

    /// Where `user` connects first.
    fn entry(&self, user: u64) -> SocketAddr {
        match self.servers.len() {
            0 => self.ws.unwrap_or(self.server),
            n => self.servers[(user % n as u64) as usize],
        }
    }

    /// The server process whose CPU time is measured.
    fn measured_pid(&self) -> Option<u32> {
        let port = self.mqtt.map_or(self.server.port(), |a| a.port());
        self.server_pid
            .or_else(|| crate::procfs::listener_pid(port).ok())
    }
}

/// What a room run measured and checked.
#[derive(Clone, Debug, Serialize)]
pub struct RoomReport {
    /// Subscribers that got a SUBACK.
    pub subscribers: u64,
    /// Of those, subscribers that stopped reading after their SUBACK (not
    /// in `expected`).
    pub frozen: u64,
    /// Messages published (acknowledged).
    pub published: u64,
    /// ROOMPUSH frames received in order.
    pub pushes: u64,
    /// Expected: subscribers x published.
    pub expected: u64,
    /// Frames whose sequence was not the next one (holes or repeats).
    pub out_of_order: u64,
    /// ROOMLAGs received (the subscriber fell behind, re-subscribed and
    /// caught up from the log).
    pub lags: u64,
    /// Re-subscriptions answered with SUBACK `Gap`: the subscriber fell
    /// further behind than the room's history (`room_max_age_ms`, the
    /// log's retention, `room_resume_limit` if set), and the messages in
    /// between are gone for it.
    pub gaps: u64,
    /// Seconds from the first publish to the last push received.
    pub seconds: f64,
    /// `pushes / seconds`.
    pub pushes_per_s: f64,
    /// `published / seconds`: the room's throughput as every reading
    /// subscriber saw it.
    pub messages_per_s: f64,
    /// Publish (intended send time) to receive.
    pub latency: Latency,
    /// The server's CPU time (user + system, all threads, from /proc)
    /// from the first publish to the last push, per push (µs); none when
    /// its process was not found.
    pub server_cpu_us_per_push: Option<f64>,
    /// The load generator's own CPU time over the same span, per push
    /// (µs): it shares the machine, so the sum bounds the rate there.
    pub client_cpu_us_per_push: Option<f64>,
}

impl RoomReport {
    /// Every subscriber got every message, in order.
    pub fn passed(&self) -> bool {
        self.out_of_order == 0 && self.pushes == self.expected && self.expected > 0
    }

    /// Human-readable summary.
    pub fn to_text(&self) -> String {
        format!(
            "room: {} subscribers ({} frozen) x {} messages\n  pushes delivered {} of {} in {:.2} s = {:.0} pushes/s, {:.0} messages/s\n  \
             out of order {}, lagged and resumed {}, resumed past a gap {}\n  publish->receive p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms\n  \
             server CPU {} per push, load generator CPU {} per push\n  verdict: {}\n",
            self.subscribers,
            self.frozen,
            self.published,
            self.pushes,
            self.expected,
            self.seconds,
            self.pushes_per_s,
            self.messages_per_s,
            self.out_of_order,
            self.lags,
            self.gaps,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.p999_ms,
            self.latency.max_ms,
            crate::procfs::format_cpu(self.server_cpu_us_per_push),
            crate::procfs::format_cpu(self.client_cpu_us_per_push),
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// How a subscriber socket speaks.
enum Wire {
    Native(Decoder),
    Mqtt {
        decoder: surepush_mqtt::Decoder,
        buf: BytesMut,
    },
}

/// One subscriber socket's state.
struct Sub {
    stream: TcpStream,
    wire: Wire,
    /// Over WebSocket: the frames around the protocol's bytes.
    ws: Option<crate::ws::Unframer>,
    /// Native: the next room seq; MQTT: the next message index.
    next: u64,
    got: u64,
    out_of_order: u64,
    acked: u64,
    subscribed: bool,
    /// Stops reading after its SUBACK.
    frozen: bool,
}

struct ThreadResult {
    subscribed: u64,
    frozen: u64,
    lags: u64,
    gaps: u64,
    pushes: u64,
    out_of_order: u64,
    last_rx: Option<Instant>,
    latency: Histogram<u64>,
}

fn open_sub(s: &RoomScenario, room: u64, user: u64, frozen: bool) -> Result<Sub, String> {
    if let Some(addr) = s.mqtt {
        return open_mqtt_sub(s, addr, room, user, frozen);
    }
    let addr = s.entry(user);
    let connect = Frame::Connect(Connect {
        device: DeviceId(1),
        last_seq: None,
        keepalive_ms: 0,
        token: crate::mint_token(&s.secret, user),
    });
    let (mut stream, mut decoder, connected) = match s.servers.is_empty() {
        true => {
            let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
            (stream, Decoder::new(1 << 20), false)
        }
        false => {
            let (stream, decoder) = connect_routed(addr, &connect)?;
            (stream, decoder, true)
        }
    };
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut ws = None;
    if s.ws.is_some() {
        let rest = crate::ws::upgrade(&mut stream, addr)?;
        let mut unframer = crate::ws::Unframer::default();
        unframer.feed(&rest, |bytes| decoder.feed(bytes));
        ws = Some(unframer);
    }
    let mut out = BytesMut::new();
    if !connected {
        connect.encode(&mut out);
    }
    Frame::Subscribe(Subscribe {
        room,
        from: SubscribeFrom::Now,
        qos: s.sub_qos,
    })
    .encode(&mut out);
    let out = match ws {
        Some(_) => crate::ws::binary(&out),
        None => out.to_vec(),
    };
    stream.write_all(&out).map_err(|e| format!("write: {e}"))?;
    Ok(Sub {
        stream,
        wire: Wire::Native(decoder),
        ws,
        next: 1,
        got: 0,
        out_of_order: 0,
        acked: 0,
        subscribed: false,
        frozen,
    })
}

/// An MQTT 3.1.1 subscriber (clean session, the token as password) to
/// `room/{n}` at the scenario's QoS.
fn open_mqtt_sub(
    s: &RoomScenario,
    addr: SocketAddr,
    room: u64,
    user: u64,
    frozen: bool,
) -> Result<Sub, String> {
    use surepush_mqtt::{MqttString, Packet, PacketId, ProtocolLevel, QoS, Subscription};
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let level = ProtocolLevel::V311;
    let qos = QoS::from_u8(s.sub_qos as u8).ok_or("MQTT room QoS 0 or 1")?;
    let mut out = BytesMut::new();
    let connect = Packet::Connect(Box::new(surepush_mqtt::Connect {
        protocol_level: level,
        clean_start: true,
        keep_alive: 0,
        client_id: MqttString::from(format!("lg-room-{user}").as_str()),
        will: None,
        username: s.mqtt_password(user).map(|_| MqttString::from("loadgen")),
        password: s.mqtt_password(user).map(Into::into),
        properties: Default::default(),
    }));
    let subscribe = Packet::Subscribe(surepush_mqtt::Subscribe {
        packet_id: PacketId::new(1).expect("nonzero"),
        filters: vec![Subscription {
            filter: MqttString::from(s.mqtt_filter(room).as_str()),
            options: surepush_mqtt::SubscriptionOptions::qos(qos),
        }],
        properties: Default::default(),
    });
    for p in [connect, subscribe] {
        surepush_mqtt::encode(&p, level, &mut out).map_err(|e| e.to_string())?;
    }
    stream.write_all(&out).map_err(|e| format!("write: {e}"))?;
    Ok(Sub {
        stream,
        wire: Wire::Mqtt {
            decoder: surepush_mqtt::Decoder::new(Some(level), 1 << 20),
            buf: BytesMut::new(),
        },
        ws: None,
        next: 0,
        got: 0,
        out_of_order: 0,
        acked: 0,
        subscribed: false,
        frozen,
    })
}

/// Reads what `sub` has into its decoder; false when the connection is gone.
fn read_into(sub: &mut Sub, buf: &mut [u8]) -> bool {
    loop {
        match sub.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => match (&mut sub.wire, &mut sub.ws) {
                (Wire::Native(d), Some(ws)) => {
                    ws.feed(&buf[..n], |bytes| d.feed(bytes));
                    if !ws.replies.is_empty() {
                        let pongs = std::mem::take(&mut ws.replies);
                        let _ = sub.stream.write_all(&pongs);
                    }
                    if ws.closed {
                        return false;
                    }
                }
                (Wire::Native(d), None) => d.feed(&buf[..n]),
                (Wire::Mqtt { buf: b, .. }, _) => b.extend_from_slice(&buf[..n]),
            },
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// Writes a native frame to `sub` (inside a WebSocket message over
/// WebSocket). Small and rare: a full socket buffer here would mean the
/// gateway stopped reading, which the run reports.
fn write_frame(sub: &mut Sub, frame: &Frame) {
    let bytes = frame.to_bytes();
    let _ = match sub.ws {
        Some(_) => sub.stream.write_all(&crate::ws::binary(&bytes)),
        None => sub.stream.write_all(&bytes),
    };
}

/// Counts one message received by `sub` (native seq or MQTT index `at`).
fn received(sub: &mut Sub, r: &mut ThreadResult, at: u64, payload: &[u8]) -> bool {
    if at != sub.next {
        sub.out_of_order += 1;
        r.out_of_order += 1;
        return false;
    }
    sub.next += 1;
    sub.got += 1;
    r.pushes += 1;
    r.last_rx = Some(Instant::now());
    if payload.len() >= 8 {
        let sent = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
        r.latency.saturating_record(now_ns().saturating_sub(sent));
    }
    true
}

/// Handles what an MQTT subscriber received; false when it is gone.
fn pump_mqtt(sub: &mut Sub, r: &mut ThreadResult) -> bool {
    use surepush_mqtt::{Packet, ProtocolLevel, PubReply};
    let mut out = BytesMut::new();
    loop {
        let Wire::Mqtt { decoder, buf } = &mut sub.wire else {
            return false;
        };
        let packet = match decoder.decode(buf) {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(_) => return false,
        };
        match packet {
            Packet::ConnAck(a) if a.code.0 != 0 => return false,
            Packet::SubAck(a) if !sub.subscribed => {
                if a.reasons.iter().any(|c| c.0 >= 0x80) {
                    return false;
                }
                sub.subscribed = true;
                r.subscribed += 1;
                if sub.frozen {
                    r.frozen += 1;
                    return true; // and never read again
                }
            }
            Packet::Publish(p) if p.payload.len() >= 16 => {
                let index = u64::from_le_bytes(p.payload[8..16].try_into().expect("8 bytes"));
                received(sub, r, index, &p.payload);
                if let Some(id) = p.packet_id {
                    let ack = Packet::PubAck(PubReply::success(id));
                    let _ = surepush_mqtt::encode(&ack, ProtocolLevel::V311, &mut out);
                }
            }
            _ => {}
        }
    }
    // Small (4 bytes a message): a full socket buffer here would mean the
    // gateway stopped reading, which the run reports.
    out.is_empty() || sub.stream.write_all(&out).is_ok()
}

/// Reads what `sub` has; returns false when the connection is gone.
fn pump(sub: &mut Sub, buf: &mut [u8], r: &mut ThreadResult, qos: Qos, room: u64) -> bool {
    let alive = read_into(sub, buf);
    if matches!(sub.wire, Wire::Mqtt { .. }) {
        return pump_mqtt(sub, r) && alive;
    }
    let Wire::Native(decoder) = &mut sub.wire else {
        return false;
    };
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = decoder.decode() {
        frames.push(frame);
    }
    let mut ack = None;
    let mut resubscribe = false;
    for frame in frames {
        match frame {
            // A re-subscription that fell out of the room's history: what
            // lies between is gone for this subscriber (counted, and the
            // run fails: it did not get every message).
            Frame::SubAck(a) if a.result == SubResult::Gap && sub.subscribed => {
                r.gaps += 1;
                sub.next = a.first.0;
            }
            // The first SUBACK only (later ones answer re-subscriptions).
            Frame::SubAck(a) if a.result != SubResult::Refused && !sub.subscribed => {
                sub.subscribed = true;
                sub.next = a.first.0;
                r.subscribed += 1;
                if sub.frozen {
                    r.frozen += 1;
                    return true; // and never read again
                }
            }
            Frame::RoomLag { .. } => {
                // Too slow for live delivery: resume after the last one.
                r.lags += 1;
                resubscribe = true;
            }
            Frame::RoomPush(p) => {
                if !received(sub, r, p.seq.0, &p.payload) {
                    continue;
                }
                if qos == Qos::AtLeastOnce && p.seq.0 - sub.acked >= 32 {
                    sub.acked = p.seq.0;
                    ack = Some(p.seq);
                }
            }
            _ => {}
        }
    }
    if resubscribe {
        let frame = Frame::Subscribe(Subscribe {
            room,
            from: SubscribeFrom::After(Seq(sub.next - 1)),
            qos,
        });
        write_frame(sub, &frame);
    }
    if let Some(seq) = ack {
        write_frame(sub, &Frame::RoomAck { room, seq });
    }
    alive
}

/// The room a run uses (the second run of [`run_room_with_frozen`] the next).
const ROOM_NO: u64 = 1;

fn subscriber_thread(
    s: RoomScenario,
    room: u64,
    users: std::ops::Range<u64>,
    frozen: u64,
    ready: Arc<Barrier>,
    deadline: Instant,
) -> Result<ThreadResult, String> {
    let mut subs = Vec::new();
    for (i, u) in users.enumerate() {
        subs.push(open_sub(&s, room, u, (i as u64) < frozen)?);
    }
    for sub in &subs {
        sub.stream
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
    }
    let mut poller = Poller::new(subs.iter().map(|s| s.stream.as_raw_fd()))?;
    let mut r = ThreadResult {
        subscribed: 0,
        frozen: 0,
        lags: 0,
        gaps: 0,
        pushes: 0,
        out_of_order: 0,
        last_rx: None,
        latency: new_histogram(),
    };
    let expected_each = u64::from(s.messages);
    let mut buf = vec![0u8; 256 << 10];
    let mut released = false;
    let mut done = 0usize;
    while Instant::now() < deadline {
        if !released && r.subscribed as usize == subs.len() {
            ready.wait();
            released = true;
        }
        for i in poller.wait(50) {
            let sub = &mut subs[i];
            let before = (sub.got, sub.subscribed);
            let alive = pump(sub, &mut buf, &mut r, s.sub_qos, room);
            let frozen_now = sub.frozen && sub.subscribed && !before.1;
            if frozen_now {
                // A stopped process: its socket fills up from here on.
                poller.remove(sub.stream.as_raw_fd())?;
            }
            if (before.0 < expected_each && sub.got >= expected_each) || !alive || frozen_now {
                done += 1;
            }
        }
        if released && done >= subs.len() {
            break;
        }
    }
    if !released {
        ready.wait(); // never leave the others waiting
    }
    Ok(r)
}

/// Runs the room scenario.
pub fn run_room(s: &RoomScenario) -> Result<RoomReport, String> {
    run_room_in(s, ROOM_NO)
}

/// The room scenario three times, back to back on fresh rooms and users:
/// without frozen subscribers, with `s.frozen` of them, without again.
#[derive(Clone, Debug, Serialize)]
pub struct FrozenComparison {
    /// Every subscriber reading (first run).
    pub baseline: RoomReport,
    /// `frozen` subscribers not reading (second run).
    pub with_frozen: RoomReport,
    /// Every subscriber reading (third run).
    pub baseline_again: RoomReport,
    /// `with_frozen.messages_per_s` over the mean of the two baselines'.
    pub ratio: f64,
}

impl FrozenComparison {
    /// Every run delivered everything to every reading subscriber.
    pub fn passed(&self) -> bool {
        self.baseline.passed() && self.with_frozen.passed() && self.baseline_again.passed()
    }

    /// Human-readable summary.
    pub fn to_text(&self) -> String {
        format!(
            "without frozen subscribers:\n{}with frozen subscribers:\n{}without again:\n{}\
             throughput with / mean without: {:.3}\n",
            self.baseline.to_text(),
            self.with_frozen.to_text(),
            self.baseline_again.to_text(),
            self.ratio
        )
    }
}

/// Runs [`FrozenComparison`].
pub fn run_room_with_frozen(s: &RoomScenario) -> Result<FrozenComparison, String> {
    let mut runs = Vec::new();
    for (i, frozen) in [0, s.frozen, 0].into_iter().enumerate() {
        let run = RoomScenario {
            first_user: s.first_user + i as u64 * (u64::from(s.subscribers) + 100),
            frozen,
            ..s.clone()
        };
        runs.push(run_room_in(&run, ROOM_NO + i as u64)?);
    }
    let baseline_again = runs.pop().expect("three runs");
    let with_frozen = runs.pop().expect("three runs");
    let baseline = runs.pop().expect("three runs");
    let mean = (baseline.messages_per_s + baseline_again.messages_per_s) / 2.0;
    let ratio = if mean > 0.0 {
        with_frozen.messages_per_s / mean
    } else {
        0.0
    };
    Ok(FrozenComparison {
        baseline,
        with_frozen,
        baseline_again,
        ratio,
    })
}

fn run_room_in(s: &RoomScenario, room_no: u64) -> Result<RoomReport, String> {
    if s.payload < 16 {
        return Err("payload must be at least 16 bytes".into());
    }
    let deadline = Instant::now() + s.timeout;
    let threads = s.threads.max(1);
    let ready = Arc::new(Barrier::new(threads + 1));
    let per = u64::from(s.subscribers).div_ceil(threads as u64);
    let room = ROOM_BIT | room_no;
    let mut handles = Vec::new();
    for t in 0..threads as u64 {
        let start = s.first_user + 10 + t * per;
        let end = (start + per).min(s.first_user + 10 + u64::from(s.subscribers));
        // The frozen ones are the first of each thread's share.
        let frozen = u64::from(s.frozen).div_ceil(threads as u64);
        let frozen = frozen.min(u64::from(s.frozen).saturating_sub(t * frozen));
        let (s2, ready) = (s.clone(), ready.clone());
        handles.push(std::thread::spawn(move || {
            subscriber_thread(s2, room, start..end, frozen, ready, deadline)
        }));
    }
    ready.wait(); // every subscriber has its SUBACK
    let (cpu, own) = (s.cpu_meter(), CpuMeter::start(Some(std::process::id())));
    let (acked, started) = match s.mqtt {
        Some(addr) if s.mqtt_broker || s.mqtt_publish => {
            let started = Instant::now();
            let acked = crate::mqtt_peer::publish_pipelined(
                addr,
                format!("lg-room-{}", s.first_user),
                s.mqtt_password(s.first_user),
                &s.mqtt_topic(room),
                s.messages,
                s.payload,
                deadline,
            )?;
            (acked, started)
        }
        _ => {
            let mut config =
                ClientConfig::new(crate::mint_token(&s.secret, s.first_user), DeviceId(1));
            config.send_timeout_ms = 10_000;
            let (addr, transport) = match s.ws {
                Some(ws) => (ws, crate::websocket()),
                None => (s.entry(s.first_user), Transport::Tcp),
            };
            let timeout = Duration::from_secs(5);
            let mut p = match s.servers.is_empty() {
                true => BlockingClient::connect_over(addr, &transport, config, None, timeout),
                false => BlockingClient::connect_routed(addr, config, None, timeout),
            }
            .map_err(|e| format!("publisher: {e}"))?;
            let started = Instant::now();
            let room = UserId(room);
            let acked = crate::publish_timed(&mut p, s.messages, s.payload, deadline, |i| {
                (room, u64::from(i))
            })?;
            (acked, started)
        }
    };
    let mut total = ThreadResult {
        subscribed: 0,
        frozen: 0,
        lags: 0,
        gaps: 0,
        pushes: 0,
        out_of_order: 0,
        last_rx: None,
        latency: new_histogram(),
    };
    for h in handles {
        let r = h.join().map_err(|_| "a subscriber thread panicked")??;
        total.subscribed += r.subscribed;
        total.frozen += r.frozen;
        total.lags += r.lags;
        total.gaps += r.gaps;
        total.pushes += r.pushes;
        total.out_of_order += r.out_of_order;
        total.last_rx = total.last_rx.max(r.last_rx);
        total.latency.add(&r.latency).expect("same bounds");
    }
    let seconds = total
        .last_rx
        .map_or(0.0, |t| t.duration_since(started).as_secs_f64());
    Ok(RoomReport {
        subscribers: total.subscribed,
        frozen: total.frozen,
        published: acked,
        pushes: total.pushes,
        expected: (total.subscribed - total.frozen) * acked,
        out_of_order: total.out_of_order,
        lags: total.lags,
        gaps: total.gaps,
        seconds,
        pushes_per_s: if seconds > 0.0 {
            total.pushes as f64 / seconds
        } else {
            0.0
        },
        messages_per_s: if seconds > 0.0 {
            acked as f64 / seconds
        } else {
            0.0
        },
        latency: crate::latency(&total.latency),
        server_cpu_us_per_push: cpu.and_then(|m| m.per_message(total.pushes)),
        client_cpu_us_per_push: own.and_then(|m| m.per_message(total.pushes)),
    })
}
