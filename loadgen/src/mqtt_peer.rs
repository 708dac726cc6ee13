//! The one-to-one workload over MQTT 3.1.1, against a broker (mosquitto, or
//! any MQTT server) or surepush's own MQTT listener, for side-by-side
//! numbers: `pairs` receivers each
//! subscribe at QoS 1 to their own topic with a persistent session; each
//! sender publishes `messages` QoS 1 messages there, the next one after the
//! previous PUBACK (the same closed loop as `one-to-one`). Receivers
//! acknowledge every delivery and check order. Spoken with surepush's own
//! MQTT codec.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use surepush_mqtt::{
    encode, Connect, Decoder, MqttString, Packet, PacketId, ProtocolLevel, PubReply, Publish, QoS,
    Subscribe, Subscription, SubscriptionOptions,
};

use crate::raw::{collect, new_histogram, PeerResult};
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
    fn topic(&self, run: u64, pair: u64) -> MqttString {
        let t = match self {
            MqttTarget::Broker => format!("surepush-lg/{run}/{pair}"),
            MqttTarget::Surepush { .. } => format!("user/{}", run + 2 * pair + 1),
        };
        MqttString::from(t)
    }

    /// Connects the sender (`receiver` false) or receiver of a pair.
    fn connect(
        &self,
        addr: SocketAddr,
        run: u64,
        pair: u64,
        receiver: bool,
    ) -> Result<Peer, String> {
        let role = if receiver { "r" } else { "s" };
        let password = match self {
            MqttTarget::Broker => None,
            MqttTarget::Surepush { secret } => Some(crate::mint_token(
                secret,
                run + 2 * pair + u64::from(receiver),
            )),
        };
        Peer::connect(addr, format!("lg-{run}-{role}{pair}"), password)
    }
}

/// Runs the workload against `target` at `addr`; `run` keeps client ids,
/// users and topics of different runs apart.
pub fn run_mqtt(
    addr: SocketAddr,
    target: &MqttTarget,
    pairs: u32,
    messages: u32,
    payload: usize,
    run: u64,
) -> Result<RawReport, String> {
    let (tx, rx) = mpsc::channel::<PeerResult>();
    let mut receivers = Vec::new();
    for pair in 0..u64::from(pairs) {
        let mut r = target.connect(addr, run, pair, true)?;
        r.send(&Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).expect("nonzero"),
            filters: vec![Subscription {
                filter: target.topic(run, pair),
                options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            }],
            properties: Default::default(),
        }))?;
        match r.next()? {
            Packet::SubAck(_) => {}
            other => return Err(format!("expected SUBACK, got {other:?}")),
        }
        let tx = tx.clone();
        receivers.push(std::thread::spawn(move || {
            let mut h = new_histogram();
            let mut next = 0u64;
            while next < u64::from(messages) {
                let Ok(Packet::Publish(p)) = r.next() else {
                    break;
                };
                if p.payload.len() >= 16 {
                    let sent = u64::from_le_bytes(p.payload[..8].try_into().expect("8"));
                    let k = u64::from_le_bytes(p.payload[8..16].try_into().expect("8"));
                    if k == next {
                        next += 1;
                        h.saturating_record(now_ns().saturating_sub(sent));
                    }
                }
                if let Some(id) = p.packet_id {
                    if r.send(&Packet::PubAck(PubReply::success(id))).is_err() {
                        break;
                    }
                }
            }
            let _ = tx.send((new_histogram(), h, 0, next));
        }));
    }
    let started = Instant::now();
    for pair in 0..u64::from(pairs) {
        let mut s = target.connect(addr, run, pair, false)?;
        let topic = target.topic(run, pair);
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut h = new_histogram();
            let mut acked = 0u64;
            for k in 0..u64::from(messages) {
                let t = now_ns();
                let mut body = vec![0u8; payload];
                body[..8].copy_from_slice(&t.to_le_bytes());
                body[8..16].copy_from_slice(&k.to_le_bytes());
                let id = PacketId::new((k % 65_535 + 1) as u16).expect("nonzero");
                let publish = Packet::Publish(Publish {
                    dup: false,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    topic: topic.clone(),
                    packet_id: Some(id),
                    payload: Bytes::from(body),
                    properties: Default::default(),
                });
                if s.send(&publish).is_err() {
                    break;
                }
                match s.next() {
                    Ok(Packet::PubAck(a)) if a.packet_id == id => {}
                    _ => break,
                }
                acked += 1;
                h.saturating_record(now_ns().saturating_sub(t));
            }
            let _ = tx.send((h, new_histogram(), acked, 0));
        });
    }
    drop(tx);
    Ok(collect(rx, receivers, started))
}
