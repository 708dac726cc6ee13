//! The kill -9 loop over MQTT clients (issue #16 item 4): publishers send
//! QoS 1 and QoS 2 PUBLISHes to receivers' inboxes (`user/{id}`) and to
//! two rooms (`room/{n}`) while the gateway is killed at random moments and
//! restarted on the same data dir. Every client is a persistent MQTT 5
//! session written here on surepush's own codec, as the spec has a client
//! behave: after each reconnect it resends every unacknowledged PUBLISH
//! with DUP and its packet id, and every unanswered PUBREL; as a receiver
//! it answers a QoS 2 PUBLISH whose packet id awaits PUBREL with PUBREC and
//! does not deliver it again. Receivers subscribe once, to their inbox at
//! QoS 2 and to both rooms (QoS 1, the rooms' maximum).
//!
//! At the end every publish must be acknowledged (PUBACK/PUBREC), and:
//! - stored: each receiver's inbox, replayed by a fresh native device, and
//!   each room, replayed from its start, hold every publish addressed
//!   there, a QoS 2 one exactly once, a QoS 1 one at least once, with the
//!   publisher, QoS and payload it was sent with, and nothing else;
//! - delivered: each receiver's application got every publish addressed
//!   to its inbox or a room, QoS 2 inbox messages exactly once, everything
//!   else at least once, each with its topic, its sender (the MQTT 5
//!   `from` property) and its payload, and within one connection in the
//!   order of the inbox or room;
//! - every session is found again after each kill (CONNACK session
//!   present).
//!
//! `CRASH_CYCLES` sets the number of kills (default 6; the manual mode
//! runs 1,000 in release), `CRASH_SEED` the RNG.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::TestServer;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use surepush::client::Event;
use surepush::core::Router;
use surepush::mqtt::{
    encode, Connect, Decoder, MqttString, Packet, PacketId, Properties, ProtocolLevel, PubReply,
    Publish, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions,
};
use surepush::proto::{Qos, Seq, UserId, ROOM_BIT};

/// Publishers and receivers each (half of them on each shard).
const USERS_PER_ROLE: usize = 4;
/// Publishes per cycle at most (the kill lands after a random number).
const PUBLISHES_PER_CYCLE: u32 = 40;
/// The MQTT device of every user.
const DEVICE: u64 = 1;
/// A fresh native device that replays each inbox and room at the end.
const REPLAY_DEVICE: u64 = 2;
const LEVEL: ProtocolLevel = ProtocolLevel::V5;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where a publish went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Target {
    Inbox(u64),
    Room(u64),
}

impl Target {
    fn topic(self) -> String {
        match self {
            Target::Inbox(u) => format!("user/{u}"),
            Target::Room(n) => format!("room/{n}"),
        }
    }
}

/// What a publisher sent (keyed by its payload, unique per publish).
struct Sent {
    publisher: u64,
    target: Target,
    qos: QoS,
}

/// What the clients saw, across every kill.
#[derive(Default)]
struct Ledger {
    sent: HashMap<Bytes, Sent>,
    /// Publishes with a PUBACK/PUBREC from the gateway.
    acked: HashSet<Bytes>,
    /// Publishes without PUBACK/PUBREC from the gateway when a kill hit
    /// (their fate was up to recovery and the resend).
    unacked_at_a_kill: HashSet<Bytes>,
    /// Publishes sent again (DUP) after a reconnect.
    resent: usize,
    /// QoS 2 PUBLISHes the receivers recognised by packet id (not delivered).
    qos2_repeats: usize,
}

/// A publish in flight from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Stage {
    /// QoS 1, awaiting PUBACK.
    Ack,
    /// QoS 2, awaiting PUBREC.
    Rec,
    /// QoS 2, PUBREL sent, awaiting PUBCOMP.
    Comp,
}

/// A message the receiver's application got.
#[derive(Clone, Debug)]
struct Got {
    /// Which connection of the device (counts from 1).
    conn: u32,
    topic: String,
    from: Option<u64>,
    qos: QoS,
    payload: Bytes,
}

