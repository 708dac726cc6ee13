//! The link protocol (outbound + inbound) under loss, duplication,
//! reordering and restarts, on a simulated network with virtual time.
//!
//! The checks are on identity: every message (numbered payload) reaches
//! the receiving application exactly once and in the order it was pushed,
//! and every caller token gets exactly the reply its message earned.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::batch::{BatchReply, BatchRequest, Envelope};
use super::inbound::{BatchKey, InboundLinks, Verdict};
use super::outbound::{Completion, LinkConfig, LinkFailure, OutboundLink, ReplyTarget, MAX_WINDOW};
use crate::node_id::NodeId;
use crate::wire::{self, MessageKind};

const KIND: MessageKind = MessageKind(crate::wire::kinds::FIRST_TEST_KIND);

fn node(name: &str) -> NodeId {
    NodeId::parse(name).unwrap()
}

fn message(n: u64, size: usize) -> Envelope {
    let mut body = n.to_le_bytes().to_vec();
    body.resize(size.max(8), 0xAB);
    Envelope {
        kind: KIND,
        version: 1,
        route: (n % 7) as u32,
        body: Bytes::from(body),
    }
}

fn number(env: &Envelope) -> u64 {
    u64::from_le_bytes(env.body[..8].try_into().unwrap())
}

/// What the receiving application answers to message `n`.
fn reply_to(n: u64) -> Bytes {
    Bytes::from(format!("ok {n}"))
}

fn config() -> LinkConfig {
    LinkConfig {
        window: 4,
        max_batch_bytes: 200,
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_millis(800),
        linger: Duration::ZERO,
    }
}

/// A sender, a receiver, the packets between them and the receiving
/// application's work in progress.
struct Sim {
    now: Instant,
    sender: OutboundLink,
    receiver: InboundLinks,
    /// Request payloads on their way to the receiver.
    to_receiver: Vec<Bytes>,
    /// Reply payloads on their way back.
    to_sender: Vec<Bytes>,
    /// Messages handed to the receiving application, not yet answered.
    app_pending: Vec<(BatchKey, usize, u64)>,
    /// Every message number the application received, in order.
    app_seen: Vec<u64>,
    /// Replies delivered to callers, by token.
    completions: HashMap<u64, Vec<Bytes>>,
    failed: Vec<ReplyTarget>,
    pushed: u64,
}

impl Sim {
    fn new(window: usize) -> Sim {
        let mut cfg = config();
        cfg.window = window;
        Sim {
            now: Instant::now(),
            sender: OutboundLink::new(node("a"), 1, cfg),
            receiver: InboundLinks::new(node("b")),
            to_receiver: Vec::new(),
            to_sender: Vec::new(),
            app_pending: Vec::new(),
            app_seen: Vec::new(),
            completions: HashMap::new(),
            failed: Vec::new(),
            pushed: 0,
        }
    }

    /// Pushes the next message if the link accepts it.
    fn push(&mut self, size: usize) -> bool {
        if !self.sender.accepts() {
            return false;
        }
        let n = self.pushed;
        self.sender
            .push(message(n, size), ReplyTarget { lane: 0, token: n });
        self.pushed += 1;
        true
    }

    fn transmit(&mut self) {
        while let Some(p) = self.sender.poll_transmit(self.now) {
            self.to_receiver.push(p);
        }
    }

    fn deliver_request(&mut self, i: usize) {
        let payload = self.to_receiver.remove(i);
        let req: BatchRequest = wire::decode(&payload).expect("valid request");
        match self.receiver.handle(req) {
            Verdict::Deliver { key, items } => {
                for (index, env) in items.iter().enumerate() {
                    let n = number(env);
                    self.app_seen.push(n);
                    self.app_pending.push((key.clone(), index, n));
                }
            }
            Verdict::Answer(bytes) => self.to_sender.push(bytes),
            Verdict::InProgress => {}
        }
    }

    fn app_answer(&mut self, i: usize) {
        let (key, index, n) = self.app_pending.remove(i);
        if let Some(reply) = self.receiver.complete(&key, index, reply_to(n)) {
            self.to_sender.push(reply);
        }
    }

