//! Slow and frozen consumers (issue #25), with real clients: a
//! `mosquitto_sub` or paho process frozen with SIGSTOP, or an SDK client
//! that stops reading its socket, while a busy publisher goes on.
//!
//! Each test checks what the issue found broken: while the consumer is
//! frozen the server grows by no more than while it keeps up (a first phase
//! with the same consumer reading: the log's and the room ring's share of
//! the messages) plus the consumer's output budget; the log gets no line
//! per message; the publisher is not held up; and once the consumer thaws
//! it gets every message once and in order — or, past
//! `max_write_buffer_bytes`, it is disconnected once (MQTT 5: reason 0x97)
//! and resumes from the log on its next connection.
//!
//! Needs `mosquitto_sub`/`mosquitto_pub` and `/usr/bin/python3` with
//! paho-mqtt (see tests/mqtt.rs).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::TestServer;
use surepush::client::{BlockingClient, Event};
use surepush::proto::{Qos, Seq, UserId, ROOM_BIT};

/// Output budgets of these servers: small, so that a few MB of messages
/// exceed them many times over.
const ROOM_LAG_BYTES: u64 = 64 << 10;
const MAX_WRITE_BUFFER_BYTES: u64 = 1 << 20;
/// Messages per phase and their size: ~6 MB, beyond the socket buffers and
/// every budget above.
const COUNT: u64 = 3_000;
const SIZE: usize = 2_000;
/// What an inbox receiver may hold: the push window (64 by default) and a
/// few retransmissions of it while frozen.
const INBOX_BUDGET: u64 = 4 * 64 * SIZE as u64;
/// Noise between two phases (allocator reuse, a new log segment's buffers
/// in one phase and not the other: measured up to +4 MB either way). Before
/// the fix a frozen MQTT room subscriber grew the server by ~100 MB per
/// second.
const RSS_NOISE: u64 = 8 << 20;
/// Bound on any wait (the whole file runs well under a minute).
const WAIT: Duration = Duration::from_secs(30);

fn server() -> TestServer {
    server_with("")
}

fn server_with(top: &str) -> TestServer {
    let top = format!(
        "room_lag_bytes = {ROOM_LAG_BYTES}\nmax_write_buffer_bytes = {MAX_WRITE_BUFFER_BYTES}\n{top}"
    );
    // The default history: a thawed subscriber catches up on all from the
    // log (no count bound since 2026-12-07; this test needed
    // `room_history = 100000` before).
    TestServer::start_full(2, &top, "cache_mib = 1\n", |_| {})
}

/// Message `n`: its number first (`000042-xxxx...`), `size` bytes.
fn message(n: u64, size: usize) -> String {
    let mut m = format!("{n:06}-");
    m.extend(std::iter::repeat_n('x', size - m.len()));
    m
}

/// The number a message starts with.
fn number(text: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(text);
    text.split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a test message: {}", &text[..text.len().min(40)]))
}

/// Resident set size of the server process, bytes.
fn rss(server: &TestServer) -> u64 {
    let pid = server.child.as_ref().expect("running").id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib << 10
}

/// Server log lines at WARN or ERROR.
fn alarms(server: &TestServer) -> Vec<String> {
    server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .cloned()
        .collect()
}

/// How much the server's RSS grows (highest sample minus the start) until
/// `done` holds; panics after `WAIT`.
fn growth_until(server: &TestServer, mut done: impl FnMut() -> bool, what: &str) -> u64 {
    let deadline = Instant::now() + WAIT;
    let base = rss(server);
    let mut peak = base;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        peak = peak.max(rss(server));
        std::thread::sleep(Duration::from_millis(20)); // sampling RSS
    }
    peak.max(rss(server)) - base
}

/// The frozen phase may grow the server by what the keeping-up phase did
/// plus the consumer's budget.
fn assert_rss_bounded(live: u64, frozen: u64, budget: u64, what: &str) {
    eprintln!(
        "{what}: server RSS +{} KiB keeping up, +{} KiB frozen (allowed {} KiB)",
        live >> 10,
        frozen >> 10,
        (live + budget + RSS_NOISE) >> 10
    );
    assert!(
        frozen <= live + budget + RSS_NOISE,
        "{what}: the server grew by {} KiB while the consumer was frozen, {} KiB while it kept up",
        frozen >> 10,
        live >> 10
    );
}

