//! Scenario `group`: one publisher sends to a group of `members` users
//! (write diffusion: one stored copy per member inbox). Each member is the
//! SDK's sans-IO [`ClientSession`] (ACKs, retransmits, replay) in a
//! [`Fleet`] driven from an epoll loop, `threads` loops in all. Reports member pushes per second
//! and checks that every member got every message once, in order.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use surepush_client::{BlockingClient, ClientConfig, ClientSession, Event};
use surepush_proto::{DeviceId, Seq, UserId};

use crate::fleet::Fleet;
use crate::raw::new_histogram;
use crate::Latency;

/// What to run (`group`'s options; the admin token, the secret and the
/// first user are filled in by the command).
#[derive(Clone, Debug, clap::Args)]
pub struct GroupScenario {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub server: SocketAddr,
    /// Admin HTTP address (the group is created there).
    #[arg(long, default_value = "127.0.0.1:7401")]
    pub admin: SocketAddr,
    /// Admin bearer token.
    #[arg(skip)]
    pub admin_token: String,
    /// The gateway's token secret.
    #[arg(skip)]
    pub secret: Vec<u8>,
    /// Group members (the publisher is one of them).
    #[arg(long, default_value_t = 10)]
    pub members: u32,
    /// Messages published.
    #[arg(long, default_value_t = 1000)]
    pub messages: u32,
    /// Payload bytes (>= 16).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Member threads (one epoll loop each).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seconds before giving up.
    #[arg(long = "timeout-s", value_name = "SECONDS", default_value = "60", value_parser = crate::cli::parse_seconds)]
    pub timeout: Duration,
    /// First user id used; also the group number.
    #[arg(skip = crate::fresh_user_base())]
    pub first_user: u64,
}

/// What a group run measured and checked.
#[derive(Clone, Debug, Serialize)]
pub struct GroupReport {
    /// Members that received.
    pub members: u64,
    /// Messages acknowledged to the publisher.
    pub published: u64,
    /// Member deliveries, in order, each once.
    pub pushes: u64,
    /// Expected: members x published (the publisher's own copy is an echo
    /// and not counted: members - 1 receivers).
    pub expected: u64,
    /// Deliveries out of inbox order or repeated.
    pub out_of_order: u64,
    /// Seconds from the first publish to the last delivery.
    pub seconds: f64,
    /// `pushes / seconds`.
    pub pushes_per_s: f64,
    /// Publish (intended send time) to delivery.
    pub latency: Latency,
}

impl GroupReport {
    /// Every member got every message, once, in order.
    pub fn passed(&self) -> bool {
        self.out_of_order == 0 && self.pushes == self.expected && self.expected > 0
    }