/// One user's MQTT client: the connection and the client side of its
/// persistent session, which outlives the connections.
struct Client {
    user: u64,
    token: String,
    stream: Option<TcpStream>,
    decoder: Decoder,
    buf: BytesMut,
    conns: u32,
    /// The gateway confirmed the session once: it must always find it again.
    known: bool,
    /// Publishes not completed: packet id → (PUBLISH, stage).
    outgoing: BTreeMap<u16, (Publish, Stage)>,
    /// QoS 2 messages received, awaiting PUBREL.
    awaiting_rel: BTreeSet<u16>,
    /// Filters to subscribe; emptied by the SUBACK.
    to_subscribe: Vec<(String, QoS)>,
    got: Vec<Got>,
}

impl Client {
    fn new(server: &TestServer, user: u64, filters: Vec<(String, QoS)>) -> Client {
        Client {
            user,
            token: server.token(user, DEVICE),
            stream: None,
            decoder: Decoder::new(Some(LEVEL), 1 << 20),
            buf: BytesMut::new(),
            conns: 0,
            known: false,
            outgoing: BTreeMap::new(),
            awaiting_rel: BTreeSet::new(),
            to_subscribe: filters,
            got: Vec::new(),
        }
    }

    fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        encode(p, LEVEL, &mut out).expect("valid packet");
        if let Some(s) = self.stream.as_mut() {
            // A write into a dead gateway fails; the session resends later.
            let _ = s.write_all(&out);
        }
    }

    /// Connects (persistent session, clean start 0), waits for CONNACK,
    /// then resends what the session requires (MQTT-4.4.0-1).
    fn connect(&mut self, addr: SocketAddr, ledger: &mut Ledger) {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        self.stream = Some(stream);
        self.buf.clear();
        self.decoder = Decoder::new(Some(LEVEL), 1 << 20);
        self.conns += 1;
        let properties = Properties {
            session_expiry_interval: Some(u32::MAX),
            ..Properties::default()
        };
        self.send(&Packet::Connect(Box::new(Connect {
            protocol_level: LEVEL,
            clean_start: false,
            keep_alive: 120,
            client_id: MqttString::from(format!("crash-{}", self.user)),
            will: None,
            username: Some(MqttString::from("x")),
            password: Some(Bytes::from(self.token.clone())),
            properties,
        })));
        let deadline = Instant::now() + Duration::from_secs(10);
        let ack = loop {
            assert!(Instant::now() < deadline, "user {}: no CONNACK", self.user);
            match self.read_packet() {
                Ok(Some(Packet::ConnAck(a))) => break a,
                Ok(Some(other)) => panic!("user {}: {other:?} before CONNACK", self.user),
                Ok(None) => {}
                Err(()) => panic!("user {}: closed before CONNACK", self.user),
            }
        };
        assert_eq!(ack.code, ReasonCode::SUCCESS);
        assert!(
            ack.session_present || !self.known,
            "user {}: the gateway lost a session it had confirmed",
            self.user
        );
        self.known = true;
        let resend: Vec<(u16, Publish, Stage)> = self
            .outgoing
            .iter()
            .map(|(&id, (p, s))| (id, p.clone(), s.clone()))
            .collect();
        for (id, mut p, stage) in resend {
            if stage == Stage::Comp {
                self.send(&Packet::PubRel(PubReply::success(pid(id))));
            } else {
                p.dup = true;
                ledger.resent += 1;
                self.send(&Packet::Publish(p));
            }
        }
        if !self.to_subscribe.is_empty() {
            let filters = self
                .to_subscribe
                .iter()
                .map(|(f, q)| Subscription {
                    filter: MqttString::from(f.as_str()),
                    options: SubscriptionOptions::qos(*q),
                })
                .collect();
            self.send(&Packet::Subscribe(Subscribe {
                packet_id: pid(60_000),
                filters,
                properties: Properties::default(),
            }));
        }
    }

    /// The next packet, `Ok(None)` if none came within the read timeout
    /// (none at all in `nonblocking` mode), `Err` once the connection is
    /// gone.
    fn read_packet(&mut self) -> Result<Option<Packet>, ()> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(p)) => return Ok(Some(p)),
                Ok(None) => {}
                Err(e) => panic!("user {}: the gateway sent bad MQTT: {e}", self.user),
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(());
            };
            let mut chunk = [0u8; 16 * 1024];
            match stream.read(&mut chunk) {
                Ok(0) => {
                    self.stream = None;
                    return Err(());
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(_) => {
                    self.stream = None;
                    return Err(());
                }
            }
        }
    }

    /// Publishes `payload` to `target` at `qos`.
    fn publish(&mut self, target: Target, qos: QoS, payload: Bytes) {
        // The lowest free packet id: ids come back into use as soon as the
        // spec allows (after PUBACK, or PUBCOMP), which is when a gateway
        // that forgot the previous use would take a new message for it.
        let id = (1..)
            .find(|id| !self.outgoing.contains_key(id))
            .expect("fewer than 65,535 in flight");
        let p = Publish {
            dup: false,
            qos,
            retain: false,
            topic: MqttString::from(target.topic()),
            packet_id: Some(pid(id)),
            payload,
            properties: Properties::default(),
        };
        let stage = if qos == QoS::ExactlyOnce {
            Stage::Rec
        } else {
            Stage::Ack
        };
        self.outgoing.insert(id, (p.clone(), stage));
        self.send(&Packet::Publish(p));
    }

    /// Handles packets until none comes within the read timeout; false
    /// once the connection is gone.
    fn pump(&mut self, ledger: &mut Ledger) -> bool {
        self.set_waiting(true);
        self.drain(ledger)
    }

    /// Handles the packets already received, without waiting for more.
    fn pump_now(&mut self, ledger: &mut Ledger) -> bool {
        self.set_waiting(false);
        let open = self.drain(ledger);
        self.set_waiting(true);
        open
    }

    fn set_waiting(&mut self, wait: bool) {
        if let Some(s) = &self.stream {
            let _ = s.set_nonblocking(!wait);
        }
    }

    fn drain(&mut self, ledger: &mut Ledger) -> bool {
        loop {
            match self.read_packet() {
                Ok(Some(p)) => self.handle(p, ledger),
                Ok(None) => return true,
                Err(()) => return false,
            }
        }
    }

    fn handle(&mut self, p: Packet, ledger: &mut Ledger) {
        match p {
            Packet::PubAck(r) => {
                assert_eq!(r.reason, ReasonCode::SUCCESS, "user {}: {r:?}", self.user);
                if let Some((p, Stage::Ack)) = self.outgoing.get(&r.packet_id.get()) {
                    ledger.acked.insert(p.payload.clone());
                    self.outgoing.remove(&r.packet_id.get());
                }
            }
            Packet::PubRec(r) => {
                assert_eq!(r.reason, ReasonCode::SUCCESS, "user {}: {r:?}", self.user);
                if let Some((p, stage)) = self.outgoing.get_mut(&r.packet_id.get()) {
                    ledger.acked.insert(p.payload.clone());
                    *stage = Stage::Comp;
                    self.send(&Packet::PubRel(PubReply::success(r.packet_id)));
                }
            }
            Packet::PubComp(r) => {
                if matches!(
                    self.outgoing.get(&r.packet_id.get()),
                    Some((_, Stage::Comp))
                ) {
                    self.outgoing.remove(&r.packet_id.get());
                }
            }
            Packet::Publish(p) => self.receive(p, ledger),
            Packet::PubRel(r) => {
                self.awaiting_rel.remove(&r.packet_id.get());
                self.send(&Packet::PubComp(PubReply::success(r.packet_id)));
            }
            Packet::SubAck(a) => {
                assert!(
                    a.reasons.iter().all(|r| !r.is_error()),
                    "user {}: {a:?}",
                    self.user
                );
                self.to_subscribe.clear();
            }
            Packet::Disconnect(d) => {
                panic!("user {}: the gateway disconnected: {d:?}", self.user)
            }
            other => panic!("user {}: unexpected {other:?}", self.user),
        }
    }

    /// A PUBLISH from the gateway: delivered to the application unless its
    /// packet id awaits PUBREL (a QoS 2 repeat), then acknowledged.
    fn receive(&mut self, p: Publish, ledger: &mut Ledger) {
        let from = p
            .properties
            .user_properties
            .iter()
            .find(|(k, _)| k.as_str() == "from")
            .and_then(|(_, v)| v.as_str().parse().ok());
        let repeat = p.qos == QoS::ExactlyOnce
            && !self
                .awaiting_rel
                .insert(p.packet_id.expect("QoS 2 has an id").get());
        if repeat {
            ledger.qos2_repeats += 1;
        } else {
            self.got.push(Got {
                conn: self.conns,
                topic: p.topic.as_str().to_string(),
                from,
                qos: p.qos,
                payload: p.payload.clone(),
            });
        }
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(PubReply::success(id))),
            (QoS::ExactlyOnce, Some(id)) => self.send(&Packet::PubRec(PubReply::success(id))),
            _ => {}
        }
    }
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

