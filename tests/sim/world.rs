//! The simulated world: shards, their storage, clients and a lossy network,
//! driven in virtual time by one seeded RNG.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use surepush::client::{ClientConfig, ClientSession, Event};
use surepush::core::{
    Action, Claims, ConnId, CoreConfig, PeerMsg, Router, Shard, ShardId, ShardParams, TokenVerifier,
};
use surepush::log::{InboxQuery, Record, RecoveredState};
use surepush::mqtt::Packet;
use surepush::proto::{is_room, DeviceId, Frame, Push, Qos, SendResult, Seq, UserId};

use super::link::{decode_shared, Direction, Link};
use super::mqtt::MqttWorld;
use super::plan::{Plan, GROUP};
use super::rooms::SimFollow;
use super::storage::Storage;

pub const MS: u64 = 1_000_000;
const US: u64 = 1_000;
pub const SECRET: &[u8] = b"simulation secret";
/// The shards' wall clock at virtual time 0 (ms since the Unix epoch).
pub const WALL_MS_AT_ZERO: u64 = 1_700_000_000_000;

#[derive(Debug)]
pub enum Ev {
    ToServer {
        shard: u16,
        epoch: u64,
        conn: ConnId,
        frame: Frame,
    },
    ToClient {
        client: usize,
        link: u64,
        frame: Frame,
    },
    ServerClosed {
        client: usize,
        link: u64,
    },
    ClientClosed {
        shard: u16,
        epoch: u64,
        conn: ConnId,
    },
    Peer {
        shard: u16,
        epoch: u64,
        msg: PeerMsg,
    },
    Read {
        shard: u16,
        epoch: u64,
        id: u64,
        user: UserId,
        query: InboxQuery,
    },
    Sync {
        shard: u16,
        epoch: u64,
    },
    Connect {
        client: usize,
    },
    Work {
        client: usize,
    },
    Kill,
    Crash,
    /// A follower unsubscribes, or subscribes again.
    RoomToggle {
        client: usize,
        follow: usize,
    },
    /// A follower that acknowledges lazily acknowledges what it received.
    AckRooms {
        client: usize,
    },
    /// MQTT (`mqtt.rs`): a packet reaches the server side of a link.
    MqttToServer {
        link: u64,
        epoch: u64,
        packet: Packet,
    },
    /// A packet reaches an MQTT client.
    MqttToClient {
        client: usize,
        link: u64,
        packet: Packet,
    },
    MqttConnect {
        client: usize,
    },
    MqttWork {
        client: usize,
    },
    /// The server hears that an MQTT client closed its link.
    MqttClientClosed {
        link: u64,
        epoch: u64,
    },
    /// An MQTT client sees the server close its link.
    MqttServerClosed {
        client: usize,
        link: u64,
    },
    MqttKill,
}

/// What one send was, for the checker.
#[derive(Clone, Debug)]
pub struct SentMsg {
    pub to: UserId,
    pub qos: Qos,
    pub payload: Bytes,
}

pub struct SimClient {
    pub user: UserId,
    pub device: DeviceId,
    pub session: ClientSession,
    link: Option<(u64, u16, ConnId)>,
    pub delivered: Vec<Push>,
    /// History fetched with `fetch_older` (a new device's older pages).
    pub older: Vec<Push>,
    pub ephemeral: Vec<Push>,
    sends_left: u32,
    /// Rooms this device follows, with what its application saw.
    pub follows: Vec<SimFollow>,
    /// Reading speed (ns per byte; 0: reads everything at once).
    read_ns_per_byte: u64,
    /// A lazy acknowledgement of room messages is scheduled.
    ack_armed: bool,
    /// The current link as the network and the driver see it.
    link_state: Link,
}

