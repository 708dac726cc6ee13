//! The transport seam: how a client's bytes become core frames and back,
//! once for every protocol.
//!
//! One path for every connection:
//!
//! ```text
//! accept (any shard)                         owner shard
//! ──────────────────                         ───────────
//! socket ─► Handshake::feed/poll_hello ─► authenticate ─► owner_shard(user)
//!                                                 │ here ─► serve
//!                                                 └ else ─► mesh: Handoff ─► adopt ─► serve
//! serve: ConnIo { output queue, Box<dyn Session> } + read_loop(Inbound) + write_loop
//! ```
//!
//! Ground rules:
//! - [`accept`] is the only place a new socket is read before it has an
//!   owner: it runs a protocol's [`Handshake`] until an authenticated hello
//!   or a refusal (bytes to write, then close), and routes by
//!   [`owner_shard`], the server's one question "which shard owns this
//!   user" (the core's router answers it).
//! - The mesh carries one transport-neutral [`Handoff`]: the socket, the
//!   protocol's hello, and the bytes that came after it.
//! - On the owner, a connection is an output queue plus a protocol
//!   [`Session`] ([`ConnIo`]), one read loop generic over the protocol's
//!   [`Inbound`] decoder and one write loop ([`loops`]); both loops are
//!   generic over the byte stream under them ([`stream`]).
//! - Room messages reach every protocol as the bytes the core encoded once
//!   ([`Session::send_shared`]): native connections queue them as they are,
//!   MQTT connections write a small PUBLISH header of their own in front of
//!   the shared payload; nothing is decoded into a copy and re-encoded.
//! - When a client reads too slowly is decided in one place for every
//!   protocol ([`slow`]).
//!
//! # Where a new transport goes
//!
//! - **A new protocol** (a third wire format next to native and MQTT): a
//!   file here with a [`Handshake`] (first message → hello + token, and the
//!   refusals in the protocol's own words), an [`Inbound`] (bytes → core
//!   frames) and a [`Session`] (core output → bytes, including
//!   [`Session::send_shared`]); a variant of [`Hello`]; a listener in
//!   `node.rs` that calls `accept::<YourHandshake>`. The loops, the mesh,
//!   the output budgets and the runtime stay as they are.
//! - **A framing layer** (WebSocket: bytes ↔ messages) or **a stream
//!   layer** (TLS): a reader and a writer wrapping another stream's halves
//!   ([`StreamReader`], [`StreamWriter`]; its reader unframes or decrypts, its writer frames or encrypts the
//!   gathered chunks — a WebSocket server frame is an unmasked header in
//!   front of the chunks, so shared room payloads stay shared), plus its own
//!   opening step (HTTP upgrade, TLS handshake) run in [`accept`] before the
//!   protocol's handshake. Any protocol then runs over it unchanged:
//!   `ws + native`, `ws + mqtt`, `tls + ...` are compositions. A layer with
//!   state of its own (a TLS session, a WebSocket's partial frame) adds it
//!   to [`Handoff`] next to the descriptor ([`Framing`]). WebSocket is
//!   built so: [`accept_ws`] runs the upgrade (`ws::open`) on the TCP
//!   halves, wraps them (`ws::wrap`) and runs the subprotocol's
//!   [`Handshake`] on top.

mod handoff;
mod loops;
pub(crate) mod mqtt;
mod native;
mod output;
mod port;
pub(crate) mod slow;
mod stream;
mod ws;

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use futures_lite::io::ReadHalf;
use glommio::net::TcpStream;

use surepush_core::{Claims, ConnId};
use surepush_proto::{Frame, ProtoError, UserId};

pub(crate) use handoff::{Framing, Handoff, Hello};
pub(crate) use mqtt::{MqttHandshake, MqttShard};
pub(crate) use native::NativeHandshake;
pub(crate) use output::ConnIo;
pub(crate) use port::{LastWill, ShardLoop, ShardPort};
use stream::{StreamReader, StreamWriter};

/// Which shard owns `user`: the one place the server asks (the accept path
/// of every protocol). The core's router answers.
pub(crate) fn owner_shard(user: UserId, shards: u16) -> u16 {
    surepush_core::Router::of_node(shards).owner(user).0
}

