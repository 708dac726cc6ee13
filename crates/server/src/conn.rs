//! One client connection on its owner shard: a reader task that decodes
//! frames in place and feeds the core, and a writer task that sends what the
//! core queued, coalesced into one write per wake-up.
//!
//! Also the accepting side: read the first frame (CONNECT) of a new socket,
//! check its token, and keep the connection here or hand it to the shard
//! that owns the user.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;

use super::mesh::MeshMsg;
use super::runtime::ShardRuntime;
use surepush_core::{ConnId, Router};
use surepush_proto::{Connect, Decoder, ErrorCode, Frame};

/// Read size per `read` call while data keeps coming.
const READ_CHUNK: usize = 16 * 1024;
/// Read size of a connection with nothing buffered whose last read was
/// small: an idle connection waits on this much memory, not `READ_CHUNK`
/// (thousands of idle subscribers were 32 KiB each).
const IDLE_READ: usize = 512;

/// The runtime's handle on a connection's output side.
///
/// Output is a queue of byte chunks in write order: frames encoded for this
/// connection alone accumulate in `out`; a frame shared with other
/// connections (a room message) closes `out` into a chunk and is queued as
/// the same `Bytes` every subscriber holds. The writer hands the whole
/// queue to one `sendmsg` (gather write), so a shared frame is never
/// copied per connection.
pub(crate) struct ConnIo {
    /// Encoded frames not yet written (after every chunk in `chunks`).
    pub(crate) out: RefCell<BytesMut>,
    chunks: RefCell<VecDeque<Bytes>>,
    chunk_bytes: Cell<usize>,
    wake: LocalSender<()>,
    /// The reader task is done (the peer closed, or the socket failed).
    reader_gone: LocalSender<()>,
    /// Tells a writer blocked on a full socket that the connection closes:
    /// it gets `close_grace_ms` more, then the socket is shut down, so a
    /// client that does not read cannot pin a closed connection's socket
    /// and output for as long as it stays frozen.
    closed: LocalSender<()>,
    /// Flush what is queued (within `close_grace_ms`), then close.
    pub(crate) closing: Cell<bool>,
    /// Dropped for its unsent output (see `ShardRuntime::drop_slow`).
    pub(crate) dropped: Cell<bool>,
    fd: RawFd,
    /// Set for an MQTT connection: frames for it go through the bridge.
    pub(crate) bridge: RefCell<Option<Box<surepush_mqtt::bridge::Bridge>>>,
}

/// What a connection's writer task waits on.
pub(crate) struct WriterSignals {
    /// Something was queued (or the connection is closing).
    wake: LocalReceiver<()>,
    /// The connection closes ([`ConnIo::close`]).
    closed: LocalReceiver<()>,
    /// The reader saw the end of the peer's input.
    reader_gone: LocalReceiver<()>,
}

impl ConnIo {
    /// The output side of `stream`, and the signals its writer waits on.
    pub(crate) fn new(stream: &TcpStream) -> (Rc<ConnIo>, WriterSignals) {
        let _ = stream.set_nodelay(true);
        let (wake, wake_rx) = local_channel::new_bounded(1);
        let (closed, closed_rx) = local_channel::new_bounded(1);
        let (reader_gone, reader_gone_rx) = local_channel::new_bounded(1);
        let io = Rc::new(ConnIo {
            out: RefCell::new(BytesMut::new()),
            chunks: RefCell::new(VecDeque::new()),
            chunk_bytes: Cell::new(0),
            wake,
            reader_gone,
            closed,
            closing: Cell::new(false),
            dropped: Cell::new(false),
            fd: stream.as_raw_fd(),
            bridge: RefCell::new(None),
        });
        let signals = WriterSignals {
            wake: wake_rx,
            closed: closed_rx,
            reader_gone: reader_gone_rx,
        };
        (io, signals)
    }

    /// Queues a frame shared with other connections, after what is queued.
    pub(crate) fn push_shared(&self, bytes: Bytes) {
        let mut chunks = self.chunks.borrow_mut();
        let mut out = self.out.borrow_mut();
        let mut added = bytes.len();
        if !out.is_empty() {
            let own = out.split().freeze();
            added += own.len();
            chunks.push_back(own);
        }
        chunks.push_back(bytes);
        self.chunk_bytes.set(self.chunk_bytes.get() + added);
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.chunk_bytes.get() + self.out.borrow().len()
    }