pub struct World {
    pub plan: Plan,
    pub(super) rng: SmallRng,
    pub now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    pub(super) config: CoreConfig,
    pub shards: Vec<Shard>,
    pub storage: Vec<Storage>,
    sync_armed: Vec<bool>,
    pub(super) epoch: u64,
    links: HashMap<(u16, ConnId), (usize, u64)>,
    pub(super) next_link: u64,
    pub clients: Vec<SimClient>,
    /// MQTT devices and the bridges serving them (`mqtt.rs`).
    pub mqtt: MqttWorld,
    pub sent: HashMap<(UserId, DeviceId, u64), SentMsg>,
    pub acked: HashMap<(UserId, DeviceId, u64), u32>,
    /// The room sequence each room publish was acknowledged with (last one).
    pub room_acks: HashMap<(UserId, DeviceId, u64), Seq>,
    pub crashes: u32,
    pub steps: u64,
    /// Room frames the driver did not queue (slow reader): lags reported.
    pub driver_lags: u64,
    faults_on: bool,
    /// `SIM_TRACE` is set: print every frame.
    pub(super) trace: bool,
}

impl World {
    pub fn new(seed: u64) -> World {
        let plan = Plan::from_seed(seed);
        let defaults = CoreConfig::default();
        let rooms = plan.rooms.as_ref();
        let config = CoreConfig {
            room_history: rooms.map_or(defaults.room_history, |r| r.history),
            room_resume_limit: rooms.map_or(defaults.room_resume_limit, |r| r.resume_limit()),
            room_window: rooms.map_or(defaults.room_window, |r| r.window),
            room_page: rooms.map_or(defaults.room_page, |r| r.page),
            room_max_age_ms: rooms.map_or(defaults.room_max_age_ms, |r| r.max_age_ms),
            keepalive_ms: 5_000,
            connect_timeout_ms: 2_000,
            ack_timeout_ms: 200,
            max_backoff_ms: 2_000,
            max_retries: 4,
            push_window: 4,
            max_sync_limit: 50,
            cursor_flush_ms: 5,
            ..CoreConfig::default()
        };
        let verifier = TokenVerifier::new(SECRET);
        let clients = plan
            .devices
            .iter()
            .enumerate()
            .map(|(i, &(user, device, has_cursor))| {
                let token = verifier.mint(&Claims {
                    user,
                    device,
                    expires_s: u64::MAX / 2,
                    acl: Default::default(),
                });
                let mut cfg = ClientConfig::new(token, device);
                cfg.keepalive_ms = 5_000;
                cfg.send_timeout_ms = 300;
                cfg.sync_timeout_ms = 400;
                cfg.page = 3;
                cfg.initial_latest = 5;
                cfg.first_client_msg_id = 1 + (i as u64) * 1_000_000;
                SimClient {
                    user,
                    device,
                    session: ClientSession::new(cfg, has_cursor.then_some(Default::default())),
                    link: None,
                    delivered: Vec::new(),
                    older: Vec::new(),
                    ephemeral: Vec::new(),
                    sends_left: plan.sends_per_device,
                    follows: rooms
                        .map(|r| {
                            r.follows
                                .iter()
                                .filter(|f| f.client == i)
                                .map(|f| SimFollow::new(f.clone()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    read_ns_per_byte: rooms.map_or(0, |r| r.read_ns_per_byte[i]),
                    ack_armed: false,
                    link_state: Link::default(),
                }
            })
            .collect();
        let mut w = World {
            rng: SmallRng::seed_from_u64(seed),
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            shards: Vec::new(),
            storage: (0..plan.shards).map(|_| Storage::default()).collect(),
            sync_armed: vec![false; plan.shards as usize],
            epoch: 0,
            links: HashMap::new(),
            next_link: 0,
            clients,
            mqtt: MqttWorld::new(plan.mqtt.as_ref()),
            sent: HashMap::new(),
            acked: HashMap::new(),
            room_acks: HashMap::new(),
            crashes: 0,
            steps: 0,
            driver_lags: 0,
            faults_on: true,
            trace: std::env::var("SIM_TRACE").is_ok(),
            config,
            plan,
        };
        // The group exists (durably, on its home shard) before any traffic.
        let home = Router::of_node(w.plan.shards).owner(GROUP).0 as usize;
        for &user in &w.plan.group_members {
            let joined = Record::Member {
                group: GROUP,
                user,
                joined: true,
            };
            w.storage[home].append(0, joined);
        }
        w.storage[home].sync();
        w.boot_shards();
        for c in 0..w.clients.len() {
            let t = w.rng.random_range(0..50 * MS);
            w.schedule(t, Ev::Connect { client: c });
            let t = w.rng.random_range(0..100 * MS);
            w.schedule(t, Ev::Work { client: c });
        }
        if w.plan.kill_every_ms > 0 {
            let t = w.rng.random_range(0..w.plan.kill_every_ms * MS);
            w.schedule(t, Ev::Kill);
            if w.plan.mqtt.is_some() {
                let t = w.rng.random_range(0..w.plan.kill_every_ms * MS);
                w.schedule(t, Ev::MqttKill);
            }
        }
        if w.plan.crash_every_ms > 0 {
            let t = w.rng.random_range(1..w.plan.crash_every_ms * MS);
            w.schedule(t, Ev::Crash);
        }
        w.start_following();
        w.start_mqtt();
        w
    }

    /// Every planned follower subscribes before it first connects: from
    /// now, or (some) after 0, i.e. the room's whole history.
    fn start_following(&mut self) {
        let Some(rooms) = self.plan.rooms.clone() else {
            return;
        };
        for c in 0..self.clients.len() {
            for f in 0..self.clients[c].follows.len() {
                let from = self.rng.random_bool(0.3).then_some(Seq::ZERO);
                self.follow(c, f, from);
                if rooms.toggle_every_ms > 0 {
                    let t = self.rng.random_range(1..=rooms.toggle_every_ms) * MS;
                    self.schedule(
                        t,
                        Ev::RoomToggle {
                            client: c,
                            follow: f,
                        },
                    );
                }
            }
        }
    }

    /// Follow `follow` of `client` from now (`None`) or after `from`.
    fn follow(&mut self, client: usize, follow: usize, from: Option<Seq>) {
        let now = self.now;
        let c = &mut self.clients[client];
        let f = &mut c.follows[follow];
        let (room, qos) = (f.plan.room, f.plan.qos);
        match from {
            None => c.session.subscribe(room, qos, now),
            Some(last) => c.session.resume(room, qos, last, now),
        }
        f.start(from);
        self.flush_client(client);
    }

    /// Fault phase: unsubscribe, or subscribe again (mostly resuming after
    /// the last position, sometimes from now, sometimes replacing a live
    /// subscription). After healing: everyone planned follows again.
    fn toggle_follow(&mut self, client: usize, follow: usize) {
        let f = &self.clients[client].follows[follow];
        let (following, pos, room) = (f.following, f.pos, f.plan.room);
        if !self.faults_on {
            if !following {
                self.follow(client, follow, pos);
            }
            return;
        }
        if following && self.rng.random_bool(0.7) {
            let now = self.now;
            let c = &mut self.clients[client];
            c.session.unsubscribe(room, now);
            c.follows[follow].stop();
            self.flush_client(client);
        } else {
            let from = if self.rng.random_bool(0.8) { pos } else { None };
            self.follow(client, follow, from);
        }
        let every = self.plan.rooms.as_ref().map_or(0, |r| r.toggle_every_ms);
        let t = self.now + self.rng.random_range(1..=every) * MS;
        self.schedule(t, Ev::RoomToggle { client, follow });
    }

    fn boot_shards(&mut self) {
        let verifier = TokenVerifier::new(SECRET);
        self.shards = (0..self.plan.shards)
            .map(|id| {
                let recovered: RecoveredState =
                    self.storage[id as usize].recover(&self.config.dedup);
                let mut shard = Shard::new(
                    ShardParams {
                        id: ShardId(id),
                        shards: self.plan.shards,
                        wall_ms_at_zero: WALL_MS_AT_ZERO,
                    },
                    self.config.clone(),
                    verifier.clone(),
                    recovered,
                );
                // As the node does: the topic streams' names are read back
                // (a wildcard filter registered later must find them).
                shard.load_topic_names();
                shard
            })
            .collect();
    }

    pub(super) fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), ev);
    }

    pub(super) fn delay(&mut self) -> u64 {
        self.rng.random_range(1..=self.plan.max_delay_us) * US
    }

    /// Sends `frame` over `client`'s link in direction `dir` as the events
    /// `ev` makes, subject to drop, duplication and delay (which reorders);
    /// a slow reader takes its frames one after the other, each as long as
    /// its size needs, and what it has not read yet is queued.
    fn transmit(&mut self, client: usize, dir: Direction, frame: Frame, ev: impl Fn(Frame) -> Ev) {
        for t in self.arrivals(client, &frame, dir) {
            self.schedule(t, ev(frame.clone()));
        }
    }

    /// When the copies of a frame arrive: none (dropped), one, or two
    /// (duplicated), each after a random delay, which reorders frames.
    fn arrivals(&mut self, client: usize, frame: &Frame, dir: Direction) -> Vec<u64> {
        let copies = if !self.faults_on {
            1
        } else if self.rng.random_bool(self.plan.drop) {
            0
        } else if self.rng.random_bool(self.plan.dup) {
            2
        } else {
            1
        };
        if copies != 1 {
            self.clients[client].link_state.lost_or_repeated(frame);
        }
        (0..copies)
            .map(|_| {
                let delayed = self.now + self.delay();
                let faults_on = self.faults_on;
                self.clients[client]
                    .link_state
                    .arrival(frame, dir, delayed, faults_on)
            })
            .collect()
    }

    /// Ends the fault phase: the network and the disks become reliable.
    /// Links whose room frames were lost, repeated or reordered are reset.
    pub fn heal(&mut self) {
        self.faults_on = false;
        for c in 0..self.clients.len() {
            if self.clients[c].link_state.room_stream_broken() {
                self.drop_client_link(c, true);
            }
        }
    }

    /// Runs until virtual time `until` or until nothing is left to do.
    pub fn run_until(&mut self, until: u64, max_steps: u64) {
        while self.steps < max_steps {
            let next_event = self.queue.keys().next().map(|k| k.0);
            let next_timer = self
                .shards
                .iter()
                .filter_map(|s| s.poll_timeout())
                .chain(self.clients.iter().filter_map(|c| c.session.poll_timeout()))
                .min();
            let Some(t) = [next_event, next_timer].into_iter().flatten().min() else {
                return;
            };
            if t > until {
                self.now = until;
                return;
            }
            self.steps += 1;
            self.now = self.now.max(t);
            if next_event == Some(t) {
                let (_, ev) = self.queue.pop_first().expect("non-empty");
                self.handle(ev);
            } else {
                let now = self.now;
                for s in &mut self.shards {
                    if s.poll_timeout().is_some_and(|d| d <= now) {
                        s.handle_timeout(now);
                    }
                }
                for c in 0..self.clients.len() {
                    if self.clients[c]
                        .session
                        .poll_timeout()
                        .is_some_and(|d| d <= now)
                    {
                        self.clients[c].session.handle_timeout(now);
                        self.flush_client(c);
                    }
                }
            }
            self.drain_shards();
        }
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::ToServer {
                shard,
                epoch,
                conn,
                frame,
            } => {
                if self.trace {
                    eprintln!(
                        "{}ms -> s{shard} {conn:?} ok={}: {frame:?}",
                        now / MS,
                        epoch == self.epoch && self.links.contains_key(&(shard, conn))
                    );
                }
                if epoch == self.epoch && self.links.contains_key(&(shard, conn)) {
                    self.shards[shard as usize].handle_frame(conn, frame, now);
                }
            }
            Ev::ToClient {
                client,
                link,
                frame,
            } => {
                if self.trace {
                    eprintln!(
                        "{}ms -> c{client} link {link} (cur {:?}): {frame:?}",
                        now / MS,
                        self.clients[client].link.map(|l| l.0)
                    );
                }
                if self.clients[client].link.is_some_and(|l| l.0 == link) {
                    self.clients[client].link_state.read(&frame);
                    self.clients[client].session.handle_frame(frame, now);
                    self.flush_client(client);
                }
            }
            Ev::ServerClosed { client, link } => {
                if self.clients[client].link.is_some_and(|l| l.0 == link) {
                    self.drop_client_link(client, false);
                }
            }
            Ev::ClientClosed { shard, epoch, conn } => {
                if epoch == self.epoch && self.links.remove(&(shard, conn)).is_some() {
                    self.shards[shard as usize].handle_closed(conn, now);
                }
            }
            Ev::Peer { shard, epoch, msg } => {
                if epoch == self.epoch {
                    self.shards[shard as usize].handle_peer(msg, now);
                }
            }
            Ev::Read {
                shard,
                epoch,
                id,
                user,
                query,
            } => {
                if epoch == self.epoch {
                    let fail = self.plan.rooms.as_ref().map_or(0.0, |r| r.read_fail);
                    let result = if self.faults_on && is_room(user.0) && self.rng.random_bool(fail)
                    {
                        Err(()) // a replay read of a room fails
                    } else {
                        Ok(self.storage[shard as usize].read(user, query))
                    };
                    self.shards[shard as usize].handle_read(id, result, now);
                }
            }
            Ev::Sync { shard, epoch } => {
                if epoch != self.epoch {
                    return;
                }
                let s = shard as usize;
                self.sync_armed[s] = false;
                let fail = self.faults_on && self.rng.random_bool(self.plan.storage_fail);
                if fail {
                    if self.trace {
                        eprintln!("{}ms s{s}: sync fails", now / MS);
                    }
                    if let Some(token) = self.storage[s].fail_sync() {
                        self.shards[s].handle_appended(token, Err(()), now);
                        // An operator (or supervisor) restarts the poisoned process.
                        let t = now + 20 * MS;
                        self.schedule(t, Ev::Crash);
                    }
                } else if let Some(token) = self.storage[s].sync() {
                    self.shards[s].handle_appended(token, Ok(()), now);
                }
            }
            Ev::Connect { client } => self.connect(client),
            Ev::Work { client } => self.work(client),
            Ev::RoomToggle { client, follow } => self.toggle_follow(client, follow),
            Ev::AckRooms { client } => {
                self.clients[client].ack_armed = false;
                self.clients[client].session.ack_rooms();
                self.flush_client(client);
            }
            Ev::Kill => {
                if self.faults_on {
                    let c = self.rng.random_range(0..self.clients.len());
                    if self.clients[c].link.is_some() {
                        self.drop_client_link(c, true);
                    }
                    let t = now + self.rng.random_range(1..=self.plan.kill_every_ms) * MS;
                    self.schedule(t, Ev::Kill);
                }
            }
            Ev::MqttToServer {
                link,
                epoch,
                packet,
            } => self.mqtt_to_server(link, epoch, packet),
            Ev::MqttToClient {
                client,
                link,
                packet,
            } => self.mqtt_to_client(client, link, packet),
            Ev::MqttConnect { client } => self.mqtt_connect(client),
            Ev::MqttWork { client } => self.mqtt_work(client),
            Ev::MqttClientClosed { link, epoch } => self.mqtt_client_closed(link, epoch),
            Ev::MqttServerClosed { client, link } => {
                if self.mqtt.clients[client].link == Some(link) {
                    self.mqtt_drop_link(client, None);
                }
            }
            Ev::MqttKill => {
                if self.faults_on {
                    self.mqtt_kill();
                    let t = now + self.rng.random_range(1..=self.plan.kill_every_ms) * MS;
                    self.schedule(t, Ev::MqttKill);
                }
            }
            Ev::Crash => {
                if !self.faults_on && self.shards.iter().all(|s| !s.storage_failed()) {
                    return;
                }
                self.crash();
                if self.faults_on && self.plan.crash_every_ms > 0 {
                    let t = now + self.rng.random_range(1..=self.plan.crash_every_ms) * MS;
                    self.schedule(t, Ev::Crash);
                }
            }
        }
    }

