//! The simulated world: shards, their storage, clients and a lossy network,
//! driven in virtual time by one seeded RNG.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use surepush::client::{ClientConfig, ClientSession, Event};
use surepush::core::{
    shard_of, Action, Claims, ConnId, CoreConfig, PeerMsg, Shard, ShardParams, TokenVerifier,
};
use surepush::log::{InboxQuery, Record, RecoveredState};
use surepush::proto::{DeviceId, Frame, Push, Qos, SendResult, UserId};

use super::storage::Storage;

const MS: u64 = 1_000_000;
const US: u64 = 1_000;
const SECRET: &[u8] = b"simulation secret";

/// Knobs of one run, all drawn from the seed.
#[derive(Clone, Debug)]
pub struct Plan {
    pub shards: u16,
    pub users: u64,
    pub devices: Vec<(UserId, DeviceId, bool)>,
    pub sends_per_device: u32,
    pub drop: f64,
    pub dup: f64,
    pub max_delay_us: u64,
    pub kill_every_ms: u64,
    pub crash_every_ms: u64,
    pub storage_fail: f64,
    pub fault_phase_ms: u64,
    /// Members of the one group (empty: no group traffic this run).
    pub group_members: Vec<UserId>,
}

/// The group of every run that has one.
pub const GROUP: UserId = UserId(UserId::GROUP_BIT | 1);

impl Plan {
    pub fn from_seed(seed: u64) -> Plan {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5EED);
        let shards = rng.random_range(1..=3);
        let users = rng.random_range(2..=4);
        let mut devices = Vec::new();
        for u in 1..=users {
            for d in 0..rng.random_range(1..=2u64) {
                // Some devices start with a cursor, some as new devices.
                devices.push((UserId(u), DeviceId(d + 1), rng.random_bool(0.5)));
            }
        }
        let calm = rng.random_bool(0.2);
        // A group of all users but possibly the last (who then never sends
        // to it: only members may).
        let group_members: Vec<UserId> = if rng.random_bool(0.6) {
            let n = if users > 2 && rng.random_bool(0.5) {
                users - 1
            } else {
                users
            };
            (1..=n).map(UserId).collect()
        } else {
            Vec::new()
        };
        Plan {
            group_members,
            shards,
            users,
            devices,
            sends_per_device: rng.random_range(1..=12),
            drop: if calm {
                0.0
            } else {
                rng.random_range(0.0..0.15)
            },
            dup: if calm {
                0.0
            } else {
                rng.random_range(0.0..0.1)
            },
            max_delay_us: rng.random_range(10..3_000),
            kill_every_ms: if calm { 0 } else { rng.random_range(50..2_000) },
            crash_every_ms: if calm || rng.random_bool(0.3) {
                0
            } else {
                rng.random_range(100..3_000)
            },
            storage_fail: if rng.random_bool(0.1) { 0.02 } else { 0.0 },
            fault_phase_ms: rng.random_range(200..4_000),
        }
    }
}

#[derive(Debug)]
enum Ev {
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
}

pub struct World {
    pub plan: Plan,
    rng: SmallRng,
    pub now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    config: CoreConfig,
    pub shards: Vec<Shard>,
    pub storage: Vec<Storage>,
    sync_armed: Vec<bool>,
    epoch: u64,
    links: HashMap<(u16, ConnId), (usize, u64)>,
    next_link: u64,
    pub clients: Vec<SimClient>,
    pub sent: HashMap<(UserId, DeviceId, u64), SentMsg>,
    pub acked: HashMap<(UserId, DeviceId, u64), u32>,
    pub crashes: u32,
    pub steps: u64,
    faults_on: bool,
}

