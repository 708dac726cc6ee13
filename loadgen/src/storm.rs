//! Scenario `storm`: a reconnect storm with messages in flight. `clients`
//! SDK sessions (in [`Fleet`]s, `threads` epoll loops) connect and go live.
//! Each round, every client (or a random `drop_rate` share of them) drops
//! its TCP connection at once — a reset, a close or silence, see
//! [`DropMode`] — and reconnects immediately with its cursor, while
//! `senders` send one QoS 1 message to every client (pipelined). A round
//! ends when every client is live again and every send is acknowledged.
//!
//! Reports per round the reconnects per second (first drop to last
//! CONNACK), the time until every client was live again (replay of what
//! it missed included) and CONNECT-to-CONNACK latency; checks that every
//! message reached its client once, in order, without a sequence gap.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use surepush_client::{BlockingClient, ClientConfig, ClientSession, Event};
use surepush_proto::{DeviceId, Seq, UserId};

use crate::check::{DeliveryCheck, InboxCheck};
use crate::fleet::{DropMode, Fleet};
use crate::raw::new_histogram;
use crate::Latency;

/// What to run (`storm`'s options; the secret and the first user are
/// filled in by the command).
#[derive(Clone, Debug, clap::Args)]
pub struct StormScenario {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub server: SocketAddr,
    /// The gateway's token secret.
    #[arg(skip)]
    pub secret: Vec<u8>,
    /// Client connections (one user each).
    #[arg(long, default_value_t = 1000)]
    pub clients: u32,
    /// Rounds of drop-and-reconnect (one message to every client each).
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Share of the clients dropped each round, chosen at random (0..=1).
    #[arg(long, default_value_t = 1.0)]
    pub drop_rate: f64,
    /// How connections are dropped: reset (RST), close (FIN) or silent
    /// (left open and unread until the device's new connection replaces it).
    #[arg(long, value_enum, default_value = "reset")]
    pub drop_mode: DropMode,
    /// Sender connections (pipelined QoS 1).
    #[arg(long, default_value_t = 4)]
    pub senders: u32,
    /// Payload bytes (>= 16).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Client threads (one epoll loop each).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seconds before giving up (whole run).
    #[arg(long = "timeout-s", value_name = "SECONDS", default_value = "120", value_parser = crate::cli::parse_seconds)]
    pub timeout: Duration,
    /// Seed of the random choice of dropped clients.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// First user id used.
    #[arg(skip = crate::fresh_user_base())]
    pub first_user: u64,
}

/// One round, over all threads.
#[derive(Clone, Debug, Serialize)]
pub struct StormRound {
    /// 1-based.
    pub round: u32,
    /// Connections dropped at the start of the round.
    pub dropped: u64,
    /// CONNACKs they got back.
    pub reconnected: u64,
    /// First drop to last CONNACK (s).
    pub reconnect_seconds: f64,
    /// `reconnected / reconnect_seconds`.
    pub reconnects_per_s: f64,
    /// First drop until every client was live again (s).
    pub live_seconds: f64,
    /// CONNECT (socket connect started) to CONNACK.
    pub connack: Latency,
    /// Connections the gateway closed on its own during the round.
    pub unexpected_closes: u64,
    /// Messages acknowledged to the senders this round.
    pub acked: u64,
}

/// What a storm run measured and checked.
#[derive(Clone, Debug, Serialize)]
pub struct StormReport {
    /// Clients that went live before the first round.
    pub clients: u64,
    /// How connections were dropped.
    pub drop_mode: DropMode,
    /// Share dropped per round.
    pub drop_rate: f64,
    /// Rounds asked for.
    pub rounds_requested: u32,
    /// Rounds that finished (everyone live again, every send acknowledged).
    pub rounds: Vec<StormRound>,
    /// Connections dropped in all rounds.
    pub reconnects: u64,
    /// CONNECT to CONNACK over all rounds.
    pub connack: Latency,
    /// Connections the gateway closed or broke on its own (reconnected).
    pub unexpected_closes: u64,
    /// Those closes by the last thing the gateway said before closing
    /// ("ERROR <code>: <text>" with digits as '#', "DISCONNECT <reason>",
    /// or "no word").
    pub close_reasons: BTreeMap<String, u64>,
    /// Messages acknowledged to the senders.
    pub acked: u64,
    /// Clients x rounds.
    pub expected: u64,
    /// The checker.
    pub check: DeliveryCheck,
}

impl StormReport {
    /// Every round finished and every message arrived once, in order.
    pub fn passed(&self) -> bool {
        self.check.clean()
            && self.expected > 0
            && self.rounds.len() == self.rounds_requested as usize
            && self.acked == self.expected
            && self.check.delivered == self.expected
    }