    fn crash(&mut self) {
        self.crashes += 1;
        self.epoch += 1;
        for s in &mut self.storage {
            s.crash();
        }
        self.sync_armed.iter_mut().for_each(|a| *a = false);
        self.links.clear();
        self.boot_shards();
        for c in 0..self.clients.len() {
            if self.clients[c].link.is_some() {
                self.drop_client_link(c, false);
            }
        }
        self.mqtt_crash();
    }

    /// The client side of a link goes away; it reconnects after a while.
    fn drop_client_link(&mut self, client: usize, tell_server: bool) {
        let Some((_, shard, conn)) = self.clients[client].link.take() else {
            return;
        };
        let now = self.now;
        self.clients[client].session.handle_disconnect(now);
        if tell_server {
            let t = now + self.delay();
            let epoch = self.epoch;
            self.schedule(t, Ev::ClientClosed { shard, epoch, conn });
        }
        let t = now + self.rng.random_range(1..100) * MS;
        self.schedule(t, Ev::Connect { client });
    }

    fn connect(&mut self, client: usize) {
        if self.clients[client].link.is_some() {
            return;
        }
        let now = self.now;
        let shard = Router::of_node(self.plan.shards)
            .owner(self.clients[client].user)
            .0;
        let conn = self.shards[shard as usize].handle_open(now);
        self.next_link += 1;
        let link = self.next_link;
        self.links.insert((shard, conn), (client, link));
        self.clients[client].link = Some((link, shard, conn));
        self.clients[client].link_state = Link::new(self.clients[client].read_ns_per_byte);
        self.clients[client].session.connect(now);
        self.flush_client(client);
    }

