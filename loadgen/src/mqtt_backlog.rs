//! Scenario `mqtt-backlog`: offline replay over MQTT (issue #24), for
//! surepush's MQTT listener and any MQTT broker with the same client code.
//! `receivers` persistent sessions (MQTT 3.1.1, `clean_start` false)
//! subscribe at `qos` and leave; `senders` connections publish `messages`
//! messages at `qos` to each receiver's topic (pipelined, `SEND_WINDOW`
//! in flight each); once every message is acknowledged, all receivers
//! reconnect at once (from `threads` epoll loops) and drain their queues,
//! acknowledging each message as it arrives (PUBACK, or PUBREC and
//! PUBCOMP). Reports the aggregate drain rate (messages / time from the
//! first CONNECT to the last receiver complete) and the server's CPU per
//! message (utime + stime of all its threads, `/proc`, during the drain).
//! Checks every receiver got every message once, in order: nothing twice
//! in a session that stays connected.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use surepush_mqtt::{
    encode, Decoder, Disconnect, MqttString, Packet, PacketId, ProtocolLevel, PubReply, Publish,
    QoS, Subscribe, Subscription, SubscriptionOptions,
};

use crate::mqtt_peer::{MqttTarget, Peer};
use crate::poller::Poller;
use crate::procfs::{listener_pid, CpuMeter};

const LEVEL: ProtocolLevel = ProtocolLevel::V311;
/// PUBLISHes a sender keeps unacknowledged while storing the backlog.
const SEND_WINDOW: usize = 256;

/// What to run (`mqtt-backlog`'s options; the target is filled in by the
/// command).
#[derive(Clone, Debug, clap::Args)]
pub struct MqttBacklogScenario {
    /// MQTT listener (surepush's, or a broker's with `--broker`).
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub mqtt: SocketAddr,
    /// Persistent sessions that go offline and drain at once.
    #[arg(long, default_value_t = 1000)]
    pub receivers: u32,
    /// Messages stored for each receiver while it is offline.
    #[arg(long, default_value_t = 50)]
    pub messages: u32,
    /// Publishing connections (each serves `receivers / senders`).
    #[arg(long, default_value_t = 8)]
    pub senders: u32,
    /// QoS of the subscriptions and the messages (1 or 2).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub qos: u8,
    /// Payload bytes (>= 8: the message index comes first).
    #[arg(long, default_value_t = 16)]
    pub payload: usize,
    /// Receiver threads (one epoll loop each).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seconds before giving up (each phase).
    #[arg(long = "timeout-s", value_name = "SECONDS", default_value = "120", value_parser = crate::cli::parse_seconds)]
    pub timeout: Duration,
    /// Run id: names topics and client ids (and users on surepush).
    #[arg(skip = crate::fresh_user_base())]
    pub run: u64,
}

/// What an MQTT backlog run measured and checked.
#[derive(Clone, Debug, Serialize)]
pub struct MqttBacklogReport {
    /// Receivers x messages.
    pub expected: u64,
    /// Messages delivered once and in order.
    pub in_order: u64,
    /// Deliveries of a message not the next one (twice, or out of order).
    pub out_of_order: u64,
    /// Receivers that got all their messages.
    pub complete: u64,
    /// Store phase (s).
    pub store_s: f64,
    /// Drain: first CONNECT to the last receiver complete (s).
    pub drain_s: f64,
    /// `in_order / drain_s`.
    pub drain_msgs_per_s: f64,
    /// Server CPU (µs) per drained message, if its pid was found.
    pub server_cpu_us_per_msg: Option<f64>,
}

impl MqttBacklogReport {
    /// Every message once and in order.
    pub fn passed(&self) -> bool {
        self.in_order == self.expected && self.out_of_order == 0
    }

