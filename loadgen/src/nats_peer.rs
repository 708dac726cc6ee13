//! The one-to-one workload over NATS JetStream, spoken in the NATS text
//! protocol over plain `TcpStream`s (no client crate: the Rust client needs
//! tokio), for side-by-side numbers with `run_mqtt`.
//!
//! One file-storage stream per run, `LG{run}` with subjects `lg.{run}.>`.
//! Pair `p` gets a durable push consumer `r{p}` (explicit acks, filter
//! `lg.{run}.{p}`, deliver subject `_lg.{run}.d{p}`); its receiver
//! subscribes to the deliver subject, acknowledges every delivery and
//! checks order. Its sender publishes `messages` messages to `lg.{run}.{p}`
//! with a reply inbox, the next one after the previous JetStream PubAck
//! (the same closed loop as `one-to-one`). The stream is deleted at the end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::procfs::CpuMeter;
use crate::raw::{collect, new_histogram, PairLoad, PeerResult};
use crate::{now_ns, RawReport};

/// A message delivered to one of our subscriptions.
struct Msg {
    sid: u64,
    reply: Option<String>,
    payload: Vec<u8>,
}

/// What the server sent that the caller cares about; `+OK`, `PING` and
/// `INFO` are handled on the way.
enum Op {
    Msg(Msg),
    Pong,
}

/// One NATS client connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_sid: u64,
    line: Vec<u8>,
}