    fn work(&mut self, client: usize) {
        let now = self.now;
        let c = &mut self.clients[client];
        if c.sends_left == 0 {
            return;
        }
        c.sends_left -= 1;
        let member = self.plan.group_members.contains(&c.user);
        let room = self.plan.rooms.as_ref().and_then(|r| {
            let i = self.rng.random_range(0..r.rooms.len());
            self.rng.random_bool(r.publish_share).then(|| r.rooms[i])
        });
        let to = if let Some(room) = room {
            UserId(room)
        } else if member && self.rng.random_bool(0.3) {
            GROUP
        } else {
            UserId(self.rng.random_range(1..=self.plan.users))
        };
        let qos = match self.rng.random_range(0..10) {
            0 => Qos::AtMostOnce,
            1..=5 => Qos::AtLeastOnce,
            _ => Qos::ExactlyOnce,
        };
        let c = &mut self.clients[client];
        let payload = Bytes::from(format!("{}/{}/{}", c.user.0, c.device.0, c.sends_left));
        let cmid = c.session.send(to, qos, payload.clone(), now);
        self.sent
            .insert((c.user, c.device, cmid), SentMsg { to, qos, payload });
        self.flush_client(client);
        let t = now + self.rng.random_range(1..200) * MS;
        self.schedule(t, Ev::Work { client });
    }

