//! Crash loop (issue 9; identities since issue 16 item 9): kill -9 the real
//! gateway at random moments while 4 senders send QoS 1 and QoS 2 messages
//! to 4 receivers, senders and receivers on both shards, then restart it on
//! the same data dir. Every device keeps its SDK session across the kills:
//! unacknowledged sends go out again after the reconnect (the outbox),
//! deliveries resume from the device's position.
//!
//! At the end every inbox (the receivers', and the senders' own-inbox
//! copies) is replayed by a fresh device and checked message by message:
//! - addressee, sender (`from`, `from_device`), `client_msg_id`, QoS and
//!   payload are those of a send that was made, and nothing else is there;
//! - the message sits at the sequence its SENDACK named (`seq` in the
//!   addressee's inbox, `own_seq` in the sender's), and a repeated SENDACK
//!   (a retry answered `Duplicate`) names the same sequences;
//! - sequences run 1, 2, 3, ... without gap; QoS 2 sends are there exactly
//!   once, QoS 1 sends at least once, no send is missing;
//! - what each live device delivered across the kills equals the replay,
//!   sequence by sequence (live own-inbox copies are payload-less ECHOes).
//!
//! `CRASH_CYCLES` sets the number of kills (default 20; the manual mode
//! runs 1,000). The kill points come from a seeded RNG (`CRASH_SEED`).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::TestServer;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use surepush::client::{BlockingClient, ClientSession, Event};
use surepush::core::Router;
use surepush::proto::{DeviceId, Push, Qos, SendResult, Seq, UserId};

/// Senders and receivers each (half of them on each shard).
const USERS_PER_ROLE: usize = 4;
/// Sends per cycle (before the kill lands somewhere among them).
const SENDS_PER_CYCLE: u32 = 40;
/// The device every user sends and receives with during the cycles.
const DEVICE: u64 = 1;
/// A fresh device that replays each inbox at the end.
const REPLAY_DEVICE: u64 = 2;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A send: who sent it (user) and its `client_msg_id`.
type SendId = (u64, u64);

/// What a sender sent.
struct Sent {
    to: u64,
    qos: Qos,
    payload: Bytes,
}

/// The sequences a SENDACK named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Acked {
    seq: Seq,
    own_seq: Seq,
}

/// What the clients saw, across every kill.
#[derive(Default)]
struct Ledger {
    sent: HashMap<SendId, Sent>,
    acked: HashMap<SendId, Acked>,
    /// SENDACKs answered `Duplicate` (retries of sends stored before).
    duplicate_answers: u64,
    /// Sends whose SENDACK had not been written to the client when the
    /// process died (their fate was up to recovery and the retry).
    unacked_at_a_kill: HashSet<SendId>,
}

impl Ledger {
    fn on_send_ack(&mut self, sender: u64, ack: surepush::proto::SendAck) {
        let id = (sender, ack.client_msg_id);
        assert!(
            self.sent.contains_key(&id),
            "SENDACK for {id:?}, never sent"
        );
        let seqs = Acked {
            seq: ack.seq,
            own_seq: ack.own_seq,
        };
        assert!(seqs.seq > Seq::ZERO && seqs.own_seq > Seq::ZERO, "{ack:?}");
        if ack.result == SendResult::Duplicate {
            self.duplicate_answers += 1;
        }
        let first = *self.acked.entry(id).or_insert(seqs);
        assert_eq!(
            first, seqs,
            "the SENDACKs of {id:?} name different sequences"
        );
    }
}

/// What one [`Device::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Handled,
    Idle,
    Closed,
}

/// One user's device across the kills: its SDK session (outbox and
/// position) and every message it delivered, in order.
struct Device {
    user: u64,
    session: Option<ClientSession>,
    client: Option<BlockingClient>,
    live: bool,
    delivered: Vec<Push>,
    /// The last ERROR the gateway sent, for the failure message.
    last_error: Option<surepush::proto::ErrorFrame>,
}

impl Device {
    fn new(server: &TestServer, user: u64) -> Device {
        let config = server.client_config(user, DEVICE);
        Device {
            user,
            session: Some(ClientSession::new(config, Some(Seq::ZERO))),
            client: None,
            live: false,
            delivered: Vec::new(),
            last_error: None,
        }
    }