/// What a handshake made of the bytes so far.
pub(crate) enum Step<H> {
    /// Not enough bytes yet.
    More,
    /// The first message: a hello to authenticate.
    Hello(H),
    /// Write these bytes (may be empty), then close.
    Refuse(Vec<u8>),
}

/// A protocol's accepting side: from the first bytes of a socket to an
/// authenticated hello. Sans IO: [`accept`] reads and writes.
pub(crate) trait Handshake: Sized {
    /// The protocol's first message (before authentication).
    type Hello;

    /// A handshake for a new socket on this shard; `None` when the protocol
    /// is not served here.
    fn new(rt: &dyn ShardPort) -> Option<Self>;
    /// Bytes received.
    fn feed(&mut self, bytes: &[u8]);
    /// The first message, once complete (or a refusal).
    fn poll_hello(&mut self) -> Step<Self::Hello>;
    /// What to write when no hello came within the connect timeout.
    fn timed_out(&self) -> Vec<u8>;
    /// The token the hello carries.
    fn token(hello: &Self::Hello) -> &str;
    /// What to write when the token does not verify.
    fn refuse_auth(hello: &Self::Hello, e: &surepush_core::AuthError) -> Vec<u8>;
    /// What to write when the socket cannot be handed to its owner.
    fn refuse_unavailable(hello: &Self::Hello) -> Vec<u8>;
    /// Bytes received after the hello (the decoder's leftover).
    fn rest(self) -> Bytes;
    /// The hello as the mesh and the owner shard carry it.
    fn into_hello(hello: Self::Hello, claims: Claims) -> Hello;
}

/// Bytes read per `read` during the handshake.
const HANDSHAKE_READ: usize = 4096;

/// A connection's stream before it is served: its socket and the two
/// halves of whatever layers wrap it.
struct Opened<R, W> {
    fd: RawFd,
    reader: R,
    writer: W,
}

/// A new TCP connection, split.
fn opened(tcp: TcpStream) -> Opened<ReadHalf<TcpStream>, stream::TcpWriter> {
    let _ = tcp.set_nodelay(true);
    let fd = tcp.as_raw_fd();
    let (reader, writer) = stream::ByteStream::split(stream::Tcp::new(tcp));
    Opened { fd, reader, writer }
}

/// Accepting side of a plain TCP listener speaking the protocol `H`.
pub(crate) async fn accept<H: Handshake, S: ShardLoop>(rt: Rc<S>, tcp: TcpStream) {
    let deadline = Instant::now() + Duration::from_millis(rt.config().core.connect_timeout_ms);
    accept_over::<H, S, _, _>(rt, opened(tcp), deadline).await
}

/// Accepting side of the WebSocket listener: the HTTP upgrade, then the
/// protocol its subprotocol names, inside WebSocket messages. One connect
/// timeout covers both (a slow upgrade request gets 408).
pub(crate) async fn accept_ws<S: ShardLoop>(rt: Rc<S>, tcp: TcpStream) {
    let deadline = Instant::now() + Duration::from_millis(rt.config().core.connect_timeout_ms);
    let Opened {
        fd,
        mut reader,
        mut writer,
    } = opened(tcp);
    let mqtt = rt.mqtt().is_some();
    let upgraded = within(
        deadline,
        ws::open(&mut reader, &mut writer, rt.config(), mqtt),
    )
    .await;
    let (subprotocol, rest) = match upgraded {
        Some(Ok(upgraded)) => upgraded,
        Some(Err(ws::NotOpened::Refuse(response))) => return refuse_with(writer, &response).await,
        Some(Err(ws::NotOpened::Gone)) => return,
        None => return refuse_with(writer, &ws::timed_out()).await,
    };
    let params = ws::WsParams::new(rt.config());
    let (reader, writer) = ws::wrap(fd, reader, writer, &rest, params);
    let opened = Opened { fd, reader, writer };
    match subprotocol {
        ws::Subprotocol::Native => {
            accept_over::<NativeHandshake, S, _, _>(rt, opened, deadline).await
        }
        ws::Subprotocol::Mqtt => accept_over::<MqttHandshake, S, _, _>(rt, opened, deadline).await,
    }
}