    fn flush_client(&mut self, client: usize) {
        let mut fetch_older = false;
        let mut room_messages = false;
        while let Some(e) = self.clients[client].session.poll_event() {
            let c = &mut self.clients[client];
            match e {
                Event::Message(p) => c.delivered.push(p),
                Event::Ephemeral(p) => c.ephemeral.push(p),
                Event::Older(items) => {
                    let mut items = items;
                    items.append(&mut c.older);
                    c.older = items;
                    fetch_older = true;
                }
                Event::CaughtUp => fetch_older = true,
                Event::SendAcked(a) if a.result.is_stored() => {
                    let key = (c.user, c.device, a.client_msg_id);
                    *self.acked.entry(key).or_default() += 1;
                    if self.sent.get(&key).is_some_and(|s| is_room(s.to.0)) {
                        self.room_acks.insert(key, a.seq);
                    }
                }
                Event::Subscribed(ack) => {
                    let wall_ms = WALL_MS_AT_ZERO + self.now / MS;
                    if let Some(f) = c.follows.iter_mut().find(|f| f.plan.room == ack.room) {
                        f.on_suback(ack, wall_ms);
                    }
                }
                Event::RoomMessage(p) => {
                    if let Some(f) = c.follows.iter_mut().find(|f| f.plan.room == p.room) {
                        f.on_message(p);
                        room_messages = true;
                    }
                }
                Event::RoomLagged(room) => {
                    if let Some(f) = c.follows.iter_mut().find(|f| f.plan.room == room) {
                        f.lags += 1;
                    }
                }
                Event::SendFailed(a) => {
                    assert_ne!(
                        a.result,
                        SendResult::Forbidden,
                        "no send in the simulation is forbidden"
                    );
                }
                _ => {}
            }
        }
        // The application acknowledges room messages as they come, or
        // (lazily) a while after the first it has not acknowledged.
        let c = &mut self.clients[client];
        let ack_delay_ms = c.follows.iter().map(|f| f.plan.ack_every_ms).min();
        match ack_delay_ms {
            Some(0) if room_messages => c.session.ack_rooms(),
            Some(ms) if room_messages && !c.ack_armed => {
                c.ack_armed = true;
                let t = self.now + ms * MS;
                self.schedule(t, Ev::AckRooms { client });
            }
            _ => {}
        }
        if fetch_older {
            // A new device pages back until its history starts at seq 1.
            let c = &mut self.clients[client];
            let oldest = c.older.first().or(c.delivered.first()).map(|p| p.seq);
            if let Some(oldest) = oldest.filter(|s| s.0 > 1) {
                let now = self.now;
                c.session.fetch_older(oldest, 7, now);
            }
        }
        let Some((_, shard, conn)) = self.clients[client].link else {
            while self.clients[client].session.poll_transmit().is_some() {}
            return;
        };
        let epoch = self.epoch;
        while let Some(frame) = self.clients[client].session.poll_transmit() {
            self.transmit(client, Direction::ToServer, frame, |frame| Ev::ToServer {
                shard,
                epoch,
                conn,
                frame,
            });
        }
    }