impl World {
    pub fn new(seed: u64) -> World {
        let plan = Plan::from_seed(seed);
        let config = CoreConfig {
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
            sent: HashMap::new(),
            acked: HashMap::new(),
            crashes: 0,
            steps: 0,
            faults_on: true,
            config,
            plan,
        };
        // The group exists (durably, on its home shard) before any traffic.
        let home = shard_of(GROUP, w.plan.shards) as usize;
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
        }
        if w.plan.crash_every_ms > 0 {
            let t = w.rng.random_range(1..w.plan.crash_every_ms * MS);
            w.schedule(t, Ev::Crash);
        }
        w
    }

    fn boot_shards(&mut self) {
        let verifier = TokenVerifier::new(SECRET);
        self.shards = (0..self.plan.shards)
            .map(|id| {
                let recovered: RecoveredState =
                    self.storage[id as usize].recover(&self.config.dedup);
                Shard::new(
                    ShardParams {
                        id,
                        shards: self.plan.shards,
                        wall_ms_at_zero: 1_700_000_000_000,
                    },
                    self.config.clone(),
                    verifier.clone(),
                    recovered,
                )
            })
            .collect();
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), ev);
    }

    fn delay(&mut self) -> u64 {
        self.rng.random_range(1..=self.plan.max_delay_us) * US
    }

    /// Sends a frame over a link, subject to drop, duplication and delay.
    fn transmit(&mut self, ev: impl Fn() -> Ev) {
        if self.faults_on && self.rng.random_bool(self.plan.drop) {
            return;
        }
        let copies = if self.faults_on && self.rng.random_bool(self.plan.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let t = self.now + self.delay();
            self.schedule(t, ev());
        }
    }

    /// Ends the fault phase: the network and the disks become reliable.
    pub fn heal(&mut self) {
        self.faults_on = false;
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
                if std::env::var("SIM_TRACE").is_ok() {
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
                if std::env::var("SIM_TRACE").is_ok() {
                    eprintln!(
                        "{}ms -> c{client} link {link} (cur {:?}): {frame:?}",
                        now / MS,
                        self.clients[client].link.map(|l| l.0)
                    );
                }
                if self.clients[client].link.is_some_and(|l| l.0 == link) {
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
                    let records = self.storage[shard as usize].read(user, query);
                    self.shards[shard as usize].handle_read(id, Ok(records), now);
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
        let shard = shard_of(self.clients[client].user, self.plan.shards);
        let conn = self.shards[shard as usize].handle_open(now);
        self.next_link += 1;
        let link = self.next_link;
        self.links.insert((shard, conn), (client, link));
        self.clients[client].link = Some((link, shard, conn));
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
        let to = if member && self.rng.random_bool(0.3) {
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
                    *self
                        .acked
                        .entry((c.user, c.device, a.client_msg_id))
                        .or_default() += 1;
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
            self.transmit(|| Ev::ToServer {
                shard,
                epoch,
                conn,
                frame: frame.clone(),
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
        let now = self.now;
        let epoch = self.epoch;
        match action {
            Action::Send { conn, frame } => {
                if let Some(&(client, link)) = self.links.get(&(shard, conn)) {
                    self.transmit(|| Ev::ToClient {
                        client,
                        link,
                        frame: frame.clone(),
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
            Action::Published { .. } | Action::GroupUpdated { .. } => {
                unreachable!("the simulation uses no API requests")
            }
            Action::SendShared { .. } => unreachable!("the simulation subscribes to no room"),
            Action::Peer { shard: to, msg } => {
                // The mesh is reliable and FIFO per pair: a fixed delay keeps order.
                self.schedule(
                    now + 20 * US,
                    Ev::Peer {
                        shard: to,
                        epoch,
                        msg,
                    },
                );
            }
        }
    }

    /// True when every send is finished and every device holds its whole inbox.
    pub fn quiescent(&self) -> bool {
        self.clients.iter().all(|c| {
            let shard = shard_of(c.user, self.plan.shards) as usize;
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
        })
    }

    /// One line per client, for "no progress" reports.
    pub fn describe(&self) -> String {
        self.clients
            .iter()
            .map(|c| {
                let shard = shard_of(c.user, self.plan.shards) as usize;
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
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
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
