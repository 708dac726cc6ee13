//! Scenario `backlog`: offline backlog replay. `senders` users send
//! `messages` QoS 1 messages to each of `receivers` users that are offline
//! (pipelined: each sender keeps the SDK's window of unacknowledged SENDs
//! full, see `publish_timed`). Once every message is acknowledged, all
//! receivers connect at once with `last_seq = 0` and replay their inbox
//! through SYNC pages of `page` messages. Receivers are SDK sessions in
//! [`Fleet`]s, `threads` epoll loops in all, so there can be thousands.
//!
//! Reports the send phase (acknowledged messages per second), the replay
//! (messages replayed per second, from the first CONNECT to the last
//! receiver caught up) and each receiver's time from its CONNECT to
//! caught up; checks every message arrived once, in order, without a
//! sequence gap.

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use surepush_client::{BlockingClient, ClientConfig, ClientSession, Event};
use surepush_proto::{DeviceId, Seq, UserId};

use crate::check::{DeliveryCheck, InboxCheck};
use crate::fleet::Fleet;
use crate::raw::new_histogram;
use crate::Latency;

/// What to run (`backlog`'s options; the secret and the first user are
/// filled in by the command).
#[derive(Clone, Debug, clap::Args)]
pub struct BacklogScenario {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub server: SocketAddr,
    /// The gateway's token secret.
    #[arg(skip)]
    pub secret: Vec<u8>,
    /// Offline receivers (users), each one connection when replaying.
    #[arg(long, default_value_t = 1000)]
    pub receivers: u32,
    /// Messages stored for each receiver while it is offline.
    #[arg(long, default_value_t = 100)]
    pub messages: u32,
    /// Sender connections (pipelined QoS 1; each serves `receivers /
    /// senders` receivers). Each sender's SENDs count against the gateway's
    /// `max_frames_per_sec` (10,000 by default; above it the gateway pauses
    /// reading the connection): with 8 senders at about 75,000 msgs/s one
    /// was over it, hence 32.
    #[arg(long, default_value_t = 32)]
    pub senders: u32,
    /// Payload bytes (>= 16).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// SYNC page size the receivers ask for (the gateway caps it).
    #[arg(long, default_value_t = 200)]
    pub page: u32,
    /// Receiver threads (one epoll loop each).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seconds before giving up (each phase).
    #[arg(long = "timeout-s", value_name = "SECONDS", default_value = "120", value_parser = crate::cli::parse_seconds)]
    pub timeout: Duration,
    /// First user id used.
    #[arg(skip = crate::fresh_user_base())]
    pub first_user: u64,
}

/// What a backlog run measured and checked.
#[derive(Clone, Debug, Serialize)]
pub struct BacklogReport {
    /// Receivers that connected.
    pub receivers: u64,
    /// Receivers that caught up (replay finished, session live).
    pub caught_up: u64,
    /// Messages acknowledged (stored) to the senders.
    pub stored: u64,
    /// Receivers x messages.
    pub expected: u64,
    /// Send phase: first SEND to last SENDACK (s).
    pub send_seconds: f64,
    /// `stored / send_seconds`.
    pub send_msgs_per_s: f64,
    /// Replay: first CONNECT to the last receiver caught up (s).
    pub replay_seconds: f64,
    /// Messages replayed per second over `replay_seconds`.
    pub replay_msgs_per_s: f64,
    /// Per receiver: its CONNECT to caught up.
    pub catch_up: Latency,
    /// Connections the gateway closed during the replay (reconnected).
    pub closed: u64,
    /// The checker.
    pub check: DeliveryCheck,
}

impl BacklogReport {
    /// Every receiver caught up with every stored message, once, in order.
    pub fn passed(&self) -> bool {
        self.check.clean()
            && self.expected > 0
            && self.stored == self.expected
            && self.check.delivered == self.expected
            && self.caught_up == self.receivers
    }

