//! The one-to-one workload over MQTT 3.1.1, against a broker (mosquitto, or
//! any MQTT server) or surepush's own MQTT listener, for side-by-side
//! numbers: `pairs` receivers each subscribe at QoS 1 to their own topic
//! with a persistent session; each sender publishes `messages` QoS 1
//! messages there, either the next one after the previous PUBACK (closed
//! loop, as `compare` runs it) or on a fixed timetable of `rate` messages
//! per second (open loop, as `one-to-one --rate --mqtt` runs it: latency is
//! measured from the timetable, and PUBACKs are read by a thread of their
//! own). Receivers acknowledge every delivery and check order. Spoken with
//! surepush's own MQTT codec; `rumqtt_peer` runs the same with an
//! independent client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use surepush_mqtt::{
    encode, Connect, Decoder, MqttString, Packet, PacketId, ProtocolLevel, PubReply, Publish, QoS,
    Subscribe, Subscription, SubscriptionOptions,
};

use crate::procfs::CpuMeter;
use crate::raw::{collect, new_histogram, InOrder, PairLoad, PeerResult};
use crate::{now_ns, RawReport};

const LEVEL: ProtocolLevel = ProtocolLevel::V311;

struct Peer {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Peer {
    fn connect(
        addr: SocketAddr,
        client_id: String,
        password: Option<String>,
    ) -> Result<Peer, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut p = Peer {
            stream,
            decoder: Decoder::new(Some(LEVEL), 1 << 20),
            buf: BytesMut::new(),
        };
        p.send(&Packet::Connect(Box::new(Connect {
            protocol_level: LEVEL,
            clean_start: false, // a persistent session, like a surepush device
            keep_alive: 60,
            client_id: MqttString::from_utf8(Bytes::from(client_id)).expect("ascii"),
            will: None,
            // 3.1.1 allows a password only with a user name.
            username: password.as_ref().map(|_| MqttString::from("loadgen")),
            password: password.map(Bytes::from),
            properties: Default::default(),
        })))?;
        match p.next()? {
            Packet::ConnAck(a) if a.code.0 == 0 => Ok(p),
            other => Err(format!("expected CONNACK, got {other:?}")),
        }
    }

    fn send(&mut self, packet: &Packet) -> Result<(), String> {
        let mut out = BytesMut::new();
        encode(packet, LEVEL, &mut out).map_err(|e| e.to_string())?;
        self.stream.write_all(&out).map_err(|e| e.to_string())
    }

    fn next(&mut self) -> Result<Packet, String> {
        loop {
            if let Some(p) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| e.to_string())?
            {
                return Ok(p);
            }
            let mut chunk = [0u8; 16 << 10];
            let n = self.stream.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("broker closed the connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// What speaks MQTT at the other end.
#[derive(Clone, Debug)]
pub enum MqttTarget {
    /// A plain broker: topics `surepush-lg/{run}/{pair}`, no credentials.
    Broker,
    /// surepush's MQTT listener (docs/MQTT.md): pair `p`'s receiver is user
    /// `run + 2p + 1`, its topic `user/{id}`; passwords are tokens minted
    /// with the node's secret.
    Surepush {
        /// The node's token secret.
        secret: Vec<u8>,
    },
}

impl MqttTarget {
    /// The topic pair `pair`'s receiver subscribes to.
    pub(crate) fn topic(&self, run: u64, pair: u64) -> String {
        match self {
            MqttTarget::Broker => format!("surepush-lg/{run}/{pair}"),
            MqttTarget::Surepush { .. } => format!("user/{}", run + 2 * pair + 1),
        }
    }

    /// The client id of a pair's receiver (`receiver`) or sender.
    pub(crate) fn client_id(&self, run: u64, pair: u64, receiver: bool) -> String {
        let role = if receiver { "r" } else { "s" };
        format!("lg-{run}-{role}{pair}")
    }

    /// The password (a token for surepush; none for a plain broker).
    pub(crate) fn password(&self, run: u64, pair: u64, receiver: bool) -> Option<String> {
        match self {
            MqttTarget::Broker => None,
            MqttTarget::Surepush { secret } => Some(crate::mint_token(
                secret,
                run + 2 * pair + u64::from(receiver),
            )),
        }
    }

    /// Connects the sender (`receiver` false) or receiver of a pair.
    fn connect(
        &self,
        addr: SocketAddr,
        run: u64,
        pair: u64,
        receiver: bool,
    ) -> Result<Peer, String> {
        Peer::connect(
            addr,
            self.client_id(run, pair, receiver),
            self.password(run, pair, receiver),
        )
    }
}

/// Connects pair `pair`'s receiver with a persistent session, subscribes it
/// to its topic at QoS 1 and returns its socket, to be held idle
/// (`idle --mqtt`).
pub(crate) fn idle_receiver(
    target: &MqttTarget,
    addr: SocketAddr,
    run: u64,
    pair: u64,
) -> Result<TcpStream, String> {
    Ok(subscribed_receiver(target, addr, run, pair)?.stream)
}

/// Pair `pair`'s receiver, connected (persistent session) and subscribed
/// to its topic at QoS 1.
fn subscribed_receiver(
    target: &MqttTarget,
    addr: SocketAddr,
    run: u64,
    pair: u64,
) -> Result<Peer, String> {
    let mut r = target.connect(addr, run, pair, true)?;
    r.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).expect("nonzero"),
        filters: vec![Subscription {
            filter: MqttString::from(target.topic(run, pair).as_str()),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        }],
        properties: Default::default(),
    }))?;
    match r.next()? {
        Packet::SubAck(_) => Ok(r),
        other => Err(format!("expected SUBACK, got {other:?}")),
    }
}

