//! Share group assignment and redelivery (issue #21, MQTT-4.8.2-*).

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

fn member(n: u64) -> MemberId {
    MemberId {
        user: UserId(n),
        device: DeviceId(1),
    }
}

fn key(seq: u64) -> MessageKey {
    MessageKey {
        stream: 7,
        seq: Seq(seq),
    }
}

fn drain(g: &mut ShareGroup) -> Vec<ShareAction> {
    std::iter::from_fn(|| g.poll_action()).collect()
}

fn deliveries(actions: &[ShareAction]) -> Vec<(MemberId, MessageKey, bool)> {
    actions
        .iter()
        .filter_map(|a| match *a {
            ShareAction::Deliver {
                member, key, dup, ..
            } => Some((member, key, dup)),
            _ => None,
        })
        .collect()
}

/// Each of 2,000 QoS 1 messages goes to exactly one of three members that
/// keep up, evenly (least in flight, ties by turn), and the cursor ends at
/// the last one.
#[test]
fn each_message_reaches_one_member() {
    let mut g = ShareGroup::new();
    for m in 1..=3 {
        g.join(member(m), 10, None);
    }
    let mut got: BTreeMap<MessageKey, MemberId> = BTreeMap::new();
    let mut per: BTreeMap<MemberId, u32> = BTreeMap::new();
    for seq in 1..=2000 {
        g.offer(key(seq), Qos::AtLeastOnce);
        for (m, k, dup) in deliveries(&drain(&mut g)) {
            assert!(!dup);
            assert!(got.insert(k, m).is_none(), "{k:?} delivered twice");
            *per.entry(m).or_default() += 1;
            g.finished(m, k);
        }
    }
    drain(&mut g);
    assert_eq!(got.len(), 2000);
    assert_eq!(
        got.keys().map(|k| k.seq.0).collect::<Vec<_>>(),
        (1..=2000).collect::<Vec<_>>()
    );
    for (&m, &n) in &per {
        assert!((666..=667).contains(&n), "{m:?} got {n}");
    }
    assert_eq!(g.done_through(7), Seq(2000));
}

/// A member that stops acknowledging gets no more than its Receive
/// Maximum; the others take the rest.
#[test]
fn a_stalled_member_is_bounded_by_its_receive_maximum() {
    let mut g = ShareGroup::new();
    g.join(member(1), 3, None);
    g.join(member(2), 100, None);
    let mut to_one = 0;
    for seq in 1..=50 {
        g.offer(key(seq), Qos::AtLeastOnce);
    }
    for (m, k, _) in deliveries(&drain(&mut g)) {
        if m == member(1) {
            to_one += 1; // never acknowledged
        } else {
            g.finished(m, k);
        }
    }
    // Least in flight: once member 1 holds one, a member that acknowledges
    // at once gets the next ones first.
    for seq in 51..=60 {
        g.offer(key(seq), Qos::AtLeastOnce);
        for (m, k, _) in deliveries(&drain(&mut g)) {
            assert_eq!(m, member(2));
            g.finished(m, k);
        }
    }
    assert_eq!(to_one, 3);
    assert_eq!(g.waiting(), 0);
    // The cursor waits for the stalled member's first message.
    assert!(g.done_through(7) < Seq(60));
}

/// Bug guarded: a member killed mid-stream must not take its unacknowledged
/// QoS 1 messages with it; they go to the others, with their identity.
#[test]
fn a_lost_members_qos1_messages_go_to_the_others() {
    let mut g = ShareGroup::new();
    for m in 1..=3 {
        g.join(member(m), 5, None);
    }
    let mut held_by_1 = BTreeSet::new();
    for seq in 1..=12 {
        g.offer(key(seq), Qos::AtLeastOnce);
    }
    for (m, k, _) in deliveries(&drain(&mut g)) {
        if m == member(1) {
            held_by_1.insert(k);
        } else {
            g.finished(m, k);
        }
    }
    drain(&mut g);
    assert_eq!(held_by_1.len(), 4);
    g.disconnect(member(1), 0);
    let again = deliveries(&drain(&mut g));
    let keys: BTreeSet<MessageKey> = again.iter().map(|&(_, k, _)| k).collect();
    assert_eq!(keys, held_by_1);
    assert!(again.iter().all(|&(m, _, dup)| m != member(1) && !dup));
    for (m, k, _) in again {
        g.finished(m, k);
    }
    assert_eq!(g.done_through(7), Seq(12));
}

