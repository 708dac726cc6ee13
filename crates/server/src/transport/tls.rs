//! TLS as a stream layer: rustls over any async byte stream, for every
//! protocol and the admin port.
//!
//! Ground rules:
//! - [`TlsIo`] is a rustls `ServerConnection` over an inner stream `IO`
//!   (glommio's `TcpStream`, or any `AsyncRead + AsyncWrite`): its reads
//!   decrypt, its writes encrypt. It is poll-based, so hyper (admin) and
//!   the connection loops ([`Tls`], a [`ByteStream`]) use the same code.
//! - The opening step ([`handshake`]) is a function of the inner stream
//!   and a config: a framing layer (WebSocket) composes on top as WSS.
//! - The session is state of its own: a hand-off carries it
//!   ([`TlsSession`], `Send`) next to the socket's descriptor, and the
//!   owner shard resumes it over the same socket ([`Tls::resume`]).
//! - Writes: the gathered chunks of a connection (own bytes and shared room
//!   buffers) go to rustls as one vectored write, which packs them into as
//!   few records as their size allows; the plaintext is copied once, into
//!   the record that encrypts it in place. Ciphertext goes from rustls's
//!   buffer straight to the socket.
//! - Errors: a peer that does not speak TLS (plain bytes, SSL 3.0, TLS
//!   1.0/1.1) fails the handshake with rustls's alert; the caller closes.

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use super::stream::{self, ByteStream, Framing, StreamReader, StreamWriter, MAX_IOV};

/// A TLS session over the stream `IO`.
pub(crate) struct TlsIo<IO> {
    io: IO,
    conn: ServerConnection,
    /// close_notify queued (once).
    closing: bool,
}

impl<IO> std::fmt::Debug for TlsIo<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIo")
            .field("handshaking", &self.conn.is_handshaking())
            .finish_non_exhaustive()
    }
}

/// Runs the server side of a TLS handshake over `io`. The caller bounds it
/// in time (a peer that stalls mid-handshake holds nothing else).
pub(crate) async fn handshake<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    config: Arc<ServerConfig>,
) -> io::Result<TlsIo<IO>> {
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut tls = TlsIo {
        io,
        conn,
        closing: false,
    };
    futures_lite::future::poll_fn(|cx| tls.poll_handshake(cx)).await?;
    Ok(tls)
}