/// The next packet id after `k` messages (1..=65535, wrapping).
fn packet_id(k: u64) -> PacketId {
    PacketId::new((k % 65_535 + 1) as u16).expect("nonzero")
}

/// A QoS 1 PUBLISH of `body` to `topic` with packet id `id`.
fn publish(topic: &MqttString, id: PacketId, body: Vec<u8>) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: topic.clone(),
        packet_id: Some(id),
        payload: Bytes::from(body),
        properties: Default::default(),
    })
}

/// A payload of `size` bytes carrying the send time and the index `k`.
fn timed_body(size: usize, sent_ns: u64, k: u64) -> Vec<u8> {
    let mut body = vec![0u8; size.max(16)];
    body[..8].copy_from_slice(&sent_ns.to_le_bytes());
    body[8..16].copy_from_slice(&k.to_le_bytes());
    body
}

/// Runs the workload against `target` at `addr`.
pub fn run_mqtt(
    addr: SocketAddr,
    target: &MqttTarget,
    load: &PairLoad,
) -> Result<RawReport, String> {
    let PairLoad {
        pairs,
        messages,
        run,
        ..
    } = *load;
    let (tx, rx) = mpsc::channel::<PeerResult>();
    let mut receivers = Vec::new();
    for pair in 0..u64::from(pairs) {
        let mut r = subscribed_receiver(target, addr, run, pair)?;
        let tx = tx.clone();
        receivers.push(std::thread::spawn(move || {
            let mut got = InOrder::new();
            while got.next < u64::from(messages) {
                let Ok(Packet::Publish(p)) = r.next() else {
                    break;
                };
                got.take(&p.payload);
                if let Some(id) = p.packet_id {
                    if r.send(&Packet::PubAck(PubReply::success(id))).is_err() {
                        break;
                    }
                }
            }
            let _ = tx.send(got.result());
        }));
    }
    let started = Instant::now();
    let cpu = CpuMeter::start(load.server_pid);
    for pair in 0..u64::from(pairs) {
        let s = target.connect(addr, run, pair, false)?;
        let topic = MqttString::from(target.topic(run, pair).as_str());
        let (tx, load) = (tx.clone(), *load);
        std::thread::spawn(move || {
            let result = if load.rate == 0 {
                closed_loop(s, &topic, &load)
            } else {
                open_loop(s, &topic, &load)
            };
            let _ = tx.send(result);
        });
    }
    drop(tx);
    Ok(collect(rx, receivers, started, cpu))
}

