//! Rooms in the simulated world: what a seed plans (rooms, subscribers,
//! slow readers, small windows and histories), what each subscriber's
//! application saw, and the checker of the room guarantees.
//!
//! A **subscription episode** of one device and one room starts when the
//! application calls `subscribe` (from now) or `resume` (after a position
//! it processed) and ends at `unsubscribe`; reconnects, ROOMLAG, holes and
//! process crashes do not end it (the SDK resumes after its last sequence).
//! Within an episode the application must see every room sequence after
//! its starting position exactly once, in room order, without holes, except
//! across a SUBACK `Gap` whose skipped sequences the room's history really
//! no longer held (older than `room_resume_limit` behind the head, or older than
//! `room_max_age_ms`). An episode still open at the end must have reached
//! the room's head. Every message seen must be the stored message of that
//! sequence (publisher, QoS, payload, time), a QoS 0 publish (sequence 0)
//! one that was made; every stored room message must be a publish that was
//! made, stored once at QoS 2, and every acknowledged publish stored at the
//! sequence its SENDACK named. No SUBACK names a head the room never had.
//!
//! QoS 0 subscribers are held to the QoS 1 rule: the SDK resumes both after
//! their last sequence alike. The protocol promises a QoS 0 subscriber only
//! order; should the gateway ever drop QoS 0 room frames on purpose, relax
//! the hole rule for them in `check_follow`.

use std::collections::HashMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use surepush::log::MessageRecord;
use surepush::proto::{is_room, Qos, RoomPush, Seq, SubAck, SubResult, UserId, ROOM_BIT};

use super::world::World;

/// The room part of a seed's plan.
#[derive(Clone, Debug)]
pub struct RoomPlan {
    /// Room ids (1 or 2).
    pub rooms: Vec<u64>,
    /// Who follows which room, and how.
    pub follows: Vec<FollowPlan>,
    /// Share of sends that go to a room.
    pub publish_share: f64,
    /// Gateway: room messages kept in memory per shard (`room_history`).
    pub history: u32,
    /// Gateway: QoS 1 messages in flight per subscription (`room_window`).
    pub window: u32,
    /// Gateway: replay page size (`room_page`).
    pub page: u32,
    /// Gateway: replay age limit (`room_max_age_ms`, 0: none).
    pub max_age_ms: u64,
    /// Driver: a connection's unread output above which a room frame is not
    /// queued and the subscription lags (the runtime's `room_lag_bytes`).
    pub lag_bytes: usize,
    /// Per client: how long it takes to read one byte (ns; 0: reads at
    /// once). A slow reader's output queues up, so room frames lag.
    pub read_ns_per_byte: Vec<u64>,
    /// Share of room replay reads that fail in the fault phase.
    pub read_fail: f64,
    /// Mean time between unsubscribe/re-subscribe toggles (0: none).
    pub toggle_every_ms: u64,
}

/// One device following one room.
#[derive(Clone, Debug)]
pub struct FollowPlan {
    /// Index of the client (device) in the world.
    pub client: usize,
    pub room: u64,
    pub qos: Qos,
    /// 0: ROOMACK after every batch received (`ack_rooms` at once);
    /// otherwise `ack_every_ms` after the first unacknowledged message (the
    /// SDK's own ROOMACK every 32 messages aside). A device acknowledges
    /// all its rooms at once, as soon as one of them wants it.
    pub ack_every_ms: u64,
}

impl RoomPlan {
    /// Gateway: how far back a resume reaches (`room_resume_limit`): the
    /// small odd histories bound it too (SUBACK `Gap` by count); the even
    /// ones and the default leave it unbounded, so a subscriber behind a
    /// small ring is read back from the log.
    pub fn resume_limit(&self) -> u32 {
        if self.history < 1_000 && self.history % 2 == 1 {
            self.history
        } else {
            0
        }
    }

