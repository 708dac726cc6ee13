//! Disk full on a real size-limited filesystem (issue 9): the gateway runs
//! with its data dir on a small tmpfs, the disk fills up under QoS 1
//! traffic, and the shard must stop acknowledging (metric + health), then
//! recover by itself once space returns, without losing or duplicating any
//! acknowledged message.
//!
//! Needs root to mount the tmpfs (CI runs as root). Where mounting is not
//! allowed, set `SUREPUSH_SKIP_MOUNT_TESTS=1` to skip it explicitly.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::TestServer;
use surepush::client::{BlockingClient, Event};
use surepush::proto::{Qos, Seq, UserId};

/// Unmounts on drop, also when the test fails.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size_mib: u64) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(at)
            .status()
            .ok()?;
        status.success().then(|| Mount(at.to_owned()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    surepush::server::limits::free_bytes(path).unwrap()
}

#[test]
fn disk_full_stops_acks_then_recovers_when_space_returns_losing_nothing() {
    let mut mount = None;
    let server = TestServer::start_with(1, "segment_mib = 4\n", |data| {
        mount = Mount::tmpfs(data, 24);
    });
    let Some(_mount) = mount else {
        if std::env::var("SUREPUSH_SKIP_MOUNT_TESTS").is_ok() {
            eprintln!("skipped: cannot mount a tmpfs here (SUREPUSH_SKIP_MOUNT_TESTS is set)");
            return;
        }
        panic!("cannot mount a tmpfs (needs root); set SUREPUSH_SKIP_MOUNT_TESTS=1 to skip");
    };
    let data = server.dir.join("data");
    // Leave ~2 MiB: the open segment has ~4 MiB of room, so the disk runs
    // out a few hundred sends in, at the next segment.
    let filler = data.join("filler");
    let fill = free_bytes(&data).saturating_sub(2 << 20);
    std::fs::write(&filler, vec![0u8; fill as usize]).unwrap();
    assert_eq!(server.counter("surepush_storage_failed"), 0);

    let (mut sender, _) = server.connect(1, 1, None);
    let mut sent: BTreeMap<u64, Bytes> = BTreeMap::new();
    let mut acked: HashSet<u64> = HashSet::new();
    let drain = |c: &mut BlockingClient, acked: &mut HashSet<u64>, wait: Duration| {
        while let Ok(Some(e)) = c.next_event(wait) {
            if let Event::SendAcked(a) = e {
                assert!(a.result.is_stored());
                acked.insert(a.client_msg_id);
            }
        }
    };
    let mut failed = false;
    for n in 0..3000u32 {
        let payload = Bytes::from(format!("m{n:05}-").repeat(2000)); // 14 KB
        let id = sender
            .send(UserId(2), Qos::AtLeastOnce, payload.clone())
            .unwrap();
        sent.insert(id, payload);
        drain(&mut sender, &mut acked, Duration::ZERO);
        if n % 20 == 19 {
            drain(&mut sender, &mut acked, Duration::from_millis(20));
            if server.counter("surepush_storage_failed") == 1 {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the disk never filled up");
    let (status, health) = server.http("GET", "/healthz", "", false);
    assert_ne!(status, 200, "health must report the failed log: {health}");
    let acked_before = acked.len();
    assert!(acked_before > 0 && acked_before < sent.len());

    // Space returns: the node restarts its shards from the log by itself.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Ready, not only alive: `/healthz` answers 200 again as soon as the
    // failed flags are cleared for the restart, before the shards have
    // recovered (and reset their gauges); `/readyz` waits for every shard.
    let healthy = || {
        common::http_exchange(
            server.admin,
            "GET",
            "/readyz",
            "",
            None,
            Duration::from_secs(1),
        )
        .is_ok_and(|r| r.status == 200)
    };
    while !healthy() {
        assert!(Instant::now() < deadline, "the node did not recover");
        std::thread::sleep(Duration::from_millis(100)); // polling an HTTP endpoint
    }
    assert_eq!(server.counter("surepush_storage_failed"), 0);

    // The sender's SDK session retries every unacknowledged send.
    let session = sender.into_session();
    let mut sender =
        BlockingClient::resume(server.addr, session, Duration::from_secs(5)).expect("reconnect");
    let deadline = Instant::now() + Duration::from_secs(30);
    while sender.session().unfinished_sends() > 0 {
        assert!(
            Instant::now() < deadline,
            "retries never finished: {} unfinished, last event {:?}",
            sender.session().unfinished_sends(),
            sender.next_event(Duration::from_millis(10))
        );
        drain(&mut sender, &mut acked, Duration::from_millis(50));
    }
    drain(&mut sender, &mut acked, Duration::from_millis(50));
    assert_eq!(
        acked.len(),
        sent.len(),
        "every send is acknowledged in the end"
    );

    // The receiver gets every message exactly once, in order.
    let (mut receiver, events) = server.connect(2, 1, Some(Seq(0)));
    let mut got = common::messages(events);
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < sent.len() && Instant::now() < deadline {
        if let Some(e) = receiver.next_event(Duration::from_millis(100)).unwrap() {
            got.extend(common::messages(vec![e]));
        }
    }
    let seqs: Vec<u64> = got.iter().map(|p| p.seq.0).collect();
    assert_eq!(seqs, (1..=sent.len() as u64).collect::<Vec<_>>());
    let payloads: Vec<&Bytes> = got.iter().map(|p| &p.payload).collect();
    let expected: Vec<&Bytes> = sent.values().collect();
    let mut a = payloads.clone();
    let mut b = expected.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "delivered payloads are exactly the sent ones");
    eprintln!(
        "disk full: {} sends, {acked_before} acknowledged before the disk filled, all {} after recovery",
        sent.len(),
        acked.len()
    );
}