impl Conn {
    /// Connects, reads `INFO`, sends `CONNECT` and waits for the `PONG` to
    /// its `PING` (so the server has accepted the connection).
    fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut c = Conn {
            reader: BufReader::with_capacity(64 << 10, stream),
            writer,
            next_sid: 1,
            line: Vec::new(),
        };
        let info = c.read_line()?;
        if !info.starts_with("INFO") {
            return Err(format!("expected INFO, got {info:?}"));
        }
        c.write(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false,\"name\":\"surepush-lg\"}\r\nPING\r\n",
        )?;
        c.flush_pong()?;
        Ok(c)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.writer.write_all(bytes).map_err(|e| e.to_string())
    }

    /// One protocol line without its `\r\n`.
    fn read_line(&mut self) -> Result<String, String> {
        self.line.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.line)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("server closed the connection".into());
        }
        while matches!(self.line.last(), Some(b'\n' | b'\r')) {
            self.line.pop();
        }
        String::from_utf8(self.line.clone()).map_err(|_| "protocol line is not UTF-8".into())
    }

    /// Reads `n` payload bytes and the `\r\n` after them.
    fn read_payload(&mut self, n: usize) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; n + 2];
        self.reader
            .read_exact(&mut buf)
            .map_err(|e| e.to_string())?;
        if &buf[n..] != b"\r\n" {
            return Err("payload not followed by CRLF".into());
        }
        buf.truncate(n);
        Ok(buf)
    }

    /// The next `MSG` or `PONG`, answering `PING`s and skipping `+OK` and
    /// `INFO`; `-ERR` is an error.
    fn next_op(&mut self) -> Result<Op, String> {
        loop {
            let line = self.read_line()?;
            let (op, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match op.to_ascii_uppercase().as_str() {
                "MSG" => {
                    // MSG <subject> <sid> [reply-to] <#bytes>
                    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
                    let (sid, reply, len) = match f.as_slice() {
                        [_, sid, len] => (sid, None, len),
                        [_, sid, reply, len] => (sid, Some(reply.to_string()), len),
                        _ => return Err(format!("bad MSG line {line:?}")),
                    };
                    let sid = sid.parse().map_err(|_| format!("bad sid in {line:?}"))?;
                    let len = len.parse().map_err(|_| format!("bad size in {line:?}"))?;
                    let payload = self.read_payload(len)?;
                    return Ok(Op::Msg(Msg {
                        sid,
                        reply,
                        payload,
                    }));
                }
                "HMSG" => {
                    // HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
                    // (not requested with headers:false; tolerated anyway).
                    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
                    let (sid, reply, hlen, len) = match f.as_slice() {
                        [_, sid, h, len] => (sid, None, h, len),
                        [_, sid, reply, h, len] => (sid, Some(reply.to_string()), h, len),
                        _ => return Err(format!("bad HMSG line {line:?}")),
                    };
                    let sid = sid.parse().map_err(|_| format!("bad sid in {line:?}"))?;
                    let hlen: usize = hlen.parse().map_err(|_| format!("bad size in {line:?}"))?;
                    let len: usize = len.parse().map_err(|_| format!("bad size in {line:?}"))?;
                    if hlen > len {
                        return Err(format!("bad sizes in {line:?}"));
                    }
                    let mut payload = self.read_payload(len)?;
                    payload.drain(..hlen);
                    return Ok(Op::Msg(Msg {
                        sid,
                        reply,
                        payload,
                    }));
                }
                "PING" => self.write(b"PONG\r\n")?,
                "PONG" => return Ok(Op::Pong),
                "+OK" | "INFO" => {}
                "-ERR" => return Err(format!("server error: {rest}")),
                _ => return Err(format!("unexpected protocol line {line:?}")),
            }
        }
    }

    /// Waits for the next `PONG`, dropping messages that arrive first.
    fn flush_pong(&mut self) -> Result<(), String> {
        while !matches!(self.next_op()?, Op::Pong) {}
        Ok(())
    }

    /// Subscribes to `subject`; returns the subscription id.
    fn sub(&mut self, subject: &str) -> Result<u64, String> {
        let sid = self.next_sid;
        self.next_sid += 1;
        self.write(format!("SUB {subject} {sid}\r\n").as_bytes())?;
        Ok(sid)
    }

    /// Publishes `payload` to `subject` in one write.
    fn publish(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) -> Result<(), String> {
        let mut out = Vec::with_capacity(subject.len() + payload.len() + 64);
        match reply {
            Some(r) => write!(out, "PUB {subject} {r} {}\r\n", payload.len()),
            None => write!(out, "PUB {subject} {}\r\n", payload.len()),
        }
        .expect("Vec write");
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        self.write(&out)
    }

    /// A request to the JetStream API: the reply comes to a fresh inbox;
    /// a reply with an `"error"` field is an error.
    fn api(&mut self, subject: &str, body: &str) -> Result<String, String> {
        let inbox = format!("_INBOX.lg.{}.{}", std::process::id(), self.next_sid);
        let sid = self.sub(&inbox)?;
        self.publish(subject, Some(&inbox), body.as_bytes())?;
        let reply = loop {
            if let Op::Msg(m) = self.next_op()? {
                if m.sid == sid {
                    break m.payload;
                }
            }
        };
        self.write(format!("UNSUB {sid}\r\n").as_bytes())?;
        let reply = String::from_utf8_lossy(&reply).into_owned();
        check_reply(&reply).map_err(|e| format!("{subject}: {e}"))?;
        Ok(reply)
    }
}

/// A JetStream API reply or PubAck must be JSON without an `"error"` field.
fn check_reply(reply: &str) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_str(reply).map_err(|e| format!("reply {reply:?} is not JSON: {e}"))?;
    match v.get("error") {
        Some(e) => Err(format!("JetStream error {e}")),
        None => Ok(()),
    }
}

/// Runs the workload against the NATS server at `addr` (JetStream
/// enabled); `run` keeps streams, consumers and subjects of different runs
/// apart.
pub fn run_jetstream(addr: SocketAddr, load: &PairLoad) -> Result<RawReport, String> {
    load.closed_loop_only("the JetStream peer")?;
    let run = load.run;
    let stream = format!("LG{run}");
    let mut control = Conn::connect(addr)?;
    control.api(
        &format!("$JS.API.STREAM.CREATE.{stream}"),
        &format!(
            r#"{{"name":"{stream}","subjects":["lg.{run}.>"],"storage":"file","retention":"limits"}}"#
        ),
    )?;
    let result = run_pairs(&mut control, addr, &stream, load);
    let deleted = control.api(&format!("$JS.API.STREAM.DELETE.{stream}"), "");
    let report = result?;
    deleted?;
    Ok(report)
}