    /// Output not yet written: queued bytes plus what an MQTT bridge holds
    /// back for the client's Receive Maximum. The output budgets
    /// (`room_lag_bytes`, `max_write_buffer_bytes`) apply to this.
    pub(crate) fn unsent(&self) -> usize {
        let held = self.bridge.borrow().as_ref().map_or(0, |b| b.held_bytes());
        self.queued() + held
    }

    /// Drops everything queued that the writer has not taken yet (whole
    /// frames or packets: the stream stays aligned).
    pub(crate) fn discard_queued(&self) {
        drop(self.take_queued());
    }

    /// Closes the connection: the writer sends what is queued if the peer
    /// reads it within `close_grace_ms`, then shuts the socket down.
    pub(crate) fn close(&self) {
        self.closing.set(true);
        let _ = self.closed.try_send(());
        self.wake();
    }

    /// Takes everything queued, in write order.
    fn take_queued(&self) -> VecDeque<Bytes> {
        let mut chunks = std::mem::take(&mut *self.chunks.borrow_mut());
        self.chunk_bytes.set(0);
        let own = self.out.borrow_mut().split().freeze();
        if !own.is_empty() {
            chunks.push_back(own);
        }
        chunks
    }

    /// Wakes the writer (no-op if it is already awake).
    pub(crate) fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Shuts the socket down in both directions so the reader returns.
    pub(crate) fn shutdown(&self) {
        self.shutdown_how(std::net::Shutdown::Both);
    }

    fn shutdown_how(&self, how: std::net::Shutdown) {
        // SAFETY: `fd` belongs to the TcpStream owned by this connection's
        // tasks, which outlive every ConnIo method call (the tasks hold an
        // Rc of this ConnIo); the borrow does not outlive this statement.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = socket2::SockRef::from(&fd).shutdown(how);
    }

    /// The reader task is done (the peer's input ended, or failed).
    pub(crate) fn reader_done(&self) {
        let _ = self.reader_gone.try_send(());
    }
}

/// The reader of a closing connection: reads and discards until the peer
/// closes (or the writer shuts the socket after the close grace). A socket
/// closed with unread input makes the kernel send a reset, and a reset can
/// destroy the last frames queued for the peer before it reads them (an
/// ERROR, an MQTT 5 DISCONNECT 0x97).
pub(crate) async fn drain_until_closed(
    mut reader: futures_lite::io::ReadHalf<TcpStream>,
    io: &ConnIo,
) {
    let mut discard = vec![0u8; IDLE_READ];
    while matches!(reader.read(&mut discard).await, Ok(n) if n > 0) {}
    io.reader_done();
}

/// Serves a connection whose user this shard owns, starting with an already
/// authenticated `connect` (from the handoff) or with nothing (`None`, the
/// CONNECT is still in `initial`).
pub(crate) fn start(
    rt: &Rc<ShardRuntime>,
    stream: TcpStream,
    connect: Option<Connect>,
    initial: Bytes,
) {
    let (io, signals) = ConnIo::new(&stream);
    let conn = rt.open_connection(io.clone());
    let (reader, writer) = futures_lite::io::split(stream);
    glommio::spawn_local(write_loop(rt.clone(), conn, io.clone(), writer, signals)).detach();
    glommio::spawn_local(read_loop(rt.clone(), conn, io, reader, connect, initial)).detach();
}