    /// Human-readable summary.
    pub fn to_text(&self) -> String {
        format!(
            "backlog: {} receivers x {} messages stored offline\n  \
             send (pipelined QoS 1): {} acked in {:.2} s = {:.0} msgs/s\n  \
             replay: {} of {} receivers caught up, {} messages in {:.2} s = {:.0} msgs/s\n  \
             CONNECT->caught up p50 {:.1} ms p99 {:.1} ms max {:.1} ms\n  \
             connections closed by the gateway {}\n  {}\n  verdict: {}\n",
            self.receivers,
            self.expected / self.receivers.max(1),
            self.stored,
            self.send_seconds,
            self.send_msgs_per_s,
            self.caught_up,
            self.receivers,
            self.check.delivered,
            self.replay_seconds,
            self.replay_msgs_per_s,
            self.catch_up.p50_ms,
            self.catch_up.p99_ms,
            self.catch_up.max_ms,
            self.closed,
            self.check.to_text(),
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// Sends `s.messages` to each of `to` (round robin, so every receiver's
/// backlog grows evenly); returns the messages acknowledged.
fn send_backlog(s: &BacklogScenario, sender: u64, to: &[u64]) -> Result<u64, String> {
    if to.is_empty() {
        return Ok(0);
    }
    let mut config = ClientConfig::new(crate::mint_token(&s.secret, sender), DeviceId(1));
    config.send_timeout_ms = 10_000;
    let mut p = BlockingClient::connect(s.server, config, Some(Seq::ZERO), Duration::from_secs(10))
        .map_err(|e| format!("sender {sender}: {e}"))?;
    let total = s
        .messages
        .checked_mul(to.len() as u32)
        .ok_or("too many messages for one sender")?;
    let n = to.len() as u32;
    let deadline = Instant::now() + s.timeout;
    crate::publish_timed(&mut p, total, s.payload, deadline, |i| {
        (UserId(to[(i % n) as usize]), u64::from(i))
    })
}

/// One replay thread's results.
struct Replay {
    receivers: u64,
    caught_up: u64,
    closed: u64,
    first_connect: Option<Instant>,
    last_caught_up: Option<Instant>,
    catch_up: Histogram<u64>,
    check: DeliveryCheck,
}

impl Replay {
    /// Nothing replayed yet, for `receivers` receivers.
    fn new(receivers: u64) -> Replay {
        Replay {
            receivers,
            caught_up: 0,
            closed: 0,
            first_connect: None,
            last_caught_up: None,
            catch_up: new_histogram(),
            check: DeliveryCheck::default(),
        }
    }
}

fn replay_thread(
    s: BacklogScenario,
    users: Vec<u64>,
    start: Arc<Barrier>,
    origin: Instant,
) -> Result<Replay, String> {
    let sessions = users.iter().map(|&u| {
        let mut config = ClientConfig::new(crate::mint_token(&s.secret, u), DeviceId(1));
        config.page = s.page;
        ClientSession::new(config, Some(Seq::ZERO))
    });
    let mut fleet = Fleet::new(s.server, sessions, origin)?;
    let n = fleet.len();
    let mut checks: Vec<InboxCheck> = (0..n).map(|_| InboxCheck::default()).collect();
    let mut connected_at = vec![0u64; n];
    let mut done = vec![false; n];
    let mut r = Replay::new(n as u64);
    start.wait();
    let deadline = Instant::now() + s.timeout;
    r.first_connect = Some(Instant::now());
    for (i, at) in connected_at.iter_mut().enumerate() {
        *at = fleet.now();
        fleet.open(i)?;
    }
    while (r.caught_up as usize) < n && Instant::now() < deadline {
        let closed = fleet.turn(20, |i, e| match e {
            Event::Message(p) if !p.echo => checks[i].on_message(&p),
            Event::CaughtUp if !done[i] => {
                done[i] = true;
                r.caught_up += 1;
                let now = origin.elapsed().as_nanos() as u64;
                r.catch_up
                    .saturating_record(now.saturating_sub(connected_at[i]));
                r.last_caught_up = Some(Instant::now());
            }
            _ => {}
        });
        for i in closed {
            // Not expected: count it, and resume from the session's cursor.
            r.closed += 1;
            fleet.open(i)?;
        }
    }
    fleet.close_all();
    for c in &checks {
        r.check.add(c, u64::from(s.messages));
    }
    Ok(r)
}

/// Runs the backlog scenario.
pub fn run_backlog(s: &BacklogScenario) -> Result<BacklogReport, String> {
    if s.payload < 16 || s.receivers == 0 || s.senders == 0 || s.messages == 0 {
        return Err(
            "payload must be at least 16 bytes; receivers, senders and messages at least 1".into(),
        );
    }
    let receivers: Vec<u64> = (0..u64::from(s.receivers))
        .map(|i| s.first_user + u64::from(s.senders) + i)
        .collect();
    // Send phase: the receivers have never connected.
    let started = Instant::now();
    let senders: Vec<_> = (0..s.senders as usize)
        .map(|k| {
            let mine: Vec<u64> = receivers
                .iter()
                .copied()
                .skip(k)
                .step_by(s.senders as usize)
                .collect();
            let s2 = s.clone();
            std::thread::spawn(move || send_backlog(&s2, s2.first_user + k as u64, &mine))
        })
        .collect();
    let mut stored = 0;
    for h in senders {
        stored += h.join().map_err(|_| "a sender thread panicked")??;
    }
    let send_seconds = started.elapsed().as_secs_f64();
    // Replay phase: every receiver connects at once.
    let threads = s.threads.max(1);
    let start = Arc::new(Barrier::new(threads));
    let origin = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mine: Vec<u64> = receivers.iter().copied().skip(t).step_by(threads).collect();
            let (s2, start) = (s.clone(), start.clone());
            std::thread::spawn(move || replay_thread(s2, mine, start, origin))
        })
        .collect();
    let mut total = Replay::new(0);
    for h in handles {
        let r = h.join().map_err(|_| "a receiver thread panicked")??;
        total.receivers += r.receivers;
        total.caught_up += r.caught_up;
        total.closed += r.closed;
        total.first_connect = match (total.first_connect, r.first_connect) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        total.last_caught_up = total.last_caught_up.max(r.last_caught_up);
        total.catch_up.add(&r.catch_up).expect("same bounds");
        total.check.merge(&r.check);
    }
    let replay_seconds = match (total.first_connect, total.last_caught_up) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let per_s = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    Ok(BacklogReport {
        receivers: total.receivers,
        caught_up: total.caught_up,
        stored,
        expected: total.receivers * u64::from(s.messages),
        send_seconds,
        send_msgs_per_s: per_s(stored, send_seconds),
        replay_seconds,
        replay_msgs_per_s: per_s(total.check.delivered, replay_seconds),
        catch_up: crate::latency(&total.catch_up),
        closed: total.closed,
        check: total.check,
    })
}
