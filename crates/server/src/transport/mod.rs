//! The transport seam: how a client's bytes become core frames and back,
//! once for every protocol.
//!
//! One path for every connection:
//!
//! ```text
//! accept (any shard)                         owner shard
//! ──────────────────                         ───────────
//! socket ─► Handshake::feed/poll_hello ─► authenticate ─► ShardLoop::owner(user)
//!                                                 │ here ─► serve
//!                                                 └ else ─► mesh: Handoff ─► adopt ─► serve
//! serve: ConnIo { output queue, Box<dyn Session> } + read_loop(Inbound) + write_loop
//! ```
//!
//! Ground rules:
//! - [`accept`] is the only place a new socket is read before it has an
//!   owner: it runs a protocol's [`Handshake`] until an authenticated hello
//!   or a refusal (bytes to write, then close), and routes by
//!   `ShardLoop::owner`, the server's one question "which shard owns this
//!   user" (the core's router answers it).
//! - The mesh carries one transport-neutral [`Handoff`]: the socket, the
//!   stream layer's state ([`Layer`]: a TLS session), the protocol's
//!   hello, and the bytes that came after it.
//! - A listener names its stream layer ([`Opening`]): plain TCP, or TLS
//!   ([`tls`]), whose handshake runs first and shares the connect timeout
//!   with the protocol's hello.
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
//!   layer** (TLS): a type implementing [`stream::ByteStream`] over another
//!   one (its reader unframes or decrypts, its writer frames or encrypts the
//!   gathered chunks — a WebSocket server frame is an unmasked header in
//!   front of the chunks, so shared room payloads stay shared), plus its own
//!   opening step (HTTP upgrade, TLS handshake) run in [`accept`] before the
//!   protocol's handshake. Any protocol then runs over it unchanged:
//!   `ws + native`, `ws + mqtt`, `tls + ...` are compositions. A layer with
//!   state of its own (a TLS session) adds it to [`Handoff`] next to the
//!   descriptor ([`Layer`]). WebSocket is a framing layer over a stream's
//!   halves instead: [`accept_ws`] runs the upgrade (`ws::open`) on the
//!   TCP halves, wraps them (`ws::wrap`) and runs the subprotocol's
//!   [`Handshake`] on top; its partial frame travels as [`Framing`].
//!   WebSocket over TLS (WSS, `tls.ws_listen`) is the same composition
//!   over the TLS stream's halves: [`accept_ws`] opens TLS first, and a
//!   hand-off carries both the TLS session ([`Layer`]) and the WebSocket
//!   state ([`Framing`]), which the read half gives back together
//!   ([`stream::StreamReader::suspend`]).

mod handoff;
mod loops;
pub(crate) mod mqtt;
mod native;
mod output;
pub(crate) mod park;
mod port;
mod relay;
mod signal;
pub(crate) mod slow;
mod stream;
pub(crate) mod tls;
mod ws;

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use futures_lite::io::ReadHalf;
use glommio::net::TcpStream;

use stream::{ByteStream, StreamReader, StreamWriter};

use surepush_core::{Claims, ConnId};
use surepush_proto::{Frame, ProtoError};

pub(crate) use handoff::{Framing, Handoff, Hello};
pub(crate) use mqtt::{MqttHandshake, MqttShard};
pub(crate) use native::NativeHandshake;
pub(crate) use output::ConnIo;
pub(crate) use port::{LastWill, ShardLoop, ShardPort, WillDelay};
pub(crate) use relay::RelayEvent;

/// Where the owner of an authenticated connection's user is (the shard's
/// router answers: `ShardLoop::owner`, the one place the accept path asks).
pub(crate) enum Owner {
    /// A shard of this node.
    Shard(u16),
    /// Another node: send the client there (its address for the
    /// connection's protocol).
    Redirect(String),
    /// Another node that cannot be reached now, or a partition not placed
    /// yet: the client retries later.
    Unavailable,
}

/// Which listener of another node a redirect names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    /// The native protocol.
    Native,
    /// MQTT.
    Mqtt,
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
    /// Which listener of another node this protocol is redirected to.
    const LISTENER: Listener;
    /// What to write to send the client to `to`, the owner node's address
    /// for this protocol (a cluster).
    fn redirect(hello: &Self::Hello, to: &str) -> Vec<u8>;
    /// The hello's bytes as the client sent them, when this protocol's
    /// client of another node's user is relayed there ([`relay`]) instead
    /// of redirected.
    fn relayed(_hello: &Self::Hello) -> Option<Bytes> {
        None
    }
    /// Whether the hello arrived relayed by another node
    /// ([`relay::RELAY_PREAMBLE`]): it is then never relayed again.
    fn arrived_relayed(_hello: &Self::Hello) -> bool {
        false
    }
    /// Bytes received after the hello (the decoder's leftover).
    fn rest(self) -> Bytes;
    /// The hello as the mesh and the owner shard carry it.
    fn into_hello(hello: Self::Hello, claims: Claims) -> Hello;
}