    /// Rooms for some seeds (`None`: this seed has none).
    pub fn from_seed(seed: u64, clients: usize) -> Option<RoomPlan> {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x2000_5EED);
        if !rng.random_bool(room_seed_share()) {
            return None;
        }
        let rooms: Vec<u64> = (1..=rng.random_range(1..=2u64))
            .map(|n| ROOM_BIT | n)
            .collect();
        let mut follows = Vec::new();
        let follow = |rng: &mut SmallRng, client, room| FollowPlan {
            client,
            room,
            qos: if rng.random_bool(0.7) {
                Qos::AtLeastOnce
            } else {
                Qos::AtMostOnce
            },
            ack_every_ms: if rng.random_bool(0.6) {
                0
            } else {
                rng.random_range(5..300)
            },
        };
        for &room in &rooms {
            for client in 0..clients {
                if rng.random_bool(0.6) {
                    follows.push(follow(&mut rng, client, room));
                }
            }
            // Every room has a follower: a room seed always checks one.
            if follows.last().is_none_or(|f| f.room != room) {
                let client = rng.random_range(0..clients);
                follows.push(follow(&mut rng, client, room));
            }
        }
        let read_ns_per_byte = (0..clients)
            .map(|_| {
                if rng.random_bool(0.3) {
                    rng.random_range(1_000..20_000)
                } else {
                    0
                }
            })
            .collect();
        Some(RoomPlan {
            rooms,
            follows,
            read_ns_per_byte,
            publish_share: rng.random_range(0.2..0.6),
            history: if rng.random_bool(0.4) {
                rng.random_range(2..12)
            } else {
                1_000
            },
            window: if rng.random_bool(0.5) {
                rng.random_range(1..6)
            } else {
                256
            },
            page: rng.random_range(1..6),
            max_age_ms: if rng.random_bool(0.25) {
                rng.random_range(100..3_000)
            } else {
                0
            },
            lag_bytes: rng.random_range(100..600),
            read_fail: if rng.random_bool(0.2) { 0.1 } else { 0.0 },
            toggle_every_ms: if rng.random_bool(0.6) {
                rng.random_range(50..1_500)
            } else {
                0
            },
        })
    }
}

/// Share of seeds with rooms: `SIM_ROOM_SHARE` (0 to 1) for a campaign on
/// rooms; the default 0.2 keeps the CI run of 10,000 seeds about as long as
/// before rooms (5.6% more simulated events).
fn room_seed_share() -> f64 {
    static SHARE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *SHARE.get_or_init(|| {
        std::env::var("SIM_ROOM_SHARE")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|share| (0.0..=1.0).contains(share))
            .unwrap_or(0.2)
    })
}

/// What the application of one following device saw, in order.
#[derive(Clone, Debug)]
pub enum RoomEntry {
    /// `subscribe` (`None`: from now) or `resume` after a position.
    Start(Option<Seq>),
    /// `unsubscribe`.
    Stop,
    /// A SUBACK event, with the virtual wall time (ms) it arrived.
    SubAck(SubAck, u64),
    /// A room message event.
    Msg(RoomPush),
}

/// One device's follow of one room, as its application keeps it.
#[derive(Clone, Debug)]
pub struct SimFollow {
    pub plan: FollowPlan,
    pub following: bool,
    /// The last position the application processed (what it resumes
    /// after), mirroring the SDK: the last message, or `first - 1` of the
    /// SUBACK that starts a subscription from now or skips a gap.
    pub pos: Option<Seq>,
    pub entries: Vec<RoomEntry>,
    /// ROOMLAG events seen.
    pub lags: u32,
}

impl SimFollow {
    pub fn new(plan: FollowPlan) -> SimFollow {
        SimFollow {
            plan,
            following: false,
            pos: None,
            entries: Vec::new(),
            lags: 0,
        }
    }

    pub fn start(&mut self, from: Option<Seq>) {
        self.following = true;
        self.pos = from;
        self.entries.push(RoomEntry::Start(from));
    }

    pub fn stop(&mut self) {
        self.following = false;
        self.entries.push(RoomEntry::Stop);
    }

    pub fn on_suback(&mut self, ack: SubAck, wall_ms: u64) {
        if self.following
            && ack.result != SubResult::Refused
            && self
                .pos
                .is_none_or(|p| ack.result == SubResult::Gap && p.next() < ack.first)
        {
            self.pos = Some(Seq(ack.first.0.saturating_sub(1)));
        }
        self.entries.push(RoomEntry::SubAck(ack, wall_ms));
    }

