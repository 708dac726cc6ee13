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
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::{latency, now_ns, Latency};

type Peers = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// A running relay; stops when dropped.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
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
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stop2.load(Ordering::Relaxed) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let peers = peers.clone();
            std::thread::spawn(move || serve(stream, peers));
        }
    });
    Ok(Relay { addr, stop })
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
}

fn connect(addr: SocketAddr, id: u64) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.write_all(&id.to_le_bytes())?;
    let mut registered = [0u8; 1];
    s.read_exact(&mut registered)?;
    Ok(s)
}

/// `pairs` senders each send `messages` messages of `payload` bytes to
/// their own receiver through the relay, each after the previous one's
/// acknowledgement.
pub fn run_raw(
    addr: SocketAddr,
    pairs: u32,
    messages: u32,
    payload: usize,
) -> std::io::Result<RawReport> {
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
    Ok(collect(rx, receivers, started))
}

/// What one sender or receiver thread reports: send→ack and send→deliver
/// latencies, messages acknowledged, messages delivered in order.
pub(crate) type PeerResult = (Histogram<u64>, Histogram<u64>, u64, u64);

/// An empty latency histogram (1 µs to 60 s).
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("bounds")
}

/// Sums the threads' results once every sender has reported and every
/// receiver has finished.
pub(crate) fn collect(
    rx: mpsc::Receiver<PeerResult>,
    receivers: Vec<std::thread::JoinHandle<()>>,
    started: Instant,
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
        acked,
        delivered,
        acked_per_sec: acked as f64 / seconds,
        ack_latency: latency(&ack_h),
        deliver_latency: latency(&del_h),
        seconds,
    }
}
