//! Many SDK sessions per thread: the load generator's scalable client.
//!
//! A [`Conn`] is the SDK's sans-IO [`ClientSession`] (ACKs, retransmits,
//! replay from its cursor, reconnects) over a non-blocking socket; a
//! [`Fleet`] is one thread's connections, served from one epoll loop
//! ([`Poller`]). Connects are non-blocking, so a thread opens or reopens
//! all its sockets at once (a reconnect storm) without waiting for each
//! handshake; bytes that do not fit a socket wait until it drains.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use serde::Serialize;
use socket2::{Domain, SockRef, Socket, Type};
use surepush_client::{ClientSession, Event};
use surepush_proto::{Decoder, DEFAULT_MAX_FRAME};

use crate::poller::Poller;

/// How a connection is dropped on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DropMode {
    /// A reset (SO_LINGER 0): the gateway sees the error at once, and
    /// this side keeps no TIME_WAIT socket (no ephemeral ports run out).
    Reset,
    /// A plain close (FIN).
    Close,
    /// Nothing is sent: the socket stays open and unread until the round
    /// ends, like a phone whose network vanished. The gateway learns of it
    /// when the device's new connection replaces it.
    Silent,
}

/// Timers (retransmits, keepalive PINGs) are checked this often.
const TICK: Duration = Duration::from_millis(50);

/// One SDK session and its current socket (none while disconnected).
pub(crate) struct Conn {
    stream: Option<TcpStream>,
    decoder: Decoder,
    out: BytesMut,
    /// The protocol state; it survives reconnects.
    pub(crate) session: ClientSession,
}