    fn connect(&mut self, server: &TestServer) {
        let session = self.session.take().expect("disconnected");
        let client = BlockingClient::resume(server.addr, session, Duration::from_secs(5));
        self.client = Some(client.expect("connect"));
        self.live = false;
    }

    /// Handles events until none comes within `wait`; false once the
    /// connection is gone (the session is then kept for the next one).
    fn pump(&mut self, ledger: &mut Ledger, wait: Duration) -> bool {
        loop {
            match self.step(ledger, wait) {
                Step::Handled => {}
                Step::Idle => return true,
                Step::Closed => return false,
            }
        }
    }

    /// Handles at most one event, waiting up to `wait` for it.
    fn step(&mut self, ledger: &mut Ledger, wait: Duration) -> Step {
        let Some(client) = self.client.as_mut() else {
            return Step::Closed;
        };
        match client.next_event(wait) {
            Ok(Some(Event::SendAcked(ack))) => ledger.on_send_ack(self.user, ack),
            Ok(Some(Event::Message(push))) => self.delivered.push(push),
            Ok(Some(Event::CaughtUp)) => self.live = true,
            Ok(Some(Event::SendFailed(ack))) => panic!("send refused: {ack:?}"),
            Ok(Some(Event::Error(e))) => self.last_error = Some(e),
            Ok(Some(_)) => {}
            Ok(None) => return Step::Idle,
            Err(_) => {
                let client = self.client.take().expect("checked above");
                self.session = Some(client.into_session());
                return Step::Closed;
            }
        }
        Step::Handled
    }

    /// Handles events until `done` holds, at most `limit`.
    fn pump_until(&mut self, ledger: &mut Ledger, limit: Duration, done: impl Fn(&Device) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(Instant::now() < deadline, "user {}: timed out", self.user);
            let step = self.step(ledger, Duration::from_millis(10));
            assert!(
                step != Step::Closed,
                "user {}: connection lost (last error {:?})",
                self.user,
                self.last_error
            );
        }
    }

    fn unfinished_sends(&self) -> usize {
        match (&self.client, &self.session) {
            (Some(c), _) => c.session().unfinished_sends(),
            (None, Some(s)) => s.unfinished_sends(),
            (None, None) => unreachable!("a device has a client or a session"),
        }
    }
}

/// `n` user ids, half owned by each of the 2 shards.
fn users_on_both_shards(n: usize, skip: &[u64]) -> Vec<u64> {
    let mut picked = Vec::new();
    for shard in [0, 1] {
        picked.extend(
            (1..1000u64)
                .filter(|u| Router::of_node(2).owner(UserId(*u)).0 == shard && !skip.contains(u))
                .take(n / 2),
        );
    }
    picked
}

