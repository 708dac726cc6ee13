//! Node-to-node messaging over a real nats-server (issue #20): batching,
//! order per peer, exactly-once delivery with identity checks, back-
//! pressure, a NATS restart mid-traffic, room fan-out, subject
//! subscriptions across a NATS restart, and lanes driven from glommio
//! executors.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::future::block_on;
use support::*;
use surepush_cluster::messaging::batch::Envelope;
use surepush_cluster::messaging::{Lane, LaneEvent, Reply, Request, TrySendError};
use surepush_cluster::wire::{kinds, MessageKind, Reader, Wire, WireError};
use surepush_cluster::NodeId;

/// The test message: who sent it (node, lane) and its number on that
/// lane's stream, plus filler.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Probe {
    node: String,
    lane: u16,
    seq: u64,
    filler: Bytes,
}

impl Wire for Probe {
    const KIND: MessageKind = MessageKind(kinds::FIRST_TEST_KIND + 1);
    const VERSION: u8 = 1;

    fn encode_body(&self, out: &mut BytesMut) {
        surepush_cluster::wire::put_str(out, &self.node);
        out.put_u16_le(self.lane);
        out.put_u64_le(self.seq);
        surepush_cluster::wire::put_blob(out, &self.filler);
    }

    fn decode_body(_v: u8, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Probe {
            node: r.str()?.to_owned(),
            lane: r.u16()?,
            seq: r.u64()?,
            filler: r.blob()?,
        })
    }
}

fn probe(node: &str, lane: u16, seq: u64, size: usize) -> Envelope {
    Envelope::of(
        seq as u32,
        &Probe {
            node: node.into(),
            lane,
            seq,
            filler: Bytes::from(vec![7u8; size]),
        },
    )
}

/// The receiver's answer to a probe: names it, so the sender can check
/// it got the reply to *its* message.
fn answer(p: &Probe) -> Bytes {
    Bytes::from(format!("{}/{}/{}", p.node, p.lane, p.seq))
}

/// Serves a lane on its own thread: answers every request, records
/// (sender node, sender lane, seq) in arrival order; stops when `stop`
/// has a message and the lane is idle.
fn serve(lane: Lane, stop: flume::Receiver<()>) -> thread::JoinHandle<Vec<(String, u16, u64)>> {
    thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            match lane.events().recv_timeout(Duration::from_millis(50)) {
                Ok(LaneEvent::Requests { from, requests }) => {
                    assert!(!requests.is_empty(), "an event carries requests");
                    let mut answers = Vec::new();
                    for Request { envelope, reply } in requests {
                        let p: Probe = envelope.decode().expect("a probe");
                        assert_eq!(p.node, from.as_str(), "sender identity");
                        seen.push((p.node.clone(), p.lane, p.seq));
                        answers.push((reply, answer(&p)));
                    }
                    block_on(lane.reply_all(answers)).expect("reply");
                }
                Ok(other) => panic!("unexpected event {other:?}"),
                Err(_) if stop.try_recv().is_ok() => return seen,
                Err(_) => {}
            }
        }
    })
}