/// A socket whose connect to `server` is under way (or done).
fn connect_nonblocking(server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(server), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    match socket.connect(&server.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// Closes `stream` with a reset instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
}

impl Conn {
    fn new(session: ClientSession) -> Conn {
        Conn {
            stream: None,
            decoder: Decoder::new(DEFAULT_MAX_FRAME),
            out: BytesMut::new(),
            session,
        }
    }

    fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// Starts a connect to `server` and queues CONNECT, which is written as
    /// soon as the handshake completes.
    fn open(&mut self, server: SocketAddr, now: u64) -> std::io::Result<RawFd> {
        let stream = connect_nonblocking(server)?;
        let fd = stream.as_raw_fd();
        self.stream = Some(stream);
        self.decoder = Decoder::new(DEFAULT_MAX_FRAME);
        self.out.clear();
        self.session.connect(now);
        self.flush();
        Ok(fd)
    }

    /// Drops the connection without a word to the gateway; the session
    /// keeps its cursor and outbox. Returns the socket when it is to be
    /// left open (`Silent`).
    fn drop_connection(&mut self, mode: DropMode, now: u64) -> Option<TcpStream> {
        let stream = self.stream.take()?;
        self.session.handle_disconnect(now);
        match mode {
            DropMode::Reset => reset(stream),
            DropMode::Close => drop(stream),
            DropMode::Silent => return Some(stream),
        }
        None
    }

    /// The connection broke or was closed by the gateway.
    fn lost(&mut self, now: u64) {
        self.stream = None;
        self.session.handle_disconnect(now);
    }

    /// Reads what the socket holds, feeds it to the session, fires its
    /// timers, writes what it wants to send and hands each event to
    /// `on_event`. False when the connection is gone.
    fn pump(&mut self, buf: &mut [u8], now: u64, mut on_event: impl FnMut(Event)) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let mut alive = true;
        loop {
            match stream.read(buf) {
                Ok(0) => {
                    alive = false;
                    break;
                }
                Ok(n) => self.decoder.feed(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    alive = false;
                    break;
                }
            }
        }
        // Frames that arrived before a close still count (ERROR, DISCONNECT).
        loop {
            match self.decoder.decode() {
                Ok(Some(frame)) => self.session.handle_frame(frame, now),
                Ok(None) => break,
                Err(_) => {
                    alive = false;
                    break;
                }
            }
        }
        if alive {
            self.session.handle_timeout(now);
            alive = self.flush();
        }
        if !alive {
            self.lost(now);
        }
        while let Some(e) = self.session.poll_event() {
            on_event(e);
        }
        alive
    }

    /// Fires the session's timers if one is due; false when the
    /// connection is gone.
    fn tick(&mut self, now: u64) -> bool {
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now);
        }
        let alive = self.flush();
        if !alive {
            self.lost(now);
        }
        alive
    }

    /// Writes what the session queued, as far as the socket takes it; the
    /// rest waits for the socket to drain (an edge-triggered EPOLLOUT).
    fn flush(&mut self) -> bool {
        while let Some(f) = self.session.poll_transmit() {
            f.encode(&mut self.out);
        }
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        while !self.out.is_empty() {
            match stream.write(&self.out) {
                Ok(0) => return false,
                Ok(n) => self.out.advance(n),
                // Also a connect still in progress.
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        true
    }
}

/// One thread's connections and their epoll loop.
pub(crate) struct Fleet {
    conns: Vec<Conn>,
    server: SocketAddr,
    poller: Poller,
    /// Sockets dropped with [`DropMode::Silent`], still open.
    parked: Vec<TcpStream>,
    buf: Vec<u8>,
    origin: Instant,
    last_tick: Instant,
}

impl Fleet {
    /// A fleet of `sessions` (none connected yet) for `server`; session
    /// time is nanoseconds since `origin`.
    pub(crate) fn new(
        server: SocketAddr,
        sessions: impl IntoIterator<Item = ClientSession>,
        origin: Instant,
    ) -> Result<Fleet, String> {
        Ok(Fleet {
            conns: sessions.into_iter().map(Conn::new).collect(),
            server,
            poller: Poller::empty()?,
            parked: Vec::new(),
            buf: vec![0u8; 256 << 10],
            origin,
            last_tick: Instant::now(),
        })
    }

    /// Connections (open or not).
    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Session time now.
    pub(crate) fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Opens (or reopens) connection `i`: CONNECT goes out with the
    /// session's cursor once the handshake completes.
    pub(crate) fn open(&mut self, i: usize) -> Result<(), String> {
        let now = self.now();
        let fd = self.conns[i]
            .open(self.server, now)
            .map_err(|e| format!("connect to {}: {e}", self.server))?;
        self.poller.add_edge(fd, i)
    }

    /// Drops connection `i` on purpose (see [`DropMode`]).
    pub(crate) fn drop_conn(&mut self, i: usize, mode: DropMode) -> Result<(), String> {
        let now = self.now();
        if let Some(s) = self.conns[i].drop_connection(mode, now) {
            self.poller.remove(s.as_raw_fd())?;
            self.parked.push(s);
        }
        Ok(())
    }

    /// Resets the sockets left open by [`DropMode::Silent`].
    pub(crate) fn release_parked(&mut self) {
        self.parked.drain(..).for_each(reset);
    }

    /// Resets every connection (teardown without TIME_WAIT here).
    pub(crate) fn close_all(&mut self) {
        let now = self.now();
        for c in &mut self.conns {
            if let Some(s) = c.stream.take() {
                c.session.handle_disconnect(now);
                reset(s);
            }
        }
        self.release_parked();
    }

    /// Waits up to `timeout_ms` for socket activity, runs the connections
    /// that have some and fires the session timers that are due; hands
    /// each event to `on_event(index, event)`. Returns the connections
    /// that closed or broke (the session knows; `open` reconnects it).
    pub(crate) fn turn(
        &mut self,
        timeout_ms: i32,
        mut on_event: impl FnMut(usize, Event),
    ) -> Vec<usize> {
        let ready = self.poller.wait(timeout_ms);
        let now = self.now();
        let mut closed = Vec::new();
        for i in ready {
            let c = &mut self.conns[i];
            // A stale readiness of a socket closed since is skipped.
            if c.is_open() && !c.pump(&mut self.buf, now, |e| on_event(i, e)) {
                closed.push(i);
            }
        }
        if self.last_tick.elapsed() >= TICK {
            self.last_tick = Instant::now();
            for (i, c) in self.conns.iter_mut().enumerate() {
                if c.is_open() && !c.tick(now) {
                    closed.push(i);
                }
            }
        }
        closed
    }
}