    /// The report as a few lines of text.
    pub fn to_text(&self) -> String {
        format!(
            "mqtt-backlog: {} messages stored in {:.2} s\n  drain {} of {} in {:.3} s = {:.0} msgs/s, server CPU {} per message\n  {} receivers complete, {} out of order or twice: {}\n",
            self.expected,
            self.store_s,
            self.in_order,
            self.expected,
            self.drain_s,
            self.drain_msgs_per_s,
            crate::procfs::format_cpu(self.server_cpu_us_per_msg),
            self.complete,
            self.out_of_order,
            if self.passed() { "PASS" } else { "FAIL" },
        )
    }
}

fn qos_of(s: &MqttBacklogScenario) -> QoS {
    if s.qos == 2 {
        QoS::ExactlyOnce
    } else {
        QoS::AtLeastOnce
    }
}

/// Runs the scenario against `target`.
pub fn run_mqtt_backlog(
    s: &MqttBacklogScenario,
    target: &MqttTarget,
) -> Result<MqttBacklogReport, String> {
    let qos = qos_of(s);
    for r in 0..u64::from(s.receivers) {
        let mut p = target.connect(s.mqtt, s.run, r, true)?;
        p.send(&Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).expect("nonzero"),
            filters: vec![Subscription {
                filter: MqttString::from(target.topic(s.run, r).as_str()),
                options: SubscriptionOptions::qos(qos),
            }],
            properties: Default::default(),
        }))?;
        match p.next()? {
            Packet::SubAck(_) => {}
            other => return Err(format!("expected SUBACK, got {other:?}")),
        }
        p.send(&Packet::Disconnect(Disconnect::normal()))?;
    }
    let started = Instant::now();
    store(s, target)?;
    let store_s = started.elapsed().as_secs_f64();
    let server_pid = listener_pid(s.mqtt.port()).ok();
    let cpu = CpuMeter::start(server_pid);
    let started = Instant::now();
    let threads = s.threads.max(1);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (s, target, barrier) = (s.clone(), target.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mine: Vec<u64> = (0..u64::from(s.receivers))
                    .filter(|r| *r as usize % threads == t)
                    .collect();
                barrier.wait();
                drain(&s, &target, &mine)
            })
        })
        .collect();
    let mut tally = Tally::default();
    for h in handles {
        let t = h.join().map_err(|_| "a receiver thread panicked")??;
        tally.in_order += t.in_order;
        tally.out_of_order += t.out_of_order;
        tally.complete += t.complete;
    }
    let drain_s = started.elapsed().as_secs_f64();
    let server_cpu_us_per_msg = cpu.and_then(|c| c.per_message(tally.in_order));
    Ok(MqttBacklogReport {
        expected: u64::from(s.receivers) * u64::from(s.messages),
        in_order: tally.in_order,
        out_of_order: tally.out_of_order,
        complete: tally.complete,
        store_s,
        drain_s,
        drain_msgs_per_s: tally.in_order as f64 / drain_s.max(1e-9),
        server_cpu_us_per_msg,
    })
}