    /// Human-readable summary.
    pub fn to_text(&self) -> String {
        format!(
            "group: {} receiving members x {} messages\n  member pushes {} of {} in {:.2} s = {:.0} pushes/s\n  \
             out of order {}\n  publish->deliver p50 {:.2} ms p99 {:.2} ms max {:.2} ms\n  verdict: {}\n",
            self.members,
            self.published,
            self.pushes,
            self.expected,
            self.seconds,
            self.pushes_per_s,
            self.out_of_order,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.max_ms,
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// `POST /v1/groups/{n}` with the members; errors unless 200.
fn create_group(s: &GroupScenario, members: &[u64]) -> Result<(), String> {
    let body = format!(
        "{{\"add\": [{}]}}",
        members
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut c = TcpStream::connect(s.admin).map_err(|e| format!("admin: {e}"))?;
    write!(
        c,
        "POST /v1/groups/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        s.first_user,
        s.admin_token,
        body.len()
    )
    .map_err(|e| format!("admin: {e}"))?;
    let mut resp = String::new();
    c.read_to_string(&mut resp)
        .map_err(|e| format!("admin: {e}"))?;
    if resp.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("creating the group failed: {resp}"))
    }
}

#[derive(Default)]
struct Tally {
    live: u64,
    pushes: u64,
    out_of_order: u64,
    last_rx: Option<Instant>,
    latency: Option<Histogram<u64>>,
}

fn member_thread(
    s: GroupScenario,
    users: Vec<u64>,
    ready: Arc<Barrier>,
    deadline: Instant,
) -> Result<Tally, String> {
    let sessions = users.iter().map(|&u| {
        let config = ClientConfig::new(crate::mint_token(&s.secret, u), DeviceId(1));
        ClientSession::new(config, Some(Seq::ZERO))
    });
    let mut fleet = Fleet::new(s.server, sessions, Instant::now())?;
    for i in 0..fleet.len() {
        fleet.open(i)?;
    }
    let mut t = Tally {
        latency: Some(new_histogram()),
        ..Tally::default()
    };
    // Per member: the next inbox sequence expected, and whether it is live.
    let mut next = vec![1u64; fleet.len()];
    let mut live = vec![false; fleet.len()];
    let expected = u64::from(s.messages);
    let mut released = false;
    while Instant::now() < deadline {
        if !released && t.live as usize == fleet.len() {
            ready.wait();
            released = true;
        }
        if released && next.iter().all(|&n| n > expected) {
            break;
        }
        fleet.turn(20, |i, e| match e {
            Event::CaughtUp if !live[i] => {
                live[i] = true;
                t.live += 1;
            }
            Event::Message(p) if !p.echo => {
                if p.seq.0 != next[i] {
                    t.out_of_order += 1;
                    return;
                }
                next[i] += 1;
                t.pushes += 1;
                t.last_rx = Some(Instant::now());
                if p.payload.len() >= 8 {
                    let sent = u64::from_le_bytes(p.payload[..8].try_into().expect("8 bytes"));
                    if let Some(h) = t.latency.as_mut() {
                        h.saturating_record(crate::now_ns().saturating_sub(sent));
                    }
                }
            }
            _ => {}
        });
    }
    if !released {
        ready.wait();
    }
    fleet.close_all();
    Ok(t)
}

/// Runs the group scenario.
pub fn run_group(s: &GroupScenario) -> Result<GroupReport, String> {
    if s.payload < 16 || s.members < 2 {
        return Err("payload must be at least 16 bytes and members at least 2".into());
    }
    let publisher = s.first_user;
    let users: Vec<u64> = (0..u64::from(s.members)).map(|i| publisher + i).collect();
    create_group(s, &users)?;
    let deadline = Instant::now() + s.timeout;
    let threads = s.threads.max(1);
    let ready = Arc::new(Barrier::new(threads + 1));
    let receivers: Vec<u64> = users[1..].to_vec();
    let mut handles = Vec::new();
    for t in 0..threads {
        let mine: Vec<u64> = receivers.iter().copied().skip(t).step_by(threads).collect();
        let (s2, ready) = (s.clone(), ready.clone());
        handles.push(std::thread::spawn(move || {
            member_thread(s2, mine, ready, deadline)
        }));
    }
    ready.wait();
    let mut config = ClientConfig::new(crate::mint_token(&s.secret, publisher), DeviceId(1));
    config.send_timeout_ms = 10_000;
    let mut p = BlockingClient::connect(s.server, config, Some(Seq::ZERO), Duration::from_secs(5))
        .map_err(|e| format!("publisher: {e}"))?;
    let group = UserId(UserId::GROUP_BIT | s.first_user);
    let started = Instant::now();
    let acked = crate::publish_timed(&mut p, s.messages, s.payload, deadline, |i| {
        (group, u64::from(i))
    })?;
    let mut total = Tally {
        latency: Some(new_histogram()),
        ..Tally::default()
    };
    for h in handles {
        let t = h.join().map_err(|_| "a member thread panicked")??;
        total.live += t.live;
        total.pushes += t.pushes;
        total.out_of_order += t.out_of_order;
        total.last_rx = total.last_rx.max(t.last_rx);
        if let (Some(all), Some(h)) = (total.latency.as_mut(), t.latency.as_ref()) {
            all.add(h).expect("same bounds");
        }
    }
    let seconds = total
        .last_rx
        .map_or(0.0, |t| t.duration_since(started).as_secs_f64());
    Ok(GroupReport {
        members: total.live,
        published: acked,
        pushes: total.pushes,
        expected: total.live * acked,
        out_of_order: total.out_of_order,
        seconds,
        pushes_per_s: if seconds > 0.0 {
            total.pushes as f64 / seconds
        } else {
            0.0
        },
        latency: crate::latency(total.latency.as_ref().expect("set above")),
    })
}
