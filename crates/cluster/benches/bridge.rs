//! Round trips through the cluster thread (issue #20).
//!
//! - `ping/glommio`: a glommio shard → cluster thread → the shard: the
//!   bridge alone (two flume hops, a cross-thread wake each way).
//! - `ping/glommio_spin`: the same from a shard that spins 50 µs before
//!   parking (`spin_before_park`): what the wake-up of an idle shard costs.
//! - `ping/thread`: the same from a plain thread, for comparison.
//! - `request/1`: one message from a glommio shard of node a to a glommio
//!   shard of node b and its reply, through a real nats-server on
//!   loopback: shard → a's cluster thread → NATS → b's cluster thread → b's
//!   shard and back.
//! - `request/64`: 64 messages sent together, then their 64 replies (per
//!   iteration: 64 messages; they share batches).
//!
//! - `allocations`: before the timed groups, heap allocations (every
//!   thread of the process, through a counting global allocator) per
//!   message for 10,000 messages sent one at a time and in groups of 64,
//!   printed as `allocations per message`. Only that:
//!   `cargo bench -p surepush-cluster --bench bridge -- allocations-only`.
//!
//! Run: `cargo bench -p surepush-cluster --bench bridge`. Needs
//! nats-server 2.11+ (see tests/support: `target/nats-venv` or
//! `SUREPUSH_NATS_SERVER`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_lite::future::block_on;
use support::*;
use surepush_cluster::messaging::batch::Envelope;
use surepush_cluster::messaging::{Lane, LaneEvent};
use surepush_cluster::wire::MessageKind;
use surepush_cluster::NodeId;

/// The system allocator, counting allocations (issue #20: per-message
/// allocations of the messaging path).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Work for the glommio shard of node a: how many iterations of what.
enum Job {
    Ping(u64),
    Requests { iters: u64, per_iter: u64 },
}

fn message(n: u64) -> Envelope {
    Envelope {
        kind: MessageKind(surepush_cluster::wire::kinds::FIRST_TEST_KIND + 2),
        version: 1,
        route: 0,
        body: Bytes::from(n.to_le_bytes().to_vec()),
    }
}

/// Node a's shard: runs jobs, reports their elapsed time.
fn shard_a(
    mut lane: Lane,
    spin: Option<Duration>,
    jobs: flume::Receiver<Job>,
    done: flume::Sender<Duration>,
) {
    let mut builder = glommio::LocalExecutorBuilder::default().name("bench-shard-a");
    if let Some(spin) = spin {
        builder = builder.spin_before_park(spin);
    }
    builder
        .spawn(move || async move {
            let b = NodeId::parse("b").unwrap();
            let mut token = 0u64;
            while let Ok(job) = jobs.recv_async().await {
                let start = Instant::now();
                match job {
                    Job::Ping(iters) => {
                        for _ in 0..iters {
                            token += 1;
                            lane.ping(token).await.unwrap();
                            match lane.events().recv_async().await.unwrap() {
                                LaneEvent::Pong { token: t } if t == token => {}
                                other => panic!("unexpected {other:?}"),
                            }
                        }
                    }
                    Job::Requests { iters, per_iter } => {
                        for _ in 0..iters {
                            for _ in 0..per_iter {
                                token += 1;
                                lane.send(&b, message(token), token).await.unwrap();
                            }
                            let mut replies = 0;
                            while replies < per_iter {
                                match lane.events().recv_async().await.unwrap() {
                                    LaneEvent::Replies { replies: r, .. } => {
                                        replies += r.len() as u64;
                                    }
                                    other => panic!("unexpected {other:?}"),
                                }
                            }
                        }
                    }
                }
                done.send_async(start.elapsed()).await.unwrap();
            }
        })
        .unwrap();
}

/// Node b's shard: answers every request with an empty body.
fn shard_b(lane: Lane) {
    glommio::LocalExecutorBuilder::default()
        .name("bench-shard-b")
        .spawn(move || async move {
            while let Ok(event) = lane.events().recv_async().await {
                if let LaneEvent::Requests { requests, .. } = event {
                    let replies = requests.into_iter().map(|r| (r.reply, Bytes::new()));
                    lane.reply_all(replies.collect()).await.unwrap();
                }
            }
        })
        .unwrap();
}

fn bridge(c: &mut Criterion) {
    let nats = NatsServer::start();
    let mut a = join(node_config(&nats, "a", 64, 3));
    let mut b = join(node_config(&nats, "b", 64, 1));
    let mut a_lanes = a.take_lanes();
    let thread_lane = a_lanes.pop().unwrap();
    let (jobs, job_rx) = flume::bounded(1);
    let (done_tx, done) = flume::bounded(1);
    shard_a(a_lanes.pop().unwrap(), None, job_rx, done_tx);
    let (spin_jobs, spin_job_rx) = flume::bounded(1);
    let (spin_done_tx, spin_done) = flume::bounded(1);
    let spin = Some(Duration::from_micros(50));
    shard_a(a_lanes.pop().unwrap(), spin, spin_job_rx, spin_done_tx);
    shard_b(b.take_lanes().remove(0));
    let run = |job: Job| {
        jobs.send(job).unwrap();
        done.recv().unwrap()
    };
    let run_spinning = |job: Job| {
        spin_jobs.send(job).unwrap();
        spin_done.recv().unwrap()
    };

    // Allocations per message (warm first: link creation, queues).
    run(Job::Requests {
        iters: 100,
        per_iter: 64,
    });
    for per_iter in [1u64, 64] {
        let messages = 10_240;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        run(Job::Requests {
            iters: messages / per_iter,
            per_iter,
        });
        let n = ALLOCATIONS.load(Ordering::Relaxed) - before;
        println!(
            "allocations per message, groups of {per_iter}: {:.2} ({n} for {messages})",
            n as f64 / messages as f64
        );
    }

    let mut g = c.benchmark_group("ping");
    g.throughput(Throughput::Elements(1));
    g.bench_function("glommio", |bench| {
        bench.iter_custom(|iters| run(Job::Ping(iters)))
    });
    g.bench_function("glommio_spin", |bench| {
        bench.iter_custom(|iters| run_spinning(Job::Ping(iters)))
    });
    g.bench_function("thread", |bench| {
        let mut token = 0;
        bench.iter(|| {
            token += 1;
            block_on(thread_lane.ping(token)).unwrap();
            thread_lane.events().recv().unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("request");
    for per_iter in [1u64, 64] {
        g.throughput(Throughput::Elements(per_iter));
        g.bench_function(per_iter.to_string(), |bench| {
            bench.iter_custom(|iters| run(Job::Requests { iters, per_iter }))
        });
    }
    g.finish();
    drop((jobs, spin_jobs)); // ends shard a's executor loops
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = bridge
}
criterion_main!(benches);