    pub fn on_message(&mut self, p: RoomPush) {
        if p.seq != Seq::ZERO {
            self.pos = Some(p.seq);
        }
        self.entries.push(RoomEntry::Msg(p));
    }

    /// SUBACK `Gap`s that moved this follower past lost history.
    pub fn gaps(&self) -> usize {
        let mut gaps = 0;
        let mut pos: Option<Seq> = None;
        for e in &self.entries {
            match e {
                RoomEntry::Start(from) => pos = *from,
                RoomEntry::SubAck(ack, _) if ack.result == SubResult::Gap => {
                    if pos.is_some_and(|p| p.next() < ack.first) {
                        gaps += 1;
                    }
                    pos = pos.max(Some(Seq(ack.first.0 - 1)));
                }
                RoomEntry::Msg(p) if p.seq != Seq::ZERO => pos = Some(p.seq),
                _ => {}
            }
        }
        gaps
    }

    /// Room messages (with a sequence) the application received.
    pub fn delivered(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e, RoomEntry::Msg(p) if p.seq != Seq::ZERO))
            .count()
    }
}

/// The room guarantees, checked after quiescence (see the module doc).
pub fn check(w: &World) -> Result<(), String> {
    let Some(plan) = &w.plan.rooms else {
        return Ok(());
    };
    let mut stored: HashMap<u64, Vec<MessageRecord>> = HashMap::new();
    for s in &w.storage {
        for m in s.durable_messages().filter(|m| is_room(m.inbox.0)) {
            stored.entry(m.inbox.0).or_default().push(m.clone());
        }
    }
    for &room in &plan.rooms {
        let log = stored.entry(room).or_default();
        log.sort_by_key(|m| m.seq);
        check_room_log(w, room, log)?;
    }
    for c in &w.clients {
        for f in &c.follows {
            let log = &stored[&f.plan.room];
            check_follow(w, plan, f, log)
                .map_err(|e| format!("{}/{} in room {:#x}: {e}", c.user, c.device, f.plan.room))?;
        }
    }
    Ok(())
}

/// The stored room is exactly the publishes made to it: sequences 1..head,
/// each a publish with its content, every acknowledged one present (once
/// at QoS 2) at the sequence its SENDACK named.
fn check_room_log(w: &World, room: u64, log: &[MessageRecord]) -> Result<(), String> {
    crate::numbered_from_one(log.iter().map(|m| m.seq))
        .map_err(|e| format!("room {room:#x}: stored message {e}"))?;
    let mut copies: HashMap<(UserId, u64, u64), u32> = HashMap::new();
    for m in log {
        let key = (m.from, m.from_device, m.client_msg_id);
        let sent = w
            .sent
            .get(&key)
            .ok_or_else(|| format!("room {room:#x}: stored {key:?} that was never sent"))?;
        if sent.to.0 != room || sent.qos != m.qos || sent.payload != m.payload {
            return Err(format!(
                "room {room:#x}: seq {} differs from the publish {key:?}",
                m.seq.0
            ));
        }
        *copies.entry((key.0, key.1 .0, key.2)).or_default() += 1;
    }
    for (key, sent) in &w.sent {
        if sent.to.0 != room || sent.qos == Qos::AtMostOnce {
            continue;
        }
        let Some(acked_seq) = w.room_acks.get(key) else {
            return Err(format!(
                "room {room:#x}: publish {key:?} never acknowledged after healing"
            ));
        };
        let n = copies.get(&(key.0, key.1 .0, key.2)).copied().unwrap_or(0);
        if n == 0 || (sent.qos == Qos::ExactlyOnce && n != 1) {
            return Err(format!(
                "room {room:#x}: {:?} publish {key:?} stored {n} times",
                sent.qos
            ));
        }
        let at = log.get((acked_seq.0 as usize).wrapping_sub(1));
        if at.is_none_or(|m| (m.from, m.from_device, m.client_msg_id) != *key) {
            return Err(format!(
                "room {room:#x}: publish {key:?} acknowledged as seq {} which holds {:?}",
                acked_seq.0,
                at.map(|m| (m.from, m.from_device, m.client_msg_id))
            ));
        }
    }
    Ok(())
}

