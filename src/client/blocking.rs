//! A blocking TCP driver for [`ClientSession`]: one socket, one thread.
//!
//! Good for tests, examples and scripts; the load generator drives many
//! sessions itself.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::session::{ClientConfig, ClientSession, Event};
use crate::proto::{Decoder, Qos, Seq, UserId, DEFAULT_MAX_FRAME};

/// A connected client session over a blocking socket.
#[derive(Debug)]
pub struct BlockingClient {
    stream: TcpStream,
    session: ClientSession,
    decoder: Decoder,
    origin: Instant,
    out: BytesMut,
}

impl BlockingClient {
    /// Connects, sends CONNECT and waits (up to `timeout`) for the session
    /// to be live (replay finished). Events seen on the way stay queued.
    pub fn connect(
        addr: SocketAddr,
        config: ClientConfig,
        delivered: Option<Seq>,
        timeout: Duration,
    ) -> io::Result<BlockingClient> {
        Self::resume(addr, ClientSession::new(config, delivered), timeout)
    }

    /// Reconnects an existing session (its outbox and position carry over).
    pub fn resume(
        addr: SocketAddr,
        mut session: ClientSession,
        timeout: Duration,
    ) -> io::Result<BlockingClient> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        let origin = Instant::now();
        session.connect(0);
        let mut client = BlockingClient {
            stream,
            session,
            decoder: Decoder::new(DEFAULT_MAX_FRAME),
            origin,
            out: BytesMut::new(),
        };
        client.flush()?;
        Ok(client)
    }

    /// The protocol state (to persist `delivered`, or to resume elsewhere).
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// Gives the session back (e.g. to reconnect after an error).
    pub fn into_session(self) -> ClientSession {
        self.session
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Queues a message and writes it out; returns its client message id.
    pub fn send(&mut self, to: UserId, qos: Qos, payload: Bytes) -> io::Result<u64> {
        let now = self.now();
        let id = self.session.send(to, qos, payload, now);
        self.flush()?;
        Ok(id)
    }

    /// Asks for older history (answered as [`Event::Older`]).
    pub fn fetch_older(&mut self, before: Seq, limit: u32) -> io::Result<()> {
        let now = self.now();
        self.session.fetch_older(before, limit, now);
        self.flush()
    }

    /// Waits up to `timeout` for the next event. `Ok(None)` on timeout;
    /// an error when the connection is closed or broken.
    pub fn next_event(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.session.poll_event() {
                self.flush()?;
                return Ok(Some(e));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let mut wait = deadline - now;
            if let Some(t) = self.session.poll_timeout() {
                let until = Duration::from_nanos(t.saturating_sub(self.now()));
                wait = wait.min(until.max(Duration::from_millis(1)));
            }
            self.stream.set_read_timeout(Some(wait))?;
            let mut buf = [0u8; 16 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    let now = self.now();
                    self.session.handle_disconnect(now);
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "gateway closed the connection",
                    ));
                }
                Ok(n) => {
                    self.decoder.feed(&buf[..n]);
                    loop {
                        match self.decoder.decode() {
                            Ok(Some(frame)) => {
                                let now = self.now();
                                self.session.handle_frame(frame, now);
                            }
                            Ok(None) => break,
                            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    let now = self.now();
                    self.session.handle_timeout(now);
                }
                Err(e) => return Err(e),
            }
            self.flush()?;
        }
    }

    /// Waits for an event matching `pred`, skipping others (which are lost
    /// to the caller), up to `timeout`.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> io::Result<Option<Event>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.next_event(left)? {
                Some(e) if pred(&e) => return Ok(Some(e)),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// Local address of the socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    fn flush(&mut self) -> io::Result<()> {
        while let Some(f) = self.session.poll_transmit() {
            f.encode(&mut self.out);
        }
        if !self.out.is_empty() {
            self.stream.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Addr `peer` of the socket.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// Writes raw bytes (for bad-input tests).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }
}