/// `n` user ids, half owned by each of the 2 shards.
fn users_on_both_shards(n: usize, from: u64) -> Vec<u64> {
    let mut picked = Vec::new();
    for shard in [0, 1] {
        picked.extend(
            (from..from + 1000)
                .filter(|u| Router::of_node(2).owner(UserId(*u)).0 == shard)
                .take(n / 2),
        );
    }
    picked
}

/// A room homed on each shard.
fn rooms_on_both_shards() -> Vec<u64> {
    [0, 1]
        .iter()
        .map(|&shard| {
            (70..)
                .find(|n| Router::of_node(2).owner(UserId(n | ROOM_BIT)).0 == shard)
                .expect("a room there")
        })
        .collect()
}

#[test]
fn kill_9_loop_over_mqtt_clients_keeps_qos2_exactly_once_and_loses_nothing_acknowledged() {
    let started = Instant::now();
    let cycles = env_u64("CRASH_CYCLES", 6);
    let seed = env_u64("CRASH_SEED", 16);
    let mut rng = SmallRng::seed_from_u64(seed);
    // Tiny write-behind pieces: kills land while pieces are in flight; no
    // age bound on the room history (no count bound by default either).
    let mut server = TestServer::start_full(
        2,
        "[core]\nroom_max_age_ms = 0\n",
        "write_behind_kib = 4",
        |_| {},
    );
    let publishers = users_on_both_shards(USERS_PER_ROLE, 8000);
    let receivers = users_on_both_shards(USERS_PER_ROLE, 9000);
    let rooms = rooms_on_both_shards();
    let mut ledger = Ledger::default();
    let mut pubs: Vec<Client> = publishers
        .iter()
        .map(|&u| Client::new(&server, u, Vec::new()))
        .collect();
    let mut recvs: Vec<Client> = receivers
        .iter()
        .map(|&u| {
            let mut filters = vec![(format!("user/{u}"), QoS::ExactlyOnce)];
            filters.extend(
                rooms
                    .iter()
                    .map(|n| (format!("room/{n}"), QoS::AtLeastOnce)),
            );
            Client::new(&server, u, filters)
        })
        .collect();
    // Every receiver is subscribed before anything is published.
    for c in recvs.iter_mut() {
        c.connect(server.mqtt, &mut ledger);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !c.to_subscribe.is_empty() {
            assert!(Instant::now() < deadline, "no SUBACK");
            assert!(c.pump(&mut ledger), "closed before SUBACK");
        }
    }
    for c in pubs.iter_mut() {
        c.connect(server.mqtt, &mut ledger);
    }
    let mut n = 0u64;
    for cycle in 0..cycles {
        let publishes = rng.random_range(0..PUBLISHES_PER_CYCLE);
        for _ in 0..publishes {
            let p = rng.random_range(0..pubs.len());
            let target = if rng.random_bool(0.3) {
                Target::Room(rooms[rng.random_range(0..rooms.len())])
            } else {
                Target::Inbox(receivers[rng.random_range(0..receivers.len())])
            };
            let qos = if rng.random_bool(0.5) {
                QoS::ExactlyOnce
            } else {
                QoS::AtLeastOnce
            };
            let payload = Bytes::from(format!(
                "c{cycle}-m{n}-p{}-{}-{}",
                pubs[p].user,
                target.topic(),
                "x".repeat(200)
            ));
            n += 1;
            ledger.sent.insert(
                payload.clone(),
                Sent {
                    publisher: pubs[p].user,
                    target,
                    qos,
                },
            );
            pubs[p].publish(target, qos, payload);
            // What already came is handled; nothing waits for the rest.
            for c in pubs.iter_mut().chain(recvs.iter_mut()) {
                c.pump_now(&mut ledger);
            }
        }
        // Timing jitter (not synchronisation): some kills land while group
        // commits are under way, others after the acknowledgements left.
        std::thread::sleep(Duration::from_micros(rng.random_range(0..15_000)));
        server.kill9();
        // What the dead process wrote is still in the sockets: read it to
        // the end, so "unacknowledged" means the gateway never said.
        for c in pubs.iter_mut().chain(recvs.iter_mut()) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.pump(&mut ledger) {
                assert!(
                    Instant::now() < deadline,
                    "user {}: no EOF after kill",
                    c.user
                );
            }
        }
        let unacked: Vec<Bytes> = ledger
            .sent
            .keys()
            .filter(|p| !ledger.acked.contains(*p))
            .cloned()
            .collect();
        ledger.unacked_at_a_kill.extend(unacked);
        server.spawn();
        for c in pubs.iter_mut().chain(recvs.iter_mut()) {
            c.connect(server.mqtt, &mut ledger);
        }
    }
    // Let every publish finish against the last incarnation.
    let deadline = Instant::now() + Duration::from_secs(60);
    while pubs.iter().any(|c| !c.outgoing.is_empty()) {
        assert!(Instant::now() < deadline, "publishes never finished");
        for c in pubs.iter_mut().chain(recvs.iter_mut()) {
            assert!(c.pump(&mut ledger), "user {}: connection lost", c.user);
        }
    }
    assert_eq!(
        ledger.acked.len(),
        ledger.sent.len(),
        "every publish acknowledged"
    );
    // Every receiver's application gets everything addressed to it.
    for c in recvs.iter_mut() {
        let want: HashSet<Bytes> = ledger
            .sent
            .iter()
            .filter(|(_, s)| match s.target {
                Target::Inbox(u) => u == c.user,
                Target::Room(_) => true,
            })
            .map(|(p, _)| p.clone())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let have: HashSet<&Bytes> = c.got.iter().map(|g| &g.payload).collect();
            if want.iter().all(|p| have.contains(p)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "user {}: {} of {} messages never delivered",
                c.user,
                want.iter().filter(|p| !have.contains(p)).count(),
                want.len()
            );
            assert!(c.pump(&mut ledger), "user {}: connection lost", c.user);
        }
    }
    // What is stored: each inbox and each room, replayed natively.
    let mut stored: HashMap<Target, Vec<Bytes>> = HashMap::new();
    for &r in &receivers {
        let (_replayer, events) = server.connect(r, REPLAY_DEVICE, Some(Seq::ZERO));
        let inbox = common::messages(events);
        for (i, m) in inbox.iter().enumerate() {
            assert_eq!(m.seq, Seq(i as u64 + 1), "inbox {r}: without gaps");
            let sent = ledger
                .sent
                .get(&m.payload)
                .unwrap_or_else(|| panic!("inbox {r}: {m:?} was never published"));
            assert_eq!(
                (sent.target, UserId(sent.publisher), qos_of(sent.qos)),
                (Target::Inbox(r), m.from, m.qos),
                "inbox {r}: seq {} is not what was published",
                m.seq.0
            );
        }
        stored.insert(
            Target::Inbox(r),
            inbox.into_iter().map(|m| m.payload).collect(),
        );
    }
    for &room in &rooms {
        stored.insert(
            Target::Room(room),
            replay_room(&server, receivers[0], room, &ledger),
        );
    }
    let mut qos1_stored_twice = 0;
    for (payload, sent) in &ledger.sent {
        let copies = stored[&sent.target]
            .iter()
            .filter(|p| *p == payload)
            .count();
        match sent.qos {
            QoS::ExactlyOnce => {
                assert_eq!(copies, 1, "QoS 2 {:?} stored {copies} times", sent.target)
            }
            _ => {
                assert!(copies >= 1, "QoS 1 {:?} lost", sent.target);
                qos1_stored_twice += copies - 1;
            }
        }
    }
    // What each receiver's application got.
    let mut delivered = 0;
    let mut qos1_delivered_again = 0;
    for c in &recvs {
        let mut count: HashMap<&Bytes, usize> = HashMap::new();
        for g in &c.got {
            let sent = ledger
                .sent
                .get(&g.payload)
                .unwrap_or_else(|| panic!("user {}: got {g:?}, never published", c.user));
            assert_eq!(g.topic, sent.target.topic(), "user {}: {g:?}", c.user);
            assert_eq!(
                g.from,
                Some(sent.publisher),
                "user {}: sender of {g:?}",
                c.user
            );
            let want_qos = match sent.target {
                Target::Inbox(_) => sent.qos,
                Target::Room(_) => QoS::AtLeastOnce,
            };
            assert_eq!(g.qos, want_qos, "user {}: QoS of {g:?}", c.user);
            *count.entry(&g.payload).or_default() += 1;
        }
        for (payload, n) in count {
            let sent = &ledger.sent[payload];
            if sent.qos == QoS::ExactlyOnce && matches!(sent.target, Target::Inbox(_)) {
                assert_eq!(n, 1, "user {}: QoS 2 message delivered {n} times", c.user);
            }
            qos1_delivered_again += n - 1;
            delivered += 1;
        }
        check_order(c, &stored);
    }
    println!(
        "MQTT crash loop (seed {seed}): {cycles} kills, {} publishes ({} QoS 2) from \
         {USERS_PER_ROLE} publishers to {USERS_PER_ROLE} inboxes and {} rooms, {} without \
         PUBACK/PUBREC when a kill hit, {} resent with DUP after a reconnect, {delivered} deliveries \
         checked ({qos1_delivered_again} repeats of QoS 1 or room messages, {} QoS 2 repeats \
         recognised by packet id), {qos1_stored_twice} QoS 1 publishes stored twice, 0 losses, \
         0 QoS 2 duplicates, {:.1} s",
        ledger.sent.len(),
        ledger
            .sent
            .values()
            .filter(|s| s.qos == QoS::ExactlyOnce)
            .count(),
        rooms.len(),
        ledger.unacked_at_a_kill.len(),
        ledger.resent,
        ledger.qos2_repeats,
        started.elapsed().as_secs_f64()
    );
}