/// With nobody connected messages wait, bounded by the stream history, and
/// the first member to connect gets those still kept, in order.
#[test]
fn messages_wait_for_the_first_member() {
    let mut g = ShareGroup::new();
    for seq in 1..=10 {
        g.offer(key(seq), Qos::AtLeastOnce);
    }
    assert!(deliveries(&drain(&mut g)).is_empty());
    g.trim(7, Seq(4));
    let acts = drain(&mut g);
    let dropped: Vec<u64> = acts
        .iter()
        .filter_map(|a| match a {
            ShareAction::Dropped {
                key,
                reason: DropReason::TooOld,
            } => Some(key.seq.0),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, vec![1, 2, 3]);
    assert!(acts.contains(&ShareAction::Persist));
    assert_eq!(g.done_through(7), Seq(3));
    g.join(member(2), 100, None);
    let seqs: Vec<u64> = deliveries(&drain(&mut g))
        .iter()
        .map(|d| d.1.seq.0)
        .collect();
    assert_eq!(seqs, (4..=10).collect::<Vec<_>>());
}

/// QoS 2: a member whose connection drops completes its own messages when
/// it comes back ([MQTT-4.8.2-4]); nobody else gets them; one whose
/// session ends has them dropped, not re-sent ([MQTT-4.8.2-5]).
#[test]
fn qos2_stays_with_its_member() {
    let mut g = ShareGroup::new();
    g.join(member(1), 10, None);
    g.offer(key(1), Qos::ExactlyOnce);
    g.offer(key(2), Qos::ExactlyOnce);
    let first = drain(&mut g);
    // Recorded before it may leave.
    assert_eq!(first[0], ShareAction::Persist);
    assert_eq!(deliveries(&first).len(), 2);
    g.disconnect(member(1), 0);
    g.join(member(2), 10, None);
    assert!(deliveries(&drain(&mut g)).is_empty());
    g.join(member(1), 10, None);
    let again = deliveries(&drain(&mut g));
    assert_eq!(
        again,
        vec![(member(1), key(1), true), (member(1), key(2), true)]
    );
    g.finished(member(1), key(1));
    drain(&mut g);
    g.leave(member(1));
    let acts = drain(&mut g);
    assert!(deliveries(&acts).is_empty());
    assert!(acts.contains(&ShareAction::Dropped {
        key: key(2),
        reason: DropReason::Abandoned
    }));
    assert_eq!(g.done_through(7), Seq(2));
}

/// A message its member's shard gives back unsent goes to another member,
/// whatever its QoS.
#[test]
fn returned_messages_go_elsewhere() {
    let mut g = ShareGroup::new();
    g.join(member(1), 10, None);
    g.offer(key(1), Qos::ExactlyOnce);
    drain(&mut g);
    g.join(member(2), 10, None);
    g.returned(member(1), key(1));
    let acts = drain(&mut g);
    assert_eq!(deliveries(&acts), vec![(member(2), key(1), false)]);
}

/// A refusal (≥ 0x80) finishes the message: no other member gets it
/// ([MQTT-4.8.2-6]).
#[test]
fn a_refused_message_is_not_resent() {
    let mut g = ShareGroup::new();
    g.join(member(1), 10, None);
    g.join(member(2), 10, None);
    g.offer(key(1), Qos::AtLeastOnce);
    let (m, k, _) = deliveries(&drain(&mut g))[0];
    g.finished(m, k);
    g.disconnect(m, 0);
    assert!(deliveries(&drain(&mut g)).is_empty());
    assert_eq!(g.done_through(7), Seq(1));
}

/// After a restart the group skips what was finished, gives the QoS 2
/// messages handed to a member to that member only, and everything else to
/// whoever connects.
#[test]
fn restore_keeps_finished_and_pinned() {
    let mut g = ShareGroup::new();
    g.join(member(1), 10, None);
    g.join(member(2), 10, None);
    for seq in 1..=6 {
        g.offer(
            key(seq),
            if seq % 2 == 0 {
                Qos::ExactlyOnce
            } else {
                Qos::AtLeastOnce
            },
        );
    }
    let out = deliveries(&drain(&mut g));
    // Finish 1 and 3 (cursor moves to 1, 3 is finished above it).
    for &(m, k, _) in &out {
        if k.seq.0 == 1 || k.seq.0 == 3 {
            g.finished(m, k);
        }
    }
    let pinned: BTreeMap<MessageKey, MemberId> = out
        .iter()
        .filter(|d| d.1.seq.0 % 2 == 0)
        .map(|&(m, k, _)| (k, m))
        .collect();
    let state = g.durable();
    assert_eq!(state.streams[0].done_through, Seq(1));
    assert_eq!(state.streams[0].done, vec![Seq(3)]);

    let mut r = ShareGroup::restore(&state);
    for seq in 1..=6 {
        let qos = if seq % 2 == 0 {
            Qos::ExactlyOnce
        } else {
            Qos::AtLeastOnce
        };
        r.offer(key(seq), qos);
    }
    assert!(drain(&mut r).is_empty(), "nobody connected yet");
    r.join(member(3), 10, None);
    let to3: BTreeSet<u64> = deliveries(&drain(&mut r))
        .iter()
        .map(|d| d.1.seq.0)
        .collect();
    assert_eq!(to3, BTreeSet::from([5]));
    for (k, m) in pinned {
        r.join(m, 10, None);
        let again = deliveries(&drain(&mut r));
        assert!(again.contains(&(m, k, true)), "{k:?} back to {m:?}");
    }
}

/// Seeded model check: random offers, acknowledgements, refusals,
/// disconnects, session ends, give-backs and restarts. Whatever happens:
/// no QoS 2 message is finished by two members or handed to a second
/// member, no QoS 1 message is lost except by history, and once every
/// member is back and acknowledges, every message is finished or dropped
/// for a stated reason.
#[test]
fn seeded_model() {
    let seeds: u64 = std::env::var("SHARE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for seed in 0..seeds {
        model(seed);
    }
}

fn model(seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut g = ShareGroup::new();
    let members: Vec<MemberId> = (1..=3).map(member).collect();
    let mut connected: BTreeSet<MemberId> = BTreeSet::new();
    // What each member holds (handed, not finished): key -> qos.
    let mut holding: BTreeMap<MemberId, BTreeMap<MessageKey, Qos>> = BTreeMap::new();
    let mut qos_of: BTreeMap<MessageKey, Qos> = BTreeMap::new();
    let mut finished: BTreeSet<MessageKey> = BTreeSet::new();
    let mut dropped: BTreeMap<MessageKey, DropReason> = BTreeMap::new();
    let mut qos2_handed: BTreeMap<MessageKey, MemberId> = BTreeMap::new();
    let mut next = 1u64;
    let ctx = |s: &str| format!("seed {seed}: {s}");

    // What the last Persist wrote: a crash restores this, not the memory.
    let mut written = DurableShare::default();
    let apply = |g: &mut ShareGroup,
                 written: &mut DurableShare,
                 holding: &mut BTreeMap<MemberId, BTreeMap<MessageKey, Qos>>,
                 dropped: &mut BTreeMap<MessageKey, DropReason>,
                 qos2_handed: &mut BTreeMap<MessageKey, MemberId>,
                 connected: &BTreeSet<MemberId>| {
        for a in drain(g) {
            match a {
                ShareAction::Deliver {
                    member, key, qos, ..
                } => {
                    assert!(connected.contains(&member), "seed {seed}: to a gone member");
                    if qos == Qos::ExactlyOnce {
                        let first = *qos2_handed.entry(key).or_insert(member);
                        assert_eq!(first, member, "seed {seed}: QoS 2 {key:?} to two members");
                    }
                    holding.entry(member).or_default().insert(key, qos);
                }
                ShareAction::Dropped { key, reason } => {
                    assert!(dropped.insert(key, reason).is_none());
                }
                ShareAction::Persist => *written = g.durable(),
            }
        }
    };

    for _ in 0..400 {
        match rng.random_range(0..100) {
            0..40 => {
                let qos = if rng.random_bool(0.5) {
                    Qos::ExactlyOnce
                } else {
                    Qos::AtLeastOnce
                };
                let k = key(next);
                next += 1;
                qos_of.insert(k, qos);
                g.offer(k, qos);
            }
            40..70 => {
                let m = members[rng.random_range(0..3)];
                if let Some(h) = holding.get_mut(&m) {
                    if let Some(&k) = h.keys().nth(rng.random_range(0..h.len().max(1))) {
                        h.remove(&k);
                        assert!(finished.insert(k), "{}", ctx("finished twice"));
                        g.finished(m, k);
                    }
                }
            }
            70..78 => {
                let m = members[rng.random_range(0..3)];
                if !connected.contains(&m) {
                    connected.insert(m);
                    // A reconnect is sent its QoS 2 again: forget the old.
                    holding.remove(&m);
                    g.join(m, rng.random_range(1..6), None);
                }
            }
            78..86 => {
                let m = members[rng.random_range(0..3)];
                connected.remove(&m);
                holding.remove(&m);
                g.disconnect(m, 0);
            }
            86..90 => {
                let m = members[rng.random_range(0..3)];
                connected.remove(&m);
                holding.remove(&m);
                g.leave(m);
            }
            90..95 => {
                let m = members[rng.random_range(0..3)];
                if let Some(h) = holding.get_mut(&m) {
                    if let Some(&k) = h.keys().next() {
                        h.remove(&k);
                        if qos_of[&k] == Qos::ExactlyOnce {
                            qos2_handed.remove(&k);
                        }
                        // Given back because its connection closed.
                        g.returned(m, k);
                        g.disconnect(m, 0);
                        connected.remove(&m);
                        holding.remove(&m);
                    }
                }
            }
            _ => {
                // Restart: members' connections are gone with the process.
                let bytes = written.encode();
                g = ShareGroup::restore(&DurableShare::decode(&bytes).expect("own bytes"));
                connected.clear();
                holding.clear();
                for (&k, &q) in &qos_of {
                    g.offer(k, q);
                }
            }
        }
        apply(
            &mut g,
            &mut written,
            &mut holding,
            &mut dropped,
            &mut qos2_handed,
            &connected,
        );
    }
    // Everyone back, acknowledging everything until quiet.
    for &m in &members {
        if !connected.contains(&m) {
            connected.insert(m);
            holding.remove(&m);
            g.join(m, 5, None);
        }
    }
    apply(
        &mut g,
        &mut written,
        &mut holding,
        &mut dropped,
        &mut qos2_handed,
        &connected,
    );
    loop {
        let mut any = false;
        for m in &members {
            for (k, _) in std::mem::take(holding.entry(*m).or_default()) {
                finished.insert(k);
                g.finished(*m, k);
                any = true;
            }
        }
        apply(
            &mut g,
            &mut written,
            &mut holding,
            &mut dropped,
            &mut qos2_handed,
            &connected,
        );
        if !any {
            break;
        }
    }
    assert_eq!(g.waiting(), 0, "{}", ctx("left waiting"));
    for (k, q) in &qos_of {
        let done = finished.contains(k);
        match dropped.get(k) {
            None => assert!(done, "{}", ctx(&format!("{k:?} lost"))),
            Some(DropReason::Abandoned) => {
                assert_eq!(*q, Qos::ExactlyOnce, "{}", ctx("QoS 1 abandoned"))
            }
            Some(r) => panic!("{}", ctx(&format!("{k:?} dropped: {r:?}"))),
        }
    }
    assert_eq!(g.done_through(7), Seq(next - 1), "{}", ctx("cursor"));
}

fn sample_state() -> DurableShare {
    DurableShare {
        streams: vec![
            DurableStream {
                stream: 7,
                done_through: Seq(41),
                done: vec![Seq(43), Seq(44)],
                sent_qos2: vec![(Seq(42), member(2)), (Seq(45), member(3))],
            },
            DurableStream {
                stream: u64::MAX,
                done_through: Seq::ZERO,
                done: Vec::new(),
                sent_qos2: Vec::new(),
            },
        ],
        members: vec![
            DurableMember {
                id: member(2),
                session: MemberSession {
                    expiry_s: Some(2),
                    gone_ms: Some(1_700_000_000_123),
                },
            },
            DurableMember {
                id: member(3),
                session: MemberSession::default(),
            },
        ],
    }
}

#[test]
fn durable_state_round_trips() {
    let state = sample_state();
    assert_eq!(DurableShare::decode(&state.encode()), Ok(state));
    let empty = DurableShare::default();
    assert_eq!(DurableShare::decode(&empty.encode()), Ok(empty));
}

/// Bytes from the log are input: every cut, a trailing byte and another
/// version are typed errors, never a panic.
#[test]
fn bad_durable_bytes_are_errors() {
    let bytes = sample_state().encode();
    for cut in 0..bytes.len() {
        assert_eq!(
            DurableShare::decode(&bytes[..cut]),
            Err(ShareStateError::Truncated),
            "cut at {cut}"
        );
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        DurableShare::decode(&long),
        Err(ShareStateError::Trailing(1))
    );
    let mut other = bytes;
    other[0] = 9;
    assert_eq!(
        DurableShare::decode(&other),
        Err(ShareStateError::Version(9))
    );
    let mut flags = sample_state().encode();
    let has = flags.len() - 13 - 29; // member 2's `has` byte
    flags[has] = 4;
    assert_eq!(DurableShare::decode(&flags), Err(ShareStateError::Flags(4)));
    // A huge count with nothing behind it allocates nothing up front.
    let mut huge = vec![durable::VERSION];
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(DurableShare::decode(&huge), Err(ShareStateError::Truncated));
}

/// A state written by version 1 (no member sessions) still reads: its
/// members never expire, as before.
#[test]
fn version_1_state_reads_without_member_sessions() {
    let mut state = sample_state();
    let mut bytes = state.encode();
    bytes[0] = 1;
    bytes.truncate(bytes.len() - 4 - 2 * 29);
    state.members.clear();
    assert_eq!(DurableShare::decode(&bytes), Ok(state.clone()));
    let restored = ShareGroup::restore(&state);
    assert_eq!(restored.away().count(), 0, "nothing expires");
}

/// A member holding a QoS 2 message has its session in the durable state
/// (its expiry, and when its connection closed): a restored group knows
/// when it ends. One holding nothing is not waited for.
#[test]
fn a_restored_group_knows_when_an_away_members_session_ends() {
    let mut g = ShareGroup::new();
    g.join(member(1), 10, Some(2));
    g.join(member(2), 10, Some(5));
    g.offer(key(1), Qos::ExactlyOnce);
    let out = deliveries(&drain(&mut g));
    let holder = out[0].0;
    let idle = if holder == member(1) {
        member(2)
    } else {
        member(1)
    };
    g.disconnect(idle, 7);
    assert!(drain(&mut g).is_empty(), "nothing held: nothing to write");
    g.disconnect(holder, 1_000);
    assert!(
        drain(&mut g).contains(&ShareAction::Persist),
        "the close of a member holding a QoS 2 message is durable"
    );
    let back = DurableShare::decode(&g.durable().encode()).expect("own bytes");
    let r = ShareGroup::restore(&back);
    let expiry_s = if holder == member(1) { 2 } else { 5 };
    let session = MemberSession {
        expiry_s: Some(expiry_s),
        gone_ms: Some(1_000),
    };
    assert_eq!(r.away().collect::<Vec<_>>(), vec![(holder, session)]);
    // A member that never expires is not away for good.
    let mut g = ShareGroup::new();
    g.join(member(1), 10, None);
    g.offer(key(1), Qos::ExactlyOnce);
    drain(&mut g);
    g.disconnect(member(1), 1);
    assert_eq!(ShareGroup::restore(&g.durable()).away().count(), 0);
}

/// The model check's restarts go through the bytes too.
#[test]
fn a_group_restored_from_bytes_is_the_same() {
    let mut g = ShareGroup::new();
    g.join(member(1), 4, None);
    for seq in 1..=6 {
        g.offer(key(seq), Qos::ExactlyOnce);
    }
    let out = deliveries(&drain(&mut g));
    g.finished(out[2].0, out[2].1);
    let state = g.durable();
    let back = DurableShare::decode(&state.encode()).expect("own bytes");
    assert_eq!(ShareGroup::restore(&back).durable(), state);
}

/// After a restart the caller reads each stream again and keeps what the
/// group holds: a QoS 2 message restored as sent to a member is held (the
/// member's join must find it to give it again), and one read again only
/// after that member joined goes to it on [`ShareGroup::resend`].
#[test]
fn a_restored_qos2_message_is_held_and_resent_to_a_member_that_joined_first() {
    let mut g = ShareGroup::new();
    g.join(member(1), 10, None);
    g.offer(key(1), Qos::ExactlyOnce);
    drain(&mut g);
    let mut r = ShareGroup::restore(&g.durable());
    r.join(member(1), 10, None);
    // The join gives it again, but the caller has not read it yet.
    assert_eq!(deliveries(&drain(&mut r)), vec![(member(1), key(1), true)]);
    assert!(r.offer(key(1), Qos::ExactlyOnce), "held: keep the message");
    assert!(drain(&mut r).is_empty(), "an offer alone sends nothing");
    r.resend(key(1));
    assert_eq!(deliveries(&drain(&mut r)), vec![(member(1), key(1), true)]);
    // Finished: not held any more, nothing to resend.
    assert!(r.finished(member(1), key(1)));
    assert!(!r.offer(key(1), Qos::ExactlyOnce));
    drain(&mut r);
    r.resend(key(1));
    assert!(drain(&mut r).is_empty());
}
