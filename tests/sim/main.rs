//! Deterministic simulation of the delivery core and the client SDK.
//!
//! Each seed builds a world (1-3 shards, a few users with 1-2 devices each;
//! some seeds add a group and some 1-2 rooms with subscribers), runs a fault
//! phase (frames dropped, duplicated and reordered, connections killed, the
//! whole process crashing and losing its unsynced log tail, failed syncs,
//! unsubscribe and re-subscribe, slow readers), then heals the network and
//! runs until every send is finished, every device holds its whole inbox
//! and every room subscriber has reached its room's head. The checkers
//! then verify the delivery guarantees (`check` here, rooms in
//! [`rooms::check`]). A failure prints its seed; replay it with
//! `SIM_SEED=<seed> cargo nextest run --test sim replay`.

mod link;
mod mqtt;
mod plan;
mod rooms;
mod storage;
mod world;

use std::collections::HashMap;

use surepush::proto::{is_room, Qos};
use world::World;

const MS: u64 = 1_000_000;

/// Counts from one run, summed over seeds for the report.
#[derive(Default, Debug)]
struct Summary {
    sends: u64,
    deliveries: u64,
    crashes: u64,
    steps: u64,
    /// Room messages (with a sequence) handed to subscribers' applications.
    room_deliveries: u64,
    /// ROOMLAGs seen by subscribers (window or driver).
    room_lags: u64,
    /// Of those, room frames the driver refused (a slow reader's output).
    driver_lags: u64,
    /// SUBACK `Gap`s that moved a subscriber past lost history.
    room_gaps: u64,
    /// MQTT publishes, application deliveries, and QoS 2 PUBLISHes the
    /// clients recognised by packet id (`mqtt.rs`).
    mqtt_publishes: u64,
    mqtt_deliveries: u64,
    mqtt_qos2_repeats: u64,
    /// Of the MQTT deliveries, those on free-form topics (topic streams).
    mqtt_topic_deliveries: u64,
}

fn run_seed(seed: u64) -> Result<Summary, String> {
    let mut w = World::new(seed);
    let fault_end = w.plan.fault_phase_ms * MS;
    w.run_until(fault_end, 2_000_000);
    w.heal();
    // Heal: run until quiescent, in bounded slices of virtual time.
    let deadline = fault_end + 600_000 * MS;
    while !w.quiescent() {
        if w.now >= deadline || w.steps >= 3_000_000 {
            return Err(format!(
                "no progress: not quiescent at t={}ms after {} steps\n{}\nplan: {:?}",
                w.now / MS,
                w.steps,
                w.describe(),
                w.plan
            ));
        }
        let until = w.now + 50 * MS;
        w.run_until(until, 3_000_000);
    }
    check(&w)
        .and_then(|()| rooms::check(&w))
        .and_then(|()| mqtt::check(&w))
        .map_err(|e| format!("{e}\nplan: {:?}", w.plan))?;
    let follows = || w.clients.iter().flat_map(|c| &c.follows);
    let (mqtt_publishes, mqtt_deliveries, mqtt_qos2_repeats, mqtt_topic_deliveries) =
        mqtt::summary(&w);
    Ok(Summary {
        mqtt_publishes,
        mqtt_deliveries,
        mqtt_qos2_repeats,
        mqtt_topic_deliveries,
        sends: w.sent.len() as u64,
        deliveries: w.clients.iter().map(|c| c.delivered.len() as u64).sum(),
        crashes: u64::from(w.crashes),
        steps: w.steps,
        room_deliveries: follows().map(|f| f.delivered() as u64).sum(),
        room_lags: follows().map(|f| u64::from(f.lags)).sum(),
        driver_lags: w.driver_lags,
        room_gaps: follows().map(|f| f.gaps() as u64).sum(),
    })
}