    /// Human-readable summary.
    pub fn to_text(&self) -> String {
        let mut t = format!(
            "storm: {} clients, {} rounds, drop {:?} x {:.2}\n",
            self.clients, self.rounds_requested, self.drop_mode, self.drop_rate
        );
        for r in &self.rounds {
            t += &format!(
                "  round {}: {} dropped, {} reconnected in {:.3} s = {:.0} reconnects/s, \
                 all live after {:.3} s, CONNACK p50 {:.2} ms p99 {:.2} ms max {:.2} ms, \
                 closed by the gateway {}\n",
                r.round,
                r.dropped,
                r.reconnected,
                r.reconnect_seconds,
                r.reconnects_per_s,
                r.live_seconds,
                r.connack.p50_ms,
                r.connack.p99_ms,
                r.connack.max_ms,
                r.unexpected_closes
            );
        }
        t += &format!(
            "  all rounds: {} reconnects, CONNACK p50 {:.2} ms p99 {:.2} ms max {:.2} ms, \
             closed by the gateway {} {:?}\n  acked {} of {}\n  {}\n  verdict: {}\n",
            self.reconnects,
            self.connack.p50_ms,
            self.connack.p99_ms,
            self.connack.max_ms,
            self.unexpected_closes,
            self.close_reasons,
            self.acked,
            self.expected,
            self.check.to_text(),
            if self.passed() { "PASS" } else { "FAIL" }
        );
        t
    }
}

/// The threads' shared round counter.
struct Control {
    /// The round to be in (0: setting up).
    round: AtomicU32,
    /// Thread-rounds finished (setup counts as one per thread).
    settled: AtomicU32,
    /// Every round is done: deliver what is left and stop.
    stop: AtomicBool,
    /// The run failed: stop now.
    abort: AtomicBool,
}

/// One thread's view of a round.
struct RoundTally {
    dropped: u64,
    reconnected: u64,
    first_drop: Instant,
    last_connack: Option<Instant>,
    last_live: Option<Instant>,
    connack: Histogram<u64>,
    unexpected_closes: u64,
}

/// What a client thread saw.
struct ThreadResult {
    live: u64,
    rounds: Vec<RoundTally>,
    unexpected_closes: u64,
    close_reasons: BTreeMap<String, u64>,
    check: DeliveryCheck,
}

/// splitmix64: a small, seeded, good-enough choice of clients to drop.
fn next_random(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / u64::MAX as f64
}