async fn read_loop(
    rt: Rc<ShardRuntime>,
    conn: ConnId,
    io: Rc<ConnIo>,
    mut reader: futures_lite::io::ReadHalf<TcpStream>,
    connect: Option<Connect>,
    initial: Bytes,
) {
    let mut decoder = Decoder::new(rt.config.core.max_frame);
    let mut busy = false;
    if let Some(c) = connect {
        rt.frame(conn, Frame::Connect(c));
    }
    decoder.feed(&initial);
    // A parameter lives as long as the task unless dropped: `initial` is a
    // slice of the accepting side's buffer and would pin it (4 KiB per
    // idle connection, found with a counting allocator).
    drop(initial);
    loop {
        loop {
            match decoder.decode() {
                Ok(Some(frame)) => rt.frame(conn, frame),
                Ok(None) => break,
                Err(e) => {
                    rt.decode_error(conn, &e);
                    return drain_until_closed(reader, &io).await;
                }
            }
        }
        rt.drive();
        if io.closing.get() {
            return drain_until_closed(reader, &io).await;
        }
        rt.wait_for_mesh_room().await;
        // Read straight into the decoder's buffer: a frame's payload is
        // copied once, from the kernel, and sliced out of it afterwards.
        let buf = decoder.buffer_mut();
        let idle = buf.is_empty() && !busy;
        if idle && buf.capacity() > IDLE_READ {
            // Let the big buffer go (frames sliced from it keep their part).
            *buf = BytesMut::new();
        }
        let want = if idle {
            IDLE_READ
        } else {
            READ_CHUNK.max(decoder.missing().min(1 << 20))
        };
        let buf = decoder.buffer_mut();
        let old = buf.len();
        buf.resize(old + want, 0);
        let n = reader.read(&mut buf[old..]).await;
        let buf = decoder.buffer_mut();
        match n {
            Ok(n) if n > 0 => {
                buf.truncate(old + n);
                // A full read means more is waiting: read big next time.
                busy = n == want;
            }
            _ => {
                buf.truncate(old);
                rt.transport_closed(conn);
                io.shutdown();
                return io.reader_done();
            }
        }
    }
}

pub(crate) async fn write_loop(
    rt: Rc<ShardRuntime>,
    conn: ConnId,
    io: Rc<ConnIo>,
    mut writer: futures_lite::io::WriteHalf<TcpStream>,
    signals: WriterSignals,
) {
    let grace = CloseGrace::new(&signals.closed, rt.config.close_grace_ms);
    while signals.wake.recv().await.is_some() {
        loop {
            let mut chunks = io.take_queued();
            if chunks.is_empty() {
                break;
            }
            // A write is never abandoned half way (the stream would lose
            // its frame boundaries), only when the close grace is over.
            let written = future::or(
                async { Some(write_chunks(&mut writer, io.fd, &mut chunks).await) },
                async {
                    grace.expired().await;
                    None
                },
            )
            .await;
            match written {
                Some(Ok(())) => {}
                Some(Err(_)) => {
                    rt.transport_closed(conn);
                    io.shutdown();
                    return;
                }
                None => {
                    // Closing, and the peer did not read in time.
                    io.shutdown();
                    return;
                }
            }
        }
        if io.closing.get() {
            // Everything is written: end our side, and close once the peer
            // has ended its own (see `drain_until_closed`) or the grace is
            // over.
            let _ = writer.flush().await;
            io.shutdown_how(std::net::Shutdown::Write);
            future::or(
                async {
                    let _ = signals.reader_gone.recv().await;
                },
                grace.expired(),
            )
            .await;
            io.shutdown();
            return;
        }
        rt.output_drained(conn, &io);
    }
}

/// The writer's view of `close_grace_ms`: from the close signal on, what
/// is still queued has that long to be written.
struct CloseGrace<'a> {
    closed: &'a LocalReceiver<()>,
    grace: Duration,
    since: Cell<Option<std::time::Instant>>,
}

impl<'a> CloseGrace<'a> {
    fn new(closed: &'a LocalReceiver<()>, grace_ms: u64) -> CloseGrace<'a> {
        CloseGrace {
            closed,
            grace: Duration::from_millis(grace_ms),
            since: Cell::new(None),
        }
    }

    /// Resolves once the connection is closing and the grace is over.
    async fn expired(&self) {
        let since = match self.since.get() {
            Some(since) => since,
            None => {
                // The signal comes once; a write racing it may finish first.
                let _ = self.closed.recv().await;
                let now = std::time::Instant::now();
                self.since.set(Some(now));
                now
            }
        };
        glommio::timer::sleep(self.grace.saturating_sub(since.elapsed())).await;
    }
}

/// Most chunks handed to one `sendmsg`.
const MAX_IOV: usize = 64;

/// Writes `chunks` in order: gather writes without waiting while the socket
/// takes them, then one awaited write through glommio when it is full.
async fn write_chunks(
    writer: &mut futures_lite::io::WriteHalf<TcpStream>,
    fd: RawFd,
    chunks: &mut VecDeque<Bytes>,
) -> std::io::Result<()> {
    while !chunks.is_empty() {
        let iov: Vec<libc::iovec> = chunks
            .iter()
            .take(MAX_IOV)
            .map(|c| libc::iovec {
                iov_base: c.as_ptr() as *mut libc::c_void,
                iov_len: c.len(),
            })
            .collect();
        // SAFETY: a zeroed msghdr is valid (no name, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len() as _;
        // SAFETY: `fd` is this connection's open socket (owned by the
        // stream the writer holds); `msg` points at `iov`, whose entries
        // point into `chunks`, all alive and unmodified during the call.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => {
                    // Full: let glommio wait for room and write one chunk.
                    let front = chunks.pop_front().expect("not empty");
                    writer.write_all(&front).await?;
                    continue;
                }
                _ => return Err(e),
            }
        }
        let mut n = n as usize;
        while n > 0 {
            let front = chunks
                .front_mut()
                .expect("sendmsg wrote no more than given");
            if n >= front.len() {
                n -= front.len();
                chunks.pop_front();
            } else {
                let _ = front.split_to(n);
                n = 0;
            }
        }
    }
    Ok(())
}

