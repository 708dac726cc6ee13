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
use surepush_log::{LogConfig, LogStats, MessageRecord, Record, SegmentLog};
use surepush_proto::{DeviceId, Qos, Seq, UserId};

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
        attrs: Bytes::new(),
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

/// One timed pass over a log.
struct Pass {
    records: u64,
    bytes: u64,
    elapsed: Duration,
    syncs: u64,
    /// CPU µs per record: (shard thread, process).
    cpu: (f64, f64),
    /// Append-to-durable latency of each record, where each waits for its own.
    latency: Option<Histogram<u64>>,
}

impl Pass {
    /// Measures from `before` (the log's counters when the pass started).
    fn finish(
        log: &SegmentLog,
        before: &LogStats,
        start: Instant,
        cpu: CpuClock,
        records: u64,
    ) -> Pass {
        let elapsed = start.elapsed();
        let cpu = cpu.per_record(records);
        let stats = log.stats();
        Pass {
            records,
            bytes: stats.bytes_appended - before.bytes_appended,
            elapsed,
            syncs: stats.syncs - before.syncs,
            cpu,
            latency: None,
        }
    }

    fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    fn bytes_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64()
    }
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
) -> [Pass; 2] {
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
    [cold, warm]
}

/// One round of [`append_bench`]: sequences `first + 1 ..= first + n` per task.
async fn append_round(
    log: &Rc<SegmentLog>,
    appenders: u64,
    payload: &Bytes,
    first: u64,
    n: u64,
    max_time: Duration,
) -> Pass {
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
    let mut pass = Pass::finish(log, &before, start, cpu, records);
    pass.latency = Some(latency.borrow().clone());
    pass
}

/// Opens a fresh log in `dir` and times `body` on it twice: cold (a fresh
/// log), then warm (the same log, as in the appender rows). `body` gets
/// the log and the pass's start and returns the records it appended.
async fn two_passes(
    dir: &std::path::Path,
    mut body: impl AsyncFnMut(&SegmentLog, Instant) -> u64,
) -> [Pass; 2] {
    let config = LogConfig {
        dir: dir.to_owned(),
        ..LogConfig::default()
    };
    let (log, _, _) = SegmentLog::open(config).await.unwrap();
    let mut pass = async || {
        let before = log.stats();
        let start = Instant::now();
        let cpu = CpuClock::start();
        let records = body(&log, start).await;
        Pass::finish(&log, &before, start, cpu, records)
    };
    [pass().await, pass().await]
}

/// One task appends `batch` records, then waits until they are durable
/// before the next batch (a closed loop: CPU and disk take turns).
async fn batched_bench(
    dir: &std::path::Path,
    batch: u64,
    payload_len: usize,
    max_time: Duration,
) -> [Pass; 2] {
    let payload = Bytes::from(vec![0xCD; payload_len]);
    let mut rec = record(1, 1, &payload);
    let mut s = 0;
    two_passes(dir, async |log: &SegmentLog, start: Instant| {
        let first = s;
        while start.elapsed() < max_time {
            let mut end = 0;
            for _ in 0..batch {
                s += 1;
                retarget(&mut rec, s % 1024, s / 1024 + 1);
                end = log.append(&rec).unwrap();
            }
            log.wait_durable(end).await.unwrap();
        }
        s - first
    })
    .await
}

