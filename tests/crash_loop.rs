//! Crash loop (issue 9): kill -9 the real gateway at random moments while a
//! sender pushes QoS 1 and QoS 2 traffic across shards, restart it on the
//! same data dir, and check at the end that the receiver holds every
//! acknowledged message (in fact every message, once the sender's retries
//! finish), in order, exactly once at QoS 2, and nothing that was never sent.
//!
//! `CRASH_CYCLES` sets the number of kills (default 20; the manual mode
//! runs 1,000). The kill points come from a seeded RNG (`CRASH_SEED`).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use surepush::client::{BlockingClient, ClientSession, Event};
use surepush::core::shard_of;
use surepush::proto::{Qos, Seq, UserId};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn kill_9_loop_loses_and_duplicates_nothing() {
    let cycles = env_u64("CRASH_CYCLES", 20);
    let seed = env_u64("CRASH_SEED", 7);
    let mut rng = SmallRng::seed_from_u64(seed);
    // Tiny write-behind pieces: kills land while pieces are in flight on
    // the blocking thread, not only between commits.
    let mut server = TestServer::start(2, "write_behind_kib = 4");
    let sender = (1..100u64).find(|u| shard_of(UserId(*u), 2) == 0).unwrap();
    let receiver = (1..100u64).find(|u| shard_of(UserId(*u), 2) == 1).unwrap();
    let mut session = ClientSession::new(server.client_config(sender, 1), Some(Seq::ZERO));
    let mut sent: HashMap<u64, (Qos, Bytes)> = HashMap::new();
    let mut acked: HashSet<u64> = HashSet::new();
    let mut n = 0u32;
    let mut in_flight_at_kills = 0usize;
    for cycle in 0..cycles {
        let mut c =
            BlockingClient::resume(server.addr, session, Duration::from_secs(5)).expect("connect");
        // Live first (the unfinished sends of the last cycle go out again).
        let live = c
            .wait_for(Duration::from_secs(10), |e| {
                if let Event::SendAcked(a) = e {
                    acked.insert(a.client_msg_id);
                }
                matches!(e, Event::CaughtUp)
            })
            .expect("io");
        assert!(live.is_some(), "cycle {cycle}: session never became live");
        let kill_after = rng.random_range(0..40u32);
        let mut this_cycle = Vec::new();
        for i in 0..40u32 {
            if i == kill_after {
                // Timing jitter (not synchronisation): let some group
                // commits be under way when the process dies.
                std::thread::sleep(Duration::from_micros(rng.random_range(0..3_000)));
                in_flight_at_kills += this_cycle.iter().filter(|id| !acked.contains(*id)).count();
                server.kill9();
                break;
            }
            let qos = if rng.random_bool(0.5) {
                Qos::ExactlyOnce
            } else {
                Qos::AtLeastOnce
            };
            // 2 KiB, so a cycle fills many blocks.
            let payload = Bytes::from(format!("c{cycle}-m{n}-{}", "x".repeat(2000)));
            n += 1;
            match c.send(UserId(receiver), qos, payload.clone()) {
                Ok(id) => {
                    sent.insert(id, (qos, payload));
                    this_cycle.push(id);
                }
                Err(_) => break,
            }
            while let Ok(Some(e)) = c.next_event(Duration::ZERO) {
                if let Event::SendAcked(a) = e {
                    acked.insert(a.client_msg_id);
                }
            }
        }
        // Drain what arrived before the kill (if it came), then take the
        // session (with its unfinished sends) to the next process.
        while let Ok(Some(e)) = c.next_event(Duration::from_millis(20)) {
            if let Event::SendAcked(a) = e {
                acked.insert(a.client_msg_id);
            }
        }
        session = c.into_session();
        if server.child.is_none() {
            server.spawn();
        }
    }
    let acked_before_kills = acked.len();
    // Let the sender finish every retry against the last incarnation.
    let mut c =
        BlockingClient::resume(server.addr, session, Duration::from_secs(5)).expect("connect");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while c.session().unfinished_sends() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "sends never finished: {}",
            c.session().unfinished_sends()
        );
        if let Some(Event::SendAcked(a)) = c.next_event(Duration::from_millis(100)).expect("io") {
            acked.insert(a.client_msg_id);
        }
    }
    // The receiver replays its whole inbox.
    let (_rx, events) = server.connect(receiver, 1, Some(Seq::ZERO));
    let got = common::messages(events);
    let mut count: HashMap<u64, u32> = HashMap::new();
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.seq, Seq(i as u64 + 1), "inbox order without gaps");
        let (qos, payload) = sent
            .get(&p.client_msg_id)
            .expect("delivered a message that was never sent");
        assert_eq!(
            (&p.payload, p.qos),
            (payload, *qos),
            "content of {}",
            p.client_msg_id
        );
        *count.entry(p.client_msg_id).or_default() += 1;
    }
    for (id, (qos, _)) in &sent {
        let c = count.get(id).copied().unwrap_or(0);
        assert!(
            c >= 1,
            "send {id} lost (acknowledged before a kill: {})",
            acked.contains(id)
        );
        if *qos == Qos::ExactlyOnce {
            assert_eq!(c, 1, "QoS 2 send {id} delivered {c} times");
        }
    }
    let dup_qos1 = count.values().filter(|c| **c > 1).count();
    println!(
        "crash loop: {cycles} kills, {} sends, {acked_before_kills} acknowledged during the cycles, \
         {in_flight_at_kills} sent but not yet acknowledged to the client when a kill hit, {} deliveries checked, {dup_qos1} QoS 1 duplicates",
        sent.len(),
        got.len()
    );
}