/// One follower's episodes (see the module doc).
fn check_follow(
    w: &World,
    plan: &RoomPlan,
    f: &SimFollow,
    log: &[MessageRecord],
) -> Result<(), String> {
    let room = f.plan.room;
    let head = Seq(log.len() as u64);
    let mut pos: Option<Seq> = None;
    let mut active = false;
    for (i, e) in f.entries.iter().enumerate() {
        match e {
            RoomEntry::Start(from) => {
                pos = *from;
                active = true;
            }
            RoomEntry::Stop => active = false,
            RoomEntry::SubAck(ack, _) if ack.result == SubResult::Refused => {
                return Err(format!("entry {i}: SUBACK refused {ack:?}"));
            }
            RoomEntry::SubAck(ack, _) if ack.head > head || ack.first > ack.head.next() => {
                return Err(format!(
                    "entry {i}: {ack:?} beyond the room's head {}",
                    head.0
                ));
            }
            // A SUBACK of a subscription the application already left.
            RoomEntry::SubAck(..) if !active => {}
            RoomEntry::SubAck(ack, wall_ms) => match pos {
                None => pos = Some(Seq(ack.first.0.saturating_sub(1))),
                // An `Ok` that starts later answers an earlier SUBSCRIBE
                // from now: the SDK keeps its position (checked below).
                Some(p) if ack.result == SubResult::Gap && ack.first > p.next() => {
                    for s in p.next().0..ack.first.0 {
                        gone_from_history(plan, log, ack, *wall_ms, Seq(s))
                            .map_err(|e| format!("entry {i}: {e}"))?;
                    }
                    pos = Some(Seq(ack.first.0 - 1));
                }
                Some(_) => {}
            },
            RoomEntry::Msg(p) if p.room != room => {
                return Err(format!("entry {i}: a message of room {:#x}", p.room));
            }
            RoomEntry::Msg(p) if p.seq == Seq::ZERO => {
                qos0_publish_was_made(w, room, p).map_err(|e| format!("entry {i}: {e}"))?
            }
            RoomEntry::Msg(p) => {
                let expected = pos.map(Seq::next);
                if !active || expected != Some(p.seq) {
                    return Err(format!(
                        "entry {i}: seq {} delivered, expected {expected:?} (active {active})",
                        p.seq.0
                    ));
                }
                let m = log
                    .get(p.seq.0 as usize - 1)
                    .ok_or_else(|| format!("entry {i}: seq {} is not stored", p.seq.0))?;
                if (p.from, p.qos, p.ts_ms, &p.payload) != (m.from, m.qos, m.ts_ms, &m.payload) {
                    return Err(format!(
                        "entry {i}: seq {} differs from stored {m:?}",
                        p.seq.0
                    ));
                }
                pos = Some(p.seq);
            }
        }
    }
    if active && pos != Some(head) {
        return Err(format!("ends at {pos:?}, the room's head is {}", head.0));
    }
    Ok(())
}

/// A SUBACK `Gap` skipped `seq`: only if the history no longer held it.
fn gone_from_history(
    plan: &RoomPlan,
    log: &[MessageRecord],
    ack: &SubAck,
    wall_ms: u64,
    seq: Seq,
) -> Result<(), String> {
    let limit = u64::from(plan.resume_limit());
    let beyond_count = limit > 0 && seq.0 + limit <= ack.head.0;
    let m = log
        .get(seq.0 as usize - 1)
        .ok_or_else(|| format!("{ack:?} skipped seq {} that is not stored", seq.0))?;
    let too_old = plan.max_age_ms > 0 && m.ts_ms < wall_ms.saturating_sub(plan.max_age_ms);
    if beyond_count || too_old {
        Ok(())
    } else {
        Err(format!(
            "{ack:?} skipped seq {} that history still held (ts {} at {wall_ms})",
            seq.0, m.ts_ms
        ))
    }
}

fn qos0_publish_was_made(w: &World, room: u64, p: &RoomPush) -> Result<(), String> {
    let made = w.sent.iter().any(|((from, _, _), s)| {
        s.to.0 == room && s.qos == Qos::AtMostOnce && *from == p.from && s.payload == p.payload
    });
    if made && p.qos == Qos::AtMostOnce {
        Ok(())
    } else {
        Err(format!("QoS 0 room message {p:?} was never published"))
    }
}
