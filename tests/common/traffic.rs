//! Traffic under a partition move (`cluster_moves`, `cluster_shard_moves`):
//! QoS 1 senders and a receiver that ride out closed sessions, and the
//! identity check of what arrived against what was acknowledged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use surepush::client::{BlockingClient, ClientSession, Event};
use surepush::proto::{Push, Qos, Seq, UserId};

/// What a sender sent: client message id -> (payload, acked seq).
pub type Sent = BTreeMap<u64, (Bytes, Seq)>;

/// Traffic control shared by the senders and the test.
#[derive(Default)]
pub struct Traffic {
    /// Stop sending new messages (then wait for the SENDACKs).
    pub stop: AtomicBool,
    /// SENDACKs received so far, all senders.
    pub acked: AtomicUsize,
    /// Longest time between two SENDACKs of one sender, in ms.
    pub longest_gap_ms: AtomicUsize,
}

/// What a sender does when a SEND cannot be written.
#[derive(Clone, Copy)]
pub enum SendErrors {
    /// The test fails.
    Fail,
    /// The connection broke: the next event says so, and it resumes.
    Resume,
}

/// Sends QoS 1 messages to `to` on `c`, `window` in flight, until
/// `traffic.stop`, then waits for every SENDACK (within `limit` in all);
/// `resume` makes a new connection of the session when the gateway closes
/// it. A second SENDACK for one message fails the test.
#[allow(clippy::too_many_arguments)]
pub fn send_until_stopped(
    mut c: BlockingClient,
    to: u64,
    window: usize,
    traffic: &Traffic,
    tag: &str,
    limit: Duration,
    send_errors: SendErrors,
    mut resume: impl FnMut(ClientSession) -> BlockingClient,
) -> Sent {
    let mut sent: BTreeMap<u64, Bytes> = BTreeMap::new();
    let mut acked: Sent = BTreeMap::new();
    let mut next = 0;
    let mut last_ack = Instant::now();
    let deadline = Instant::now() + limit;
    while !traffic.stop.load(Ordering::Acquire) || acked.len() < sent.len() {
        assert!(
            Instant::now() < deadline,
            "{tag}: {} of {} acked",
            acked.len(),
            sent.len()
        );
        while !traffic.stop.load(Ordering::Acquire) && sent.len() - acked.len() < window {
            let payload = Bytes::from(format!("{tag}-{next}"));
            let id = match (
                c.send(UserId(to), Qos::AtLeastOnce, payload.clone()),
                send_errors,
            ) {
                (Ok(id), _) => id,
                (Err(e), SendErrors::Fail) => panic!("{tag}: send: {e:?}"),
                (Err(_), SendErrors::Resume) => break,
            };
            sent.insert(id, payload);
            next += 1;
        }
        match c.next_event(Duration::from_millis(50)) {
            Ok(Some(Event::SendAcked(a))) => {
                let payload = sent[&a.client_msg_id].clone();
                let first = acked.insert(a.client_msg_id, (payload, a.seq));
                assert!(
                    first.is_none(),
                    "{tag}: a second SENDACK for {}",
                    a.client_msg_id
                );
                let gap = last_ack.elapsed().as_millis() as usize;
                traffic.longest_gap_ms.fetch_max(gap, Ordering::AcqRel);
                last_ack = Instant::now();
                traffic.acked.fetch_add(1, Ordering::AcqRel);
            }
            Ok(Some(Event::SendFailed(a))) => panic!("{tag}: {a:?}"),
            Ok(Some(Event::Disconnected(..))) | Err(_) => c = resume(c.into_session()),
            Ok(_) => {}
        }
    }
    acked
}

