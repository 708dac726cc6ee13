//! Scenario `group`: one publisher sends to a group of `members` users
//! (write diffusion: one stored copy per member inbox). Each member is the
//! SDK's sans-IO [`ClientSession`] (ACKs, retransmits, replay) driven from
//! an epoll loop, `threads` loops in all. Reports member pushes per second
//! and checks that every member got every message once, in order.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use serde::Serialize;
use surepush::client::{BlockingClient, ClientConfig, ClientSession, Event};
use surepush::proto::{Decoder, DeviceId, Seq, UserId};

use crate::poller::Poller;
use crate::raw::new_histogram;
use crate::Latency;

/// What to run.
#[derive(Clone, Debug)]
pub struct GroupScenario {
    /// Gateway address.
    pub server: SocketAddr,
    /// Admin HTTP address (to create the group).
    pub admin: SocketAddr,
    /// Admin bearer token.
    pub admin_token: String,
    /// The gateway's token secret.
    pub secret: Vec<u8>,
    /// Members (the publisher is one of them).
    pub members: u32,
    /// Messages the publisher sends.
    pub messages: u32,
    /// Payload bytes (at least 16).
    pub payload: usize,
    /// Member threads.
    pub threads: usize,
    /// Give up after this long.
    pub timeout: Duration,
    /// First user id used; also the group number.
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

struct Member {
    stream: TcpStream,
    decoder: Decoder,
    session: ClientSession,
    next: u64,
    live: bool,
}

#[derive(Default)]
struct Tally {
    live: u64,
    pushes: u64,
    out_of_order: u64,
    last_rx: Option<Instant>,
    latency: Option<Histogram<u64>>,
}

fn flush(m: &mut Member) -> bool {
    let mut out = BytesMut::new();
    while let Some(f) = m.session.poll_transmit() {
        f.encode(&mut out);
    }
    out.is_empty() || m.stream.write_all(&out).is_ok()
}

fn pump(m: &mut Member, buf: &mut [u8], t: &mut Tally, origin: Instant) -> bool {
    let now = origin.elapsed().as_nanos() as u64;
    loop {
        match m.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => m.decoder.feed(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    while let Ok(Some(frame)) = m.decoder.decode() {
        m.session.handle_frame(frame, now);
    }
    m.session.handle_timeout(now);
    while let Some(e) = m.session.poll_event() {
        match e {
            Event::CaughtUp if !m.live => {
                m.live = true;
                t.live += 1;
            }
            Event::Message(p) if !p.echo => {
                if p.seq.0 != m.next {
                    t.out_of_order += 1;
                    continue;
                }
                m.next += 1;
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
        }
    }
    flush(m)
}

fn member_thread(
    s: GroupScenario,
    users: Vec<u64>,
    ready: Arc<Barrier>,
    deadline: Instant,
) -> Result<Tally, String> {
    let origin = Instant::now();
    let mut members = Vec::new();
    for u in users {
        let stream = TcpStream::connect(s.server).map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let config = ClientConfig::new(crate::mint_token(&s.secret, u), DeviceId(1));
        let mut session = ClientSession::new(config, Some(Seq::ZERO));
        session.connect(origin.elapsed().as_nanos() as u64);
        let mut m = Member {
            stream,
            decoder: Decoder::new(1 << 20),
            session,
            next: 1,
            live: false,
        };
        if !flush(&mut m) {
            return Err("CONNECT write failed".into());
        }
        m.stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        members.push(m);
    }
    let mut poller = Poller::new(members.iter().map(|m| m.stream.as_raw_fd()))?;
    let mut t = Tally {
        latency: Some(new_histogram()),
        ..Tally::default()
    };
    let expected = u64::from(s.messages);
    let mut buf = vec![0u8; 256 << 10];
    let mut released = false;
    while Instant::now() < deadline {
        if !released && t.live as usize == members.len() {
            ready.wait();
            released = true;
        }
        if released && members.iter().all(|m| m.next > expected) {
            break;
        }
        let ready = poller.wait(20);
        for &i in &ready {
            pump(&mut members[i], &mut buf, &mut t, origin);
        }
        if ready.is_empty() {
            // Quiet: let each session send what its timers want (ACKs).
            for m in &mut members {
                pump(m, &mut buf, &mut t, origin);
            }
        }
    }
    if !released {
        ready.wait();
    }
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