/// The server's layout: `shards` executors on their own threads (pinned to
/// cores, as `surepush serve` runs them), each with its own log in its own
/// directory on the same disk, each with `appenders` tasks as in
/// [`append_bench`], all started together. Returns each shard's passes.
fn sharded_bench(
    base: &std::path::Path,
    shards: usize,
    appenders: u64,
    total_bytes: u64,
    max_time: Duration,
) -> Vec<[Pass; 2]> {
    let start = std::sync::Arc::new(std::sync::Barrier::new(shards));
    let threads: Vec<_> = (0..shards)
        .map(|i| {
            let dir = base.join(format!("shard-{i}"));
            let start = start.clone();
            std::thread::spawn(move || {
                let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(i))
                    .io_memory(2 << 20)
                    .make()
                    .expect("an executor per shard");
                ex.run(async move {
                    start.wait();
                    append_bench(&dir, appenders, 1024, total_bytes, max_time).await
                })
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("a shard's bench"))
        .collect()
}

/// How a gateway shard uses the log: appends keep coming while a commit is
/// in flight. One task appends continuously and yields every `chunk`
/// records (a connection task yields at every socket read), so the
/// committer runs between chunks; it waits for durability only when more
/// than `window` bytes are not yet durable (clients' in-flight windows
/// bound that in the server).
async fn streaming_bench(
    dir: &std::path::Path,
    chunk: u64,
    window: u64,
    payload_len: usize,
    max_time: Duration,
) -> [Pass; 2] {
    let payload = Bytes::from(vec![0xEF; payload_len]);
    let mut rec = record(1, 1, &payload);
    let mut s = 0;
    two_passes(dir, async |log: &SegmentLog, start: Instant| {
        let first = s;
        let mut end = 0;
        while start.elapsed() < max_time {
            for _ in 0..chunk {
                s += 1;
                retarget(&mut rec, s % 1024, s / 1024 + 1);
                end = log.append(&rec).unwrap();
            }
            if end - log.durable_lsn() > window {
                log.wait_durable(end - window).await.unwrap();
            } else {
                glommio::executor().yield_now().await;
            }
        }
        log.wait_durable(end).await.unwrap();
        s - first
    })
    .await
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

/// The cases of the table (see each function).
enum Case {
    /// [`append_bench`] with this many appenders.
    Appenders(u64),
    /// [`sharded_bench`] on this many shards, 4096 appenders in all.
    Sharded(usize),
    /// [`streaming_bench`].
    Streaming,
    /// [`batched_bench`] with this batch.
    Batched(u64),
}

/// One table row: the passes of the shards that ran at the same time
/// (their rates added up), against the mean of the raw bandwidth measured
/// just before and just after.
fn print_row(label: &str, shards: &[&Pass], raw_before: f64, raw_after: f64) {
    let sum = |f: fn(&Pass) -> f64| shards.iter().map(|p| f(p)).sum::<f64>();
    let (records, bytes) = (sum(Pass::records_per_s), sum(Pass::bytes_per_s));
    let n = shards.len() as f64;
    let cpu_shard = sum(|p| p.cpu.0) / n;
    // Each shard measured the whole process over (about) the same time.
    let process_us = sum(|p| p.cpu.1 * p.records as f64) / n;
    let cpu_process = process_us / shards.iter().map(|p| p.records).sum::<u64>().max(1) as f64;
    let quantile = |q: f64| {
        let worst = shards
            .iter()
            .filter_map(|p| p.latency.as_ref().map(|h| h.value_at_quantile(q)))
            .max();
        worst.map_or("-".to_owned(), |ns| format!("{:.3} ms", ms(ns)))
    };
    println!(
        "| {label} | {records:.0} | {:.0} | {:.0} / {:.0} | {:.2} | {} | {} | {} | {cpu_shard:.2} / {cpu_process:.2} |",
        bytes / 1e6,
        raw_before / 1e6,
        raw_after / 1e6,
        bytes / ((raw_before + raw_after) / 2.0),
        shards.iter().map(|p| p.syncs).sum::<u64>(),
        quantile(0.5),
        quantile(0.99),
    );
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn main() {
    let base = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("log-bench");
    remove_and_trim(&base);
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
        println!("| case | records/s | MB/s | raw MB/s before / after | vs raw (mean) | syncs | p50 durable | p99 durable | CPU µs/record shard / process |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut cases = Vec::new();
        if wanted("append") {
            cases.extend([Case::Appenders(1), Case::Appenders(64), Case::Appenders(4096)]);
        } else if wanted("append4096") {
            cases.push(Case::Appenders(4096));
        }
        if wanted("sharded") && cores > 1 {
            cases.push(Case::Sharded(cores));
        }
        if wanted("streaming") {
            cases.push(Case::Streaming);
        }
        if wanted("batched") {
            cases.extend([Case::Batched(256), Case::Batched(4096)]);
        }
        let bytes = (1 << 30) / scale;
        let (long, short) = (Duration::from_millis(10_000 / scale), Duration::from_millis(5_000 / scale));
        for case in cases {
            // Every case's directory is kept until the end (see
            // raw_bandwidth: no deletes mid-run).
            let before = raw(base.clone()).await;
            let (label, passes) = match case {
                Case::Appenders(n) => (
                    format!("{n} appenders"),
                    vec![append_bench(&base.join(format!("append-{n}")), n, 1024, bytes, long).await],
                ),
                Case::Sharded(shards) => {
                    let per_shard = 4096 / shards as u64;
                    (
                        format!("{shards} shards x {per_shard} appenders (rates added)"),
                        sharded_bench(&base.join("sharded"), shards, per_shard, bytes, long),
                    )
                }
                Case::Streaming => (
                    "1 task streaming: yield per 256, <= 16 MiB not durable".to_owned(),
                    vec![streaming_bench(&base.join("streaming"), 256, 16 << 20, 1024, short).await],
                ),
                Case::Batched(n) => (
                    format!("1 task, one wait per {n}"),
                    vec![batched_bench(&base.join(format!("batched-{n}")), n, 1024, short).await],
                ),
            };
            let after = raw(base.clone()).await;
            for (i, pass) in ["cold", "warm"].into_iter().enumerate() {
                let shards: Vec<&Pass> = passes.iter().map(|p| &p[i]).collect();
                print_row(&format!("{label} ({pass})"), &shards, before, after);
            }
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
    remove_and_trim(&base);
}

/// Deletes `dir` (a run's files, ~15 GB) and syncs: the filesystem here is
/// mounted with `discard`, and the trims a deletion causes are issued at
/// the next journal commit; without the sync they land in whatever runs
/// next (4 GiB deleted here: 36 discards, 0.85 s of device time).
fn remove_and_trim(dir: &std::path::Path) {
    let _ = std::fs::remove_dir_all(dir);
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}
