//! Wheel tests: a reference model under random operations, and the edges
//! (stale handles, far futures, wraparound, memory per timer).

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const TICK: u64 = 1_000_000; // 1 ms

fn wheel() -> TimerWheel<u64> {
    TimerWheel::new(Duration::from_nanos(TICK))
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64),
    Cancel(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop_oneof![
            0u64..200 * TICK,
            0u64..100_000 * TICK,
            0u64..(1 << 40) * TICK,
        ].prop_map(Op::Insert),
        2 => any::<usize>().prop_map(Op::Cancel),
        3 => prop_oneof![0u64..5 * TICK, 0u64..50_000 * TICK, 0u64..(1 << 37) * TICK].prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Same expirations as a BTreeMap model; never early; at most one tick late.
    #[test]
    fn matches_a_reference_model(ops in proptest::collection::vec(op(), 1..200)) {
        let mut w = wheel();
        let mut model: BTreeMap<u64, u64> = BTreeMap::new(); // id -> deadline_ns
        let mut ids: Vec<(u64, TimerId)> = Vec::new();
        let mut now = 0u64;
        let mut next_id = 0u64;
        for op in ops {
            match op {
                Op::Insert(delta) => {
                    let deadline = now + delta;
                    let id = w.insert(deadline, next_id);
                    model.insert(next_id, deadline);
                    ids.push((next_id, id));
                    next_id += 1;
                }
                Op::Cancel(i) if !ids.is_empty() => {
                    let (value, id) = ids[i % ids.len()];
                    let got = w.cancel(id);
                    let expected = model.remove(&value).map(|_| value);
                    prop_assert_eq!(got, expected);
                }
                Op::Cancel(_) => {}
                Op::Advance(delta) => {
                    // Check next_deadline never skips a due timer.
                    if let (Some(nd), Some(earliest)) = (w.next_deadline(), model.values().min()) {
                        prop_assert!(nd <= earliest.div_ceil(TICK) * TICK, "next_deadline {} after earliest {}", nd, earliest);
                    }
                    now += delta;
                    let mut fired = Vec::new();
                    w.advance(now, &mut fired);
                    for v in &fired {
                        let deadline = model.remove(v).expect("fired timer was pending");
                        prop_assert!(deadline <= now, "fired early: deadline {} now {}", deadline, now);
                    }
                    // Everything due by the previous tick boundary has fired.
                    let due_late: Vec<_> = model.iter().filter(|(_, d)| d.div_ceil(TICK) * TICK <= now).collect();
                    prop_assert!(due_late.is_empty(), "not fired though due: {:?} at {}", due_late, now);
                }
            }
            prop_assert_eq!(w.len(), model.len());
        }
    }
}

#[test]
fn stale_and_double_cancels_are_no_ops() {
    let mut w = wheel();
    let a = w.insert(10 * TICK, 1);
    assert_eq!(w.cancel(a), Some(1));
    assert_eq!(w.cancel(a), None);
    // The slot is reused by a new timer: the old handle must not touch it.
    let b = w.insert(20 * TICK, 2);
    assert_eq!(w.cancel(a), None);
    assert_eq!(w.len(), 1);
    let mut out = Vec::new();
    w.advance(20 * TICK, &mut out);
    assert_eq!(out, vec![2]);
    assert_eq!(w.cancel(b), None, "a fired timer cannot be cancelled");
}

#[test]
fn fires_exactly_at_its_tick_never_before() {
    let mut w = wheel();
    w.insert(5 * TICK + 1, 7); // rounds up to tick 6
    assert_eq!(w.poll(6 * TICK - 1), None);
    assert_eq!(w.next_deadline(), Some(6 * TICK));
    assert_eq!(w.poll(6 * TICK), Some(7));
}

#[test]
fn past_deadlines_fire_at_the_next_poll() {
    let mut w = wheel();
    assert_eq!(w.poll(100 * TICK), None);
    w.insert(3 * TICK, 1);
    assert_eq!(w.next_deadline(), Some(100 * TICK));
    assert_eq!(w.poll(100 * TICK), Some(1));
}

#[test]
fn far_future_deadlines_beyond_the_wheel_still_fire() {
    let mut w = wheel();
    let far = (WHEEL_RANGE * 3 + 12_345) * TICK;
    w.insert(far, 9);
    w.insert(70 * TICK, 1);
    let mut out = Vec::new();
    w.advance(far - TICK, &mut out);
    assert_eq!(out, vec![1]);
    w.advance(far, &mut out);
    assert_eq!(out, vec![1, 9]);
    assert!(w.is_empty());
}

#[test]
fn deadlines_across_level_boundaries_and_wraparound_fire_in_order() {
    let mut w = wheel();
    let start = (1u64 << 24) - 3; // just before a level-4 boundary
    w.poll(start * TICK);
    let deltas = [1u64, 2, 3, 4, 63, 64, 65, 4095, 4096, 4097, 262_145];
    for (i, d) in deltas.iter().enumerate() {
        w.insert((start + d) * TICK, i as u64);
    }
    let mut order = Vec::new();
    let mut t = start;
    while !w.is_empty() {
        t = w.next_deadline().unwrap() / TICK;
        let mut out = Vec::new();
        w.advance(t * TICK, &mut out);
        for v in out {
            assert_eq!(
                start + deltas[v as usize],
                t,
                "timer {v} fired at the wrong tick"
            );
            order.push(v);
        }
    }
    assert_eq!(order, (0..deltas.len() as u64).collect::<Vec<_>>());
    assert!(t > start);
}

#[test]
fn a_pending_timer_costs_at_most_32_bytes() {
    assert!(
        bytes_per_timer::<u64>() <= 32,
        "{} bytes",
        bytes_per_timer::<u64>()
    );
}