fn run_pairs(
    control: &mut Conn,
    addr: SocketAddr,
    stream: &str,
    load: &PairLoad,
) -> Result<RawReport, String> {
    let PairLoad {
        pairs,
        messages,
        run,
        ..
    } = *load;
    let payload = load.payload.max(16);
    let (tx, rx) = mpsc::channel::<PeerResult>();
    let mut receivers = Vec::new();
    for pair in 0..u64::from(pairs) {
        let mut r = Conn::connect(addr)?;
        let deliver = format!("_lg.{run}.d{pair}");
        let sid = r.sub(&deliver)?;
        // The subscription is in place before the consumer pushes to it.
        r.write(b"PING\r\n")?;
        r.flush_pong()?;
        control.api(
            &format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.r{pair}"),
            &format!(
                r#"{{"stream_name":"{stream}","config":{{"durable_name":"r{pair}","deliver_subject":"{deliver}","ack_policy":"explicit","filter_subject":"lg.{run}.{pair}","max_ack_pending":1000}}}}"#
            ),
        )?;
        let tx = tx.clone();
        receivers.push(std::thread::spawn(move || {
            let mut h = new_histogram();
            let mut next = 0u64;
            while next < u64::from(messages) {
                let m = match r.next_op() {
                    Ok(Op::Msg(m)) if m.sid == sid => m,
                    Ok(_) => continue,
                    Err(_) => break,
                };
                if m.payload.len() >= 16 {
                    let sent = u64::from_le_bytes(m.payload[..8].try_into().expect("8"));
                    let k = u64::from_le_bytes(m.payload[8..16].try_into().expect("8"));
                    if k == next {
                        next += 1;
                        h.saturating_record(now_ns().saturating_sub(sent));
                    }
                }
                // The reply subject is the $JS.ACK subject: an empty
                // message there is an ack.
                if let Some(ack) = m.reply {
                    if r.write(format!("PUB {ack} 0\r\n\r\n").as_bytes()).is_err() {
                        break;
                    }
                }
            }
            let _ = tx.send((new_histogram(), h, 0, next));
        }));
    }
    let mut senders = Vec::new();
    for pair in 0..u64::from(pairs) {
        let mut s = Conn::connect(addr)?;
        let inbox = format!("_INBOX.lg.{run}.s{pair}");
        let sid = s.sub(&inbox)?;
        s.write(b"PING\r\n")?;
        s.flush_pong()?;
        senders.push((s, inbox, sid, pair));
    }
    let started = Instant::now();
    let cpu = CpuMeter::start(load.server_pid);
    for (mut s, inbox, sid, pair) in senders {
        let subject = format!("lg.{run}.{pair}");
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut h = new_histogram();
            let mut acked = 0u64;
            let mut body = vec![0u8; payload];
            'send: for k in 0..u64::from(messages) {
                let t = now_ns();
                body[..8].copy_from_slice(&t.to_le_bytes());
                body[8..16].copy_from_slice(&k.to_le_bytes());
                if s.publish(&subject, Some(&inbox), &body).is_err() {
                    break;
                }
                // The PubAck: {"stream":"LG..","seq":N}.
                loop {
                    match s.next_op() {
                        Ok(Op::Msg(m)) if m.sid == sid => {
                            if check_reply(&String::from_utf8_lossy(&m.payload)).is_err() {
                                break 'send;
                            }
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => break 'send,
                    }
                }
                acked += 1;
                h.saturating_record(now_ns().saturating_sub(t));
            }
            let _ = tx.send((h, new_histogram(), acked, 0));
        });
    }
    drop(tx);
    Ok(collect(rx, receivers, started, cpu))
}
