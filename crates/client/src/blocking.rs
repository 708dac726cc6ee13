//! A blocking driver for [`ClientSession`]: one socket (plain TCP or TLS,
//! [`Gateway`]), one thread.
//!
//! Good for tests, examples and scripts; the load generator drives many
//! sessions itself.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::link::{Gateway, Link};
use super::session::{ClientConfig, ClientSession, Event};
use super::wire::{wait_writable, Transport, WsLink};
use surepush_host::poll::Readiness;
use surepush_proto::{Decoder, DeviceId, ErrorCode, Qos, Seq, UserId, DEFAULT_MAX_FRAME};

impl ClientConfig {
    /// Defaults for `token` / `device`, numbering sends from the wall clock
    /// in µs. A fixed start (say 1) would make the first sends after an app
    /// restart look like retries of the previous run's, and the gateway
    /// would answer them `Duplicate` (or `Conflict`) and store nothing. The
    /// clock is read here, in the driver: the session itself reads none.
    pub fn new(token: String, device: DeviceId) -> ClientConfig {
        let first = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        ClientConfig::with_first_id(token, device, first)
    }
}

/// A connected client session over a blocking socket.
#[derive(Debug)]
pub struct BlockingClient {
    link: Link,
    session: ClientSession,
    decoder: Decoder,
    origin: Instant,
    out: BytesMut,
    /// Events read while following a redirect, handed out first.
    early: VecDeque<Event>,
}

/// Redirects [`BlockingClient::connect_routed`] follows before giving up
/// (a cluster answers with the owner's address at once; more hops mean the
/// placement is moving).
pub const MAX_REDIRECTS: usize = 3;

impl BlockingClient {
    /// Connects, sends CONNECT and waits (up to `timeout`) for the session
    /// to be live (replay finished). Events seen on the way stay queued.
    pub fn connect(
        gateway: impl Into<Gateway>,
        config: ClientConfig,
        delivered: Option<Seq>,
        timeout: Duration,
    ) -> io::Result<BlockingClient> {
        Self::resume(gateway, ClientSession::new(config, delivered), timeout)
    }

