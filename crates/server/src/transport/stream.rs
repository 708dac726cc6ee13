//! The byte stream under a protocol: what the read and write loops use.
//!
//! A plain TCP socket ([`Tcp`]) and TLS over one (`tls::Tls`) are the
//! streams; a framing layer (WebSocket, `ws/`) wraps a stream's halves.
//! A layer's reader hands the protocol plain bytes (decrypted,
//! unframed and unmasked), its writer takes the queue of chunks the
//! connection gathered (own bytes and shared room buffers, in order) and
//! writes them in its own envelope — so the protocols and the loops do not
//! change. Every stream sits on one TCP socket ([`ByteStream::raw_fd`]):
//! that socket is what a hand-off moves and what a hard shutdown closes.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use bytes::{Bytes, BytesMut};
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::net::TcpStream;

pub(crate) use super::handoff::Framing;
use super::Layer;

/// A connected byte stream: whole while the accept path reads the hello
/// (then refused or handed over), split between the read and the write
/// loop once served.
pub(crate) trait ByteStream: Sized + 'static {
    /// The read half.
    type Reader: StreamReader;
    /// The write half.
    type Writer: StreamWriter;
    /// The TCP socket under the stream.
    fn raw_fd(&self) -> RawFd;
    /// The two halves.
    fn split(self) -> (Self::Reader, Self::Writer);
    /// Reads what is there (the accept path, before a hello).
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Writes `bytes` (if any) and closes: a refused connection.
    async fn refuse(self, bytes: &[u8]);
    /// The layer's state for the owner shard, which gets a duplicate of
    /// the socket ([`duplicate`]); this stream closes its own descriptor.
    fn into_layer(self) -> Layer;
}

/// The read half of a [`ByteStream`].
pub(crate) trait StreamReader: 'static {
    /// Reads what is there into `buf` (0: the peer ended its side).
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Reads at most `want` bytes, appended to `buf`. A reader that can
    /// wait for input without a buffer gives the room back while it waits
    /// if `buf` was empty, so an idle connection holds no receive buffer;
    /// the default keeps it for the duration of the read.
    async fn read_appending(&mut self, buf: &mut BytesMut, want: usize) -> std::io::Result<usize> {
        let old = buf.len();
        buf.resize(old + want, 0);
        let n = self.read(&mut buf[old..]).await;
        buf.truncate(old + *n.as_ref().unwrap_or(&0));
        n
    }
    /// What a hand-off to another shard carries of the layers' state (the
    /// socket travels next to it): the stream layer's (a TLS session) and
    /// the framing's (a WebSocket frame begun). The writer half is dropped
    /// first: `None` if a layer whose halves share state (TLS) could not
    /// take it back.
    fn suspend(self) -> Option<(Layer, Framing)>;
    /// Whether an idle connection on this stream can park (`park.rs`):
    /// its socket alone is its state, so the loops can be stopped and
    /// started again on it. Layers with state of their own cannot.
    fn parks(&self) -> bool {
        false
    }
}

/// The write half of a [`ByteStream`].
pub(crate) trait StreamWriter: 'static {
    /// Writes every chunk in order, taking each out of `chunks` once it is
    /// written; never abandons a chunk half written unless it fails.
    async fn write_chunks(&mut self, chunks: &mut VecDeque<Bytes>) -> std::io::Result<()>;
    /// Writes what the stream takes without waiting: `Ok(true)` if every
    /// chunk went, `Ok(false)` if the rest needs
    /// [`StreamWriter::write_chunks`] (the default: nothing tried).
    fn write_now(&mut self, _chunks: &mut VecDeque<Bytes>) -> std::io::Result<bool> {
        Ok(false)
    }
    /// Ends our side of the stream once everything is written (TCP: a
    /// write shutdown; TLS would send close_notify first).
    async fn end(&mut self) -> std::io::Result<()>;
    /// How a layer with output of its own (WebSocket pongs) wakes the
    /// connection's write loop; set once the loop runs.
    fn set_wake(&mut self, _wake: Box<dyn Fn()>) {}
    /// The layer has output of its own waiting: the write loop calls
    /// [`StreamWriter::write_chunks`] even with nothing queued.
    fn has_own_output(&self) -> bool {
        false
    }
}

/// A plain TCP socket.
pub(crate) struct Tcp {
    stream: TcpStream,
}

impl Tcp {
    pub(crate) fn new(stream: TcpStream) -> Tcp {
        Tcp { stream }
    }
}

impl ByteStream for Tcp {
    type Reader = ReadHalf<TcpStream>;
    type Writer = TcpWriter;

    fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    fn split(self) -> (Self::Reader, Self::Writer) {
        let fd = self.stream.as_raw_fd();
        let (reader, writer) = futures_lite::io::split(self.stream);
        (reader, TcpWriter { writer, fd })
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        AsyncReadExt::read(&mut self.stream, buf).await
    }

    async fn refuse(mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            let _ = self.stream.write_all(bytes).await;
            let _ = self.stream.flush().await;
        }
        let _ = self.stream.close().await;
    }

    fn into_layer(self) -> Layer {
        Layer::Plain
    }
}