fn client_thread(
    s: StormScenario,
    users: Vec<u64>,
    ctl: Arc<Control>,
    seed: u64,
    deadline: Instant,
) -> Result<ThreadResult, String> {
    let origin = Instant::now();
    let sessions = users.iter().map(|&u| {
        let config = ClientConfig::new(crate::mint_token(&s.secret, u), DeviceId(1));
        ClientSession::new(config, Some(Seq::ZERO))
    });
    let mut fleet = Fleet::new(s.server, sessions, origin)?;
    let n = fleet.len();
    let mut checks: Vec<InboxCheck> = (0..n).map(|_| InboxCheck::default()).collect();
    let mut live = vec![false; n];
    let mut live_count = 0usize;
    // Per client: when its reconnect started, until its CONNACK.
    let mut awaiting: Vec<Option<u64>> = vec![None; n];
    let mut result = ThreadResult {
        live: 0,
        rounds: Vec::new(),
        unexpected_closes: 0,
        close_reasons: BTreeMap::new(),
        check: DeliveryCheck::default(),
    };
    // Per client: what the gateway last said before a close.
    let mut last_word: Vec<Option<String>> = vec![None; n];
    let mut current: Option<RoundTally> = None;
    let mut rng = seed;
    let mut setting_up = true;
    for i in 0..n {
        fleet.open(i)?;
    }
    while Instant::now() < deadline && !ctl.abort.load(Ordering::SeqCst) {
        if setting_up && live_count == n {
            setting_up = false;
            result.live = n as u64;
            ctl.settled.fetch_add(1, Ordering::SeqCst);
        }
        let round = ctl.round.load(Ordering::SeqCst) as usize;
        if !setting_up && current.is_none() && round > result.rounds.len() {
            // Drop the chosen ones at once, then reconnect them at once.
            let chosen: Vec<usize> = (0..n)
                .filter(|_| next_random(&mut rng) < s.drop_rate)
                .collect();
            let first_drop = Instant::now();
            for &i in &chosen {
                fleet.drop_conn(i, s.drop_mode)?;
                if std::mem::take(&mut live[i]) {
                    live_count -= 1;
                }
            }
            for &i in &chosen {
                awaiting[i] = Some(fleet.now());
                fleet.open(i)?;
            }
            current = Some(RoundTally {
                dropped: chosen.len() as u64,
                reconnected: 0,
                first_drop,
                last_connack: None,
                last_live: None,
                connack: new_histogram(),
                unexpected_closes: 0,
            });
        }
        if live_count == n {
            if let Some(mut r) = current.take() {
                r.last_live = Some(Instant::now());
                fleet.release_parked();
                result.rounds.push(r);
                ctl.settled.fetch_add(1, Ordering::SeqCst);
            }
        }
        if ctl.stop.load(Ordering::SeqCst)
            && current.is_none()
            && checks.iter().all(|c| c.distinct() >= u64::from(s.rounds))
        {
            break;
        }
        let closed = fleet.turn(10, |i, e| match e {
            Event::Connected(_) => {
                if let (Some(t0), Some(r)) = (awaiting[i].take(), current.as_mut()) {
                    let now = origin.elapsed().as_nanos() as u64;
                    r.connack.saturating_record(now.saturating_sub(t0));
                    r.reconnected += 1;
                    r.last_connack = Some(Instant::now());
                }
            }
            Event::CaughtUp if !live[i] => {
                live[i] = true;
                live_count += 1;
            }
            Event::Message(p) if !p.echo => checks[i].on_message(&p),
            Event::Error(e) => {
                // Numbers blanked, so that the same cause counts once.
                let text: String = e
                    .message
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c })
                    .collect();
                last_word[i] = Some(format!("ERROR {:?}: {text}", e.code));
            }
            Event::Disconnected(reason, _) => {
                last_word[i] = Some(format!("DISCONNECT {reason}"));
            }
            _ => {}
        });
        for i in closed {
            // Not one of ours: the gateway closed it. Resume at once.
            result.unexpected_closes += 1;
            let word = last_word[i].take().unwrap_or_else(|| "no word".into());
            *result.close_reasons.entry(word).or_default() += 1;
            if let Some(r) = current.as_mut() {
                r.unexpected_closes += 1;
            }
            // A reconnect refused before its CONNACK still awaits one:
            // `awaiting` keeps its start, so the retry's time counts.
            if std::mem::take(&mut live[i]) {
                live_count -= 1;
            }
            fleet.open(i)?;
        }
    }
    fleet.close_all();
    for c in &checks {
        result.check.add(c, u64::from(s.rounds));
    }
    Ok(result)
}

/// Sends one message to each of `to` per round named on `rounds` (the
/// round number is the message's index); answers with the messages
/// acknowledged.
fn sender_thread(
    s: StormScenario,
    user: u64,
    to: Vec<u64>,
    rounds: mpsc::Receiver<u32>,
    acked: mpsc::Sender<Result<u64, String>>,
    deadline: Instant,
) {
    let mut config = ClientConfig::new(crate::mint_token(&s.secret, user), DeviceId(1));
    config.send_timeout_ms = 10_000;
    let mut p =
        match BlockingClient::connect(s.server, config, Some(Seq::ZERO), Duration::from_secs(10)) {
            Ok(p) => p,
            Err(e) => {
                let _ = acked.send(Err(format!("sender {user}: {e}")));
                return;
            }
        };
    for round in rounds {
        let r = crate::publish_timed(&mut p, to.len() as u32, s.payload, deadline, |i| {
            (UserId(to[i as usize]), u64::from(round))
        });
        let failed = r.is_err();
        if acked.send(r).is_err() || failed {
            return;
        }
    }
}

