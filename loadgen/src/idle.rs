//! Scenario `idle`: what an idle connection costs the gateway. Opens
//! `connections` authenticated SDK sessions (one user each, in [`Fleet`]s,
//! `threads` epoll loops, at most `connecting` handshakes in flight so the
//! accept queues do not overflow), waits until every one is live (replay
//! of its empty inbox done), then holds them idle for `hold` — the SDK
//! sends only its keepalive PINGs — and closes them. The gateway's
//! resident memory (/proc/PID/status VmRSS) is sampled before, once all
//! are live, at the end of the hold and after the close; the report is
//! the growth per live connection. Checks that every connection went live
//! and none was closed by the gateway.
//!
//! Each connection is a file descriptor on both sides: the load generator
//! raises its own open-file soft limit to the hard one and refuses to
//! start with fewer than `connections` + 64; the gateway does the same at
//! its start. The limit is per process (RLIMIT_NOFILE), so on a machine
//! capped at 20,000 each side can hold about 19,900.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use surepush_client::{ClientConfig, ClientSession, Event};
use surepush_proto::{DeviceId, Seq, UserId};
use surepush_token::Acl;

use crate::fleet::Fleet;
use crate::mqtt_peer::{idle_receiver, MqttTarget};
use crate::procfs::{anon_huge_pages_kib, rss_kib};

/// What to run (`idle`'s options; the secret, the first user and the
/// gateway's pid are filled in by the command).
#[derive(Clone, Debug, clap::Args)]
pub struct IdleScenario {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub server: SocketAddr,
    /// The gateway's token secret.
    #[arg(skip)]
    pub secret: Vec<u8>,
    /// Idle connections to hold (each one open file here and one in the
    /// gateway; the limit is per process, see `ulimit -n`).
    #[arg(long, default_value_t = 1000)]
    pub connections: u32,
    /// The gateway's process (its RSS is sampled).
    #[arg(skip)]
    pub server_pid: u32,
    /// Seconds to hold them idle once all are live.
    #[arg(long = "hold-s", value_name = "SECONDS", default_value = "10", value_parser = crate::cli::parse_seconds)]
    pub hold: Duration,
    /// Client threads (one epoll loop each).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Handshakes in flight at once, over all threads (keeps the accept
    /// queues from overflowing).
    #[arg(long, default_value_t = 512)]
    pub connecting: usize,
    /// Seconds to get every connection live before giving up.
    #[arg(long = "timeout-s", value_name = "SECONDS", default_value = "120", value_parser = crate::cli::parse_seconds)]
    pub timeout: Duration,
    /// First user id used.
    #[arg(skip = crate::fresh_user_base())]
    pub first_user: u64,
    /// Hold MQTT 3.1.1 connections instead of native ones (`--server` is
    /// then an MQTT listener): each connects with a persistent session
    /// (keep alive 60 s, so hold at most ~80 s) and subscribes to its own
    /// topic at QoS 1 — on surepush `user/{id}` with its token as password.
    #[arg(long)]
    pub mqtt: bool,
    /// With `--mqtt`: the server is a plain MQTT broker (mosquitto, ...):
    /// no credentials, topics `surepush-lg/{run}/{n}`. Same client code, so
    /// the per-connection figures compare.
    #[arg(long, requires = "mqtt")]
    pub mqtt_broker: bool,
    /// Native only: each connection also watches the presence of this many
    /// users (the next user ids after its own; its token grants
    /// `presence/+`), so a run with and one without tell the memory per
    /// watch (docs/PROTOCOL.md section 6c).
    #[arg(long, default_value_t = 0, conflicts_with = "mqtt")]
    pub watch: u32,
}

/// What an idle run measured and checked.
#[derive(Clone, Debug, Serialize)]
pub struct IdleReport {
    /// Connections asked for.
    pub connections: u64,
    /// Connections that went live.
    pub live: u64,
    /// Connections closed by the gateway (or broken) at any point.
    pub closed: u64,
    /// First connect until all were live (s).
    pub connect_seconds: f64,
    /// Held idle (s).
    pub hold_seconds: f64,
    /// The gateway's pid.
    pub server_pid: u32,
    /// Gateway RSS before the first connection (KiB).
    pub rss_before_kib: u64,
    /// Gateway RSS with every connection live, after 1 s to settle (KiB).
    pub rss_live_kib: u64,
    /// Gateway RSS at the end of the hold (KiB).
    pub rss_held_kib: u64,
    /// Gateway RSS 1 s after the connections were closed (KiB).
    pub rss_closed_kib: u64,
    /// Of the RSS at the end of the hold, what transparent huge pages back
    /// (KiB; `None` where /proc does not say). A 2 MiB page stays resident
    /// while any block in it lives, so a heap on huge pages does not shrink
    /// when connections free memory.
    pub huge_pages_held_kib: Option<u64>,
    /// `(rss_live - rss_before) / live`.
    pub kib_per_connection: f64,
    /// `(rss_held - rss_before) / live`.
    pub kib_per_connection_held: f64,
    /// The load generator's own RSS growth per connection (KiB).
    pub loadgen_kib_per_connection: f64,
    /// This process's open-file limit in force.
    pub nofile_limit: u64,
    /// Users each connection watched (`--watch`).
    pub watch: u32,
    /// WATCHes answered with code 0.
    pub watches_accepted: u64,
    /// WATCHes refused (any error code).
    pub watches_refused: u64,
}