#[test]
fn kill_9_loop_keeps_every_message_at_its_acknowledged_place() {
    let started = Instant::now();
    let cycles = env_u64("CRASH_CYCLES", 20);
    let seed = env_u64("CRASH_SEED", 7);
    let mut rng = SmallRng::seed_from_u64(seed);
    // Tiny write-behind pieces: kills land while pieces are in flight on
    // the blocking thread, not only between commits.
    let mut server = TestServer::start(2, "write_behind_kib = 4");
    let sender_ids = users_on_both_shards(USERS_PER_ROLE, &[]);
    let receiver_ids = users_on_both_shards(USERS_PER_ROLE, &sender_ids);
    let mut senders: Vec<Device> = sender_ids
        .iter()
        .map(|u| Device::new(&server, *u))
        .collect();
    let mut receivers: Vec<Device> = receiver_ids
        .iter()
        .map(|u| Device::new(&server, *u))
        .collect();
    let mut ledger = Ledger::default();
    let mut n = 0u64;
    for cycle in 0..cycles {
        for d in senders.iter_mut().chain(&mut receivers) {
            d.connect(&server);
        }
        // Live first: the unfinished sends of the last cycle go out again.
        for d in senders.iter_mut().chain(&mut receivers) {
            d.pump_until(&mut ledger, Duration::from_secs(10), |d| d.live);
        }
        let kill_after = rng.random_range(0..SENDS_PER_CYCLE);
        for _ in 0..kill_after {
            let sender = &mut senders[rng.random_range(0..USERS_PER_ROLE)];
            let to = receiver_ids[rng.random_range(0..USERS_PER_ROLE)];
            let qos = if rng.random_bool(0.5) {
                Qos::ExactlyOnce
            } else {
                Qos::AtLeastOnce
            };
            // 2 KiB, so a cycle fills many blocks.
            let payload = Bytes::from(format!(
                "c{cycle}-m{n}-{}-{to}-{}",
                sender.user,
                "x".repeat(2000)
            ));
            n += 1;
            let client = sender.client.as_mut().expect("connected");
            // Kept in the outbox even if the write failed: sent again later.
            let (id, _) = client.queue_send(UserId(to), qos, payload.clone());
            ledger
                .sent
                .insert((sender.user, id), Sent { to, qos, payload });
            for d in senders.iter_mut().chain(&mut receivers) {
                d.pump(&mut ledger, Duration::ZERO);
            }
        }
        // Timing jitter (not synchronisation): some kills land while group
        // commits are under way, others after the SENDACKs went out (which
        // a debug build takes milliseconds to write).
        std::thread::sleep(Duration::from_micros(rng.random_range(0..15_000)));
        server.kill9();
        // What the dead process had written is still in the sockets: read
        // it to the end, so "unacknowledged" means the gateway never said.
        for d in senders.iter_mut().chain(&mut receivers) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while d.pump(&mut ledger, Duration::from_millis(100)) {
                assert!(
                    Instant::now() < deadline,
                    "user {}: no EOF after kill",
                    d.user
                );
            }
        }
        let unacked = ledger
            .sent
            .keys()
            .filter(|id| !ledger.acked.contains_key(*id));
        ledger.unacked_at_a_kill.extend(unacked);
        server.spawn();
    }
    let acked_during_cycles = ledger.acked.len();
    // Let every retry finish against the last incarnation.
    for d in senders.iter_mut().chain(&mut receivers) {
        d.connect(&server);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while senders.iter().any(|d| !d.live || d.unfinished_sends() > 0) {
        assert!(Instant::now() < deadline, "sends never finished");
        for d in senders.iter_mut().chain(&mut receivers) {
            let open = d.pump(&mut ledger, Duration::from_millis(1));
            assert!(
                open,
                "user {}: connection lost ({:?})",
                d.user, d.last_error
            );
        }
    }
    // A fresh device replays each inbox; the live devices catch up to it.
    let mut checked = Checked::default();
    for (d, role) in receivers
        .iter_mut()
        .map(|d| (d, Role::Receiver))
        .chain(senders.iter_mut().map(|d| (d, Role::Sender)))
    {
        let (_replayer, events) = server.connect(d.user, REPLAY_DEVICE, Some(Seq::ZERO));
        let replay = common::messages(events);
        let last = replay.last().map_or(Seq::ZERO, |p| p.seq);
        d.pump_until(&mut ledger, Duration::from_secs(30), |d| {
            d.delivered.last().map_or(Seq::ZERO, |p| p.seq) >= last
        });
        check_inbox(d.user, role, &replay, &ledger, &mut checked);
        check_live_equals_replay(d.user, &d.delivered, &replay);
        checked.live += d.delivered.len();
    }
    assert_eq!(
        checked.sends_found,
        2 * ledger.sent.len(),
        "every send in its addressee's and its sender's inbox"
    );
    println!(
        "crash loop (seed {seed}): {cycles} kills, {} sends from {USERS_PER_ROLE} senders to \
         {USERS_PER_ROLE} receivers, {acked_during_cycles} acknowledged during the cycles ({} \
         before the kill that followed them, {} without SENDACK from the gateway when a kill \
         hit), {} SENDACKs answered Duplicate after a resend, {} replayed and {} live \
         deliveries checked (own-inbox copies included), 0 losses, 0 QoS 2 duplicates, {} QoS \
         1 duplicates, {:.1} s",
        ledger.sent.len(),
        ledger.sent.len() - ledger.unacked_at_a_kill.len(),
        ledger.unacked_at_a_kill.len(),
        ledger.duplicate_answers,
        checked.replayed,
        checked.live,
        checked.qos1_duplicates,
        started.elapsed().as_secs_f64()
    );
}