    fn deliver_reply(&mut self, i: usize) {
        let payload = self.to_sender.remove(i);
        let reply: BatchReply = wire::decode(&payload).expect("valid reply");
        match self.sender.handle_reply(reply, self.now) {
            Ok(done) => self.record(done),
            Err(LinkFailure::Stale(t) | LinkFailure::Forgotten(t)) => self.failed.extend(t),
        }
        self.transmit();
    }

    fn record(&mut self, done: Vec<Completion>) {
        for c in done {
            self.completions
                .entry(c.target.token)
                .or_default()
                .push(c.body);
        }
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        self.sender.handle_timeout(self.now);
        self.transmit();
    }

    /// Runs without loss until nothing is outstanding.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            self.transmit();
            if !self.to_receiver.is_empty() {
                self.deliver_request(0);
            } else if !self.app_pending.is_empty() {
                self.app_answer(0);
            } else if !self.to_sender.is_empty() {
                self.deliver_reply(0);
            } else if self.sender.outstanding() > 0 {
                self.tick(Duration::from_millis(100));
            } else {
                return;
            }
        }
        panic!("did not settle: {} outstanding", self.sender.outstanding());
    }

    /// Every message reached the application once, in push order, and
    /// every caller got its own reply once.
    fn check_exactly_once(&self) {
        let expected: Vec<u64> = (0..self.pushed).collect();
        assert_eq!(
            self.app_seen, expected,
            "application saw messages out of order or twice"
        );
        assert!(self.failed.is_empty(), "failed: {:?}", self.failed);
        for n in 0..self.pushed {
            assert_eq!(
                self.completions.get(&n).map(Vec::as_slice),
                Some(&[reply_to(n)][..]),
                "token {n}"
            );
        }
    }
}

#[test]
fn messages_of_one_turn_share_a_batch_and_replies_find_their_callers() {
    let mut sim = Sim::new(4);
    for _ in 0..3 {
        assert!(sim.push(10));
    }
    sim.transmit();
    assert_eq!(sim.to_receiver.len(), 1, "three small messages, one batch");
    sim.settle();
    sim.check_exactly_once();
    assert_eq!(sim.sender.stats().batches, 1);
    assert_eq!(sim.sender.stats().messages, 3);
}

#[test]
fn batches_are_cut_at_the_byte_limit_and_the_window_bounds_what_is_in_flight() {
    let mut sim = Sim::new(2);
    // 60-byte bodies + 11 bytes of envelope: two fit in 200 bytes.
    let mut pushed = 0;
    while sim.push(60) {
        pushed += 1;
        sim.transmit();
    }
    // The first two messages left at once, a batch each (the window had
    // room); then 3 x 71 bytes queued reach the 200-byte batch limit: the
    // link refuses more, so the caller's channel holds the rest.
    assert_eq!(sim.to_receiver.len(), 2);
    assert!(!sim.sender.accepts());
    assert_eq!(pushed, 5);
    // A reply frees a window slot: the queue leaves as batches of at most
    // 200 bytes (two messages, then one).
    sim.deliver_request(0);
    sim.app_answer(0);
    sim.deliver_reply(0);
    assert_eq!(sim.to_receiver.len(), 2, "batch 2 and the first new one");
    let req: BatchRequest = wire::decode(&sim.to_receiver[1]).unwrap();
    assert_eq!(req.items.iter().map(number).collect::<Vec<_>>(), [2, 3]);
    sim.settle();
    sim.check_exactly_once();
}

