//! Timer structures side by side: insert+cancel pairs and expiry, with
//! 1k / 1M / 10M timers already pending, in one run so ratios are fair.
//!
//! Run: `cargo bench --bench timer` (results: BENCHMARKS.md).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use surepush_core::timer::{bytes_per_timer, TimerWheel};

const TICK: u64 = 1_000_000;
const SIZES: [u64; 3] = [1_000, 1_000_000, 10_000_000];

/// Deterministic spread of deadlines over ~10 minutes of 1 ms ticks.
fn deadline(i: u64) -> u64 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 600_000 + 1) * TICK
}

/// A binary heap with lazy cancellation (tombstones), the usual baseline.
struct Heap {
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    cancelled: HashSet<u64>,
    next: u64,
}

impl Heap {
    fn new() -> Self {
        Heap {
            heap: BinaryHeap::new(),
            cancelled: HashSet::new(),
            next: 0,
        }
    }
    fn insert(&mut self, d: u64) -> u64 {
        self.next += 1;
        self.heap.push(Reverse((d, self.next)));
        self.next
    }
    fn cancel(&mut self, id: u64) {
        self.cancelled.insert(id);
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

fn insert_cancel(c: &mut Criterion) {
    let mut g = c.benchmark_group("insert+cancel");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for &n in &SIZES {
        let before = rss_bytes();
        let mut wheel = TimerWheel::with_capacity(Duration::from_nanos(TICK), n as usize + 16);
        for i in 0..n {
            wheel.insert(deadline(i), i);
        }
        if n == 10_000_000 {
            let grown = rss_bytes().saturating_sub(before);
            println!(
                "wheel: {} bytes/timer by size_of, {:.1} bytes/timer by RSS at {n} timers",
                bytes_per_timer::<u64>(),
                grown as f64 / n as f64
            );
        }
        let mut i = n;
        g.bench_with_input(BenchmarkId::new("wheel", n), &n, |b, _| {
            b.iter(|| {
                i += 1;
                let id = wheel.insert(deadline(i), i);
                black_box(wheel.cancel(id));
            })
        });
        drop(wheel);
        let mut tree = BTreeMap::new();
        for i in 0..n {
            tree.insert((deadline(i), i), i);
        }
        let mut i = n;
        g.bench_with_input(BenchmarkId::new("btreemap", n), &n, |b, _| {
            b.iter(|| {
                i += 1;
                let k = (deadline(i), i);
                tree.insert(k, i);
                black_box(tree.remove(&k));
            })
        });
        drop(tree);
        let mut heap = Heap::new();
        for i in 0..n {
            heap.insert(deadline(i));
        }
        let mut i = n;
        g.bench_with_input(BenchmarkId::new("binaryheap", n), &n, |b, _| {
            b.iter(|| {
                i += 1;
                let id = heap.insert(deadline(i));
                heap.cancel(black_box(id));
            })
        });
    }
    g.finish();
}

fn expire(c: &mut Criterion) {
    let mut g = c.benchmark_group("expire 10k due of N");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for &n in &SIZES[..2] {
        // Advance time until 10k of the N timers fired.
        g.bench_with_input(BenchmarkId::new("wheel", n), &n, |b, &n| {
            b.iter_batched(
                || {
                    let mut w = TimerWheel::with_capacity(Duration::from_nanos(TICK), n as usize);
                    for i in 0..n {
                        w.insert(deadline(i), i);
                    }
                    w
                },
                |mut w| {
                    let mut out = Vec::with_capacity(20_000);
                    let horizon = 600_000 * TICK * 10_000 / n.max(10_000);
                    w.advance(horizon, &mut out);
                    black_box(out.len())
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_with_input(BenchmarkId::new("binaryheap", n), &n, |b, &n| {
            b.iter_batched(
                || {
                    let mut h = Heap::new();
                    for i in 0..n {
                        h.insert(deadline(i));
                    }
                    h
                },
                |mut h| {
                    let horizon = 600_000 * TICK * 10_000 / n.max(10_000);
                    let mut fired = 0;
                    while let Some(Reverse((d, id))) = h.heap.peek().copied() {
                        if d > horizon {
                            break;
                        }
                        h.heap.pop();
                        if !h.cancelled.remove(&id) {
                            fired += 1;
                        }
                    }
                    black_box(fired)
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// glommio's own timer (a future registered with the reactor) for scale;
/// it needs an executor, so it runs inside one. Only up to 30k pending:
/// every registered glommio timer clones the task's waker, whose reference
/// count is 16 bits, so one task cannot hold 32,768 of them (it panics).
fn glommio_timer(c: &mut Criterion) {
    let mut g = c.benchmark_group("insert+cancel");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let ex = glommio::LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .make()
        .unwrap();
    ex.run(async {
        for n in [1_000u64, 30_000] {
            let mut pending = Vec::with_capacity(n as usize);
            for i in 0..n {
                let mut t = glommio::timer::Timer::new(Duration::from_nanos(deadline(i)));
                let _ = futures_lite::future::poll_once(&mut t).await;
                pending.push(t);
            }
            let mut i = n;
            g.bench_with_input(BenchmarkId::new("glommio-timer", n), &n, |b, _| {
                b.iter(|| {
                    i += 1;
                    let mut t = glommio::timer::Timer::new(Duration::from_nanos(deadline(i)));
                    // Registering happens on first poll; dropping cancels.
                    let _ = futures_lite::future::block_on(futures_lite::future::poll_once(&mut t));
                    drop(black_box(t));
                })
            });
            drop(pending);
        }
    });
    g.finish();
}

criterion_group!(benches, insert_cancel, expire, glommio_timer);
criterion_main!(benches);
