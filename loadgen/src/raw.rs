//! The baseline: a minimal relay with no durability and no protocol beyond
//! a length prefix, and the one-to-one workload driven through it exactly as
//! `one-to-one` drives the gateway (a thread per connection, closed loop:
//! the next message after the previous one's acknowledgement). Its
//! throughput is the physical limit of this machine for that workload;
//! `compare` reports the gateway as a fraction of it.
//!
//! Wire (both directions): `[len u32][peer u64][body]`, `len` counting
//! `peer` and `body`. A client first sends its own id (`u64`). The relay
//! forwards a frame to `peer` (with `peer` rewritten to the sender) and
//! answers the sender at once with an 8-byte acknowledgement frame.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::procfs::CpuMeter;
use crate::{latency, now_ns, Latency};

type Peers = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// The one-to-one workload every peer runs (the raw relay, MQTT brokers,
/// JetStream): `pairs` senders each send `messages` messages of `payload`
/// bytes to their own receiver.
#[derive(Clone, Copy, Debug)]
pub struct PairLoad {
    /// Sender/receiver pairs.
    pub pairs: u32,
    /// Messages per sender.
    pub messages: u32,
    /// Payload bytes (at least 16: send time and index).
    pub payload: usize,
    /// Messages per second per sender, on a fixed timetable (open loop);
    /// 0: closed loop, the next message after the previous one's
    /// acknowledgement. Only the MQTT peer with our codec paces.
    pub rate: u32,
    /// Keeps client ids, users, topics and streams of runs apart.
    pub run: u64,
    /// The server's pid, for its CPU time per message (none: not measured).
    pub server_pid: Option<u32>,
}

impl PairLoad {
    /// Refuses a paced load for a peer that only runs closed loops.
    pub(crate) fn closed_loop_only(&self, peer: &str) -> Result<(), String> {
        if self.rate == 0 {
            Ok(())
        } else {
            Err(format!("{peer} runs closed loops only (rate 0)"))
        }
    }
}

/// Relay threads alive and the CPU time of those that ended.
#[derive(Default)]
struct RelayCpu {
    live: usize,
    used_us: u64,
}

/// A running relay; stops when dropped.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    cpu: Arc<(Mutex<RelayCpu>, Condvar)>,
}

impl Relay {
    /// CPU time (µs) of the relay's connection threads, once every
    /// connection has closed (waits up to `patience`; `None` after that).
    pub fn cpu_us_when_idle(&self, patience: Duration) -> Option<u64> {
        let (lock, idle) = &*self.cpu;
        let guard = lock.lock().expect("not poisoned");
        let (guard, timeout) = idle
            .wait_timeout_while(guard, patience, |c| c.live > 0)
            .expect("not poisoned");
        (!timeout.timed_out()).then_some(guard.used_us)
    }
}

/// CPU time this thread has used (user + system), in µs.
fn thread_cpu_us() -> u64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage for the call.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wake the acceptor
    }
}

/// Starts the relay on 127.0.0.1 (a thread per connection, like the load).
pub fn start_relay() -> std::io::Result<Relay> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let peers: Peers = Arc::default();
    let cpu: Arc<(Mutex<RelayCpu>, Condvar)> = Arc::default();
    let (stop2, cpu2) = (stop.clone(), cpu.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stop2.load(Ordering::Relaxed) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let (peers, cpu) = (peers.clone(), cpu2.clone());
            cpu.0.lock().expect("not poisoned").live += 1;
            std::thread::spawn(move || {
                serve(stream, peers);
                let mut c = cpu.0.lock().expect("not poisoned");
                c.live -= 1;
                c.used_us += thread_cpu_us();
                cpu.1.notify_all();
            });
        }
    });
    Ok(Relay { addr, stop, cpu })
}