/// `fut`, unless `deadline` passes first (`None`).
async fn within<T>(deadline: Instant, fut: impl std::future::Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        None
    })
    .await
}

/// Accepting side, for every protocol over any stream: reads the hello
/// before `deadline`, authenticates it, then serves the connection here or
/// hands it to the owner shard.
async fn accept_over<H: Handshake, S: ShardLoop, R: StreamReader, W: StreamWriter>(
    rt: Rc<S>,
    stream: Opened<R, W>,
    deadline: Instant,
) {
    let Opened {
        fd,
        mut reader,
        writer,
    } = stream;
    let Some(mut hs) = H::new(rt.as_ref()) else {
        return;
    };
    let hello = match within(deadline, read_hello(&mut reader, &mut hs)).await {
        Some(Step::Hello(hello)) => hello,
        Some(Step::Refuse(reply)) => return refuse_with(writer, &reply).await,
        Some(Step::More) => return refuse_with(writer, &[]).await, // the peer left
        None => return refuse_with(writer, &hs.timed_out()).await,
    };
    let claims = match rt.verify(H::token(&hello)) {
        Ok(c) => c,
        Err(e) => {
            rt.count_auth_failure();
            return refuse_with(writer, &H::refuse_auth(&hello, &e)).await;
        }
    };
    let owner = owner_shard(claims.user, rt.shard_count());
    if owner == rt.shard_id() {
        let hello = H::into_hello(hello, claims);
        let stream = Opened { fd, reader, writer };
        return serve(&rt, stream, hello, hs.rest());
    }
    match stream::duplicate(fd) {
        Ok(dup) => {
            let framing = reader.suspend();
            drop(writer);
            let handoff = Handoff {
                fd: dup,
                hello: H::into_hello(hello, claims),
                rest: hs.rest(),
                framing,
            };
            rt.hand_off(owner, handoff);
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot duplicate a socket for handoff");
            refuse_with(writer, &H::refuse_unavailable(&hello)).await;
        }
    }
}

/// Reads until the handshake has a hello or a refusal; `Step::More` if the
/// peer left first.
async fn read_hello<H: Handshake, R: StreamReader>(reader: &mut R, hs: &mut H) -> Step<H::Hello> {
    let mut buf = [0u8; HANDSHAKE_READ];
    loop {
        match hs.poll_hello() {
            Step::More => {}
            step => return step,
        }
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return Step::More,
            Ok(n) => hs.feed(&buf[..n]),
        }
    }
}

/// Writes `bytes` (if any), ends the stream (a WebSocket sends its close
/// frame) and closes: the halves are dropped.
async fn refuse_with<W: StreamWriter>(mut writer: W, bytes: &[u8]) {
    if !bytes.is_empty() {
        let mut chunks = VecDeque::from([Bytes::copy_from_slice(bytes)]);
        let _ = writer.write_chunks(&mut chunks).await;
    }
    let _ = writer.end().await;
}

/// The owner's side of a handoff.
pub(crate) fn adopt<S: ShardLoop>(rt: &Rc<S>, handoff: Handoff) {
    let Handoff {
        fd,
        hello,
        rest,
        framing,
    } = handoff;
    let tcp = opened(stream::adopt_fd(fd));
    match framing {
        Framing::Tcp => serve(rt, tcp, hello, rest),
        Framing::Ws(state) => {
            let params = ws::WsParams::new(rt.config());
            let (reader, writer) = ws::resume(tcp.fd, tcp.reader, tcp.writer, *state, params);
            let fd = tcp.fd;
            serve(rt, Opened { fd, reader, writer }, hello, rest)
        }
    }
}

/// Serves an authenticated connection on the shard that owns its user: its
/// protocol's session and inbound decoder, then the two loops.
fn serve<S: ShardLoop, R: StreamReader, W: StreamWriter>(
    rt: &Rc<S>,
    stream: Opened<R, W>,
    hello: Hello,
    rest: Bytes,
) {
    match hello {
        Hello::Native(connect) => {
            let (session, inbound) = native::open(rt.as_ref(), connect, rest);
            start(rt, stream, session, inbound, |_, _| {});
        }
        Hello::Mqtt(hello) => {
            let Some((session, inbound)) = mqtt::open(rt.as_ref(), *hello, rest) else {
                return;
            };
            start(rt, stream, session, inbound, mqtt::opened);
        }
    }
}