    fn drain_shards(&mut self) {
        for s in 0..self.shards.len() {
            while let Some(action) = self.shards[s].poll_action() {
                self.carry_out(s as u16, action);
            }
        }
    }

    fn carry_out(&mut self, shard: u16, action: Action) {
        let Some(action) = self.mqtt_action(shard, action) else {
            return;
        };
        let now = self.now;
        let epoch = self.epoch;
        match action {
            Action::Send { conn, frame } => {
                if let Some(&(client, link)) = self.links.get(&(shard, conn)) {
                    self.transmit(client, Direction::ToClient, frame, |frame| Ev::ToClient {
                        client,
                        link,
                        frame,
                    });
                }
            }
            Action::SendShared { conn, room, bytes } => {
                let Some(&(client, link)) = self.links.get(&(shard, conn)) else {
                    return;
                };
                let lag_bytes = self.plan.rooms.as_ref().map_or(usize::MAX, |r| r.lag_bytes);
                if self.clients[client].link_state.unread() > lag_bytes {
                    // The runtime's rule (`Runtime::drive`): a room frame
                    // is not queued behind unsent output above
                    // `room_lag_bytes`; the subscription lags.
                    self.driver_lags += 1;
                    self.shards[shard as usize].handle_room_lagged(conn, room, now);
                } else {
                    let frame = decode_shared(&bytes);
                    self.transmit(client, Direction::ToClient, frame, |frame| Ev::ToClient {
                        client,
                        link,
                        frame,
                    });
                }
            }
            Action::Close { conn } => {
                if let Some((client, link)) = self.links.remove(&(shard, conn)) {
                    // After every frame queued before it (bounded delay).
                    let t = now + self.plan.max_delay_us * US + 1;
                    self.schedule(t, Ev::ServerClosed { client, link });
                }
            }
            Action::Append { token, record } => {
                self.storage[shard as usize].append(token, record);
                if !self.sync_armed[shard as usize] {
                    self.sync_armed[shard as usize] = true;
                    let t = now + self.rng.random_range(0..2_000) * US;
                    self.schedule(t, Ev::Sync { shard, epoch });
                }
            }
            Action::Read { id, user, query } => {
                let t = now + self.rng.random_range(1..500) * US;
                self.schedule(
                    t,
                    Ev::Read {
                        shard,
                        epoch,
                        id,
                        user,
                        query,
                    },
                );
            }
            Action::Published { .. }
            | Action::MembersUpdated { .. }
            | Action::ConversationMessages { .. } => {
                unreachable!("the simulation uses no API requests")
            }
            Action::StateStored { .. } | Action::StateValue { .. } => {
                unreachable!("only MQTT connections write state")
            }
            Action::Webhook(_) => unreachable!("the simulation turns no webhooks on"),
            Action::MoveImported { .. }
            | Action::MoveFailed { .. }
            | Action::MoveStalled { .. } => {
                unreachable!("the simulation runs no cluster")
            }
            Action::Peer { shard: to, msg } => {
                // The mesh is reliable and FIFO per pair: a fixed delay keeps order.
                self.schedule(
                    now + 20 * US,
                    Ev::Peer {
                        shard: to.0,
                        epoch,
                        msg,
                    },
                );
            }
        }
    }