/// Sends `count` probes from `lane` to `to`, tokens = seq, and collects
/// the replies; checks each reply is the one for its own probe.
fn send_and_collect(
    mut lane: Lane,
    me: &'static str,
    to: NodeId,
    count: u64,
    size: usize,
) -> thread::JoinHandle<Lane> {
    thread::spawn(move || {
        let idx = lane.index();
        let mut replies: HashMap<u64, Bytes> = HashMap::new();
        let mut sent = 0;
        while replies.len() < count as usize {
            // Interleave sending and draining, as a shard's loop does.
            while sent < count {
                match lane.try_send(&to, probe(me, idx, sent, size), sent) {
                    Ok(()) => sent += 1,
                    Err(TrySendError::Full(_)) => break,
                    Err(TrySendError::Stopped(_)) => panic!("stopped"),
                }
            }
            match lane.events().recv_timeout(WAIT) {
                Ok(LaneEvent::Replies { from, replies: got }) => {
                    assert_eq!(from, to);
                    for Reply { token, body } in got {
                        assert!(replies.insert(token, body).is_none(), "token {token} twice");
                    }
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => panic!("no reply ({e}); {} of {count}", replies.len()),
            }
        }
        for seq in 0..count {
            assert_eq!(
                replies[&seq],
                Bytes::from(format!("{me}/{idx}/{seq}")),
                "reply identity"
            );
        }
        lane
    })
}

/// Each (sender, lane) stream arrived complete, once, in order.
fn assert_streams(seen: &[(String, u16, u64)], expected: &[(&str, u16, u64)]) {
    let mut streams: BTreeMap<(String, u16), Vec<u64>> = BTreeMap::new();
    for (n, l, s) in seen {
        streams.entry((n.clone(), *l)).or_default().push(*s);
    }
    for (node, lane, count) in expected {
        let got = streams
            .remove(&((*node).to_owned(), *lane))
            .unwrap_or_default();
        assert_eq!(got, (0..*count).collect::<Vec<_>>(), "stream {node}/{lane}");
    }
    assert!(streams.is_empty(), "unexpected streams {streams:?}");
}

#[test]
fn messages_arrive_once_in_order_per_peer_in_shared_batches() {
    let nats = NatsServer::start();
    let mut a = join(node_config(&nats, "a", 16, 2));
    let mut b = join(node_config(&nats, "b", 16, 1));
    let (stop, stopped) = flume::bounded(1);
    let server = serve(b.take_lanes().remove(0), stopped);
    let senders: Vec<_> = a
        .take_lanes()
        .into_iter()
        .map(|lane| send_and_collect(lane, "a", node_id("b"), 2_000, 40))
        .collect();
    for s in senders {
        s.join().expect("sender");
    }
    stop.send(()).unwrap();
    let seen = server.join().expect("server");
    assert_streams(&seen, &[("a", 0, 2_000), ("a", 1, 2_000)]);
    let sent = a.stats().messages_sent.load(Ordering::Relaxed);
    let batches = a.stats().batches_sent.load(Ordering::Relaxed);
    assert_eq!(sent, 4_000);
    // Both lanes share one link to b, and what queues up while a window
    // is full leaves together.
    assert!(batches * 4 <= sent, "{batches} batches for {sent} messages");
    assert_eq!(b.stats().batches_received.load(Ordering::Relaxed), batches);
}

#[test]
fn a_full_peer_queue_makes_senders_wait_and_loses_nothing() {
    let nats = NatsServer::start();
    let mut cfg = node_config(&nats, "a", 16, 1);
    cfg.messaging.peer_queue = 8;
    cfg.messaging.link.window = 2;
    cfg.messaging.link.max_batch_bytes = 1024;
    let mut a = join(cfg);
    let mut lane = a.take_lanes().remove(0);
    // b is not running yet: everything for it waits in a.
    let to = node_id("b");
    let mut accepted = 0u64;
    while let Ok(()) = lane.try_send(&to, probe("a", 0, accepted, 100), accepted) {
        accepted += 1;
        assert!(accepted < 1_000, "the queue never filled");
    }
    // Blocking sends of 100 more wait: they can fill whatever the link
    // pulls meanwhile, never more than the pipeline holds.
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(accepted));
    let (done_tx, done) = flume::bounded(1);
    let total = accepted + 100;
    let counter = progress.clone();
    let blocked = thread::spawn(move || {
        for seq in accepted..total {
            block_on(lane.send(&to, probe("a", 0, seq, 100), seq)).unwrap();
            counter.store(seq + 1, Ordering::Relaxed);
        }
        done_tx.send(()).unwrap();
        lane
    });
    assert!(
        done.recv_timeout(Duration::from_millis(300)).is_err(),
        "sends must wait"
    );
    // The pipeline: the peer queue (8), at most one batch of ~127-byte
    // messages in the link beyond 1 KiB (9), the window (2 batches of 8).
    let held = progress.load(Ordering::Relaxed);
    assert!(
        held <= 8 + 9 + 16,
        "{held} messages taken while the peer is away"
    );
    assert_eq!(
        a.stats().batches_sent.load(Ordering::Relaxed),
        2,
        "the window"
    );
    // ...until b starts and drains.
    let mut b = join(node_config(&nats, "b", 16, 1));
    let (stop, stopped) = flume::bounded(1);
    let server = serve(b.take_lanes().remove(0), stopped);
    done.recv_timeout(WAIT)
        .expect("sends complete once b drains");
    let lane = blocked.join().unwrap();
    let mut replies = std::collections::HashSet::new();
    while (replies.len() as u64) < total {
        match lane.events().recv_timeout(WAIT).expect("reply") {
            LaneEvent::Replies { replies: got, .. } => {
                for Reply { token, body } in got {
                    assert_eq!(body, Bytes::from(format!("a/0/{token}")));
                    assert!(replies.insert(token), "reply {token} twice");
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    stop.send(()).unwrap();
    assert_streams(&server.join().unwrap(), &[("a", 0, total)]);
}

#[test]
fn traffic_survives_a_nats_restart_without_loss_or_duplicates() {
    let mut nats = NatsServer::start();
    let mut a = join(node_config(&nats, "a", 16, 1));
    let mut b = join(node_config(&nats, "b", 16, 1));
    let (stop, stopped) = flume::bounded(1);
    let server = serve(b.take_lanes().remove(0), stopped);
    let count = 3_000;
    let sender = send_and_collect(a.take_lanes().remove(0), "a", node_id("b"), count, 200);
    // Restart NATS (SIGKILL) once traffic flows.
    let flowing = Instant::now() + WAIT;
    while b.stats().batches_received.load(Ordering::Relaxed) < 5 {
        assert!(Instant::now() < flowing, "no traffic");
        thread::sleep(Duration::from_millis(2));
    }
    nats.kill();
    thread::sleep(Duration::from_millis(300)); // NATS stays down a while
    nats.restart();
    sender
        .join()
        .expect("every probe answered, with its own reply");
    stop.send(()).unwrap();
    assert_streams(&server.join().unwrap(), &[("a", 0, count)]);
    assert!(
        a.stats().batches_resent.load(Ordering::Relaxed) > 0,
        "the restart cost resends (else it did not hit traffic)"
    );
}

#[test]
fn a_room_push_reaches_each_subscribed_lane_once_and_not_its_origin() {
    let nats = NatsServer::start();
    let mut a = join(node_config(&nats, "a", 16, 1));
    let mut b = join(node_config(&nats, "b", 16, 2));
    let mut c = join(node_config(&nats, "c", 16, 1));
    let room = (1u64 << 62) | 9;
    let a_lane = a.take_lanes().remove(0);
    let b_lanes = b.take_lanes();
    let c_lane = c.take_lanes().remove(0);
    // a subscribes too: it must not receive its own pushes.
    let subscribed: Vec<&Lane> = b_lanes.iter().chain([&c_lane, &a_lane]).collect();
    for lane in &subscribed {
        block_on(lane.subscribe_room(room)).unwrap();
    }
    // Subscriptions are set up on each node's cluster thread; a ping
    // through every lane's command queue orders after them.
    for (i, lane) in subscribed.iter().enumerate() {
        block_on(lane.ping(i as u64)).unwrap();
        assert_eq!(
            lane.events().recv_timeout(WAIT).unwrap(),
            LaneEvent::Pong { token: i as u64 }
        );
    }
    // NATS sends SUB to the server asynchronously: a publishes probes
    // until every subscribed lane of b and c has seen one.
    let others: Vec<&Lane> = b_lanes.iter().chain([&c_lane]).collect();
    let mut ready = vec![false; others.len()];
    let deadline = Instant::now() + WAIT;
    while !ready.iter().all(|r| *r) {
        assert!(Instant::now() < deadline, "room subscriptions never took");
        block_on(a_lane.publish_room(room, Bytes::from_static(b"probe"))).unwrap();
        for (i, lane) in others.iter().enumerate() {
            if lane
                .events()
                .recv_timeout(Duration::from_millis(20))
                .is_ok()
            {
                ready[i] = true;
            }
        }
    }
    for i in 0..200u32 {
        let payload = Bytes::from(format!("push {i}"));
        block_on(a_lane.publish_room(room, payload)).unwrap();
    }
    // NATS keeps one publisher's order: after the last probe, the pushes
    // follow complete and in order.
    for lane in &others {
        let mut next = 0u32;
        while next < 200 {
            match lane.events().recv_timeout(WAIT).expect("push") {
                LaneEvent::Room { room: r, payload } => {
                    assert_eq!(r, room);
                    if payload == Bytes::from_static(b"probe") && next == 0 {
                        continue;
                    }
                    assert_eq!(payload, Bytes::from(format!("push {next}")));
                    next += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    // The origin's own subscription does not echo its pushes.
    block_on(a_lane.ping(99)).unwrap();
    assert_eq!(
        a_lane.events().recv_timeout(WAIT).unwrap(),
        LaneEvent::Pong { token: 99 }
    );
    // b has one NATS subscription for the room, handing each push to
    // both its lanes: every push counts twice there, once on c.
    let (on_b, on_c) = (
        b.stats().room_pushes_received.load(Ordering::Relaxed),
        c.stats().room_pushes_received.load(Ordering::Relaxed),
    );
    assert_eq!(on_b % 2, 0);
    assert!(on_c >= 200 && on_b >= 400, "b {on_b}, c {on_c}");
}

/// Publishes probes on `id`'s subject from `from` until `to` gets one
/// (NATS takes a SUB asynchronously), then `count` pushes that must
/// follow complete and in order.
fn pushes_reach(from: &Lane, to: &Lane, id: u64, count: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "subject of {id} never delivered");
        block_on(from.publish_room(id, Bytes::from_static(b"probe"))).unwrap();
        match to.events().recv_timeout(Duration::from_millis(20)) {
            Ok(LaneEvent::Room { room, .. }) if room == id => break,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => {}
        }
    }
    for i in 0..count {
        block_on(from.publish_room(id, Bytes::from(format!("{id} push {i}")))).unwrap();
    }
    let mut next = 0;
    while next < count {
        match to.events().recv_timeout(WAIT).expect("push") {
            LaneEvent::Room { room, payload } if room == id => {
                if payload == Bytes::from_static(b"probe") && next == 0 {
                    continue;
                }
                assert_eq!(payload, Bytes::from(format!("{id} push {next}")));
                next += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Issue #20: a NATS restart loses no subject subscription of a lane (a
/// room's, a watched user's presence subject), nor one asked for while
/// NATS is down; the subscriber's node reports the reconnect.
#[test]
fn subject_subscriptions_survive_a_nats_restart() {
    let mut nats = NatsServer::start();
    let mut a = join(node_config(&nats, "a", 16, 1));
    let mut b = join(node_config(&nats, "b", 16, 1));
    let reconnects = b.take_reconnects().expect("reconnects, once");
    let (from, to) = (a.take_lanes().remove(0), b.take_lanes().remove(0));
    let (room, user, later) = ((1u64 << 62) | 9, 77u64, (1u64 << 62) | 10);
    for id in [room, user] {
        block_on(to.subscribe_room(id)).unwrap();
        pushes_reach(&from, &to, id, 10);
    }

    nats.kill();
    block_on(to.subscribe_room(later)).unwrap();
    // The subscribe went through the lane's command queue before the ping.
    block_on(to.ping(1)).unwrap();
    assert_eq!(
        to.events().recv_timeout(WAIT).unwrap(),
        LaneEvent::Pong { token: 1 }
    );
    nats.restart();
    reconnects
        .recv_timeout(WAIT)
        .expect("the reconnect reported");
    for id in [room, user, later] {
        pushes_reach(&from, &to, id, 50);
    }
}

/// Issue #20: a presence state the publish queue cannot take is not lost
/// (a presence subject has no gap repair, unlike a room's): the latest
/// state of each user is queued again as the queue drains.
#[test]
fn presence_states_a_full_publish_queue_cannot_take_still_arrive() {
    let nats = NatsServer::start();
    let mut a = join(node_config(&nats, "a", 16, 1));
    let mut b = join(node_config(&nats, "b", 16, 1));
    let mut tight = node_config(&nats, "c", 16, 1);
    tight.messaging.publish_queue = 1;
    let mut c = join(tight);
    let (prober, to, from) = (
        a.take_lanes().remove(0),
        b.take_lanes().remove(0),
        c.take_lanes().remove(0),
    );
    let users: Vec<u64> = (1000..1100).collect();
    for &user in &users {
        block_on(to.subscribe_room(user)).unwrap();
        pushes_reach(&prober, &to, user, 0);
    }
    // One state per user, back to back: the cluster thread takes the
    // commands faster than its publisher drains a queue of one.
    for &user in &users {
        block_on(from.publish_room(user, Bytes::from(format!("{user} online")))).unwrap();
    }
    let mut missing: BTreeSet<u64> = users.iter().copied().collect();
    let deadline = Instant::now() + WAIT;
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match to.events().recv_timeout(left) {
            Ok(LaneEvent::Room { room, payload }) => {
                if payload == format!("{room} online") {
                    missing.remove(&room);
                }
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => panic!("states never arrived for {missing:?}"),
        }
    }
    let kept = c.stats().presence_states_delayed.load(Ordering::Relaxed);
    assert!(
        kept > 0,
        "the queue never overflowed: the test proved nothing"
    );
}

#[test]
fn lanes_work_from_glommio_executors() {
    let nats = NatsServer::start();
    let mut a = join(node_config(&nats, "a", 16, 1));
    let mut b = join(node_config(&nats, "b", 16, 1));
    let mut a_lane = a.take_lanes().remove(0);
    let b_lane = b.take_lanes().remove(0);
    let count = 500u64;
    let server = glommio::LocalExecutorBuilder::default()
        .name("shard-b")
        .spawn(move || async move {
            let mut answered = 0;
            while answered < count {
                match b_lane.events().recv_async().await.unwrap() {
                    LaneEvent::Requests { requests, .. } => {
                        for Request { envelope, reply } in requests {
                            let p: Probe = envelope.decode().unwrap();
                            b_lane.reply(reply, answer(&p)).await.unwrap();
                            answered += 1;
                        }
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
        .unwrap();
    let client = glommio::LocalExecutorBuilder::default()
        .name("shard-a")
        .spawn(move || async move {
            let to = NodeId::parse("b").unwrap();
            for seq in 0..count {
                a_lane.send(&to, probe("a", 0, seq, 16), seq).await.unwrap();
            }
            let mut got = Vec::new();
            while got.len() < count as usize {
                match a_lane.events().recv_async().await.unwrap() {
                    LaneEvent::Replies { replies, .. } => {
                        for Reply { token, body } in replies {
                            assert_eq!(body, Bytes::from(format!("a/0/{token}")));
                            got.push(token);
                        }
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            got.sort_unstable();
            got
        })
        .unwrap();
    let got = client.join().unwrap();
    server.join().unwrap();
    assert_eq!(got, (0..count).collect::<Vec<_>>());
}

#[test]
fn a_node_restarted_under_a_new_incarnation_fences_the_old_one() {
    // Two processes with the same id: the peer, having seen the newer
    // incarnation, answers the older one `Stale`, and the older one's
    // messages fail instead of being delivered.
    let nats = NatsServer::start();
    let mut b = join(node_config(&nats, "b", 16, 1));
    let (stop, stopped) = flume::bounded(1);
    let server = serve(b.take_lanes().remove(0), stopped);
    let mut old = join(node_config(&nats, "a", 16, 1));
    thread::sleep(Duration::from_millis(2)); // a later incarnation (µs clock)
    let mut new = join(node_config(&nats, "a", 16, 1));
    assert!(new.incarnation() > old.incarnation());
    let new_lane = send_and_collect(new.take_lanes().remove(0), "a", node_id("b"), 10, 8);
    new_lane.join().unwrap();
    let mut old_lane = old.take_lanes().remove(0);
    block_on(old_lane.send(&node_id("b"), probe("a", 0, 99, 8), 99)).unwrap();
    match old_lane.events().recv_timeout(WAIT).unwrap() {
        LaneEvent::Failed { token, to, reason } => {
            assert_eq!((token, to.as_str()), (99, "b"));
            assert_eq!(reason, surepush_cluster::messaging::FailReason::Stale);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    stop.send(()).unwrap();
    let seen = server.join().unwrap();
    assert!(
        !seen.iter().any(|(_, _, s)| *s == 99),
        "stale message delivered"
    );
}

/// Issue #20: with a NATS `max_payload` (8 KiB) below the link's batch
/// size (16 KiB) and replies three times their requests, request batches
/// are cut below the limit and each batch's reply goes in chunks; every
/// probe gets its own reply, whole, once.
#[test]
fn batches_and_replies_stay_within_a_small_max_payload() {
    const COUNT: u64 = 200;
    const PAD: usize = 3000;
    let nats = NatsServer::start_with("max_payload: 8192\n");
    let mut a = join(node_config(&nats, "a", 16, 1));
    let mut b = join(node_config(&nats, "b", 16, 1));
    let lane = b.take_lanes().remove(0);
    let (stop, stopped) = flume::bounded::<()>(1);
    let server = thread::spawn(move || loop {
        match lane.events().recv_timeout(Duration::from_millis(50)) {
            Ok(LaneEvent::Requests { requests, .. }) => {
                for Request { envelope, reply } in requests {
                    let p: Probe = envelope.decode().expect("a probe");
                    let mut body = answer(&p).to_vec();
                    body.resize(body.len() + PAD, b'r');
                    block_on(lane.reply(reply, Bytes::from(body))).expect("reply");
                }
            }
            Ok(other) => panic!("unexpected event {other:?}"),
            Err(_) if stopped.try_recv().is_ok() => return,
            Err(_) => {}
        }
    });
    let mut lane = a.take_lanes().remove(0);
    let to = node_id("b");
    let mut replies: HashMap<u64, Bytes> = HashMap::new();
    let mut sent = 0;
    while replies.len() < COUNT as usize {
        while sent < COUNT {
            match lane.try_send(&to, probe("a", 0, sent, 1024), sent) {
                Ok(()) => sent += 1,
                Err(TrySendError::Full(_)) => break,
                Err(TrySendError::Stopped(_)) => panic!("stopped"),
            }
        }
        match lane.events().recv_timeout(WAIT) {
            Ok(LaneEvent::Replies { replies: got, .. }) => {
                for Reply { token, body } in got {
                    assert!(replies.insert(token, body).is_none(), "token {token} twice");
                }
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!(
                "no reply ({e}); {} of {COUNT}; a {:?} b {:?}",
                replies.len(),
                a.stats(),
                b.stats()
            ),
        }
    }
    for seq in 0..COUNT {
        let name = format!("a/0/{seq}");
        let body = &replies[&seq];
        assert_eq!(body.len(), name.len() + PAD, "reply {seq} whole");
        assert_eq!(&body[..name.len()], name.as_bytes(), "reply identity");
    }
    stop.send(()).unwrap();
    server.join().expect("server");
    let batches = a.stats().batches_sent.load(Ordering::Relaxed);
    let bytes = a.stats().request_bytes_sent.load(Ordering::Relaxed);
    assert!(batches > 1, "{batches} batches");
    assert!(
        bytes / batches <= 8192,
        "{bytes} bytes in {batches} batches"
    );
    assert_eq!(a.stats().batches_resent.load(Ordering::Relaxed), 0);
    let chunked = b.stats().replies_chunked.load(Ordering::Relaxed);
    assert!(chunked > 0, "no reply needed chunks");
}
