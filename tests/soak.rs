//! Soak with connection churn (issue 9): many clients connect, send,
//! receive and disconnect over and over while the server's RSS and open
//! file descriptors are sampled. Proves three things: no message lost,
//! duplicated or reordered across thousands of reconnects; memory stays
//! flat once warm; no file descriptor leaks.
//!
//! `SOAK_SECONDS` sets the length (CI: 20 s; the manual run: 600 s or more),
//! `SOAK_WORKERS` the number of sender/receiver pairs (default 16).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::TestServer;
use surepush::client::Event;
use surepush::proto::{Qos, Seq, UserId};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (RSS bytes, open fds) of a process.
fn sample(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    (rss_kib * 1024, fds)
}

/// One sender/receiver pair: each round connects the sender, sends a batch,
/// waits for every SENDACK, disconnects; then connects the receiver from
/// its cursor, takes the batch, disconnects. Counts each finished round in
/// `done` (read while the run goes on). Returns (rounds, messages).
fn churn_pair(server: &TestServer, pair: u64, stop: &AtomicBool, done: &AtomicU64) -> (u64, u64) {
    const BATCH: u64 = 10;
    let (sender, receiver) = (10_000 + pair, 20_000 + pair);
    let mut cursor = Seq(0);
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) {
        let (mut c, _) = server.connect(sender, 1, None);
        for i in 0..BATCH {
            let n = rounds * BATCH + i + 1;
            let payload = Bytes::from(format!("pair{pair}-n{n}"));
            c.send(UserId(receiver), Qos::AtLeastOnce, payload).unwrap();
        }
        let mut acked = 0;
        while acked < BATCH {
            match c.next_event(Duration::from_secs(10)).unwrap() {
                Some(Event::SendAcked(a)) => {
                    assert!(a.result.is_stored());
                    acked += 1;
                }
                Some(_) => {}
                None => panic!("pair {pair}: SENDACK timed out"),
            }
        }
        drop(c);
        let (mut r, events) = server.connect(receiver, 1, Some(cursor));
        let mut got = common::messages(events);
        while (got.len() as u64) < BATCH {
            match r.next_event(Duration::from_secs(10)).unwrap() {
                Some(e) => got.extend(common::messages(vec![e])),
                None => panic!(
                    "pair {pair} round {rounds}: delivery timed out with {} of {BATCH}: {:?}",
                    got.len(),
                    got.iter().map(|m| m.seq.0).collect::<Vec<_>>()
                ),
            }
        }
        for (i, m) in got.iter().enumerate() {
            let n = rounds * BATCH + i as u64 + 1;
            assert_eq!(m.seq, Seq(n), "pair {pair}: order or duplicate");
            assert_eq!(m.payload, Bytes::from(format!("pair{pair}-n{n}")));
        }
        // The next connect names this cursor: the server replays only
        // what follows it.
        cursor = got.last().expect("a batch").seq;
        drop(r);
        rounds += 1;
        done.fetch_add(1, Ordering::Relaxed);
    }
    (rounds, rounds * BATCH)
}

#[test]
fn churn_keeps_memory_flat_and_leaks_no_descriptors() {
    let seconds = env_u64("SOAK_SECONDS", 20);
    let workers = env_u64("SOAK_WORKERS", 16);
    // The log at its steady state within seconds: small segments, a dedup
    // window full after a second or two, and retention every second
    // deleting the acknowledged segments once the window has passed them
    // (with 60 s rounds and 8 MiB segments its index and message lists
    // would grow through the whole run, and nothing could be told from RSS).
    let server = Arc::new(TestServer::start(
        2,
        "segment_mib = 1\nretention_interval_s = 1\ncache_mib = 1\n\
         [core.dedup]\nmax_entries = 4000\n",
    ));
    let pid = server.child.as_ref().unwrap().id();
    let (_, fds_idle) = sample(pid);
    let segments_idle = server.metric("surepush_log_segments");
    let stop = Arc::new(AtomicBool::new(false));
    let messages = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..workers)
        .map(|pair| {
            let (server, stop) = (server.clone(), stop.clone());
            let (messages, done) = (messages.clone(), done.clone());
            std::thread::spawn(move || {
                let (_, m) = churn_pair(&server, pair, &stop, &done);
                messages.fetch_add(m, Ordering::Relaxed);
            })
        })
        .collect();
    // Sample once a second: (RSS, connections made so far). The first
    // quarter is warm-up (caches, the dedup window and allocator pools
    // fill up).
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1)); // the sampling period
        samples.push((sample(pid).0, done.load(Ordering::Relaxed) * 2));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("a churn worker failed");
    }
    // Wait until the server has closed every connection (a signal: its
    // connection gauge), then count descriptors.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("surepush_connections") > 0.0 {
        assert!(Instant::now() < deadline, "connections never closed");
        std::thread::sleep(Duration::from_millis(50)); // polling a gauge
    }
    let (rss_end, fds_end) = sample(pid);
    let connections = done.load(Ordering::Relaxed) * 2;
    samples.push((rss_end, connections));
    let segments_end = server.metric("surepush_log_segments");
    let messages = messages.load(Ordering::Relaxed);
    // Memory is judged by its floor in an early and a late window after
    // warm-up. RSS swings by tens of MiB from one second to the next while
    // a segment is sealed (its message list, the sidecar being written and
    // the next segment's list live at once) and come back; a leak is what
    // lifts the floor, in proportion to the connections made.
    let warm = samples.len() / 4;
    let width = (samples.len() / 5).max(3);
    assert!(
        warm + 2 * width <= samples.len(),
        "run too short to judge: {} samples",
        samples.len()
    );
    let early = &samples[warm..warm + width];
    let late = &samples[samples.len() - width..];
    let floor = |w: &[(u64, u64)]| w.iter().map(|s| s.0).min().expect("a window");
    let (floor_early, floor_late) = (floor(early), floor(late));
    // Connections certainly made between any sample of one window and any
    // of the other.
    let between = late[0].1.saturating_sub(early[width - 1].1);
    let rss_max = samples[warm..].iter().map(|s| s.0).max().expect("samples");
    let mib = |b: u64| b as f64 / 1048576.0;
    eprintln!(
        "soak {seconds} s, {workers} pairs: {connections} connections, {messages} messages; \
         RSS floor early {:.1} MiB, late {:.1} MiB ({between} connections apart), max {:.1} MiB, \
         end {:.1} MiB; fds idle {fds_idle}, end {fds_end}; segments {segments_idle} -> {segments_end}",
        mib(floor_early),
        mib(floor_late),
        mib(rss_max),
        mib(rss_end),
    );
    assert!(
        connections >= 100 && between >= connections / 4,
        "too little churn to judge: {connections} connections, {between} between the windows"
    );
    // Each new segment keeps one file open; nothing else may stay open.
    let segment_fds = (segments_end - segments_idle).max(0.0) as u64;
    assert!(
        fds_end <= fds_idle + segment_fds,
        "descriptor leak: {fds_idle} idle, {fds_end} after {connections} connections"
    );
    // Flat: the floor rises by less than 1 KiB per connection made between
    // the windows, and by less than 32 MiB however long the run (what
    // legitimately grows is the log's index of retained messages, some
    // bytes per message, until retention deletes acknowledged segments).
    let growth = floor_late.saturating_sub(floor_early);
    let allowed = (between * 1024).min(32 << 20);
    assert!(
        growth < allowed,
        "RSS floor grew {:.1} MiB over {between} connections (allowed {:.1} MiB)",
        mib(growth),
        mib(allowed)
    );
}