fn serve(mut stream: TcpStream, peers: Peers) {
    let _ = stream.set_nodelay(true);
    let mut id = [0u8; 8];
    if stream.read_exact(&mut id).is_err() {
        return;
    }
    let me = u64::from_le_bytes(id);
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    peers.lock().expect("not poisoned").insert(me, writer);
    // Registered: the client may now be addressed.
    if stream.write_all(&[1]).is_err() {
        return;
    }
    let mut header = [0u8; 12];
    let mut body = Vec::new();
    while stream.read_exact(&mut header).is_ok() {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4")) as usize;
        let to = u64::from_le_bytes(header[4..].try_into().expect("8"));
        body.resize(len.saturating_sub(8), 0);
        if stream.read_exact(&mut body).is_err() {
            break;
        }
        let mut out = Vec::with_capacity(12 + body.len());
        out.extend_from_slice(&header[..4]);
        out.extend_from_slice(&me.to_le_bytes());
        out.extend_from_slice(&body);
        let target = peers
            .lock()
            .expect("not poisoned")
            .get(&to)
            .and_then(|s| s.try_clone().ok());
        if let Some(mut t) = target {
            let _ = t.write_all(&out);
        }
        // Acknowledge to the sender: [8][me][] (no body).
        let mut ack = [0u8; 12];
        ack[..4].copy_from_slice(&8u32.to_le_bytes());
        ack[4..].copy_from_slice(&to.to_le_bytes());
        if stream.write_all(&ack).is_err() {
            break;
        }
    }
    peers.lock().expect("not poisoned").remove(&me);
}

/// What the baseline measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RawReport {
    /// Messages relayed and acknowledged.
    pub acked: u64,
    /// Messages received in order.
    pub delivered: u64,
    /// Acknowledged messages per second.
    pub acked_per_sec: f64,
    /// Send to acknowledgement.
    pub ack_latency: Latency,
    /// Send to delivery.
    pub deliver_latency: Latency,
    /// Wall time (s).
    pub seconds: f64,
    /// The server's CPU time (user + system, all threads) over the run
    /// per acknowledged message (µs); none when not measured.
    pub server_cpu_us_per_msg: Option<f64>,
}

impl RawReport {
    /// Every acknowledged message was delivered, in order, and nothing
    /// was left unacknowledged.
    pub fn passed(&self, load: &PairLoad) -> bool {
        let all = u64::from(load.pairs) * u64::from(load.messages);
        self.acked == all && self.delivered == all
    }

    /// A table for people.
    pub fn to_text(&self) -> String {
        format!(
            "acked {}  delivered in order {}\n\
             acked/s {:.0} over {:.2} s\n\
             send->ack     {}\n\
             send->deliver {}\n\
             server CPU {} per message\n",
            self.acked,
            self.delivered,
            self.acked_per_sec,
            self.seconds,
            self.ack_latency.to_text(),
            self.deliver_latency.to_text(),
            crate::procfs::format_cpu(self.server_cpu_us_per_msg),
        )
    }
}

fn connect(addr: SocketAddr, id: u64) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.write_all(&id.to_le_bytes())?;
    let mut registered = [0u8; 1];
    s.read_exact(&mut registered)?;
    Ok(s)
}

/// The workload through `relay`, each message after the previous one's
/// acknowledgement; the server CPU is the relay's connection threads'.
pub fn run_raw(relay: &Relay, load: &PairLoad) -> Result<RawReport, String> {
    load.closed_loop_only("the raw relay")?;
    let mut report = run_raw_pairs(relay.addr, load).map_err(|e| e.to_string())?;
    let acked = report.acked.max(1) as f64;
    report.server_cpu_us_per_msg = relay
        .cpu_us_when_idle(Duration::from_secs(10))
        .map(|us| us as f64 / acked);
    Ok(report)
}