/// Issue #20 (cross-node cost): with a linger, a message finding the link
/// idle goes at once; those arriving while its batch is in flight wait
/// together until the linger ends or the reply comes back, then leave as
/// one batch.
#[test]
fn with_a_linger_messages_behind_a_batch_in_flight_leave_together() {
    let linger = Duration::from_micros(200);
    let t0 = Instant::now();
    let target = |token| ReplyTarget { lane: 0, token };
    let mut link = OutboundLink::new(
        node("a"),
        1,
        LinkConfig {
            linger,
            max_batch_bytes: 10_000,
            ..config()
        },
    );
    link.push(message(0, 10), target(0));
    let first: BatchRequest = wire::decode(&link.poll_transmit(t0).expect("at once")).unwrap();
    assert_eq!(first.items.len(), 1);
    for n in 1..=3 {
        link.push(message(n, 10), target(n));
        assert_eq!(link.poll_transmit(t0), None, "message {n} waits");
    }
    assert_eq!(link.poll_timeout(), Some(t0 + linger));
    let t1 = t0 + linger;
    link.handle_timeout(t1);
    let second: BatchRequest = wire::decode(&link.poll_transmit(t1).expect("linger over")).unwrap();
    assert_eq!(
        second.items.iter().map(number).collect::<Vec<_>>(),
        [1, 2, 3]
    );

    // The reply of every batch in flight ends the wait at once.
    link.push(message(4, 10), target(4));
    assert_eq!(link.poll_transmit(t1), None);
    for seq in [1, 2] {
        let items = if seq == 1 { 1 } else { 3 };
        let reply = BatchReply {
            from: node("b"),
            incarnation: 1,
            seq,
            outcome: super::batch::BatchOutcome::Done(vec![Bytes::new(); items]),
        };
        link.handle_reply(reply, t1).expect("replies");
    }
    let third: BatchRequest = wire::decode(&link.poll_transmit(t1).expect("link idle")).unwrap();
    assert_eq!(third.items.iter().map(number).collect::<Vec<_>>(), [4]);
}

#[test]
fn a_lost_request_is_resent_after_the_retry_interval() {
    let mut sim = Sim::new(4);
    sim.push(10);
    sim.transmit();
    sim.to_receiver.clear(); // lost
    sim.tick(Duration::from_millis(99));
    assert!(sim.to_receiver.is_empty(), "not before the interval");
    sim.tick(Duration::from_millis(1));
    assert_eq!(sim.to_receiver.len(), 1, "resent");
    sim.settle();
    sim.check_exactly_once();
    assert_eq!(sim.sender.stats().resent, 1);
}

#[test]
fn a_lost_reply_is_answered_from_the_cache_without_handing_the_batch_on_again() {
    let mut sim = Sim::new(4);
    sim.push(10);
    sim.transmit();
    sim.deliver_request(0);
    sim.app_answer(0);
    sim.to_sender.clear(); // reply lost
    sim.tick(Duration::from_millis(100));
    sim.settle();
    sim.check_exactly_once(); // app_seen has message 0 once
}

#[test]
fn a_batch_arriving_after_a_gap_waits_for_the_missing_one() {
    let mut sim = Sim::new(4);
    sim.push(150);
    sim.transmit();
    sim.push(150);
    sim.transmit();
    assert_eq!(sim.to_receiver.len(), 2);
    sim.to_receiver.remove(0); // batch 1 lost, batch 2 arrives first
    sim.now += Duration::from_millis(30); // past the resend guard
    sim.deliver_request(0);
    assert!(sim.app_seen.is_empty(), "batch 2 must not overtake batch 1");
    sim.deliver_reply(0); // OutOfOrder { expected: 1 } -> resend 1 and 2
    assert_eq!(sim.to_receiver.len(), 2);
    sim.settle();
    sim.check_exactly_once();
}

#[test]
fn a_restarted_receiver_takes_the_link_up_where_the_sender_stands() {
    let mut sim = Sim::new(4);
    for _ in 0..5 {
        sim.push(60);
        sim.transmit();
    }
    sim.settle();
    // The receiver restarts: its state is gone.
    sim.receiver = InboundLinks::new(node("b"));
    sim.push(60);
    sim.transmit();
    sim.settle();
    sim.check_exactly_once();
}