/// Whose inbox is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Holds the messages addressed to it.
    Receiver,
    /// Holds the own-inbox copies of its sends.
    Sender,
}

#[derive(Default)]
struct Checked {
    replayed: usize,
    live: usize,
    /// Sends found in an inbox (once per inbox).
    sends_found: usize,
    qos1_duplicates: usize,
}

/// Checks one replayed inbox against what was sent and acknowledged.
fn check_inbox(user: u64, role: Role, replay: &[Push], ledger: &Ledger, checked: &mut Checked) {
    let mut seqs_of: HashMap<SendId, Vec<Seq>> = HashMap::new();
    for (i, p) in replay.iter().enumerate() {
        assert_eq!(
            p.seq,
            Seq(i as u64 + 1),
            "{role:?} {user}: inbox without gaps"
        );
        let id = (p.from.0, p.client_msg_id);
        let sent = ledger
            .sent
            .get(&id)
            .unwrap_or_else(|| panic!("{role:?} {user}: seq {} was never sent: {p:?}", p.seq.0));
        let (addressee, sender) = match role {
            Role::Receiver => (user, p.from.0),
            Role::Sender => (sent.to, user),
        };
        assert_eq!(
            (p.to, p.from, p.from_device, p.qos, &p.payload),
            (
                UserId(addressee),
                UserId(sender),
                DeviceId(DEVICE),
                sent.qos,
                &sent.payload
            ),
            "{role:?} {user}: seq {} is not what {id:?} sent",
            p.seq.0
        );
        assert_eq!(
            sent.to, addressee,
            "{role:?} {user}: {id:?} in the wrong inbox"
        );
        seqs_of.entry(id).or_default().push(p.seq);
    }
    let belongs_here = |id: &SendId, sent: &Sent| match role {
        Role::Receiver => sent.to == user,
        Role::Sender => id.0 == user,
    };
    for (id, sent) in ledger.sent.iter().filter(|(id, s)| belongs_here(id, s)) {
        let seqs = seqs_of.get(id).map_or(&[][..], Vec::as_slice);
        assert!(!seqs.is_empty(), "{role:?} {user}: send {id:?} lost");
        if sent.qos == Qos::ExactlyOnce {
            assert_eq!(
                seqs.len(),
                1,
                "{role:?} {user}: QoS 2 send {id:?} at {seqs:?}"
            );
        } else {
            checked.qos1_duplicates += seqs.len() - 1;
        }
        let acked = ledger.acked.get(id).expect("every send ends acknowledged");
        let named = match role {
            Role::Receiver => acked.seq,
            Role::Sender => acked.own_seq,
        };
        assert!(
            seqs.contains(&named),
            "{role:?} {user}: SENDACK of {id:?} named seq {}, the message is at {seqs:?}",
            named.0
        );
        checked.sends_found += 1;
    }
    checked.replayed += replay.len();
}

/// What a device delivered live, across the kills, must be the inbox: the
/// same sequences in order, each once, the same messages (a live copy of
/// the device's own send is an ECHO without payload).
fn check_live_equals_replay(user: u64, live: &[Push], replay: &[Push]) {
    assert_eq!(
        live.iter().map(|p| p.seq).collect::<Vec<_>>(),
        replay.iter().map(|p| p.seq).collect::<Vec<_>>(),
        "user {user}: live deliveries and the inbox differ in sequences"
    );
    for (l, r) in live.iter().zip(replay) {
        let payload = if l.echo {
            Bytes::new()
        } else {
            r.payload.clone()
        };
        assert_eq!(
            (
                l.from,
                l.from_device,
                l.to,
                l.client_msg_id,
                l.qos,
                l.ts_ms,
                &l.payload
            ),
            (
                r.from,
                r.from_device,
                r.to,
                r.client_msg_id,
                r.qos,
                r.ts_ms,
                &payload
            ),
            "user {user}: seq {} delivered live differs from the inbox",
            l.seq.0
        );
    }
}