/// Publishes every receiver's messages, `senders` connections at once.
fn store(s: &MqttBacklogScenario, target: &MqttTarget) -> Result<(), String> {
    let senders = s.senders.clamp(1, s.receivers.max(1));
    let handles: Vec<_> = (0..senders)
        .map(|k| {
            let (s, target) = (s.clone(), target.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let mut p = target.connect(s.mqtt, s.run, u64::from(k), false)?;
                let mut queue = Vec::new();
                for r in (u64::from(k)..u64::from(s.receivers)).step_by(senders as usize) {
                    let topic = MqttString::from(target.topic(s.run, r).as_str());
                    for i in 0..u64::from(s.messages) {
                        let mut body = vec![0u8; s.payload.max(8)];
                        body[..8].copy_from_slice(&i.to_le_bytes());
                        queue.push((topic.clone(), Bytes::from(body)));
                    }
                }
                publish_all(&mut p, qos_of(&s), queue)?;
                p.send(&Packet::Disconnect(Disconnect::normal()))
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "a sender thread panicked")??;
    }
    Ok(())
}

/// Publishes `queue` in order, `SEND_WINDOW` unacknowledged at a time.
fn publish_all(p: &mut Peer, qos: QoS, queue: Vec<(MqttString, Bytes)>) -> Result<(), String> {
    for (n, batch) in queue.chunks(SEND_WINDOW).enumerate() {
        let mut out = BytesMut::new();
        for (i, (topic, payload)) in batch.iter().enumerate() {
            let id = PacketId::new((n * SEND_WINDOW + i) as u16 % 65_000 + 1).expect("nonzero");
            let packet = Packet::Publish(Publish {
                dup: false,
                qos,
                retain: false,
                topic: topic.clone(),
                packet_id: Some(id),
                payload: payload.clone(),
                properties: Default::default(),
            });
            encode(&packet, LEVEL, &mut out).map_err(|e| e.to_string())?;
        }
        p.stream.write_all(&out).map_err(|e| e.to_string())?;
        let mut done = 0;
        while done < batch.len() {
            match p.next()? {
                Packet::PubAck(_) | Packet::PubComp(_) => done += 1,
                Packet::PubRec(r) => p.send(&Packet::PubRel(PubReply::success(r.packet_id)))?,
                other => return Err(format!("publisher got {other:?}")),
            }
        }
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    in_order: u64,
    out_of_order: u64,
    complete: u64,
}

/// One draining session.
struct Receiver {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
    /// The message index expected next.
    next: u64,
    done: bool,
}

/// Reconnects `mine` and reads until each has every message (or the
/// timeout).
fn drain(s: &MqttBacklogScenario, target: &MqttTarget, mine: &[u64]) -> Result<Tally, String> {
    let mut receivers = Vec::with_capacity(mine.len());
    for &r in mine {
        let p = target.connect_nowait(s.mqtt, s.run, r, true)?;
        p.set_nonblocking(true).map_err(|e| e.to_string())?;
        receivers.push(Receiver {
            stream: p,
            decoder: Decoder::new(Some(LEVEL), 1 << 20),
            buf: BytesMut::new(),
            next: 0,
            done: false,
        });
    }
    let mut poller = Poller::new(receivers.iter().map(|r| r.stream.as_raw_fd()))?;
    let mut tally = Tally::default();
    let deadline = Instant::now() + s.timeout;
    let mut left = receivers.len();
    let mut chunk = vec![0u8; 64 << 10];
    while left > 0 && Instant::now() < deadline {
        for i in poller.wait(100) {
            let r = &mut receivers[i];
            if r.done {
                continue;
            }
            let mut out = BytesMut::new();
            loop {
                match r.stream.read(&mut chunk) {
                    Ok(0) => return Err(format!("receiver {i}: the server closed")),
                    Ok(n) => r.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("receiver {i}: {e}")),
                }
            }
            while let Some(p) = r.decoder.decode(&mut r.buf).map_err(|e| e.to_string())? {
                let reply = match p {
                    Packet::Publish(p) => {
                        let k = p
                            .payload
                            .get(..8)
                            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
                        if k == Some(r.next) {
                            r.next += 1;
                            tally.in_order += 1;
                        } else {
                            tally.out_of_order += 1;
                        }
                        p.packet_id.map(|id| match p.qos {
                            QoS::ExactlyOnce => Packet::PubRec(PubReply::success(id)),
                            _ => Packet::PubAck(PubReply::success(id)),
                        })
                    }
                    Packet::PubRel(rel) => Some(Packet::PubComp(PubReply::success(rel.packet_id))),
                    Packet::ConnAck(_) => None,
                    other => return Err(format!("receiver {i} got {other:?}")),
                };
                if let Some(reply) = reply {
                    encode(&reply, LEVEL, &mut out).map_err(|e| e.to_string())?;
                }
            }
            write_blocking(&mut r.stream, &out)?;
            if r.next >= u64::from(s.messages) {
                r.done = true;
                tally.complete += 1;
                left -= 1;
            }
        }
    }
    Ok(tally)
}

/// Writes `bytes` to a non-blocking socket, waiting while it is full
/// (acknowledgements are small: it seldom is).
fn write_blocking(stream: &mut TcpStream, mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}