#[test]
fn an_older_incarnation_of_a_sender_is_told_it_is_stale() {
    let mut receiver = InboundLinks::new(node("b"));
    let req = |incarnation| BatchRequest {
        from: node("a"),
        incarnation,
        seq: 1,
        first_unacked: 1,
        items: vec![message(1, 8)],
    };
    assert!(matches!(receiver.handle(req(2)), Verdict::Deliver { .. }));
    let Verdict::Answer(bytes) = receiver.handle(req(1)) else {
        panic!("the old incarnation gets an answer");
    };
    let reply: BatchReply = wire::decode(&bytes).unwrap();
    assert_eq!(reply.outcome, super::batch::BatchOutcome::Stale);

    let mut old = OutboundLink::new(node("a"), 1, config());
    old.push(message(9, 8), ReplyTarget { lane: 3, token: 9 });
    let now = Instant::now();
    old.poll_transmit(now).unwrap();
    old.push(message(10, 8), ReplyTarget { lane: 3, token: 10 });
    assert_eq!(
        old.handle_reply(reply, now),
        Err(LinkFailure::Stale(vec![
            ReplyTarget { lane: 3, token: 9 },
            ReplyTarget { lane: 3, token: 10 }
        ]))
    );
    assert!(!old.accepts());
}

#[test]
fn the_retry_interval_doubles_up_to_its_cap_and_resets_on_a_reply() {
    let mut sim = Sim::new(4);
    sim.push(10);
    sim.transmit();
    let mut gaps = Vec::new();
    let mut last = sim.now;
    for _ in 0..6 {
        sim.to_receiver.clear();
        let due = sim.sender.poll_timeout().unwrap();
        gaps.push(due - last);
        last = due;
        sim.now = due;
        sim.sender.handle_timeout(due);
        sim.transmit();
        assert_eq!(sim.to_receiver.len(), 1);
    }
    let ms: Vec<u128> = gaps.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [100, 200, 400, 800, 800, 800]);
    sim.settle();
    sim.check_exactly_once();
    sim.push(10);
    sim.transmit();
    assert_eq!(
        sim.sender.poll_timeout().unwrap() - sim.now,
        Duration::from_millis(100)
    );
}

#[derive(Debug, Clone)]
enum Step {
    Push(usize),
    DeliverRequest(usize),
    DropRequest(usize),
    DuplicateRequest(usize),
    Answer(usize),
    DeliverReply(usize),
    DropReply(usize),
    Tick(u64),
    RestartReceiver,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (8usize..120).prop_map(Step::Push),
        6 => any::<usize>().prop_map(Step::DeliverRequest),
        1 => any::<usize>().prop_map(Step::DropRequest),
        1 => any::<usize>().prop_map(Step::DuplicateRequest),
        5 => any::<usize>().prop_map(Step::Answer),
        5 => any::<usize>().prop_map(Step::DeliverReply),
        1 => any::<usize>().prop_map(Step::DropReply),
        2 => (1u64..300).prop_map(Step::Tick),
        0 => Just(Step::RestartReceiver),
    ]
}

