//! Offline replay over MQTT with the stock mosquitto clients (issue #24):
//! a persistent QoS 1 session that was away drains its stored messages as
//! a stream, each once and in order, also when the gateway is killed with
//! kill -9 in the middle of the drain.
//!
//! Needs `mosquitto_sub` (Debian: mosquitto-clients).

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use surepush::client::Event;
use surepush::proto::{Qos, UserId};

/// More than a few pages and windows (`mqtt.page` 64, `mqtt.inflight` 256).
const MESSAGES: usize = 3_000;

fn payload(i: usize) -> String {
    format!("m{i}")
}

/// `mosquitto_sub` as the persistent session `client_id` of `token`, on
/// its own inbox (`user/{user}`) at QoS 1, with `extra` arguments.
fn mosquitto_sub(server: &TestServer, token: &str, user: u64, client_id: &str) -> Command {
    let mut c = Command::new("mosquitto_sub");
    c.args(["-h", "127.0.0.1", "-p", &server.mqtt.port().to_string()])
        .args(["-u", "x", "-P", token, "-q", "1", "-c", "-i", client_id])
        .args(["-t", &format!("user/{user}")]);
    c
}

/// Subscribes the persistent session and leaves (messages now wait for it).
fn subscribe_and_leave(server: &TestServer, token: &str, user: u64, client_id: &str) {
    let out = mosquitto_sub(server, token, user, client_id)
        .args(["-W", "1"])
        .output()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)");
    assert!(out.stdout.is_empty(), "nothing stored yet");
}

/// Stores `MESSAGES` QoS 1 messages from `from` to `to` (every SENDACK
/// back), in batches whose acknowledgements are awaited: the sender must
/// keep reading (and acknowledging its own echoes) or the gateway declares
/// it dead.
fn store_backlog(server: &TestServer, from: u64, to: u64) {
    const BATCH: usize = 100;
    let (mut tx, _) = server.connect(from, 1, None);
    for first in (0..MESSAGES).step_by(BATCH) {
        for i in first..(first + BATCH).min(MESSAGES) {
            tx.send(UserId(to), Qos::AtLeastOnce, Bytes::from(payload(i)))
                .expect("send");
        }
        for acked in first..(first + BATCH).min(MESSAGES) {
            let e = tx
                .wait_for(Duration::from_secs(30), |e| {
                    matches!(e, Event::SendAcked(_))
                })
                .expect("connection");
            assert!(e.is_some(), "only {acked} of {MESSAGES} sends acknowledged");
        }
    }
}

/// Issue #24: a resumed session drained page by page, each page waiting for
/// the PUBACKs of the previous one. With streaming replay every stored
/// message arrives once, in order, and the next connection gets nothing
/// again (the PUBACKs reached the core as acknowledgements).
#[test]
fn a_mosquitto_sub_session_drains_thousands_of_stored_messages_once_and_in_order() {
    let server = TestServer::start(2, "");
    let (tx, rx) = (7200, 7201);
    let token = server.token(rx, 1);
    subscribe_and_leave(&server, &token, rx, "replay-rx");
    store_backlog(&server, tx, rx);
    let out = mosquitto_sub(&server, &token, rx, "replay-rx")
        .args(["-C", &MESSAGES.to_string(), "-W", "120"])
        .output()
        .expect("mosquitto_sub");
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let expected: Vec<String> = (0..MESSAGES).map(payload).collect();
    assert_eq!(
        got.len(),
        MESSAGES,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(got == expected, "not each once and in order");
    let again = mosquitto_sub(&server, &token, rx, "replay-rx")
        .args(["-W", "2"])
        .output()
        .expect("mosquitto_sub");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "",
        "acknowledged messages are not delivered again"
    );
}

/// Issue #24: reading ahead must not acknowledge. A kill -9 while a third of
/// the backlog is drained (pages read ahead, PUBACKs outstanding) loses
/// nothing: after the restart mosquitto_sub reconnects by itself and gets
/// every message not yet acknowledged; across both connections every
/// message arrives (QoS 1: at least once), and each connection receives
/// its messages in inbox order. The subscriber's stdout is a one-page pipe
/// the test stops reading, so it stops acknowledging mid-stream while the
/// bridge has read ahead; cursors are written every millisecond, so a
/// cursor moved by reading ahead would be on disk at the kill.
#[test]
fn a_kill_9_in_the_middle_of_a_streaming_replay_loses_nothing() {
    let mut server = TestServer::start(2, "[core]\ncursor_flush_ms = 1\n");
    let (tx, rx) = (7300, 7301);
    let token = server.token(rx, 1);
    subscribe_and_leave(&server, &token, rx, "replay-kill");
    store_backlog(&server, tx, rx);
    let mut sub = mosquitto_sub(&server, &token, rx, "replay-kill")
        .args(["-W", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    let stdout = sub.stdout.take().expect("piped");
    // SAFETY: fcntl(2) on a pipe fd we own; a failure only leaves it larger.
    unsafe { libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    let mut lines = BufReader::new(stdout).lines();
    let mut got = Vec::new();
    while got.len() < MESSAGES / 3 {
        got.push(lines.next().expect("a line").expect("utf-8"));
    }
    server.kill9();
    server.spawn();
    let mut distinct: HashSet<String> = got.iter().cloned().collect();
    while distinct.len() < MESSAGES {
        let Some(line) = lines.next() else {
            panic!("mosquitto_sub ended with {} of {MESSAGES}", distinct.len());
        };
        let line = line.expect("utf-8");
        distinct.insert(line.clone());
        got.push(line);
    }
    let _ = sub.kill();
    let _ = sub.wait();
    let index = |s: &str| -> usize { s[1..].parse().expect("a payload of ours") };
    // Every message arrived; after the restart delivery starts again at
    // or before the first unacknowledged one, then goes on in order.
    let restart = got
        .windows(2)
        .position(|w| index(&w[1]) <= index(&w[0]))
        .map_or(got.len(), |i| i + 1);
    for part in [&got[..restart], &got[restart..]] {
        let seqs: Vec<usize> = part.iter().map(|s| index(s)).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "each connection in inbox order without holes"
        );
    }
    assert_eq!(distinct.len(), MESSAGES);
    assert!(
        got[restart..]
            .first()
            .is_none_or(|s| index(s) <= index(&got[restart - 1]) + 1),
        "no message skipped across the kill"
    );
}