/// Bytes read per `read` during the handshake.
const HANDSHAKE_READ: usize = 4096;

/// The stream layer a listener puts under its protocol.
#[derive(Clone)]
pub(crate) enum Opening {
    /// Plain TCP.
    Plain,
    /// TLS, with the node's configs (the one in force is taken per
    /// connection, so a reload reaches new handshakes).
    Tls(Arc<crate::tls::NodeTls>),
}

/// A stream layer's state that travels with a handed-off socket.
#[derive(Debug)]
pub(crate) enum Layer {
    /// Plain TCP: the socket is all.
    Plain,
    /// A TLS session, established on the accepting shard.
    Tls(Box<tls::TlsSession>),
}

/// Accepting side, for every protocol and stream layer: opens the layer
/// and reads the hello within the connect timeout, authenticates it, then
/// serves the connection here or hands it to the owner shard.
pub(crate) async fn accept<H: Handshake, S: ShardLoop>(
    rt: Rc<S>,
    tcp: TcpStream,
    opening: Opening,
) {
    let Some(hs) = H::new(rt.as_ref()) else {
        return;
    };
    let timeout = Duration::from_millis(rt.config().core.connect_timeout_ms);
    let deadline = Instant::now() + timeout;
    match opening {
        Opening::Plain => accept_on(rt, stream::Tcp::new(tcp), hs, deadline).await,
        Opening::Tls(node_tls) => {
            // Before the handshake: its flights are several writes, and
            // Nagle would hold each behind the peer's delayed ACK (40 ms).
            stream::set_nodelay(std::os::fd::AsRawFd::as_raw_fd(&tcp));
            let opened = future::or(
                async { Some(tls::open(tcp, node_tls.streams()).await) },
                async {
                    glommio::timer::sleep(timeout).await;
                    None
                },
            )
            .await;
            match opened {
                Some(Ok(stream)) => accept_on(rt, stream, hs, deadline).await,
                // The socket is closed with the attempt (rustls sent its
                // alert when the peer spoke something else).
                Some(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                None => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

/// The protocol's part of [`accept`], over an opened stream.
async fn accept_on<H: Handshake, S: ShardLoop, B: ByteStream>(
    rt: Rc<S>,
    mut stream: B,
    mut hs: H,
    deadline: Instant,
) {
    let first = future::or(read_hello(&mut stream, &mut hs), async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        None
    })
    .await;
    let hello = match first {
        Some(Step::Hello(hello)) => hello,
        Some(Step::Refuse(reply)) => return stream.refuse(&reply).await,
        Some(Step::More) => return, // the peer left before a whole hello
        None => return stream.refuse(&hs.timed_out()).await,
    };
    let claims = match rt.verify(H::token(&hello)) {
        Ok(c) => c,
        Err(e) => {
            rt.count_auth_failure();
            return stream.refuse(&H::refuse_auth(&hello, &e)).await;
        }
    };
    let owner = match rt.owner(claims.user, H::LISTENER) {
        Owner::Shard(shard) => shard,
        Owner::Redirect(_) if H::arrived_relayed(&hello) => {
            rt.count_relay(RelayEvent::Refused);
            return stream.refuse(&H::refuse_unavailable(&hello)).await;
        }
        Owner::Redirect(to) => match H::relayed(&hello) {
            Some(raw) => {
                let target = relay_to(&hello, to, raw, hs);
                return relay::relay(rt, halves(stream), target).await;
            }
            None => return stream.refuse(&H::redirect(&hello, &to)).await,
        },
        Owner::Unavailable => return stream.refuse(&H::refuse_unavailable(&hello)).await,
    };
    if owner == rt.shard_id() {
        let hello = H::into_hello(hello, claims);
        return serve(&rt, halves(stream), hello, hs.rest());
    }
    match stream::duplicate(stream.raw_fd()) {
        Ok(fd) => {
            let handoff = Handoff {
                fd,
                layer: stream.into_layer(),
                hello: H::into_hello(hello, claims),
                rest: hs.rest(),
                framing: Framing::Tcp,
            };
            rt.hand_off(owner, handoff);
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot duplicate a socket for handoff");
            stream.refuse(&H::refuse_unavailable(&hello)).await;
        }
    }
}

/// What [`relay::relay`] needs of an authenticated hello for `to`.
fn relay_to<H: Handshake>(hello: &H::Hello, to: String, raw: Bytes, hs: H) -> relay::RelayTo {
    relay::RelayTo {
        to,
        replay: [raw, hs.rest()],
        unavailable: H::refuse_unavailable(hello),
    }
}

/// Reads until the handshake has a hello or a refusal; `Step::More` if the
/// peer left first.
async fn read_hello<H: Handshake, B: ByteStream>(
    stream: &mut B,
    hs: &mut H,
) -> Option<Step<H::Hello>> {
    let mut buf = [0u8; HANDSHAKE_READ];
    loop {
        match hs.poll_hello() {
            Step::More => {}
            step => return Some(step),
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return Some(Step::More),
            Ok(n) => hs.feed(&buf[..n]),
        }
    }
}

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
    resumed(tcp)
}

/// A parked connection's socket, split again (its options were set when
/// it was first served).
fn resumed(tcp: TcpStream) -> Opened<ReadHalf<TcpStream>, stream::TcpWriter> {
    let fd = tcp.as_raw_fd();
    let (reader, writer) = stream::ByteStream::split(stream::Tcp::new(tcp));
    Opened { fd, reader, writer }
}

/// Accepting side of a WebSocket listener, plain (`ws://`) or over TLS
/// (`wss://`, `opening`): the TLS handshake if any, the HTTP upgrade, then
/// the protocol its subprotocol names, inside WebSocket messages. One
/// connect timeout covers all of it (a slow upgrade request gets 408).
pub(crate) async fn accept_ws<S: ShardLoop>(rt: Rc<S>, tcp: TcpStream, opening: Opening) {
    let deadline = Instant::now() + Duration::from_millis(rt.config().core.connect_timeout_ms);
    match opening {
        Opening::Plain => upgrade_ws(rt, opened(tcp), deadline).await,
        Opening::Tls(node_tls) => {
            // As in `accept`: the handshake's flights are several writes.
            stream::set_nodelay(tcp.as_raw_fd());
            match within(deadline, tls::open(tcp, node_tls.streams())).await {
                Some(Ok(tls)) => upgrade_ws(rt, halves(tls), deadline).await,
                Some(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed (WebSocket)"),
                None => tracing::debug!("TLS handshake timed out (WebSocket)"),
            }
        }
    }
}

/// The WebSocket part of [`accept_ws`], over an opened stream's halves.
async fn upgrade_ws<S: ShardLoop, R: StreamReader, W: StreamWriter>(
    rt: Rc<S>,
    stream: Opened<R, W>,
    deadline: Instant,
) {
    let Opened {
        fd,
        mut reader,
        mut writer,
    } = stream;
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
    let hello = match within(deadline, read_hello_halves(&mut reader, &mut hs)).await {
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
    let owner = match rt.owner(claims.user, H::LISTENER) {
        Owner::Shard(shard) => shard,
        Owner::Redirect(_) if H::arrived_relayed(&hello) => {
            rt.count_relay(RelayEvent::Refused);
            return refuse_with(writer, &H::refuse_unavailable(&hello)).await;
        }
        Owner::Redirect(to) => match H::relayed(&hello) {
            Some(raw) => {
                let target = relay_to(&hello, to, raw, hs);
                let stream = Opened { fd, reader, writer };
                return relay::relay(rt, stream, target).await;
            }
            None => return refuse_with(writer, &H::redirect(&hello, &to)).await,
        },
        Owner::Unavailable => return refuse_with(writer, &H::refuse_unavailable(&hello)).await,
    };
    if owner == rt.shard_id() {
        let hello = H::into_hello(hello, claims);
        let stream = Opened { fd, reader, writer };
        return serve(&rt, stream, hello, hs.rest());
    }
    let dup = match stream::duplicate(fd) {
        Ok(dup) => dup,
        Err(e) => {
            tracing::error!(error = %e, "cannot duplicate a socket for handoff");
            return refuse_with(writer, &H::refuse_unavailable(&hello)).await;
        }
    };
    // The writer first: a TLS session shared by the halves goes back to
    // the reader.
    drop(writer);
    let Some((layer, framing)) = reader.suspend() else {
        // Not reached (nothing else holds the session); the socket closes.
        tracing::error!("a stream layer kept its state from a handoff");
        return;
    };
    let handoff = Handoff {
        fd: dup,
        layer,
        hello: H::into_hello(hello, claims),
        rest: hs.rest(),
        framing,
    };
    rt.hand_off(owner, handoff);
}

/// Reads until the handshake has a hello or a refusal; `Step::More` if the
/// peer left first.
async fn read_hello_halves<H: Handshake, R: StreamReader>(
    reader: &mut R,
    hs: &mut H,
) -> Step<H::Hello> {
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
        layer,
        hello,
        rest,
        framing,
    } = handoff;
    match (layer, framing) {
        (Layer::Plain, Framing::Tcp) => {
            rt.count_adopted("tcp");
            serve(rt, opened(stream::adopt_fd(fd)), hello, rest)
        }
        (Layer::Tls(session), Framing::Tcp) => {
            rt.count_adopted("tls");
            serve(rt, halves(tls::Tls::resume(fd, *session)), hello, rest)
        }
        (Layer::Plain, Framing::Ws(state)) => {
            rt.count_adopted("ws");
            let stream = resume_ws(rt, opened(stream::adopt_fd(fd)), *state);
            serve(rt, stream, hello, rest)
        }
        (Layer::Tls(session), Framing::Ws(state)) => {
            rt.count_adopted("wss");
            let tls = halves(tls::Tls::resume(fd, *session));
            serve(rt, resume_ws(rt, tls, *state), hello, rest)
        }
    }
}

/// A handed-off WebSocket's layer over the stream it arrived on.
fn resume_ws<S: ShardLoop, R: StreamReader, W: StreamWriter>(
    rt: &Rc<S>,
    stream: Opened<R, W>,
    state: ws::WsState,
) -> Opened<ws::WsReader<R>, ws::WsWriter<W>> {
    let params = ws::WsParams::new(rt.config());
    let Opened { fd, reader, writer } = stream;
    let (reader, writer) = ws::resume(fd, reader, writer, state, params);
    Opened { fd, reader, writer }
}

/// A whole stream (plain or TLS) as the halves the loops use.
fn halves<B: ByteStream>(stream: B) -> Opened<B::Reader, B::Writer> {
    let fd = stream.raw_fd();
    stream::set_nodelay(fd);
    let (reader, writer) = stream.split();
    Opened { fd, reader, writer }
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
            start(rt, stream, "native", session, inbound, |_, _| {});
        }
        Hello::Mqtt(hello) => {
            let key = mqtt::session_of(&hello);
            if !mqtt::takeover_unsettled(rt.as_ref(), key) {
                return serve_mqtt(rt, stream, *hello, rest);
            }
            // The connection it takes over has its client's last packets
            // still unread: those first (`mqtt::settle_takeover`).
            let rt = rt.clone();
            glommio::spawn_local(async move {
                mqtt::settle_takeover(rt.as_ref(), key).await;
                serve_mqtt(&rt, stream, *hello, rest);
            })
            .detach();
        }
    }
}

fn serve_mqtt<S: ShardLoop, R: StreamReader, W: StreamWriter>(
    rt: &Rc<S>,
    stream: Opened<R, W>,
    hello: mqtt::MqttHello,
    rest: Bytes,
) {
    let Some((session, inbound)) = mqtt::open(rt.as_ref(), hello, rest) else {
        return;
    };
    start(
        rt,
        stream,
        surepush_core::MQTT_TRANSPORT,
        session,
        inbound,
        mqtt::opened,
    );
}

/// `transport` names the protocol for the session webhooks.
fn start<S: ShardLoop, I: Inbound, R: StreamReader, W: StreamWriter>(
    rt: &Rc<S>,
    stream: Opened<R, W>,
    transport: &'static str,
    session: Box<dyn Session>,
    inbound: I,
    opened: impl FnOnce(&dyn ShardPort, &Rc<ConnIo>),
) {
    let io = ConnIo::new(stream.fd, session);
    let conn = rt.open_connection(io.clone(), transport);
    opened(rt.as_ref(), &io);
    spawn_loops(rt, conn, io, stream, inbound);
}

/// Starts a connection's two loops (a new one, or a parked one resuming:
/// `park.rs`).
fn spawn_loops<S: ShardLoop, I: Inbound, R: StreamReader, W: StreamWriter>(
    rt: &Rc<S>,
    conn: ConnId,
    io: Rc<ConnIo>,
    stream: Opened<R, W>,
    inbound: I,
) {
    let Opened {
        reader, mut writer, ..
    } = stream;
    let weak = Rc::downgrade(&io);
    writer.set_wake(Box::new(move || {
        if let Some(io) = weak.upgrade() {
            io.wake();
        }
    }));
    if writer.has_own_output() {
        io.wake();
    }
    glommio::spawn_local(loops::write_loop(rt.clone(), conn, io.clone(), writer)).detach();
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
    /// The connection went idle (nothing buffered to read): give back the
    /// memory its queues grew to while busy (thousands of idle connections
    /// must each cost little).
    fn release_idle_memory(&mut self) {}
    /// The connection is gone (whatever the reason): what to publish on
    /// its behalf, if anything.
    fn finish(self: Box<Self>, _rt: &dyn ShardPort, _io: &Rc<ConnIo>) -> Option<LastWill> {
        None
    }
    /// For a protocol that looks up its own sessions (MQTT takeover).
    fn as_any(&mut self) -> &mut dyn std::any::Any;
}