fn run_raw_pairs(addr: SocketAddr, load: &PairLoad) -> std::io::Result<RawReport> {
    let PairLoad {
        pairs,
        messages,
        payload,
        ..
    } = *load;
    let payload = payload.max(16);
    let (tx, rx) = mpsc::channel::<PeerResult>();
    let mut receivers = Vec::new();
    for p in 0..u64::from(pairs) {
        let mut r = connect(addr, 2 * p + 1)?;
        let tx = tx.clone();
        receivers.push(std::thread::spawn(move || {
            let mut h = new_histogram();
            let mut header = [0u8; 12];
            let mut body = Vec::new();
            let mut next = 0u64;
            r.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            while next < u64::from(messages) && r.read_exact(&mut header).is_ok() {
                let len = u32::from_le_bytes(header[..4].try_into().expect("4")) as usize;
                body.resize(len.saturating_sub(8), 0);
                if r.read_exact(&mut body).is_err() || body.len() < 16 {
                    break;
                }
                let sent = u64::from_le_bytes(body[..8].try_into().expect("8"));
                let k = u64::from_le_bytes(body[8..16].try_into().expect("8"));
                if k == next {
                    next += 1;
                    h.saturating_record(now_ns().saturating_sub(sent));
                }
            }
            let _ = tx.send((new_histogram(), h, 0, next));
        }));
    }
    // Every receiver is registered (connect waits for it): senders may start.
    let started = Instant::now();
    for p in 0..u64::from(pairs) {
        let mut s = connect(addr, 2 * p)?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut h = new_histogram();
            let mut frame = vec![0u8; 12 + payload];
            let mut ack = [0u8; 12];
            let mut acked = 0;
            for k in 0..u64::from(messages) {
                let t = now_ns();
                frame[..4].copy_from_slice(&((8 + payload) as u32).to_le_bytes());
                frame[4..12].copy_from_slice(&(2 * p + 1).to_le_bytes());
                frame[12..20].copy_from_slice(&t.to_le_bytes());
                frame[20..28].copy_from_slice(&k.to_le_bytes());
                if s.write_all(&frame).is_err() || s.read_exact(&mut ack).is_err() {
                    break;
                }
                acked += 1;
                h.saturating_record(now_ns().saturating_sub(t));
            }
            let _ = tx.send((h, new_histogram(), acked, 0));
        });
    }
    drop(tx);
    Ok(collect(rx, receivers, started, None))
}

/// What one sender or receiver thread reports: send→ack and send→deliver
/// latencies, messages acknowledged, messages delivered in order.
pub(crate) type PeerResult = (Histogram<u64>, Histogram<u64>, u64, u64);

/// A receiver's messages, each payload carrying its send time (ns since
/// the epoch) and its index: counts those that arrive in order and
/// records their send→deliver latency.
pub(crate) struct InOrder {
    latency: Histogram<u64>,
    /// The index expected next (= messages delivered in order so far).
    pub(crate) next: u64,
}

impl InOrder {
    pub(crate) fn new() -> InOrder {
        InOrder {
            latency: new_histogram(),
            next: 0,
        }
    }

    /// Takes one delivered payload.
    pub(crate) fn take(&mut self, payload: &[u8]) {
        let (Some(sent), Some(k)) = (payload.get(..8), payload.get(8..16)) else {
            return;
        };
        let sent = u64::from_le_bytes(sent.try_into().expect("8"));
        if u64::from_le_bytes(k.try_into().expect("8")) == self.next {
            self.next += 1;
            self.latency
                .saturating_record(now_ns().saturating_sub(sent));
        }
    }

    /// What the receiver reports.
    pub(crate) fn result(self) -> PeerResult {
        (new_histogram(), self.latency, 0, self.next)
    }
}

/// An empty latency histogram (1 µs to 60 s).
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("bounds")
}

/// Sums the threads' results once every sender has reported and every
/// receiver has finished; `cpu` measured the server from `started` on.
pub(crate) fn collect(
    rx: mpsc::Receiver<PeerResult>,
    receivers: Vec<std::thread::JoinHandle<()>>,
    started: Instant,
    cpu: Option<CpuMeter>,
) -> RawReport {
    let mut ack_h = new_histogram();
    let mut del_h = new_histogram();
    let (mut acked, mut delivered) = (0, 0);
    for (a, d, n_acked, n_delivered) in rx {
        ack_h.add(&a).expect("same bounds");
        del_h.add(&d).expect("same bounds");
        acked += n_acked;
        delivered += n_delivered;
    }
    for r in receivers {
        let _ = r.join();
    }
    let seconds = started.elapsed().as_secs_f64();
    RawReport {
        server_cpu_us_per_msg: cpu.and_then(|m| m.per_message(acked)),
        acked,
        delivered,
        acked_per_sec: acked as f64 / seconds,
        ack_latency: latency(&ack_h),
        deliver_latency: latency(&del_h),
        seconds,
    }
}