impl<IO: AsyncRead + AsyncWrite + Unpin> TlsIo<IO> {
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            while self.conn.wants_write() {
                ready!(self.poll_write_tls(cx))?;
            }
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if ready!(self.poll_read_tls(cx))? == 0 {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Reads ciphertext into the session and processes it; 0 at the end of
    /// the inner stream. A protocol error sends its alert (if the socket
    /// takes it now) and fails.
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let n = match self.conn.read_tls(&mut Sync {
            io: &mut self.io,
            cx,
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            result => result?,
        };
        let handshaking = self.conn.is_handshaking();
        if let Err(e) = self.conn.process_new_packets() {
            // The alert rustls queued for the peer, best effort, while the
            // handshake runs (one task owns the stream then; after it a
            // read never writes, see `poll_read`).
            if handshaking {
                let _ = self.poll_write_tls(cx);
            }
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        Poll::Ready(Ok(n))
    }

    /// Writes ciphertext the session holds; how much.
    fn poll_write_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        match self.conn.write_tls(&mut Sync {
            io: &mut self.io,
            cx,
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            Ok(0) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            result => Poll::Ready(result),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsIo<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            // Ok(0): the peer's close_notify; UnexpectedEof: its socket
            // closed without one.
            match this.conn.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
            // What the session owes the peer after this (a key update's
            // answer) goes out with the next write: a read never writes,
            // so a split stream's writer is the only task waiting for
            // room in the socket.
            ready!(this.poll_read_tls(cx))?;
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsIo<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// Encrypts as much of `bufs` as the session buffers (rustls's send
    /// limit) and writes ciphertext while the socket takes it.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        loop {
            let taken = this.conn.writer().write_vectored(bufs)?;
            let mut full = false;
            while this.conn.wants_write() {
                match this.poll_write_tls(cx) {
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        full = true;
                        break;
                    }
                }
            }
            match (taken, full) {
                (0, true) => return Poll::Pending,
                // The session's buffer had no room and is empty now.
                (0, false) => continue,
                (n, _) => return Poll::Ready(Ok(n)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.conn.wants_write() {
            ready!(this.poll_write_tls(cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    /// Sends close_notify, then closes the inner stream.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            this.conn.send_close_notify();
            this.closing = true;
        }
        while this.conn.wants_write() {
            ready!(this.poll_write_tls(cx))?;
        }
        Pin::new(&mut this.io).poll_close(cx)
    }
}

/// The inner stream seen as blocking I/O by rustls: `Pending` is
/// `WouldBlock` (the waker is registered, the caller returns `Pending`).
struct Sync<'a, 'b, IO> {
    io: &'a mut IO,
    cx: &'a mut Context<'b>,
}

impl<IO: AsyncRead + Unpin> Read for Sync<'_, '_, IO> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_read(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<IO: AsyncWrite + Unpin> Write for Sync<'_, '_, IO> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The TLS state a hand-off carries to the owner shard, next to the
/// socket: everything the session had decrypted and not yet been read
/// stays in it.
#[derive(Debug)]
pub(crate) struct TlsSession(ServerConnection);

/// TLS over a TCP socket: the stream of a connection accepted on a TLS
/// listener.
#[derive(Debug)]
pub(crate) struct Tls {
    io: TlsIo<TcpStream>,
}

impl Tls {
    /// A session handed over from the accepting shard, over its socket.
    pub(crate) fn resume(fd: OwnedFd, session: TlsSession) -> Tls {
        Tls {
            io: TlsIo {
                io: stream::adopt_fd(fd),
                conn: session.0,
                closing: false,
            },
        }
    }
}

/// Opens TLS on an accepted socket (the opening step of a TLS listener).
pub(crate) async fn open(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<Tls> {
    Ok(Tls {
        io: handshake(tcp, config).await?,
    })
}

impl ByteStream for Tls {
    type Reader = TlsReader;
    type Writer = TlsWriter;

    fn raw_fd(&self) -> RawFd {
        self.io.io.as_raw_fd()
    }

    /// Both halves share the session (one shard, so a `RefCell`: each
    /// borrow lasts one poll); the reader takes it back for a hand-off
    /// once the writer is gone ([`TlsReader::suspend`]).
    fn split(self) -> (Self::Reader, Self::Writer) {
        let io = Rc::new(RefCell::new(self.io));
        (TlsReader { io: io.clone() }, TlsWriter { io })
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        futures_lite::io::AsyncReadExt::read(&mut self.io, buf).await
    }

    async fn refuse(mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            let _ = self.io.write_all(bytes).await;
        }
        let _ = self.io.close().await;
    }

    fn into_layer(self) -> super::Layer {
        super::Layer::Tls(Box::new(TlsSession(self.io.conn)))
    }
}

/// The read half of a [`Tls`] stream.
pub(crate) struct TlsReader {
    io: Rc<RefCell<TlsIo<TcpStream>>>,
}

impl StreamReader for TlsReader {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        future::poll_fn(|cx| Pin::new(&mut *self.io.borrow_mut()).poll_read(cx, buf)).await
    }

    /// The session, for a layer above (WebSocket) handed off after its
    /// opening step: its writer half must be dropped first.
    fn suspend(self) -> Option<(super::Layer, Framing)> {
        let io = Rc::try_unwrap(self.io).ok()?.into_inner();
        Some((
            super::Layer::Tls(Box::new(TlsSession(io.conn))),
            Framing::Tcp,
        ))
    }
}

/// The write half of a [`Tls`] stream.
pub(crate) struct TlsWriter {
    io: Rc<RefCell<TlsIo<TcpStream>>>,
}

impl StreamWriter for TlsWriter {
    /// One vectored write of the gathered chunks at a time into the
    /// session (it takes what fits in its send buffer), then a flush.
    async fn write_chunks(
        &mut self,
        chunks: &mut std::collections::VecDeque<bytes::Bytes>,
    ) -> io::Result<()> {
        while !chunks.is_empty() {
            let iov: Vec<IoSlice<'_>> = chunks
                .iter()
                .take(MAX_IOV)
                .map(|c| IoSlice::new(c))
                .collect();
            let n = future::poll_fn(|cx| {
                Pin::new(&mut *self.io.borrow_mut()).poll_write_vectored(cx, &iov)
            })
            .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            drop(iov);
            stream::consume(chunks, n);
        }
        future::poll_fn(|cx| Pin::new(&mut *self.io.borrow_mut()).poll_flush(cx)).await
    }

    /// close_notify, then a write shutdown of the socket (glommio's close
    /// of a `TcpStream` is a write shutdown).
    async fn end(&mut self) -> io::Result<()> {
        future::poll_fn(|cx| Pin::new(&mut *self.io.borrow_mut()).poll_close(cx)).await
    }
}
