//! Issue 23 with the real binary: recovery never destroys acknowledged
//! records or reuses a sequence.
//!
//! The issue's reproduction: 80 acknowledged QoS 1 sends, kill -9, one
//! flipped byte inside the stored record of the 20th message. Before the
//! fix the gateway cut the log there, zeroed messages 20..80, served, and
//! numbered the next message 20 again. Now it refuses to start without
//! changing a byte; `surepush log salvage` keeps the 79 other messages
//! (identity checked), the next send is stored above 80, and a device
//! holding 80 is accepted.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use surepush::client::Event;
use surepush::proto::{Qos, Seq, UserId};

fn payload(i: u64) -> String {
    format!("issue 23 message {i:03} from user 1")
}

/// Sends `n` QoS 1 messages from user 1 to user 2, each acknowledged
/// `Stored`, and returns their sequences in user 2's inbox.
fn send_acknowledged(server: &TestServer, n: u64) -> Vec<Seq> {
    let (mut tx, _) = server.connect(1, 1, Some(Seq::ZERO));
    (1..=n)
        .map(|i| {
            let id = tx
                .send(UserId(2), Qos::AtLeastOnce, Bytes::from(payload(i)))
                .unwrap();
            match tx
                .wait_for(
                    Duration::from_secs(10),
                    |e| matches!(e, Event::SendAcked(a) if a.client_msg_id == id),
                )
                .unwrap()
            {
                Some(Event::SendAcked(a)) => a.seq,
                other => panic!("send {i} not acknowledged: {other:?}"),
            }
        })
        .collect()
}

fn shard_dir(server: &TestServer) -> std::path::PathBuf {
    server.data_dir().join("data").join("shard-000")
}

fn segment(server: &TestServer) -> std::path::PathBuf {
    shard_dir(server).join("00000000000000000000.seg")
}

/// Flips a byte inside the payload of message `i`'s copy in inbox 2.
fn flip_payload_of(server: &TestServer, i: u64) {
    let path = segment(server);
    let mut bytes = std::fs::read(&path).unwrap();
    let needle = payload(i).into_bytes();
    // A message record: [len 4][crc 4][kind 1][inbox 8][seq 8]...; the
    // payload starts 66 bytes in.
    let at = bytes
        .windows(needle.len())
        .enumerate()
        .map(|(at, _)| at)
        .filter(|&at| bytes[at..at + needle.len()] == needle[..])
        .find(|&at| bytes[at - 66 + 9..at - 66 + 17] == 2u64.to_le_bytes())
        .expect("the message's record in inbox 2");
    bytes[at + 3] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn log_tool(server: &TestServer, tool: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_surepush"))
        .args(["log", tool, "--config"])
        .arg(server.config_path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn issue_23_a_flipped_byte_refuses_the_start_and_salvage_keeps_79_and_never_reuses_a_seq() {
    let mut server = TestServer::start(1, "");
    let seqs = send_acknowledged(&server, 80);
    assert_eq!(seqs, (1..=80).map(Seq).collect::<Vec<_>>());
    server.kill9();
    flip_payload_of(&server, 20);

    // Refused, saying where, and nothing changed.
    let before = snapshot(&shard_dir(&server));
    let (status, stderr) = server.start_expecting_failure();
    assert!(!status.success(), "{stderr}");
    for needed in [
        "shard 0",
        "00000000000000000000.seg",
        "crc mismatch",
        "salvage",
    ] {
        assert!(stderr.contains(needed), "{needed:?} missing: {stderr}");
    }
    assert_eq!(
        snapshot(&shard_dir(&server)),
        before,
        "a refused start changes no file"
    );

    // The offline check sees it too, read-only.
    let (ok, report) = log_tool(&server, "verify");
    assert!(!ok, "verify exits non-zero on damage: {report}");
    assert!(report.contains("DAMAGED"), "{report}");
    assert_eq!(
        snapshot(&shard_dir(&server)),
        before,
        "verify changes no file"
    );

    // Salvage: the 20th message of inbox 2 is the one lost.
    let (ok, report) = log_tool(&server, "salvage");
    assert!(ok, "{report}");
    assert!(report.contains("lost: inbox 2 seq 20\n"), "{report}");
    let (ok, report) = log_tool(&server, "verify");
    assert!(ok, "clean after salvage: {report}");

    server.spawn();
    let (_rx, events) = server.connect(2, 1, Some(Seq::ZERO));
    let mut kept = Vec::new();
    let mut lost = Vec::new();
    for e in events {
        match e {
            Event::Message(p) => kept.push(p),
            Event::Lost { first, last } => lost.push((first, last)),
            _ => {}
        }
    }
    assert_eq!(
        lost,
        vec![(Seq(20), Seq(20))],
        "the device is told what is gone"
    );
    assert_eq!(kept.len(), 79);
    for p in &kept {
        assert_ne!(p.seq, Seq(20));
        assert_eq!(p.from, UserId(1));
        assert_eq!(p.to, UserId(2));
        assert_eq!(p.payload, Bytes::from(payload(p.seq.0)), "seq {}", p.seq.0);
    }
    // The next send is stored above the old head, never at 20.
    let next = send_acknowledged(&server, 1);
    assert_eq!(next, vec![Seq(81)]);
    // A device that held 80 before is accepted (not AckBeyondSent).
    let (_d, events) = server.connect(2, 7, Some(Seq(80)));
    let got: Vec<Seq> = common::messages(events).iter().map(|p| p.seq).collect();
    assert_eq!(got, vec![Seq(81)]);
}

/// With `log.recovery = "salvage"` the gateway salvages on start, logs it
/// at ERROR and counts the lost records in /metrics. A torn tail without
/// damage still starts quietly (the existing torn-tail tests cover that).
#[test]
fn the_salvage_setting_salvages_on_start_and_counts_the_loss() {
    let mut server = TestServer::start(1, "");
    send_acknowledged(&server, 30);
    server.kill9();
    flip_payload_of(&server, 7);
    server.set_extra_config("recovery = \"salvage\"\n");
    server.tolerated_errors = vec!["salvage"];
    server.spawn();
    let (status, metrics) = server.http("GET", "/metrics", "", false);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("surepush_log_salvaged_records_total{shard=\"0\"} 1"),
        "{metrics}"
    );
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        log.contains("ERROR") && log.contains("lost: inbox 2 seq 7"),
        "{log}"
    );
    assert!(segment(&server)
        .with_extension(format!("seg.damaged-{}", damaged_offset(&server)))
        .exists());
}

/// The offset in the segment of the one `.damaged-` file salvage left.
fn damaged_offset(server: &TestServer) -> u64 {
    std::fs::read_dir(shard_dir(server))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.split_once(".seg.damaged-")
                .map(|(_, off)| off.parse().unwrap())
        })
        .next()
        .expect("a .damaged- file")
}

/// The offline tools take the data dir's lock: salvage under a running
/// gateway would rewrite files the gateway goes on writing into.
#[test]
fn the_log_tools_refuse_a_data_dir_a_running_gateway_holds() {
    let server = TestServer::start(1, "");
    for tool in ["salvage", "verify"] {
        let (ok, report) = log_tool(&server, tool);
        assert!(!ok, "{tool} must refuse: {report}");
        assert!(
            report.contains("in use by another surepush process")
                && report.contains(&format!("pid {}", server.pid())),
            "{tool}: {report}"
        );
    }
}