/// Receives on `c` until `stop` and 2 s of quiet; `reconnect` connects
/// again from the last sequence received when the session closes.
pub fn receive_until_quiet(
    mut c: BlockingClient,
    stop: &AtomicBool,
    mut reconnect: impl FnMut(Seq) -> BlockingClient,
) -> Vec<Push> {
    let mut got: Vec<Push> = Vec::new();
    let mut idle_since = Instant::now();
    loop {
        match c.next_event(Duration::from_millis(100)) {
            Ok(Some(Event::Message(p))) => {
                got.push(p);
                idle_since = Instant::now();
            }
            Ok(Some(Event::Disconnected(..))) | Err(_) => {
                c = reconnect(got.last().map_or(Seq::ZERO, |p| p.seq));
            }
            Ok(_) => {}
        }
        // Done once the senders are done and the inbox stayed quiet.
        if stop.load(Ordering::Acquire) && idle_since.elapsed() > Duration::from_secs(2) {
            return got;
        }
    }
}

/// Waits (up to `wait`) until the senders have `n` SENDACKs between them.
pub fn wait_acked(traffic: &Traffic, n: usize, wait: Duration) {
    let deadline = Instant::now() + wait;
    while traffic.acked.load(Ordering::Acquire) < n {
        assert!(Instant::now() < deadline, "senders stuck");
        thread::sleep(Duration::from_millis(10)); // polls a counter the senders raise
    }
}

/// Checks the receiver's messages against what the senders had
/// acknowledged: each exactly once, at the acknowledged seq, with its
/// sender and payload, sequences contiguous from 1.
pub fn check_identity(to: u64, got: &[Push], senders: &[(u64, &Sent)]) {
    check_identity_from(to, got, 1, senders);
}

/// [`check_identity`] for an inbox part that starts at seq `first`.
pub fn check_identity_from(to: u64, got: &[Push], first: u64, senders: &[(u64, &Sent)]) {
    let mut expected: BTreeMap<(u64, u64), (Bytes, Seq)> = BTreeMap::new();
    for (from, sent) in senders {
        for (id, v) in sent.iter() {
            expected.insert((*from, *id), v.clone());
        }
    }
    for (k, p) in got.iter().enumerate() {
        assert_eq!(
            p.seq,
            Seq(k as u64 + first),
            "contiguous inbox, no duplicate, no gap"
        );
        assert_eq!(p.to, UserId(to), "addressee");
        let Some((payload, seq)) = expected.remove(&(p.from.0, p.client_msg_id)) else {
            panic!("a message nobody sent, or twice: {p:?}");
        };
        assert_eq!(p.payload, payload, "payload");
        assert_eq!(p.seq, seq, "the seq the SENDACK named");
    }
    assert!(
        expected.is_empty(),
        "acknowledged but not delivered: {expected:?}"
    );
}

/// A move benchmark's size from the environment variable `var`, `N[,SIZE]`:
/// N stored messages (default 100,000) of SIZE bytes (default 100).
pub fn bench_spec(var: &str) -> (usize, usize) {
    let spec = std::env::var(var).unwrap_or_else(|_| "100000".into());
    let mut spec = spec
        .split(',')
        .map(|s| s.parse::<usize>().expect("N[,SIZE]"));
    let count = spec.next().expect("N");
    (count, spec.next().unwrap_or(100))
}

/// A receiver of `to` and its senders, running.
pub struct Load {
    pub traffic: Arc<Traffic>,
    pub stop_rx: Arc<AtomicBool>,
    pub rx: thread::JoinHandle<Vec<Push>>,
    pub senders: Vec<(u64, thread::JoinHandle<Sent>)>,
    pub to: u64,
}

impl Load {
    /// Stops the senders, waits for everything, checks every acknowledged
    /// message's identity; returns the receiver's messages.
    pub fn finish(self) -> Vec<Push> {
        self.traffic.stop.store(true, Ordering::Release);
        let sent: Vec<(u64, Sent)> = self
            .senders
            .into_iter()
            .map(|(from, h)| (from, h.join().expect("sender")))
            .collect();
        self.stop_rx.store(true, Ordering::Release);
        let got = self.rx.join().expect("receiver");
        let refs: Vec<(u64, &Sent)> = sent.iter().map(|(f, s)| (*f, s)).collect();
        check_identity(self.to, &got, &refs);
        got
    }
}