    /// True when every send is finished and every device holds its whole
    /// inbox (every MQTT device what it must: `mqtt.rs`).
    pub fn quiescent(&self) -> bool {
        self.mqtt_quiescent()
            && self.clients.iter().all(|c| {
                let shard = Router::of_node(self.plan.shards).owner(c.user).0 as usize;
                let head = self.shards[shard].durable_head(c.user);
                let oldest = c
                    .older
                    .first()
                    .or(c.delivered.first())
                    .map_or(1, |p| p.seq.0);
                c.session.is_live()
                    && oldest <= 1
                    && c.session.unfinished_sends() == 0
                    && c.session.delivered().unwrap_or_default() == head
                    && c.sends_left == 0
                    && c.follows.iter().all(|f| {
                        let room = UserId(f.plan.room);
                        let home = Router::of_node(self.plan.shards).owner(room).0 as usize;
                        !f.following || f.pos == Some(self.shards[home].durable_head(room))
                    })
            })
    }

    /// One line per client, for "no progress" reports.
    pub fn describe(&self) -> String {
        self.clients
            .iter()
            .map(|c| {
                let shard = Router::of_node(self.plan.shards).owner(c.user).0 as usize;
                format!(
                    "{}/{}: link={:?} live={} unfinished={} delivered={:?} head={} oldest={:?} sends_left={}",
                    c.user,
                    c.device,
                    c.link.map(|l| l.0),
                    c.session.is_live(),
                    c.session.unfinished_sends(),
                    c.session.delivered(),
                    self.shards[shard].durable_head(c.user).0,
                    c.older.first().or(c.delivered.first()).map(|p| p.seq.0),
                    c.sends_left
                ) + &c
                    .follows
                    .iter()
                    .map(|f| {
                        format!(
                            "\n  room {:#x} {:?}: following={} pos={:?} head={} lags={} delivered={}",
                            f.plan.room,
                            f.plan.qos,
                            f.following,
                            f.pos,
                            {
                                let room = UserId(f.plan.room);
                                let home = Router::of_node(self.plan.shards).owner(room).0 as usize;
                                self.shards[home].durable_head(room).0
                            },
                            f.lags,
                            f.delivered()
                        )
                    })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
            + &self.describe_mqtt()
    }

    pub fn durable_heads(&self) -> HashMap<UserId, u64> {
        let mut heads = HashMap::new();
        for s in &self.storage {
            for m in s.durable_messages() {
                let h = heads.entry(m.inbox).or_insert(0);
                *h = (*h).max(m.seq.0);
            }
        }
        heads
    }
}
