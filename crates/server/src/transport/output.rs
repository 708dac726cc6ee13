//! A connection's output side on its owner shard: the queue of bytes the
//! write loop sends, the signals between the runtime and the two loops,
//! and the connection's protocol [`Session`].
//!
//! Output is a queue of byte chunks in write order: bytes encoded for this
//! connection alone accumulate in `out`; bytes shared with other
//! connections (a room message, or its payload) close `out` into a chunk
//! and are queued as the same `Bytes` every subscriber holds. The writer
//! hands the whole queue to its stream in one gathered write, so a shared
//! buffer is never copied per connection.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::signal::Signal;
use super::Session;

/// The runtime's handle on a connection.
pub(crate) struct ConnIo {
    /// Encoded bytes not yet written (after every chunk in `chunks`).
    pub(crate) out: RefCell<BytesMut>,
    chunks: RefCell<VecDeque<Bytes>>,
    chunk_bytes: Cell<usize>,
    /// Output the protocol holds back (MQTT: PUBLISHes beyond the client's
    /// Receive Maximum), set by the session after each change; it counts
    /// against the output budgets as if it were queued.
    held: Cell<usize>,
    /// Something was queued (or the connection is closing): the writer
    /// wakes.
    pub(super) wake: Signal,
    /// The reader task is done (the peer closed, or the socket failed).
    pub(super) reader_gone: Signal,
    /// Tells a writer blocked on a full socket that the connection closes:
    /// it gets `close_grace_ms` more, then the socket is shut down, so a
    /// client that does not read cannot pin a closed connection's socket
    /// and output for as long as it stays frozen.
    pub(super) closed: Signal,
    /// Flush what is queued (within `close_grace_ms`), then close.
    pub(crate) closing: Cell<bool>,
    /// Dropped for its unsent output (see `slow.rs`).
    pub(crate) dropped: Cell<bool>,
    fd: RawFd,
    /// The protocol's state; `None` once the connection is finished.
    session: RefCell<Option<Box<dyn Session>>>,
}

impl ConnIo {
    /// The output side of the socket `fd` (its writer waits on the
    /// signals inside).
    pub(crate) fn new(fd: RawFd, session: Box<dyn Session>) -> Rc<ConnIo> {
        Rc::new(ConnIo {
            out: RefCell::new(BytesMut::new()),
            chunks: RefCell::new(VecDeque::new()),
            chunk_bytes: Cell::new(0),
            held: Cell::new(0),
            wake: Signal::default(),
            reader_gone: Signal::default(),
            closed: Signal::default(),
            closing: Cell::new(false),
            dropped: Cell::new(false),
            fd,
            session: RefCell::new(Some(session)),
        })
    }

    /// Runs `f` on the connection's session (`None` once finished). Not
    /// re-entrant: a session method never reaches back into its own
    /// connection's session (see [`Session`]).
    pub(crate) fn with_session<R>(&self, f: impl FnOnce(&mut dyn Session) -> R) -> Option<R> {
        let mut guard = self.session.borrow_mut();
        guard.as_mut().map(|s| f(s.as_mut()))
    }

    /// Takes the session out (the connection is finished).
    pub(crate) fn take_session(&self) -> Option<Box<dyn Session>> {
        self.session.borrow_mut().take()
    }

    /// Queues bytes shared with other connections, after what is queued.
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

    /// Output not yet written: queued bytes plus what the protocol holds
    /// back. The output budgets (`room_lag_bytes`,
    /// `max_write_buffer_bytes`) apply to this.
    pub(crate) fn unsent(&self) -> usize {
        self.queued() + self.held.get()
    }

    /// The protocol now holds back `bytes` of output.
    pub(crate) fn set_held(&self, bytes: usize) {
        self.held.set(bytes);
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
        self.closed.raise();
        self.wake();
    }

    /// Takes everything queued, in write order.
    pub(super) fn take_queued(&self) -> VecDeque<Bytes> {
        let mut chunks = std::mem::take(&mut *self.chunks.borrow_mut());
        self.chunk_bytes.set(0);
        let own = self.out.borrow_mut().split().freeze();
        if !own.is_empty() {
            chunks.push_back(own);
        }
        chunks
    }

    /// Gives back the output buffer once everything queued is written: the
    /// writer splits the bytes it writes off `out`, which keeps the rest of
    /// the allocation (and all of it again once the written part is
    /// dropped), so an idle connection held the buffer its last burst grew
    /// (issue #17 goal 4). Called when the writer is about to wait, not
    /// between the writes of a burst.
    pub(super) fn release_written(&self) {
        let mut out = self.out.borrow_mut();
        if out.is_empty() && out.capacity() > 0 {
            *out = BytesMut::new();
        }
    }

    /// Wakes the writer (no-op if it is already awake).
    pub(crate) fn wake(&self) {
        self.wake.raise();
    }

    /// Shuts the socket down in both directions so the reader returns.
    pub(crate) fn shutdown(&self) {
        super::stream::shutdown(self.fd, std::net::Shutdown::Both);
    }

    /// Bytes the peer sent that the reader has not read yet (in the
    /// socket's receive queue).
    pub(crate) fn unread_input(&self) -> usize {
        super::stream::unread_bytes(self.fd)
    }

    /// The reader task is done (the peer's input ended, or failed).
    pub(crate) fn reader_done(&self) {
        self.reader_gone.raise();
    }
}