/// Runs the storm scenario.
pub fn run_storm(s: &StormScenario) -> Result<StormReport, String> {
    if s.payload < 16 || s.clients == 0 || s.senders == 0 || s.rounds == 0 {
        return Err(
            "payload must be at least 16 bytes; clients, senders and rounds at least 1".into(),
        );
    }
    if !(0.0..=1.0).contains(&s.drop_rate) {
        return Err("drop rate must be within 0..=1".into());
    }
    let deadline = Instant::now() + s.timeout;
    let clients: Vec<u64> = (0..u64::from(s.clients))
        .map(|i| s.first_user + u64::from(s.senders) + i)
        .collect();
    let threads = s.threads.max(1);
    let ctl = Arc::new(Control {
        round: AtomicU32::new(0),
        settled: AtomicU32::new(0),
        stop: AtomicBool::new(false),
        abort: AtomicBool::new(false),
    });
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mine: Vec<u64> = clients.iter().copied().skip(t).step_by(threads).collect();
            let (s2, ctl) = (s.clone(), ctl.clone());
            let seed = s.seed ^ (t as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
            std::thread::spawn(move || client_thread(s2, mine, ctl, seed, deadline))
        })
        .collect();
    let (acked_tx, acked_rx) = mpsc::channel();
    let round_txs: Vec<mpsc::Sender<u32>> = (0..s.senders as usize)
        .map(|k| {
            let mine: Vec<u64> = clients
                .iter()
                .copied()
                .skip(k)
                .step_by(s.senders as usize)
                .collect();
            let (tx, rx) = mpsc::channel();
            let (s2, acked_tx) = (s.clone(), acked_tx.clone());
            let user = s.first_user + k as u64;
            std::thread::spawn(move || sender_thread(s2, user, mine, rx, acked_tx, deadline));
            tx
        })
        .collect();
    // Waits until `n` thread-rounds have settled (false: out of time).
    let settled = |n: u32| {
        while ctl.settled.load(Ordering::SeqCst) < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    };
    let mut acked_per_round = Vec::new();
    let mut failure = None;
    if settled(threads as u32) {
        for round in 1..=s.rounds {
            for tx in &round_txs {
                let _ = tx.send(round - 1);
            }
            ctl.round.store(round, Ordering::SeqCst);
            let mut acked = 0;
            for _ in 0..s.senders {
                let left = deadline.saturating_duration_since(Instant::now());
                match acked_rx.recv_timeout(left) {
                    Ok(Ok(n)) => acked += n,
                    Ok(Err(e)) => failure = Some(e),
                    Err(_) => failure = Some("senders out of time".to_string()),
                }
            }
            if failure.is_some() || !settled(threads as u32 * (round + 1)) {
                break;
            }
            acked_per_round.push(acked);
        }
    }
    ctl.stop.store(true, Ordering::SeqCst);
    if failure.is_some() {
        ctl.abort.store(true, Ordering::SeqCst);
    }
    drop(round_txs);
    let mut results = Vec::new();
    for h in handles {
        results.push(h.join().map_err(|_| "a client thread panicked")??);
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(report(s, &results, &acked_per_round))
}

/// Merges the threads' rounds and checks.
fn report(s: &StormScenario, results: &[ThreadResult], acked_per_round: &[u64]) -> StormReport {
    let mut all = new_histogram();
    let mut check = DeliveryCheck::default();
    for r in results {
        check.merge(&r.check);
    }
    let rounds: Vec<StormRound> = acked_per_round
        .iter()
        .enumerate()
        .map(|(k, &acked)| {
            let mut h = new_histogram();
            let (mut dropped, mut reconnected, mut unexpected_closes) = (0, 0, 0);
            let mut first_drop: Option<Instant> = None;
            let (mut last_connack, mut last_live) = (None, None);
            for t in results.iter().filter_map(|r| r.rounds.get(k)) {
                dropped += t.dropped;
                reconnected += t.reconnected;
                unexpected_closes += t.unexpected_closes;
                first_drop = Some(first_drop.map_or(t.first_drop, |f| f.min(t.first_drop)));
                last_connack = last_connack.max(t.last_connack);
                last_live = last_live.max(t.last_live);
                h.add(&t.connack).expect("same bounds");
            }
            all.add(&h).expect("same bounds");
            let since_drop = |t: Option<Instant>| match (first_drop, t) {
                (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
                _ => 0.0,
            };
            let reconnect_seconds = since_drop(last_connack);
            StormRound {
                round: k as u32 + 1,
                dropped,
                reconnected,
                reconnect_seconds,
                reconnects_per_s: if reconnect_seconds > 0.0 {
                    reconnected as f64 / reconnect_seconds
                } else {
                    0.0
                },
                live_seconds: since_drop(last_live),
                connack: crate::latency(&h),
                unexpected_closes,
                acked,
            }
        })
        .collect();
    StormReport {
        clients: results.iter().map(|r| r.live).sum(),
        drop_mode: s.drop_mode,
        drop_rate: s.drop_rate,
        rounds_requested: s.rounds,
        reconnects: rounds.iter().map(|r| r.dropped).sum(),
        connack: crate::latency(&all),
        unexpected_closes: results.iter().map(|r| r.unexpected_closes).sum(),
        close_reasons: results.iter().flat_map(|r| &r.close_reasons).fold(
            BTreeMap::new(),
            |mut all, (k, v)| {
                *all.entry(k.clone()).or_default() += v;
                all
            },
        ),
        acked: acked_per_round.iter().sum(),
        expected: u64::from(s.clients) * u64::from(s.rounds),
        check,
        rounds,
    }
}