    /// Connects like [`BlockingClient::connect`] to any node of a cluster
    /// and follows the gateway to the node that owns the user (DISCONNECT
    /// `WrongNode` with its address, issue #20), at most
    /// [`MAX_REDIRECTS`] times. Returns once the first answer came (the
    /// CONNECT was taken); events seen stay queued.
    pub fn connect_routed(
        addr: SocketAddr,
        config: ClientConfig,
        delivered: Option<Seq>,
        timeout: Duration,
    ) -> io::Result<BlockingClient> {
        let mut session = ClientSession::new(config, delivered);
        let mut addr = addr;
        for _ in 0..=MAX_REDIRECTS {
            let mut client = Self::resume(addr, session, timeout)?;
            let first = client
                .next_event(timeout)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "no answer to CONNECT"))?;
            match first {
                Event::Disconnected(code, to) if code == ErrorCode::WrongNode as u16 => {
                    addr = resolve(&to)?;
                    session = client.into_session();
                }
                other => {
                    client.early.push_back(other);
                    return Ok(client);
                }
            }
        }
        Err(io::Error::other(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// Reconnects an existing session (its outbox and position carry over).
    pub fn resume(
        gateway: impl Into<Gateway>,
        session: ClientSession,
        timeout: Duration,
    ) -> io::Result<BlockingClient> {
        Self::try_resume(gateway, session, timeout).map_err(|failed| failed.0)
    }

    /// As [`BlockingClient::resume`], giving the session back when the
    /// gateway cannot be reached (to try again later).
    pub fn try_resume(
        gateway: impl Into<Gateway>,
        session: ClientSession,
        timeout: Duration,
    ) -> Result<BlockingClient, Box<(io::Error, ClientSession)>> {
        let gateway = gateway.into();
        let link = match TcpStream::connect_timeout(&gateway.addr, timeout).and_then(|s| {
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            Link::new(s, &gateway)
        }) {
            Ok(link) => link,
            Err(e) => return Err(Box::new((e, session))),
        };
        Self::over(link, session)
    }

    /// As [`BlockingClient::connect`], over `transport` (TCP or the
    /// gateway's WebSocket listener; either over TLS when `gateway` has
    /// TLS settings: `tls.listen`, `tls.ws_listen`).
    pub fn connect_over(
        gateway: impl Into<Gateway>,
        transport: &Transport,
        config: ClientConfig,
        delivered: Option<Seq>,
        timeout: Duration,
    ) -> io::Result<BlockingClient> {
        let session = ClientSession::new(config, delivered);
        Self::try_resume_over(gateway, transport, session, timeout).map_err(|failed| failed.0)
    }

    /// As [`BlockingClient::try_resume`], over `transport`.
    pub fn try_resume_over(
        gateway: impl Into<Gateway>,
        transport: &Transport,
        session: ClientSession,
        timeout: Duration,
    ) -> Result<BlockingClient, Box<(io::Error, ClientSession)>> {
        let gateway = gateway.into();
        match transport {
            Transport::Tcp => Self::try_resume(gateway, session, timeout),
            Transport::WebSocket { path } => match WsLink::open(&gateway, path, timeout) {
                Ok(ws) => Self::over(Link::Ws(Box::new(ws)), session),
                Err(e) => Err(Box::new((e, session))),
            },
        }
    }

    /// Starts the session on a connected link.
    fn over(
        link: Link,
        mut session: ClientSession,
    ) -> Result<BlockingClient, Box<(io::Error, ClientSession)>> {
        let origin = Instant::now();
        session.connect(0);
        let mut client = BlockingClient {
            link,
            session,
            decoder: Decoder::new(DEFAULT_MAX_FRAME),
            origin,
            out: BytesMut::new(),
            early: VecDeque::new(),
        };
        match client.flush() {
            Ok(()) => Ok(client),
            Err(e) => Err(Box::new((e, client.session))),
        }
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
        let (id, written) = self.queue_send(to, qos, payload);
        written.map(|()| id)
    }

    /// As [`BlockingClient::send`], returning the id even when writing
    /// failed: a QoS 1/2 message stays in the session's outbox and goes out
    /// again after [`BlockingClient::try_resume`].
    pub fn queue_send(&mut self, to: UserId, qos: Qos, payload: Bytes) -> (u64, io::Result<()>) {
        let now = self.now();
        let id = self.session.send(to, qos, payload, now);
        (id, self.flush())
    }

    /// Follows a room from now on (answered with [`Event::Subscribed`]).
    pub fn subscribe(&mut self, room: u64, qos: Qos) -> io::Result<()> {
        let now = self.now();
        self.session.subscribe(room, qos, now);
        self.flush()
    }

    /// Follows a room from just after `last`.
    pub fn resume_room(&mut self, room: u64, qos: Qos, last: Seq) -> io::Result<()> {
        let now = self.now();
        self.session.resume(room, qos, last, now);
        self.flush()
    }

    /// Watches the presence of `users` (answered with [`Event::Watched`],
    /// then [`Event::Presence`]); returns the WATCH's request id, if one
    /// was sent.
    pub fn watch(&mut self, users: &[UserId]) -> io::Result<Option<u32>> {
        let now = self.now();
        let request = self.session.watch(users, now);
        self.flush().map(|()| request)
    }

    /// Stops watching the presence of `users`.
    pub fn unwatch(&mut self, users: &[UserId]) -> io::Result<()> {
        let now = self.now();
        self.session.unwatch(users, now);
        self.flush()
    }

    /// Acknowledges what was delivered in QoS 1 rooms.
    pub fn ack_rooms(&mut self) -> io::Result<()> {
        self.session.ack_rooms();
        self.flush()
    }

    /// Asks for a page of conversation summaries (answered as
    /// [`Event::Conversations`] with the returned request id).
    pub fn list_conversations(
        &mut self,
        before: Seq,
        limit: u32,
        unread_only: bool,
    ) -> io::Result<u32> {
        let now = self.now();
        let id = self
            .session
            .list_conversations(before, limit, unread_only, now)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "not connected"))?;
        self.flush()?;
        Ok(id)
    }

    /// Asks for a page of one conversation (answered as
    /// [`Event::ConversationPage`] with the returned request id).
    pub fn fetch_conversation(
        &mut self,
        peer: UserId,
        direction: surepush_proto::SyncDirection,
        limit: u32,
    ) -> io::Result<u32> {
        let now = self.now();
        let id = self
            .session
            .fetch_conversation(peer, direction, limit, now)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "not connected"))?;
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
    /// an error when the connection is closed or broken. A zero timeout
    /// still reads what the socket already holds.
    pub fn next_event(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        let deadline = Instant::now() + timeout;
        let mut first = true;
        if let Some(e) = self.early.pop_front() {
            return Ok(Some(e));
        }
        loop {
            if let Some(e) = self.session.poll_event() {
                self.flush()?;
                return Ok(Some(e));
            }
            let now = Instant::now();
            if now >= deadline && !first {
                return Ok(None);
            }
            first = false;
            let mut wait = deadline.saturating_duration_since(now);
            if let Some(t) = self.session.poll_timeout() {
                let until = Duration::from_nanos(t.saturating_sub(self.now()));
                wait = wait.min(until.max(Duration::from_millis(1)));
            }
            // The socket is non-blocking; waiting is ppoll's, whose timeout
            // is precise (a socket read timeout is rounded up to a
            // scheduler tick, 1-4 ms, which skews paced senders).
            if !self.link.has_buffered() {
                wait_readable(self.link.tcp(), wait)?;
            }
            let mut buf = [0u8; 16 * 1024];
            match self.link.read(&mut buf) {
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
        self.link.tcp().local_addr()
    }

    fn flush(&mut self) -> io::Result<()> {
        while let Some(f) = self.session.poll_transmit() {
            f.encode(&mut self.out);
        }
        if !self.out.is_empty() {
            self.link.write_all(&self.out, wait_writable)?;
        }
        self.out.clear();
        Ok(())
    }

    /// The certificate (DER) a TLS gateway presented, once the handshake
    /// is done (after the first event); `None` over plain TCP.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.link.peer_certificate()
    }

    /// Addr `peer` of the socket.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.link.tcp().peer_addr()
    }

    /// Writes raw bytes (for bad-input tests).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(bytes);
        self.flush()
    }
}

/// The address in a redirect (`host:port`).
fn resolve(to: &str) -> io::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    to.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("redirect {to:?} names no address"),
        )
    })
}

/// Waits until `stream` is readable (or has an error/EOF pending), at most
/// `timeout`; a zero timeout only checks.
fn wait_readable(stream: &TcpStream, timeout: Duration) -> io::Result<()> {
    surepush_host::poll::wait(stream, Readiness::Readable, Some(timeout))
}