/// A client process the test freezes and thaws; killed when dropped.
struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Process {
    fn spawn(mut command: Command) -> Process {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("client binary (apt-get install mosquitto-clients python3-paho-mqtt)");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("Client ") {
                    continue; // mosquitto_sub -d: one line per packet
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Process { child, lines }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill {sig}");
    }

    fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("a line within the wait")
    }

    /// Message numbers printed so far, appended to `got` (non-blocking).
    fn take_numbers(&self, got: &mut Vec<u64>) {
        got.extend(self.lines.try_iter().map(|l| number(l.as_bytes())));
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.thaw();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto_sub(server: &TestServer, topic: &str, qos: &str, extra: &[&str]) -> Process {
    // Line-buffered (stdbuf execs it: same pid, for SIGSTOP): its `-d`
    // lines would otherwise sit in a pipe's block buffer.
    let mut c = Command::new("stdbuf");
    c.args(["-oL", "mosquitto_sub"])
        .args(["-h", "127.0.0.1", "-p", &server.mqtt.port().to_string()])
        .args(["-u", "x", "-P", &server.token(2, 1)])
        .args(["-t", topic, "-q", qos, "-d"])
        .args(extra);
    let sub = Process::spawn(c);
    // `-d` prints the SUBACK: messages published from now on are its.
    let line = sub.next_line();
    assert!(line.starts_with("Subscribed"), "{line}");
    sub
}

/// `mosquitto_pub -l` as user 1: one message per line written to its
/// stdin, which stays open until dropped (it discards what is unsent at
/// the end of its input).
struct Publisher {
    child: Child,
}

impl Publisher {
    fn start(server: &TestServer, topic: &str) -> Publisher {
        let child = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &server.mqtt.port().to_string()])
            .args(["-u", "x", "-P", &server.token(1, 1)])
            .args(["-t", topic, "-q", "1", "-l"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_pub");
        Publisher { child }
    }

    fn send(&mut self, range: std::ops::RangeInclusive<u64>, size: usize) {
        let stdin = self.child.stdin.as_mut().expect("piped");
        for n in range {
            writeln!(stdin, "{}", message(n, size)).unwrap();
        }
        stdin.flush().unwrap();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Phase ranges: the keeping-up phase, then the frozen one.
fn live_phase() -> std::ops::RangeInclusive<u64> {
    1..=COUNT
}

fn frozen_phase() -> std::ops::RangeInclusive<u64> {
    COUNT + 1..=2 * COUNT
}

/// A `mosquitto_sub` on a busy room (or inbox) at `qos`: keeping up, then
/// frozen; the publisher's messages must be stored meanwhile (its
/// progress), and after SIGCONT the subscriber prints every message once,
/// in order. `copies` is what one publish stores (inbox: the addressee's
/// and the sender's copy).
fn frozen_mosquitto_subscriber(topic: &str, qos: &str, extra: &[&str], copies: u64, budget: u64) {
    let server = server();
    let count = (2 * COUNT + 1).to_string();
    let mut args = vec!["-C", &count];
    args.extend_from_slice(extra);
    let sub = mosquitto_sub(&server, topic, qos, &args);
    let mut publisher = Publisher::start(&server, topic);
    // Warm-up (the subscription is in place: `mosquitto_sub`).
    publisher.send(0..=0, SIZE);
    assert_eq!(number(sub.next_line().as_bytes()), 0);
    let mut got = Vec::new();
    publisher.send(live_phase(), SIZE);
    let live = growth_until(
        &server,
        || {
            sub.take_numbers(&mut got);
            got.len() as u64 == COUNT
        },
        "the subscriber keeping up",
    );
    assert_eq!(got, live_phase().collect::<Vec<_>>());
    sub.freeze();
    let before = server.metric("surepush_copies_stored_total");
    publisher.send(frozen_phase(), SIZE);
    let frozen = growth_until(
        &server,
        || server.metric("surepush_copies_stored_total") >= before + (copies * COUNT) as f64,
        "the publisher's progress while the subscriber is frozen",
    );
    assert_rss_bounded(
        live,
        frozen,
        budget,
        &format!("{topic}, mosquitto_sub -q {qos}"),
    );
    sub.thaw();
    let got: Vec<u64> = frozen_phase()
        .map(|_| number(sub.next_line().as_bytes()))
        .collect();
    assert_eq!(
        got,
        frozen_phase().collect::<Vec<_>>(),
        "every message once, in order"
    );
    assert_eq!(alarms(&server), Vec::<String>::new(), "no WARN/ERROR lines");
}

#[test]
fn a_frozen_mosquitto_room_subscriber_at_qos_1_costs_its_budget_and_gets_everything_once() {
    frozen_mosquitto_subscriber("room/9", "1", &[], 1, ROOM_LAG_BYTES);
}

/// A QoS 0 subscription of QoS 1 messages: resumes after the last message
/// sent, from the log too.
#[test]
fn a_frozen_mosquitto_room_subscriber_at_qos_0_costs_its_budget_and_catches_up_from_the_log() {
    frozen_mosquitto_subscriber("room/9", "0", &[], 1, ROOM_LAG_BYTES);
}

/// The inbox path (persistent session): the push window bounds it.
#[test]
fn a_frozen_mosquitto_inbox_subscriber_costs_its_window_and_gets_everything_once() {
    frozen_mosquitto_subscriber("user/2", "1", &["-c", "-i", "inbox"], 2, INBOX_BUDGET);
}

/// Sends `range` as user 1 (QoS 1) to `to` through the SDK (which keeps 256
/// in flight and queues the rest); returns the client.
fn sdk_publish(
    server: &TestServer,
    to: UserId,
    range: std::ops::RangeInclusive<u64>,
    size: usize,
) -> BlockingClient {
    let (mut publisher, _) = server.connect(1, 1, None);
    for n in range {
        let payload = Bytes::from(message(n, size));
        publisher.send(to, Qos::AtLeastOnce, payload).unwrap();
    }
    publisher
}

/// Counts SENDACKs the publisher got (non-blocking).
fn count_acks(publisher: &mut BlockingClient, acked: &mut u64) {
    while let Ok(Some(e)) = publisher.next_event(Duration::ZERO) {
        *acked += u64::from(matches!(e, Event::SendAcked(_)));
    }
}

/// Room or inbox message numbers an SDK client received (non-blocking,
/// checks the payload matches the sequence).
fn take_messages(c: &mut BlockingClient, got: &mut Vec<u64>) -> bool {
    let mut lagged = false;
    while let Ok(Some(e)) = c.next_event(Duration::ZERO) {
        let (seq, payload) = match e {
            Event::RoomMessage(m) => (m.seq, m.payload),
            Event::Message(m) => (m.seq, m.payload),
            Event::RoomLagged(_) => {
                lagged = true;
                continue;
            }
            _ => continue,
        };
        assert_eq!(number(&payload), seq.0, "payload and sequence");
        got.push(seq.0);
    }
    lagged
}

/// The same with SDK clients that stop reading their socket: on a room at
/// QoS 1 (while another subscriber keeps up) or as an inbox receiver.
fn frozen_sdk_consumer(to: UserId, budget: u64, what: &str) {
    let server = server();
    let (mut consumer, _) = server.connect(2, 1, None);
    let (mut other, _) = server.connect(3, 1, None);
    if to.0 & ROOM_BIT != 0 {
        for c in [&mut consumer, &mut other] {
            c.subscribe(to.0, Qos::AtLeastOnce).unwrap();
            c.wait_for(WAIT, |e| matches!(e, Event::Subscribed(_)))
                .unwrap();
        }
    }
    let mut got = Vec::new();
    let mut acked = 0;
    let mut publisher = sdk_publish(&server, to, live_phase(), SIZE);
    let mut others = Vec::new();
    let live = growth_until(
        &server,
        || {
            count_acks(&mut publisher, &mut acked);
            take_messages(&mut consumer, &mut got);
            take_messages(&mut other, &mut others);
            let other_done = to.0 & ROOM_BIT == 0 || others.len() as u64 == COUNT;
            acked == COUNT && got.len() as u64 == COUNT && other_done
        },
        "the consumer keeping up",
    );
    // Frozen: the consumer's socket is not read while the others go on.
    let mut publisher = sdk_publish(&server, to, frozen_phase(), SIZE);
    let mut acked = 0;
    let frozen = growth_until(
        &server,
        || {
            count_acks(&mut publisher, &mut acked);
            take_messages(&mut other, &mut others);
            let other_done = to.0 & ROOM_BIT == 0 || others.last() == Some(&(2 * COUNT));
            acked == COUNT && other_done
        },
        "the publisher and the other subscriber",
    );
    assert_rss_bounded(live, frozen, budget, what);
    let mut got = Vec::new();
    let mut lagged = false;
    let deadline = Instant::now() + WAIT;
    while got.last() != Some(&(2 * COUNT)) {
        assert!(Instant::now() < deadline, "stuck after {:?}", got.last());
        lagged |= take_messages(&mut consumer, &mut got);
        std::thread::sleep(Duration::from_millis(5)); // the SDK polls without blocking here
    }
    assert_eq!(
        got,
        frozen_phase().collect::<Vec<_>>(),
        "every message once, in order"
    );
    if to.0 & ROOM_BIT != 0 {
        assert!(
            lagged,
            "the frozen subscriber was taken out of live fan-out"
        );
    }
    assert_eq!(alarms(&server), Vec::<String>::new(), "no WARN/ERROR lines");
}

#[test]
fn a_native_room_subscriber_that_stops_reading_costs_its_budget_and_gets_everything_once() {
    frozen_sdk_consumer(UserId(ROOM_BIT | 9), ROOM_LAG_BYTES, "room, SDK subscriber");
}

#[test]
fn a_native_inbox_receiver_that_stops_reading_costs_its_window_and_gets_everything_once() {
    frozen_sdk_consumer(UserId(2), INBOX_BUDGET, "inbox, SDK receiver");
}

/// Messages big enough that the push window (64 of them) passes
/// `max_write_buffer_bytes` and the socket buffers: the receiver is
/// dropped.
const BIG: usize = 128 << 10;
const BIG_COUNT: u64 = 80;

/// The one dropped connection of a test: counted once, one WARN line.
fn assert_dropped_once(server: &TestServer) {
    let dropped = || {
        server.metric("surepush_slow_consumers_total{shard=\"0\",action=\"dropped\"}")
            + server.metric("surepush_slow_consumers_total{shard=\"1\",action=\"dropped\"}")
    };
    let deadline = Instant::now() + WAIT;
    while dropped() < 1.0 {
        assert!(Instant::now() < deadline, "no slow consumer was dropped");
        std::thread::sleep(Duration::from_millis(100)); // metrics are copied once a second
    }
    let alarms = alarms(server);
    assert_eq!(alarms.len(), 1, "{alarms:#?}");
    assert!(alarms[0].contains("slow consumer dropped"), "{alarms:#?}");
    assert_eq!(dropped(), 1.0);
}

/// Issue #25: a connection over `max_write_buffer_bytes` was only marked
/// closing: it stayed in the core and in fan-out, each later frame decided
/// (and logged) the drop again, and its socket stayed open as long as the
/// client stayed frozen. Now it is dropped once, its socket is shut down
/// after `close_grace_ms` although the client still does not read, and the
/// next connection gets every message from the log.
#[test]
fn a_native_receiver_past_the_write_buffer_is_dropped_once_and_resumes_from_the_log() {
    let server = server();
    let (mut frozen, _) = server.connect(2, 1, None);
    let mut publisher = sdk_publish(&server, UserId(2), 1..=BIG_COUNT, BIG);
    let mut acked = 0;
    let deadline = Instant::now() + WAIT;
    while acked < BIG_COUNT {
        assert!(
            Instant::now() < deadline,
            "the publisher stalled at {acked}"
        );
        count_acks(&mut publisher, &mut acked);
        std::thread::sleep(Duration::from_millis(5)); // polling the SDK
    }
    assert_dropped_once(&server);
    // Shut down while still frozen: only the publisher is connected. (The
    // gauge is copied once a second: absent at first, 2 before the drop.)
    let deadline = Instant::now() + WAIT;
    while server.metric("surepush_connections") != 1.0 {
        assert!(
            Instant::now() < deadline,
            "the dropped connection stays open"
        );
        std::thread::sleep(Duration::from_millis(100)); // a gauge copied once a second
    }
    // Thawed: what the kernel still held, then the close.
    let mut got = Vec::new();
    loop {
        match frozen.next_event(Duration::from_secs(5)) {
            Ok(Some(Event::Message(m))) => got.push(m.seq.0),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the dropped connection is still open"),
            Err(_) => break,
        }
    }
    let delivered = got.last().copied().map(Seq);
    let (mut again, replayed) = server.connect(2, 1, delivered);
    got.extend(common::messages(replayed).iter().map(|m| m.seq.0));
    let deadline = Instant::now() + WAIT;
    while got.last() != Some(&BIG_COUNT) {
        assert!(
            Instant::now() < deadline,
            "resume stuck after {:?}",
            got.last()
        );
        take_messages(&mut again, &mut got);
        std::thread::sleep(Duration::from_millis(5)); // polling the SDK
    }
    assert_eq!(
        got,
        (1..=BIG_COUNT).collect::<Vec<_>>(),
        "every message once, in order"
    );
}

/// The same for an MQTT 5 client (paho, frozen): once it reads again it
/// learns why, DISCONNECT 0x97 Quota exceeded.
#[test]
fn an_mqtt_5_subscriber_past_the_write_buffer_is_dropped_once_with_quota_exceeded() {
    // Time enough to thaw the client before its socket is shut down.
    let server = server_with("close_grace_ms = 20000\n");
    let mut c = Command::new("/usr/bin/python3");
    c.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/mqtt/frozen_v5.py"
    ))
    .arg(server.mqtt.port().to_string())
    .arg(server.token(2, 1))
    .arg("user/2");
    let sub = Process::spawn(c);
    assert_eq!(sub.next_line(), "ready");
    sub.freeze();
    let mut publisher = Publisher::start(&server, "user/2");
    publisher.send(1..=BIG_COUNT, BIG);
    assert_dropped_once(&server);
    sub.thaw();
    let mut last = String::new();
    while !last.starts_with("disconnect") {
        last = sub.next_line();
    }
    assert_eq!(last, "disconnect 151", "0x97 Quota exceeded");
}