/// Publishes each message after the previous one's PUBACK.
fn closed_loop(mut s: Peer, topic: &MqttString, load: &PairLoad) -> PeerResult {
    let mut h = new_histogram();
    let mut acked = 0u64;
    for k in 0..u64::from(load.messages) {
        let t = now_ns();
        let id = packet_id(k);
        if s.send(&publish(topic, id, timed_body(load.payload, t, k)))
            .is_err()
        {
            break;
        }
        match s.next() {
            Ok(Packet::PubAck(a)) if a.packet_id == id => {}
            _ => break,
        }
        acked += 1;
        h.saturating_record(now_ns().saturating_sub(t));
    }
    (h, new_histogram(), acked, 0)
}

/// Publishes on a fixed timetable of `load.rate` messages per second;
/// a thread of its own reads the PUBACKs. Latency counts from the
/// timetable (a stalled broker shows as latency, not as a lower rate).
fn open_loop(s: Peer, topic: &MqttString, load: &PairLoad) -> PeerResult {
    let messages = u64::from(load.messages);
    // The intended send time of the message in flight under each packet id.
    let intended: Arc<Vec<AtomicU64>> = Arc::new((0..=65_535).map(|_| AtomicU64::new(0)).collect());
    let Ok(mut writer) = s.stream.try_clone() else {
        return (new_histogram(), new_histogram(), 0, 0);
    };
    let acks = {
        let (intended, mut reader) = (intended.clone(), s);
        std::thread::spawn(move || {
            let mut h = new_histogram();
            let mut acked = 0u64;
            while acked < messages {
                let Ok(Packet::PubAck(a)) = reader.next() else {
                    break;
                };
                let t = intended[usize::from(a.packet_id.get())].load(Ordering::Acquire);
                h.saturating_record(now_ns().saturating_sub(t));
                acked += 1;
            }
            (h, acked)
        })
    };
    let interval_ns = 1_000_000_000 / u64::from(load.rate.max(1));
    let (start, start_ns) = (Instant::now(), now_ns());
    for k in 0..messages {
        let due = Duration::from_nanos(k * interval_ns);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait); // the timetable, not synchronisation
        }
        let t = start_ns + k * interval_ns;
        let id = packet_id(k);
        intended[usize::from(id.get())].store(t, Ordering::Release);
        let mut out = BytesMut::new();
        let written = encode(
            &publish(topic, id, timed_body(load.payload, t, k)),
            LEVEL,
            &mut out,
        )
        .map_err(|e| e.to_string())
        .and_then(|()| writer.write_all(&out).map_err(|e| e.to_string()));
        if written.is_err() {
            let _ = writer.shutdown(std::net::Shutdown::Both); // ends the reader
            break;
        }
    }
    let (h, acked) = acks.join().unwrap_or_else(|_| (new_histogram(), 0));
    (h, new_histogram(), acked, 0)
}

/// Publishes are pipelined with at most this many awaiting their PUBACK.
const PUBLISH_WINDOW: u64 = 256;

/// Connects as `client_id` (with `password`, if any) and publishes
/// `messages` QoS 1 messages of `payload` bytes to `topic`, message `k`
/// carrying its send time and the index `k`, with up to
/// [`PUBLISH_WINDOW`] awaiting their PUBACK; waits for the PUBACKs until
/// `deadline`. Returns how many were acknowledged.
pub(crate) fn publish_pipelined(
    addr: SocketAddr,
    client_id: String,
    password: Option<String>,
    topic: &str,
    messages: u32,
    payload: usize,
    deadline: Instant,
) -> Result<u64, String> {
    let mut p = Peer::connect(addr, client_id, password)?;
    let topic = MqttString::from(topic);
    let (messages, mut sent, mut acked) = (u64::from(messages), 0u64, 0u64);
    while acked < messages && Instant::now() < deadline {
        let mut out = BytesMut::new();
        while sent < messages && sent - acked < PUBLISH_WINDOW {
            let packet = publish(&topic, packet_id(sent), timed_body(payload, now_ns(), sent));
            encode(&packet, LEVEL, &mut out).map_err(|e| e.to_string())?;
            sent += 1;
        }
        if !out.is_empty() {
            p.stream
                .write_all(&out)
                .map_err(|e| format!("publisher: {e}"))?;
        }
        match p.next()? {
            Packet::PubAck(a) if a.reason.0 < 0x80 => acked += 1,
            Packet::PubAck(a) => return Err(format!("publish refused: {:?}", a.reason)),
            _ => {}
        }
    }
    Ok(acked)
}