impl StreamReader for ReadHalf<TcpStream> {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        AsyncReadExt::read(self, buf).await
    }

    /// A socket read only writes into the buffer while it is polled (a
    /// non-blocking `recv`; the wait is a readiness poll), so the room is
    /// made per poll and, for an empty buffer, given back before waiting:
    /// thousands of idle connections each held their idle read's 512
    /// bytes (issue #17 goal 4).
    async fn read_appending(&mut self, buf: &mut BytesMut, want: usize) -> std::io::Result<usize> {
        let old = buf.len();
        std::future::poll_fn(|cx| {
            buf.resize(old + want, 0);
            let polled = std::pin::Pin::new(&mut *self).poll_read(cx, &mut buf[old..]);
            let n = match &polled {
                std::task::Poll::Ready(Ok(n)) => *n,
                _ => 0,
            };
            buf.truncate(old + n);
            if polled.is_pending() && old == 0 {
                *buf = BytesMut::new();
            }
            polled
        })
        .await
    }

    fn suspend(self) -> Option<(Layer, Framing)> {
        Some((Layer::Plain, Framing::Tcp))
    }

    fn parks(&self) -> bool {
        true
    }
}

/// The write half of a [`Tcp`] stream: gather writes with `sendmsg`.
pub(crate) struct TcpWriter {
    writer: WriteHalf<TcpStream>,
    fd: RawFd,
}

/// Most chunks handed to one `sendmsg`.
pub(crate) const MAX_IOV: usize = 64;

impl StreamWriter for TcpWriter {
    /// Gather writes without waiting while the socket takes them, then one
    /// awaited write through glommio when it is full.
    async fn write_chunks(&mut self, chunks: &mut VecDeque<Bytes>) -> std::io::Result<()> {
        while !self.write_now(chunks)? {
            // Full: let glommio wait for room and write one chunk.
            let front = chunks.pop_front().expect("not empty");
            self.writer.write_all(&front).await?;
        }
        Ok(())
    }

    /// `sendmsg` with up to [`MAX_IOV`] chunks at a time until the socket
    /// is full (`Ok(false)`) or every chunk is written.
    fn write_now(&mut self, chunks: &mut VecDeque<Bytes>) -> std::io::Result<bool> {
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
            // stream whose write half `self` holds); `msg` points at `iov`,
            // whose entries point into `chunks`, all alive and unmodified
            // during the call.
            let n =
                unsafe { libc::sendmsg(self.fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    std::io::ErrorKind::Interrupted => continue,
                    std::io::ErrorKind::WouldBlock => return Ok(false),
                    _ => return Err(e),
                }
            }
            consume(chunks, n as usize);
        }
        Ok(true)
    }

    async fn end(&mut self) -> std::io::Result<()> {
        self.writer.flush().await?;
        shutdown(self.fd, std::net::Shutdown::Write);
        Ok(())
    }
}

/// Sets TCP_NODELAY on the socket `fd` (our writes are gathered already).
pub(crate) fn set_nodelay(fd: RawFd) {
    // SAFETY: callers pass the fd of a socket owned by a stream alive for
    // the duration of the call; the borrow ends with it.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = socket2::SockRef::from(&fd).set_nodelay(true);
}

/// Takes the first `n` bytes out of `chunks` (they were written).
pub(crate) fn consume(chunks: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let front = chunks
            .front_mut()
            .expect("a write takes no more than it was given");
        if n >= front.len() {
            n -= front.len();
            chunks.pop_front();
        } else {
            let _ = front.split_to(n);
            n = 0;
        }
    }
}

/// Shuts the socket `fd` down (`how`), whoever holds it: the reader of a
/// closed connection returns, a writer blocked on a full socket fails.
pub(crate) fn shutdown(fd: RawFd, how: std::net::Shutdown) {
    // SAFETY: callers pass the fd of a socket owned by a connection's tasks,
    // alive for the duration of the call; the borrow ends with it.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = socket2::SockRef::from(&fd).shutdown(how);
}

/// Bytes in the socket's receive queue (`FIONREAD`); 0 if it cannot be
/// asked.
pub(crate) fn unread_bytes(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: callers pass the fd of a socket owned by a connection's tasks,
    // alive for the duration of the call; `n` is a valid c_int to write.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if rc < 0 {
        0
    } else {
        n.max(0) as usize
    }
}

/// Duplicates the socket's descriptor for a handoff to the owner shard:
/// the duplicate travels and this shard drops its stream, closing only its
/// own copy.
pub(crate) fn duplicate(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: callers pass the fd of a socket whose halves they hold, open
    // for the duration of the call.
    unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}

/// Takes over a descriptor received in a handoff.
pub(crate) fn adopt_fd(fd: OwnedFd) -> TcpStream {
    // SAFETY: `fd` is an open TCP socket this shard now exclusively owns
    // (the sender dropped its own descriptor); ownership moves into the stream.
    unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) }
}