fn start<S: ShardLoop, I: Inbound, R: StreamReader, W: StreamWriter>(
    rt: &Rc<S>,
    stream: Opened<R, W>,
    session: Box<dyn Session>,
    inbound: I,
    opened: impl FnOnce(&dyn ShardPort, &Rc<ConnIo>),
) {
    let Opened {
        fd,
        reader,
        mut writer,
    } = stream;
    let (io, signals) = ConnIo::new(fd, session);
    let conn = rt.open_connection(io.clone());
    opened(rt.as_ref(), &io);
    let weak = Rc::downgrade(&io);
    writer.set_wake(Box::new(move || {
        if let Some(io) = weak.upgrade() {
            io.wake();
        }
    }));
    if writer.has_own_output() {
        io.wake();
    }
    glommio::spawn_local(loops::write_loop(
        rt.clone(),
        conn,
        io.clone(),
        writer,
        signals,
    ))
    .detach();
    glommio::spawn_local(loops::read_loop(rt.clone(), conn, io, reader, inbound)).detach();
}

/// A protocol's inbound side on the owner shard: the decoder the read loop
/// owns (never shared, so it may be borrowed across a read).
pub(crate) trait Inbound: 'static {
    /// The receive buffer the read loop reads into.
    fn buffer(&mut self) -> &mut BytesMut;
    /// Bytes still missing of a message begun (a read size hint; 0 if
    /// unknown).
    fn missing(&self) -> usize;
    /// Hands everything decodable in the buffer to the core (through the
    /// connection's session where the protocol needs one). Never drives the
    /// runtime. `Err`: the input is not the protocol; the read loop reports
    /// it to the core and stops reading.
    fn on_input(&mut self, rt: &dyn ShardPort, conn: ConnId, io: &ConnIo)
        -> Result<(), ProtoError>;
}

/// A protocol's per-connection state on the owner shard, shared by the read
/// loop, the write loop and the runtime (held in [`ConnIo`]): core output
/// → bytes in the connection's queue. Methods never drive the runtime
/// (they may hand frames and state requests to the core, which the caller
/// drives afterwards).
pub(crate) trait Session: std::any::Any {
    /// A frame the core sends to this connection alone.
    fn send(&mut self, rt: &dyn ShardPort, conn: ConnId, io: &ConnIo, frame: Frame);
    /// A frame the core encoded once for many connections (a room
    /// message); queue it without copying its payload.
    fn send_shared(&mut self, rt: &dyn ShardPort, conn: ConnId, io: &ConnIo, bytes: Bytes);
    /// A keyed-state write this connection asked for is stored (or failed).
    fn state_stored(
        &mut self,
        _rt: &dyn ShardPort,
        _conn: ConnId,
        _io: &ConnIo,
        _id: u64,
        _ok: bool,
    ) {
    }
    /// A keyed-state value this connection asked for.
    fn state_value(
        &mut self,
        _rt: &dyn ShardPort,
        _conn: ConnId,
        _io: &ConnIo,
        _key: surepush_core::StateKey,
        _value: Option<Bytes>,
    ) {
    }
    /// The connection is dropped for not reading: queue the protocol's last
    /// words, if it has any (after the queue was discarded).
    fn drop_for_quota(&mut self, _io: &ConnIo) {}
    /// The writer emptied the queue; `true` if the session queued more work
    /// for the core (the caller drives).
    fn output_drained(&mut self, _rt: &dyn ShardPort, _conn: ConnId, _io: &ConnIo) -> bool {
        false
    }
    /// The connection is gone (whatever the reason): what to publish on
    /// its behalf, if anything.
    fn finish(self: Box<Self>, _rt: &dyn ShardPort, _io: &Rc<ConnIo>) -> Option<LastWill> {
        None
    }
    /// For a protocol that looks up its own sessions (MQTT takeover).
    fn as_any(&mut self) -> &mut dyn std::any::Any;
}