/// Accepting side: reads CONNECT (within the connect timeout), checks the
/// token, then serves the connection here or hands it to the owner shard.
pub(crate) async fn accept(rt: Rc<ShardRuntime>, mut stream: TcpStream) {
    let timeout = Duration::from_millis(rt.config.core.connect_timeout_ms);
    let mut decoder = Decoder::new(rt.config.core.max_frame);
    let first = future::or(read_first_frame(&mut stream, &mut decoder), async {
        glommio::timer::sleep(timeout).await;
        Err(Some(Frame::error(
            ErrorCode::IdleTimeout,
            "no CONNECT within the connect timeout",
        )))
    })
    .await;
    let connect = match first {
        Ok(Frame::Connect(c)) => c,
        Ok(_) => {
            return refuse(
                stream,
                Frame::error(ErrorCode::NotConnected, "CONNECT must come first"),
            )
            .await
        }
        Err(Some(frame)) => return refuse(stream, frame).await,
        Err(None) => return, // the peer left before sending anything
    };
    let claims = match rt.verifier.verify(&connect.token, rt.wall_ms()) {
        Ok(c) => c,
        Err(e) => {
            rt.count_auth_failure();
            return refuse(stream, Frame::error(e.code(), e.to_string())).await;
        }
    };
    let rest = decoder.buffer_mut().split().freeze();
    let owner = Router::of_node(rt.shards).owner(claims.user).0;
    if owner == rt.id {
        start(&rt, stream, Some(connect), rest);
        return;
    }
    match duplicate(&stream) {
        Ok(fd) => {
            drop(stream);
            rt.handoff(owner, MeshMsg::Handoff { fd, connect, rest });
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot duplicate a socket for handoff");
            refuse(stream, Frame::error(ErrorCode::Internal, "handoff failed")).await;
        }
    }
}

/// Duplicates the socket's descriptor for a handoff to the owner shard:
/// the duplicate travels and this shard drops its stream, closing only its
/// own copy.
pub(crate) fn duplicate(stream: &TcpStream) -> std::io::Result<OwnedFd> {
    // SAFETY: the fd is open and owned by `stream`, which outlives the borrow.
    unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned()
}

/// Takes over a descriptor received in a handoff.
pub(crate) fn stream_from(fd: OwnedFd) -> TcpStream {
    // SAFETY: `fd` is an open TCP socket this shard now exclusively owns
    // (the sender dropped its own descriptor); ownership moves into the stream.
    unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) }
}

/// The owner's side of a handoff.
pub(crate) fn adopt(rt: &Rc<ShardRuntime>, fd: OwnedFd, connect: Connect, rest: Bytes) {
    start(rt, stream_from(fd), Some(connect), rest);
}

async fn read_first_frame(
    stream: &mut TcpStream,
    decoder: &mut Decoder,
) -> Result<Frame, Option<Frame>> {
    let mut buf = [0u8; 4096];
    loop {
        match decoder.decode() {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(e) => return Err(Some(Frame::error(e.code(), e.to_string()))),
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => decoder.feed(&buf[..n]),
        }
    }
}

/// Writes `bytes` and closes.
pub(crate) async fn refuse_with(mut stream: TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
    let _ = stream.close().await;
}

/// Writes one last frame and closes.
async fn refuse(stream: TcpStream, frame: Frame) {
    refuse_with(stream, &frame.to_bytes()).await;
}