impl IdleReport {
    /// Every connection went live and stayed open.
    pub fn passed(&self) -> bool {
        self.connections > 0
            && self.live == self.connections
            && self.closed == 0
            && self.watches_refused == 0
            && (self.watch == 0 || self.watches_accepted == self.live)
    }

    /// Human-readable summary.
    pub fn to_text(&self) -> String {
        format!(
            "idle: {} of {} connections live after {:.2} s, held {:.1} s, closed by the gateway {}\n  \
             gateway (pid {}) RSS: before {} KiB, live {} KiB, end of hold {} KiB ({} on huge pages), after close {} KiB\n  \
             per connection: {:.2} KiB live, {:.2} KiB at the end of the hold (load generator: {:.2} KiB)\n  \
             presence: {} users watched per connection, WATCH accepted {}, refused {}\n  \
             verdict: {}\n",
            self.live,
            self.connections,
            self.connect_seconds,
            self.hold_seconds,
            self.closed,
            self.server_pid,
            self.rss_before_kib,
            self.rss_live_kib,
            self.rss_held_kib,
            self.huge_pages_held_kib
                .map_or_else(|| "unknown".to_string(), |k| format!("{k} KiB")),
            self.rss_closed_kib,
            self.kib_per_connection,
            self.kib_per_connection_held,
            self.loadgen_kib_per_connection,
            self.watch,
            self.watches_accepted,
            self.watches_refused,
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// What the threads share.
struct Shared {
    /// Threads whose connections are all live.
    ready: AtomicU32,
    /// Close everything and stop.
    release: AtomicBool,
}

/// What one holder thread saw.
#[derive(Default)]
struct Held {
    live: u64,
    closed: u64,
    watches_accepted: u64,
    watches_refused: u64,
}

/// Opens `users` (at most `budget` handshakes at a time), keeps them open
/// until released.
fn holder_thread(
    s: IdleScenario,
    users: Vec<u64>,
    budget: usize,
    shared: Arc<Shared>,
) -> Result<Held, String> {
    let everyone = Acl::new(&["presence/+"], &[]).expect("a valid filter");
    let sessions = users.iter().map(|&u| {
        let token = match s.watch {
            0 => crate::mint_token(&s.secret, u),
            _ => crate::mint_token_granting(&s.secret, u, everyone.clone()),
        };
        let mut session =
            ClientSession::new(ClientConfig::new(token, DeviceId(1)), Some(Seq::ZERO));
        let watched: Vec<UserId> = (1..=u64::from(s.watch)).map(|i| UserId(u + i)).collect();
        // Sent with the CONNACK (the session watches on every connect).
        session.watch(&watched, 0);
        session
    });
    let mut fleet = Fleet::new(s.server, sessions, Instant::now())?;
    let n = fleet.len();
    let (mut opened, mut live, mut closed) = (0usize, 0usize, 0usize);
    let (mut accepted, mut refused) = (0u64, 0u64);
    let mut signalled = false;
    while !shared.release.load(Ordering::SeqCst) {
        while opened < n && opened.saturating_sub(live + closed) < budget.max(1) {
            fleet.open(opened)?;
            opened += 1;
        }
        if !signalled && live == n {
            signalled = true;
            shared.ready.fetch_add(1, Ordering::SeqCst);
        }
        let gone = fleet.turn(50, |_, e| match e {
            // Once per connection: it is never reconnected.
            Event::CaughtUp => live += 1,
            Event::Watched(a) if a.code == 0 => accepted += 1,
            Event::Watched(_) => refused += 1,
            _ => {}
        });
        // Not reopened: an idle connection must simply stay.
        closed += gone.len();
    }
    fleet.close_all();
    Ok(Held {
        live: live as u64,
        closed: closed as u64,
        watches_accepted: accepted,
        watches_refused: refused,
    })
}

/// Opens the MQTT connections `pairs` one after the other (connect,
/// subscribe), keeps them open until released; returns (went live,
/// closed). A connection counts as closed when, at the end, its socket
/// reads end of stream or an error instead of "nothing to read".
fn mqtt_holder_thread(
    s: IdleScenario,
    pairs: Vec<u64>,
    shared: Arc<Shared>,
) -> Result<(u64, u64), String> {
    let target = if s.mqtt_broker {
        MqttTarget::Broker
    } else {
        MqttTarget::Surepush {
            secret: s.secret.clone(),
        }
    };
    let mut held = Vec::with_capacity(pairs.len());
    for &pair in &pairs {
        held.push(idle_receiver(&target, s.server, s.first_user, pair)?);
    }
    shared.ready.fetch_add(1, Ordering::SeqCst);
    while !shared.release.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let closed = held.iter().filter(|socket| !still_open(socket)).count();
    Ok((held.len() as u64, closed as u64))
}

/// Whether the peer still holds `socket` open (nothing to read, no end).
fn still_open(socket: &std::net::TcpStream) -> bool {
    use std::io::Read;
    socket.set_nonblocking(true).is_ok()
        && matches!((&*socket).read(&mut [0u8; 1]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Raises this process's open-file soft limit to the hard one and checks
/// that `connections` fit; returns the limit in force.
fn fit_nofile(connections: u32) -> Result<u64, String> {
    let limit = surepush_host::limits::raise_nofile()
        .map_err(|e| format!("open-file limit: {e}"))?
        .soft;
    if u64::from(connections) + 64 > limit {
        return Err(format!(
            "{connections} connections need {} open files here; the limit is {limit} (ulimit -n)",
            u64::from(connections) + 64
        ));
    }
    Ok(limit)
}

/// Runs the idle scenario.
pub fn run_idle(s: &IdleScenario) -> Result<IdleReport, String> {
    if s.connections == 0 {
        return Err("connections must be at least 1".into());
    }
    let nofile_limit = fit_nofile(s.connections)?;
    let threads = s.threads.max(1);
    let me = std::process::id();
    let rss_before_kib = rss_kib(s.server_pid)?;
    let own_before = rss_kib(me)?;
    let shared = Arc::new(Shared {
        ready: AtomicU32::new(0),
        release: AtomicBool::new(false),
    });
    let started = Instant::now();
    let handles: Vec<_> = (0..threads as u64)
        .map(|t| {
            let users: Vec<u64> = (0..u64::from(s.connections))
                .skip(t as usize)
                .step_by(threads)
                .map(|i| s.first_user + i)
                .collect();
            let (s2, shared) = (s.clone(), shared.clone());
            let budget = s.connecting / threads;
            if s.mqtt {
                let pairs = users.iter().map(|u| u - s.first_user).collect();
                std::thread::spawn(move || {
                    mqtt_holder_thread(s2, pairs, shared).map(|(live, closed)| Held {
                        live,
                        closed,
                        ..Held::default()
                    })
                })
            } else {
                std::thread::spawn(move || holder_thread(s2, users, budget, shared))
            }
        })
        .collect();
    let deadline = started + s.timeout;
    while shared.ready.load(Ordering::SeqCst) < threads as u32
        && Instant::now() < deadline
        && !handles.iter().any(|h| h.is_finished())
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    // Let the gateway settle (buffers shrink after the first small reads).
    std::thread::sleep(Duration::from_secs(1));
    let rss_live_kib = rss_kib(s.server_pid)?;
    let own_live = rss_kib(me)?;
    let held_from = Instant::now();
    while held_from.elapsed() < s.hold && !handles.iter().any(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let hold_seconds = held_from.elapsed().as_secs_f64();
    let rss_held_kib = rss_kib(s.server_pid)?;
    let huge_pages_held_kib = anon_huge_pages_kib(s.server_pid).ok();
    shared.release.store(true, Ordering::SeqCst);
    let (mut live, mut closed) = (0, 0);
    let (mut watches_accepted, mut watches_refused) = (0, 0);
    for h in handles {
        let held = h.join().map_err(|_| "a client thread panicked")??;
        live += held.live;
        closed += held.closed;
        watches_accepted += held.watches_accepted;
        watches_refused += held.watches_refused;
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_closed_kib = rss_kib(s.server_pid)?;
    let per = |kib: u64, base: u64| (kib as f64 - base as f64) / live.max(1) as f64;
    Ok(IdleReport {
        connections: u64::from(s.connections),
        live,
        closed,
        connect_seconds,
        hold_seconds,
        server_pid: s.server_pid,
        rss_before_kib,
        rss_live_kib,
        rss_held_kib,
        rss_closed_kib,
        huge_pages_held_kib,
        kib_per_connection: per(rss_live_kib, rss_before_kib),
        kib_per_connection_held: per(rss_held_kib, rss_before_kib),
        loadgen_kib_per_connection: per(own_live, own_before),
        nofile_limit,
        watch: s.watch,
        watches_accepted,
        watches_refused,
    })
}