/// The guarantees, checked after quiescence.
fn check(w: &World) -> Result<(), String> {
    let heads = w.durable_heads();
    for c in &w.clients {
        let who = format!("{}/{}", c.user, c.device);
        let history: Vec<_> = c.older.iter().chain(&c.delivered).cloned().collect();
        // Per-user order: the device saw its inbox 1, 2, 3, ... without gap or repeat.
        if std::env::var("SIM_TRACE").is_ok() {
            eprintln!(
                "{who}: {:?}",
                history
                    .iter()
                    .map(|p| (p.seq.0, p.echo))
                    .collect::<Vec<_>>()
            );
        }
        numbered_from_one(history.iter().map(|p| p.seq))
            .map_err(|e| format!("{who}: delivery {e}"))?;
        let head = heads.get(&c.user).copied().unwrap_or(0);
        if history.len() as u64 != head {
            return Err(format!(
                "{who}: holds {} of {head} stored messages",
                history.len()
            ));
        }
        // Nothing delivered that was never sent, and each copy is faithful.
        let mut per_send: HashMap<(u64, u64, u64), u32> = HashMap::new();
        for p in &history {
            let key = (p.from, p.from_device, p.client_msg_id);
            let sent = w
                .sent
                .get(&key)
                .ok_or_else(|| format!("{who}: delivered {key:?} that was never sent"))?;
            if p.to != sent.to || p.qos != sent.qos {
                return Err(format!("{who}: {key:?} delivered with wrong header {p:?}"));
            }
            if p.echo {
                if (p.from, p.from_device) != (c.user, c.device) || !p.payload.is_empty() {
                    return Err(format!("{who}: bad echo {p:?}"));
                }
            } else if p.payload != sent.payload {
                return Err(format!("{who}: {key:?} payload differs"));
            }
            let member = sent.to == plan::GROUP && w.plan.group_members.contains(&c.user);
            if sent.to != c.user && p.from != c.user && !member {
                return Err(format!("{who}: received {key:?} addressed to {}", sent.to));
            }
            *per_send.entry((key.0 .0, key.1 .0, key.2)).or_default() += 1;
        }
        for p in &c.ephemeral {
            let key = (p.from, p.from_device, p.client_msg_id);
            match w.sent.get(&key) {
                Some(s) if s.qos == Qos::AtMostOnce && s.payload == p.payload => {}
                _ => return Err(format!("{who}: QoS 0 delivery {key:?} was never sent")),
            }
        }
        // Completeness and exactly-once: every stored send addressed to this
        // user, or sent by this user, is in this device's history.
        for (key, sent) in &w.sent {
            // Room publishes are checked by `rooms::check`.
            if sent.qos == Qos::AtMostOnce || is_room(sent.to.0) {
                continue;
            }
            let member = sent.to == plan::GROUP && w.plan.group_members.contains(&c.user);
            let relevant = sent.to == c.user || key.0 == c.user || member;
            if !relevant {
                continue;
            }
            if !w.acked.contains_key(key) {
                return Err(format!(
                    "{who}: send {key:?} never acknowledged after healing"
                ));
            }
            let n = per_send
                .get(&(key.0 .0, key.1 .0, key.2))
                .copied()
                .unwrap_or(0);
            match sent.qos {
                Qos::ExactlyOnce if n != 1 => {
                    return Err(format!("{who}: QoS 2 send {key:?} delivered {n} times"));
                }
                Qos::AtLeastOnce if n == 0 => {
                    return Err(format!("{who}: acknowledged QoS 1 send {key:?} lost"));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Sequences 1, 2, 3, ... without gap or repeat; else which one is not.
fn numbered_from_one(seqs: impl Iterator<Item = surepush::proto::Seq>) -> Result<(), String> {
    for (i, seq) in seqs.enumerate() {
        if seq.0 != i as u64 + 1 {
            return Err(format!("#{i} has seq {} (expected {})", seq.0, i + 1));
        }
    }
    Ok(())
}

fn run_range(seeds: std::ops::Range<u64>) {
    let mut total = Summary::default();
    let mut failures = Vec::new();
    for seed in seeds.clone() {
        match run_seed(seed) {
            Ok(s) => {
                total.sends += s.sends;
                total.deliveries += s.deliveries;
                total.crashes += s.crashes;
                total.steps += s.steps;
                total.room_deliveries += s.room_deliveries;
                total.room_lags += s.room_lags;
                total.driver_lags += s.driver_lags;
                total.room_gaps += s.room_gaps;
                total.mqtt_publishes += s.mqtt_publishes;
                total.mqtt_deliveries += s.mqtt_deliveries;
                total.mqtt_qos2_repeats += s.mqtt_qos2_repeats;
                total.mqtt_topic_deliveries += s.mqtt_topic_deliveries;
            }
            Err(e) => {
                eprintln!("seed {seed} FAILED: {e}");
                failures.push(seed);
                if failures.len() >= 5 {
                    break;
                }
            }
        }
    }
    println!(
        "seeds {}..{}: {} sends, {} deliveries, {} crashes, {} steps; rooms: {} deliveries, {} lags ({} by the driver), {} gaps; MQTT: {} publishes, {} deliveries ({} on free-form topics), {} QoS 2 repeats recognised by packet id",
        seeds.start,
        seeds.end,
        total.sends,
        total.deliveries,
        total.crashes,
        total.steps,
        total.room_deliveries,
        total.room_lags,
        total.driver_lags,
        total.room_gaps,
        total.mqtt_publishes,
        total.mqtt_deliveries,
        total.mqtt_topic_deliveries,
        total.mqtt_qos2_repeats
    );
    assert!(
        failures.is_empty(),
        "failing seeds {failures:?}; replay one with SIM_SEED=<seed> cargo nextest run --test sim replay"
    );
    assert!(
        total.deliveries > 0,
        "the simulation delivered nothing: the harness is broken"
    );
}

/// Seeds per chunk; `SIM_SEEDS` scales the whole run (default 10,000 seeds).
fn chunk(index: u64) -> std::ops::Range<u64> {
    let total: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let per = total.div_ceil(CHUNKS);
    index * per..((index + 1) * per).min(total)
}

const CHUNKS: u64 = 8;

#[test]
fn seeds_chunk_0() {
    run_range(chunk(0));
}
#[test]
fn seeds_chunk_1() {
    run_range(chunk(1));
}
#[test]
fn seeds_chunk_2() {
    run_range(chunk(2));
}
#[test]
fn seeds_chunk_3() {
    run_range(chunk(3));
}
#[test]
fn seeds_chunk_4() {
    run_range(chunk(4));
}
#[test]
fn seeds_chunk_5() {
    run_range(chunk(5));
}
#[test]
fn seeds_chunk_6() {
    run_range(chunk(6));
}
#[test]
fn seeds_chunk_7() {
    run_range(chunk(7));
}

/// Replays one seed from `SIM_SEED` (no-op without it).
#[test]
fn replay() {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        match run_seed(seed) {
            Ok(s) => println!("seed {seed}: {s:?}"),
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
}

/// A world of `seed` run without faults until quiescent.
fn healed_world(seed: u64) -> World {
    let mut w = World::new(seed);
    w.heal();
    let mut guard = 0;
    while !w.quiescent() && guard < 20_000 {
        let until = w.now + 50 * MS;
        w.run_until(until, 3_000_000);
        guard += 1;
    }
    w
}

/// The checker must be able to fail: a world whose storage silently drops
/// a durable message is caught.
#[test]
fn checker_catches_a_lost_message() {
    // Find a seed that stored something, then sabotage the device history.
    for seed in 0..50 {
        let mut w = healed_world(seed);
        if let Some(c) = w.clients.iter_mut().find(|c| c.delivered.len() >= 2) {
            c.delivered.remove(0);
            assert!(check(&w).is_err(), "a missing message must be reported");
            return;
        }
    }
    panic!("no seed produced deliveries");
}

/// The room checker must be able to fail: a room message lost, repeated,
/// reordered, altered or skipped by an unjustified SUBACK `Gap` in what a
/// QoS 1 subscriber's application saw is reported, and so is a publish
/// acknowledged with a sequence that holds another message.
#[test]
fn room_checker_catches_lost_repeated_reordered_altered_and_skipped_room_messages() {
    use rooms::RoomEntry;
    use surepush::proto::{SubAck, SubResult};

    // A seed whose rooms keep their whole history, with a QoS 1 follower
    // that received two room messages one right after the other.
    let msg = |e: &RoomEntry| matches!(e, RoomEntry::Msg(p) if p.seq.0 > 0);
    let (seed, client, follow, at) = (0..500)
        .find_map(|seed| {
            let w = healed_world(seed);
            let rooms = w.plan.rooms.as_ref()?;
            if rooms.resume_limit() > 0 || rooms.max_age_ms > 0 {
                return None;
            }
            w.clients.iter().enumerate().find_map(|(c, client)| {
                client.follows.iter().enumerate().find_map(|(f, follow)| {
                    let e = &follow.entries;
                    let at = (1..e.len()).find(|&i| msg(&e[i - 1]) && msg(&e[i]))?;
                    (follow.plan.qos == Qos::AtLeastOnce).then_some((seed, c, f, at))
                })
            })
        })
        .expect("a seed with a QoS 1 room follower and two room messages in a row");
    assert_eq!(
        rooms::check(&healed_world(seed)),
        Ok(()),
        "the unsabotaged world passes"
    );
    type Sabotage = fn(&mut Vec<RoomEntry>, usize);
    let sabotages: [(&str, Sabotage); 5] = [
        ("lost", |e, at| {
            e.remove(at);
        }),
        ("repeated", |e, at| {
            let m = e[at].clone();
            e.insert(at, m);
        }),
        ("reordered", |e, at| e.swap(at - 1, at)),
        ("altered", |e, at| {
            if let RoomEntry::Msg(p) = &mut e[at] {
                p.payload = bytes::Bytes::from_static(b"forged");
            }
        }),
        ("skipped by an unjustified Gap", |e, at| {
            let RoomEntry::Msg(p) = e.remove(at) else {
                unreachable!("a message")
            };
            let ack = SubAck {
                room: p.room,
                head: p.seq,
                first: p.seq.next(),
                result: SubResult::Gap,
            };
            e.insert(at, RoomEntry::SubAck(ack, p.ts_ms));
        }),
    ];
    for (what, sabotage) in sabotages {
        let mut w = healed_world(seed);
        sabotage(&mut w.clients[client].follows[follow].entries, at);
        assert!(
            rooms::check(&w).is_err(),
            "a room message {what} must be reported"
        );
    }
    // A publish acknowledged with a sequence that does not hold it.
    let mut w = healed_world(seed);
    let (key, seq) = w
        .room_acks
        .iter()
        .map(|(k, s)| (*k, *s))
        .min()
        .expect("an acknowledged room publish");
    w.room_acks.insert(key, seq.next());
    assert!(
        rooms::check(&w).is_err(),
        "a publish acknowledged with another's sequence must be reported"
    );
}

/// The MQTT checker must be able to fail: a delivery lost, a QoS 2
/// delivery repeated, two deliveries of a connection swapped, a payload
/// altered, a message stored twice, and a session the gateway lost are
/// each reported.
#[test]
fn mqtt_checker_catches_lost_repeated_reordered_altered_and_unfound() {
    use surepush::mqtt::QoS;
    // A seed whose MQTT device got two QoS 2 inbox messages in a row on
    // one connection.
    let (seed, client, at) = (0..2_000)
        .find_map(|seed| {
            let plan = plan::Plan::from_seed(seed);
            plan.mqtt.as_ref()?;
            let w = healed_world(seed);
            w.mqtt.clients.iter().enumerate().find_map(|(c, client)| {
                let g = &client.got;
                let at = (1..g.len()).find(|&i| {
                    g[i - 1].qos == QoS::ExactlyOnce
                        && g[i].qos == QoS::ExactlyOnce
                        && g[i - 1].conn == g[i].conn
                        && g[i - 1].topic == g[i].topic
                })?;
                Some((seed, c, at))
            })
        })
        .expect("a seed with two QoS 2 MQTT deliveries in a row");
    assert_eq!(
        mqtt::check(&healed_world(seed)),
        Ok(()),
        "the unsabotaged world passes"
    );
    type Sabotage = fn(&mut world::World, usize, usize);
    let sabotages: [(&str, Sabotage); 6] = [
        ("lost", |w, c, at| {
            w.mqtt.clients[c].got.remove(at);
        }),
        ("repeated", |w, c, at| {
            let g = w.mqtt.clients[c].got[at].clone();
            w.mqtt.clients[c].got.insert(at, g);
        }),
        ("reordered", |w, c, at| {
            w.mqtt.clients[c].got.swap(at - 1, at)
        }),
        ("altered", |w, c, at| {
            w.mqtt.clients[c].got[at].payload = bytes::Bytes::from_static(b"forged");
        }),
        ("stored twice", |w, c, at| {
            let payload = w.mqtt.clients[c].got[at].payload.clone();
            for s in &mut w.storage {
                s.duplicate_message_with(&payload);
            }
        }),
        ("a session not found", |w, c, _| {
            w.mqtt.clients[c]
                .errors
                .push("a confirmed session was not found".into());
        }),
    ];
    for (what, sabotage) in sabotages {
        let mut w = healed_world(seed);
        sabotage(&mut w, client, at);
        assert!(
            mqtt::check(&w).is_err(),
            "an MQTT delivery {what} must be reported"
        );
    }
}