fn qos_of(q: QoS) -> Qos {
    match q {
        QoS::AtMostOnce => Qos::AtMostOnce,
        QoS::AtLeastOnce => Qos::AtLeastOnce,
        QoS::ExactlyOnce => Qos::ExactlyOnce,
    }
}

/// Room `n` from its start, read by a fresh native device of `user`; each
/// message checked against what was published.
fn replay_room(server: &TestServer, user: u64, n: u64, ledger: &Ledger) -> Vec<Bytes> {
    let (mut c, _) = server.connect(user, REPLAY_DEVICE, None);
    c.resume_room(n | ROOM_BIT, Qos::AtLeastOnce, Seq::ZERO)
        .expect("subscribe");
    let head = loop {
        match c.next_event(Duration::from_secs(10)).expect("io") {
            Some(Event::Subscribed(a)) => break a.head,
            Some(_) => {}
            None => panic!("room {n}: no SUBACK"),
        }
    };
    let mut out = Vec::new();
    while (out.len() as u64) < head.0 {
        match c.next_event(Duration::from_secs(10)).expect("io") {
            Some(Event::RoomMessage(p)) => {
                assert_eq!(p.seq, Seq(out.len() as u64 + 1), "room {n}: in order");
                let sent = ledger
                    .sent
                    .get(&p.payload)
                    .unwrap_or_else(|| panic!("room {n}: {p:?} was never published"));
                assert_eq!(
                    (sent.target, UserId(sent.publisher), qos_of(sent.qos)),
                    (Target::Room(n), p.from, p.qos),
                    "room {n}: seq {} is not what was published",
                    p.seq.0
                );
                out.push(p.payload);
            }
            Some(_) => {}
            None => panic!("room {n}: replay stopped at {}", out.len()),
        }
    }
    c.ack_rooms().expect("ack");
    out
}

/// Within one connection, a receiver gets each topic in the order of its
/// inbox or room: each delivery maps to a stored copy after the previous
/// one (a QoS 1 publish stored twice may map to either copy).
fn check_order(c: &Client, stored: &HashMap<Target, Vec<Bytes>>) {
    let mut last: HashMap<(u32, &str), usize> = HashMap::new();
    for g in &c.got {
        let target = match g.topic.split_once('/') {
            Some(("user", u)) => Target::Inbox(u.parse().expect("a number")),
            Some(("room", n)) => Target::Room(n.parse().expect("a number")),
            _ => panic!("user {}: topic {}", c.user, g.topic),
        };
        let copies = &stored[&target];
        let key = (g.conn, g.topic.as_str());
        let after = last.get(&key).map_or(0, |i| i + 1);
        let at = (after..copies.len())
            .find(|&i| copies[i] == g.payload)
            .unwrap_or_else(|| {
                panic!(
                    "user {}: on connection {} {} came out of order",
                    c.user, g.conn, g.topic
                )
            });
        last.insert(key, at);
    }
}
