//! Segment log throughput, latency and recovery, beside the raw limits of
//! the same disk measured in the same run.
//!
//! Run: `cargo bench --bench log` (results: BENCHMARKS.md). Set
//! `LOG_BENCH_QUICK=1` for a short smoke run, `LOG_BENCH_ONLY=append`
//! (or `batched`, `recovery`, comma-separated) for some parts only.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::io::{DmaFile, OpenOptions};
use hdrhistogram::Histogram;
use surepush::log::{LogConfig, MessageRecord, Record, SegmentLog};
use surepush::proto::{DeviceId, Qos, Seq, UserId};

// The gateway binary runs on mimalloc (see src/main.rs); measure the log
// with the allocator it runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU time (user + system) of this thread (`RUSAGE_THREAD`: the shard's
/// own work) or of the whole process (`RUSAGE_SELF`: with glommio's
/// blocking thread and the kernel's io_uring workers). Unlike wall time it
/// barely moves with the disk's drift, so it shows what a change to the
/// append path saves.
fn cpu_time(who: libc::c_int) -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given,
    // which points at one; the value is read only if it reports success.
    let usage = unsafe {
        assert_eq!(libc::getrusage(who, usage.as_mut_ptr()), 0, "getrusage");
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU spent while `f` ran: (this thread, the process).
struct CpuClock(Duration, Duration);

impl CpuClock {
    fn start() -> CpuClock {
        CpuClock(cpu_time(libc::RUSAGE_THREAD), cpu_time(libc::RUSAGE_SELF))
    }

    /// Microseconds per record since `start`: (shard thread, process).
    fn per_record(&self, records: u64) -> (f64, f64) {
        let n = records.max(1) as f64;
        (
            (cpu_time(libc::RUSAGE_THREAD) - self.0).as_secs_f64() * 1e6 / n,
            (cpu_time(libc::RUSAGE_SELF) - self.1).as_secs_f64() * 1e6 / n,
        )
    }
}

fn quick() -> bool {
    std::env::var("LOG_BENCH_QUICK").is_ok()
}

/// `LOG_BENCH_ONLY=append,batched,recovery` runs only those parts (the raw
/// limits always run: every ratio needs them).
fn wanted(part: &str) -> bool {
    std::env::var("LOG_BENCH_ONLY").map_or(true, |only| only.split(',').any(|p| p == part))
}

/// Points `record` (a message) at another inbox and seq without touching
/// its payload: building a record per append would clone and drop the
/// payload's shared refcount each time, an atomic the log never does and
/// which showed up at ~10% of the bench thread (its cache line shared with
/// the blocking thread's allocations).
fn retarget(record: &mut Record, inbox: u64, seq: u64) {
    if let Record::Message(m) = record {
        m.inbox = UserId(inbox);
        m.to = UserId(inbox);
        m.seq = Seq(seq);
        m.client_msg_id = seq;
        m.ts_ms = 1_700_000_000_000 + seq;
    }
}

fn record(inbox: u64, seq: u64, payload: &Bytes) -> Record {
    Record::Message(MessageRecord {
        inbox: UserId(inbox),
        seq: Seq(seq),
        from: UserId(1),
        from_device: DeviceId(1),
        to: UserId(inbox),
        client_msg_id: seq,
        qos: Qos::AtLeastOnce,
        ts_ms: 1_700_000_000_000 + seq,
        payload: payload.clone(),
    })
}

async fn dma_file(path: &std::path::Path) -> DmaFile {
    // Create with data first: glommio's polled-read probe needs a non-empty
    // first file (MACHINE-NOTES.md).
    std::fs::write(path, vec![1u8; 4096]).unwrap();
    OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(path)
        .await
        .unwrap()
}

/// Sequential O_DIRECT write bandwidth (bytes/s) into a fresh, preallocated file: 1 MiB
/// writes from buffers filled once, `depth` of them in flight (like `fio
/// --direct=1 --bs=1M --iodepth=depth`), one fdatasync at the end.
async fn raw_bandwidth(dir: &std::path::Path, total: u64, depth: usize) -> f64 {
    // A new file each time: truncating or deleting one mid-run makes the
    // filesystem (mounted with `discard` here) trim in the background and
    // slows whatever is measured next.
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let f = dma_file(&dir.join(format!("raw-bw-{n}"))).await;
    // Preallocated like a log segment, so both pay the same per block.
    f.pre_allocate(total + (4 << 20), true).await.unwrap();
    let block = 1 << 20;
    let buffers: Vec<Rc<glommio::io::DmaBuffer>> = (0..depth)
        .map(|_| {
            let mut buf = f.alloc_dma_buffer(block);
            buf.as_bytes_mut().fill(7);
            Rc::new(buf)
        })
        .collect();
    let start = Instant::now();
    let mut pos = 0;
    while pos < total {
        let writes: Vec<_> = buffers
            .iter()
            .enumerate()
            .map(|(i, buf)| f.write_rc_at(buf.clone(), pos + (i * block) as u64))
            .collect();
        for w in writes {
            w.await.unwrap();
        }
        pos += (depth * block) as u64;
    }
    f.fdatasync().await.unwrap();
    let bw = pos as f64 / start.elapsed().as_secs_f64();
    f.close().await.unwrap();
    bw
}

/// 4 KiB O_DIRECT write + fdatasync, one at a time: the latency floor.
async fn raw_sync_latency(dir: &std::path::Path, n: u64) -> Histogram<u64> {
    let f = dma_file(&dir.join("raw-sync")).await;
    let mut h = Histogram::<u64>::new(3).unwrap();
    for i in 0..n {
        let mut buf = f.alloc_dma_buffer(4096);
        buf.as_bytes_mut().fill(3);
        let t = Instant::now();
        f.write_at(buf, i * 4096).await.unwrap();
        f.fdatasync().await.unwrap();
        h.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    f.close().await.unwrap();
    h
}

struct AppendResult {
    records: u64,
    bytes: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    syncs: u64,
    /// CPU µs per record: (shard thread, process).
    cpu: (f64, f64),
}

/// `appenders` concurrent tasks each appending `payload_len`-byte messages
/// and waiting for durability, until `total_bytes` or `max_time`. Runs
/// twice on the same log: `cold` is a fresh process (the dedup window and
/// buffers are faulted in as they fill), `warm` the steady state of a
/// running shard (the window full: every insert also evicts).
async fn append_bench(
    dir: &std::path::Path,
    appenders: u64,
    payload_len: usize,
    total_bytes: u64,
    max_time: Duration,
) -> (AppendResult, AppendResult) {
    let config = LogConfig {
        dir: dir.to_owned(),
        ..LogConfig::default()
    };
    let (log, _, _) = SegmentLog::open(config).await.unwrap();
    let log = Rc::new(log);
    let payload = Bytes::from(vec![0xAB; payload_len]);
    let per_task = total_bytes / appenders / (payload_len as u64 + 75) + 1;
    let cold = append_round(&log, appenders, &payload, 0, per_task, max_time).await;
    let warm = append_round(&log, appenders, &payload, per_task, per_task, max_time).await;
    (cold, warm)
}

/// One round of [`append_bench`]: sequences `first + 1 ..= first + n` per task.
async fn append_round(
    log: &Rc<SegmentLog>,
    appenders: u64,
    payload: &Bytes,
    first: u64,
    n: u64,
    max_time: Duration,
) -> AppendResult {
    let before = log.stats();
    // One bounded histogram for all tasks: a per-task auto-resizing one
    // would allocate ~0.5 MB each and dominate the run at 4096 tasks.
    let latency = Rc::new(std::cell::RefCell::new(
        Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).unwrap(),
    ));
    let start = Instant::now();
    let cpu = CpuClock::start();
    let tasks: Vec<_> = (0..appenders)
        .map(|t| {
            let log = log.clone();
            let payload = payload.clone();
            let latency = latency.clone();
            glommio::spawn_local(async move {
                let mut done = 0;
                let mut rec = record(t + 1, first + 1, &payload);
                for s in first + 1..=first + n {
                    let t0 = Instant::now();
                    retarget(&mut rec, t + 1, s);
                    let end = log.append(&rec).unwrap();
                    log.wait_durable(end).await.unwrap();
                    latency
                        .borrow_mut()
                        .saturating_record(t0.elapsed().as_nanos() as u64);
                    done += 1;
                    // The clock is read once per record for the latency;
                    // the time limit needs it only now and then.
                    if done % 64 == 0 && start.elapsed() > max_time {
                        break;
                    }
                }
                done
            })
        })
        .collect();
    let mut records = 0;
    for t in tasks {
        records += t.await;
    }
    let elapsed = start.elapsed();
    let cpu = cpu.per_record(records);
    let latency = latency.borrow().clone();
    let stats = log.stats();
    AppendResult {
        records,
        bytes: stats.bytes_appended - before.bytes_appended,
        elapsed,
        latency,
        syncs: stats.syncs - before.syncs,
        cpu,
    }
}

/// How the server uses the log: one task appends continuously and waits
/// once per batch of `batch` records (the shard's durability loop).
async fn batched_bench(
    dir: &std::path::Path,
    batch: u64,
    payload_len: usize,
    max_time: Duration,
) -> [(f64, f64, u64, (f64, f64)); 2] {
    let config = LogConfig {
        dir: dir.to_owned(),
        ..LogConfig::default()
    };
    let (log, _, _) = SegmentLog::open(config).await.unwrap();
    let payload = Bytes::from(vec![0xCD; payload_len]);
    let mut rec = record(1, 1, &payload);
    let mut s = 0;
    // Cold (fresh log), then warm (same log, as in the appender rows).
    let mut out = [(0.0, 0.0, 0, (0.0, 0.0)); 2];
    for pass in &mut out {
        let before = log.stats();
        let first = s;
        let start = Instant::now();
        let cpu = CpuClock::start();
        while start.elapsed() < max_time {
            let mut end = 0;
            for _ in 0..batch {
                s += 1;
                retarget(&mut rec, s % 1024, s / 1024 + 1);
                end = log.append(&rec).unwrap();
            }
            log.wait_durable(end).await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu.per_record(s - first);
        let stats = log.stats();
        *pass = (
            (s - first) as f64 / secs,
            (stats.bytes_appended - before.bytes_appended) as f64 / secs,
            stats.syncs - before.syncs,
            cpu,
        );
    }
    out
}

/// Writes `n` small records, then times a reopen (recovery).
async fn recovery_bench(dir: &std::path::Path, n: u64) -> (Duration, u64) {
    {
        let config = LogConfig {
            dir: dir.to_owned(),
            ..LogConfig::default()
        };
        let (log, _, _) = SegmentLog::open(config).await.unwrap();
        let payload = Bytes::from(vec![1u8; 100]);
        for s in 1..=n {
            // 10,000 inboxes, contiguous seqs each.
            log.append(&record(s % 10_000, s / 10_000 + 1, &payload))
                .unwrap();
            if s % 100_000 == 0 {
                log.flush().await.unwrap();
            }
        }
        log.flush().await.unwrap();
    }
    let config = LogConfig {
        dir: dir.to_owned(),
        ..LogConfig::default()
    };
    let t = Instant::now();
    let (_, _, report) = SegmentLog::open(config).await.unwrap();
    (t.elapsed(), report.records)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn main() {
    let base = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("log-bench");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let ex = glommio::LocalExecutorBuilder::default()
        .io_memory(2 << 20)
        .make()
        .unwrap();
    let dir = base.clone();
    ex.run(async move {
        let base = dir;
        let scale = if quick() { 16 } else { 1 };
        // The disk's speed drifts by tens of percent within minutes here, so
        // every case is compared with a raw measurement taken right before it.
        let raw = |base: std::path::PathBuf| async move {
            let mut best = 0f64;
            for depth in [1, 4] {
                best = best.max(raw_bandwidth(&base, (512 << 20) / scale, depth).await);
            }
            best
        };
        let bw = raw(base.clone()).await;
        let sync = raw_sync_latency(&base, 2000 / scale).await;
        println!("raw O_DIRECT sequential write (1 MiB writes, best of queue depth 1 and 4): {:.0} MB/s", bw / 1e6);
        println!(
            "raw 4 KiB write+fdatasync: p50 {:.3} ms, p99 {:.3} ms",
            ms(sync.value_at_quantile(0.5)),
            ms(sync.value_at_quantile(0.99))
        );
        println!();
        println!("| appenders | records/s | MB/s | raw MB/s just before | vs raw | syncs | p50 durable | p99 durable | CPU µs/record shard / process |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let appender_counts: &[u64] = if wanted("append") {
            &[1, 64, 4096]
        } else if wanted("append4096") {
            &[4096]
        } else {
            &[]
        };
        for &appenders in appender_counts {
            let dir = base.join(format!("append-{appenders}"));
            let bw = raw(base.clone()).await;
            let (cold, warm) = append_bench(&dir, appenders, 1024, (1 << 30) / scale, Duration::from_millis(10_000 / scale)).await;
            for (label, r) in [("cold", cold), ("warm", warm)] {
                let secs = r.elapsed.as_secs_f64();
                println!(
                    "| {appenders} ({label}) | {:.0} | {:.0} | {:.0} | {:.2} | {} | {:.3} ms | {:.3} ms | {:.2} / {:.2} |",
                    r.records as f64 / secs,
                    r.bytes as f64 / secs / 1e6,
                    bw / 1e6,
                    r.bytes as f64 / secs / bw,
                    r.syncs,
                    ms(r.latency.value_at_quantile(0.5)),
                    ms(r.latency.value_at_quantile(0.99)),
                    r.cpu.0,
                    r.cpu.1,
                );
            }
            // Kept until the end (see raw_bandwidth: no deletes mid-run).
        }
        let batches: &[u64] = if wanted("batched") { &[256, 4096] } else { &[] };
        for &batch in batches {
            let dir = base.join(format!("batched-{batch}"));
            let bw = raw(base.clone()).await;
            let passes = batched_bench(&dir, batch, 1024, Duration::from_millis(5_000 / scale)).await;
            for (label, (rps, bps, syncs, cpu)) in ["cold", "warm"].into_iter().zip(passes) {
                println!(
                    "| 1 task, one wait per {batch} ({label}) | {rps:.0} | {:.0} | {:.0} | {:.2} | {syncs} | - | - | {:.2} / {:.2} |",
                    bps / 1e6,
                    bw / 1e6,
                    bps / bw,
                    cpu.0,
                    cpu.1
                );
            }
            // Kept until the end (see raw_bandwidth: no deletes mid-run).
        }
        println!();
        let recoveries: &[u64] = if wanted("recovery") { &[1_000_000, 10_000_000] } else { &[] };
        for &n in recoveries {
            let n = n / scale;
            let dir = base.join(format!("recover-{n}"));
            let (t, records) = recovery_bench(&dir, n).await;
            println!("recovery of {records} records (100 B payloads): {:.2} s", t.as_secs_f64());
            // Kept until the end (see raw_bandwidth: no deletes mid-run).
        }
    });
    let _ = std::fs::remove_dir_all(&base);
}