fn run(sim: &mut Sim, steps: &[Step], restarts: bool) {
    for s in steps {
        match *s {
            Step::Push(size) => {
                sim.push(size);
                sim.transmit();
            }
            Step::DeliverRequest(i) if !sim.to_receiver.is_empty() => {
                let i = i % sim.to_receiver.len();
                sim.deliver_request(i);
            }
            Step::DropRequest(i) if !sim.to_receiver.is_empty() => {
                let i = i % sim.to_receiver.len();
                sim.to_receiver.remove(i);
            }
            Step::DuplicateRequest(i) if !sim.to_receiver.is_empty() => {
                let i = i % sim.to_receiver.len();
                let p = sim.to_receiver[i].clone();
                sim.to_receiver.push(p);
            }
            Step::Answer(i) if !sim.app_pending.is_empty() => {
                let i = i % sim.app_pending.len();
                sim.app_answer(i);
            }
            Step::DeliverReply(i) if !sim.to_sender.is_empty() => {
                let i = i % sim.to_sender.len();
                sim.deliver_reply(i);
            }
            Step::DropReply(i) if !sim.to_sender.is_empty() => {
                let i = i % sim.to_sender.len();
                sim.to_sender.remove(i);
            }
            Step::Tick(ms) => sim.tick(Duration::from_millis(ms)),
            Step::RestartReceiver if restarts => {
                sim.receiver = InboundLinks::new(node("b"));
                // Work in progress dies with the process.
                sim.app_pending.clear();
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Loss, duplication and reordering in both directions, replies from
    /// the application in any order: each message is handed on exactly
    /// once and in order, and each caller gets its own reply once.
    #[test]
    fn exactly_once_in_order_under_loss_duplication_and_reordering(
        window in 1usize..=6,
        steps in proptest::collection::vec(step(), 1..400),
    ) {
        let mut sim = Sim::new(window);
        run(&mut sim, &steps, false);
        sim.settle();
        sim.check_exactly_once();
    }

    /// With receiver restarts (state lost) delivery is at least once: no
    /// message is lost, the first delivery of each comes in order, and
    /// every caller still gets exactly one reply.
    #[test]
    fn nothing_is_lost_across_receiver_restarts(
        steps in proptest::collection::vec(
            prop_oneof![9 => step(), 1 => Just(Step::RestartReceiver)], 1..300),
    ) {
        let mut sim = Sim::new(4);
        run(&mut sim, &steps, true);
        sim.settle();
        let mut first = BTreeMap::new();
        for (pos, n) in sim.app_seen.iter().enumerate() {
            first.entry(*n).or_insert(pos);
        }
        prop_assert_eq!(first.len() as u64, sim.pushed, "every message handed on");
        let order: Vec<u64> = {
            let mut v: Vec<(usize, u64)> = first.iter().map(|(n, p)| (*p, *n)).collect();
            v.sort();
            v.into_iter().map(|(_, n)| n).collect()
        };
        prop_assert_eq!(order, (0..sim.pushed).collect::<Vec<_>>());
        for n in 0..sim.pushed {
            prop_assert_eq!(sim.completions.get(&n).map(Vec::len), Some(1), "token {}", n);
            prop_assert_eq!(&sim.completions[&n][0], &reply_to(n));
        }
    }
}

#[test]
fn the_reply_cache_covers_the_largest_window() {
    // A sender with MAX_WINDOW batches in flight whose replies are all
    // lost gets every one of them answered from the cache.
    let mut cfg = config();
    cfg.window = MAX_WINDOW;
    cfg.max_batch_bytes = 20;
    let mut sim = Sim::new(MAX_WINDOW);
    sim.sender = OutboundLink::new(node("a"), 1, cfg);
    for _ in 0..MAX_WINDOW {
        sim.push(8);
        sim.transmit();
    }
    assert_eq!(sim.to_receiver.len(), MAX_WINDOW);
    while !sim.to_receiver.is_empty() {
        sim.deliver_request(0);
    }
    while !sim.app_pending.is_empty() {
        sim.app_answer(0);
    }
    sim.to_sender.clear(); // every reply lost
    sim.tick(Duration::from_millis(100));
    sim.settle();
    sim.check_exactly_once();
}

/// Found while writing the `cluster_wire` fuzz target: a forged batch
/// numbered `u64::MAX` made the receiver's `next` overflow (a panic in
/// debug builds, a wrap to 0 in release). The decoder refuses that
/// number; no real link gets near it.
#[test]
fn a_batch_numbered_u64_max_does_not_decode() {
    let forged = BatchRequest {
        from: node("a"),
        incarnation: 1,
        seq: u64::MAX,
        first_unacked: u64::MAX,
        items: vec![message(1, 8)],
    };
    let bytes = wire::to_bytes(&forged);
    assert!(matches!(
        wire::decode::<BatchRequest>(&bytes),
        Err(wire::WireError::Invalid { field: "seq", .. })
    ));
    let last_valid = BatchRequest {
        seq: u64::MAX - 1,
        first_unacked: u64::MAX - 1,
        ..forged
    };
    let decoded = wire::decode::<BatchRequest>(&wire::to_bytes(&last_valid)).unwrap();
    let mut receiver = InboundLinks::new(node("b"));
    assert!(matches!(receiver.handle(decoded), Verdict::Deliver { .. }));
}
