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
    /// The write loop waits for [`ConnIo::wake`] with nothing in hand: it
    /// may be stopped there (the connection parks, `park.rs`).
    writer_waiting: Cell<bool>,
    /// Which write loop may run: one started before this number moved on
    /// returns at its next wake-up ([`ConnIo::stop_writer`]).
    writer_id: Cell<u32>,
    /// Something was read or written since the last idle sweep.
    active: Cell<bool>,
    /// The read loop can park this connection (plain TCP, parking on).
    parkable: Cell<bool>,
    /// An idle sweep found nothing read or written for a whole period:
    /// the read loop parks the connection if it can (`park.rs`).
    pub(super) park_asked: Signal,
    /// The socket (a duplicate once the connection has parked).
    fd: Cell<RawFd>,
    /// A parked connection's loops, ready to start again (`park.rs`).
    parked: Cell<Option<Box<dyn FnOnce()>>>,
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
            writer_waiting: Cell::new(false),
            writer_id: Cell::new(0),
            active: Cell::new(true),
            parkable: Cell::new(false),
            park_asked: Signal::default(),
            fd: Cell::new(fd),
            parked: Cell::new(None),
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

    /// Wakes the writer (no-op if it is already awake); a parked
    /// connection resumes first.
    pub(crate) fn wake(&self) {
        self.wake.raise();
        self.resume();
    }

    /// Starts a parked connection's loops again (no-op if it is not
    /// parked).
    pub(crate) fn resume(&self) {
        if let Some(resume) = self.parked.take() {
            self.writer_waiting.set(false);
            self.mark_active();
            resume();
        }
    }

    /// Whether the connection has nothing in flight in either direction
    /// but its reader's wait: the writer waits with nothing queued, nothing
    /// is held back, and it is not closing (the reader checks its own
    /// side).
    pub(super) fn can_park(&self) -> bool {
        self.writer_waiting.get()
            && !self.wake.is_raised()
            && self.queued() == 0
            && self.held.get() == 0
            && !self.closing.get()
            && !self.dropped.get()
    }

    /// Something was read or written (a sweep will not ask it to park).
    pub(super) fn mark_active(&self) {
        self.active.set(true);
        self.park_asked.lower();
    }

    /// Whether the read loop may park the connection (set by each read
    /// loop as it starts; cleared when it parks).
    pub(super) fn set_parkable(&self, parkable: bool) {
        self.parkable.set(parkable);
    }

    /// One idle sweep (`park::sweep_idle`, every `park_idle_ms`): a
    /// connection with nothing read or written since the last one, its
    /// writer waiting, is asked to park.
    pub(crate) fn sweep(&self) {
        if self.active.replace(false) {
            return;
        }
        if self.parkable.get() && self.writer_waiting.get() {
            self.park_asked.raise();
        }
    }

    /// The id a new write loop runs under ([`ConnIo::writer_wait`]).
    pub(super) fn writer_id(&self) -> u32 {
        self.writer_id.get()
    }

    /// The write loop `id`'s wait for something to write: `false` once the
    /// connection has parked and that loop is to return. A stopped task
    /// must end by itself, not be cancelled: cancelling a glommio 0.9 task
    /// that waits leaks its memory (`JoinHandle::cancel` counts one
    /// reference twice), which a heap profile of parked connections showed.
    pub(super) async fn writer_wait(&self, id: u32) -> bool {
        self.writer_waiting.set(true);
        let go_on = std::future::poll_fn(|cx| {
            if self.writer_id.get() != id {
                return std::task::Poll::Ready(false);
            }
            self.wake.poll_take(cx).map(|()| true)
        })
        .await;
        if go_on {
            // A stopped loop leaves the flag alone: the next one (the
            // connection resumed) may be waiting already.
            self.writer_waiting.set(false);
        }
        go_on
    }

    /// Ends the write loop waiting in [`ConnIo::writer_wait`] (the
    /// connection parked; [`ConnIo::can_park`] held): it returns when it
    /// runs next, dropping its half of glommio's socket.
    pub(super) fn stop_writer(&self) {
        self.writer_id.set(self.writer_id.get().wrapping_add(1));
        self.wake.nudge();
    }

    /// The connection is parked: `resume` starts its loops again.
    pub(super) fn set_parked(&self, resume: Box<dyn FnOnce()>) {
        self.parked.set(Some(resume));
    }

    /// The connection's socket.
    pub(super) fn fd(&self) -> RawFd {
        self.fd.get()
    }

    /// The socket is now `fd` (a parked connection's duplicate).
    pub(super) fn set_fd(&self, fd: RawFd) {
        self.fd.set(fd);
    }

    /// Shuts the socket down in both directions so the reader returns.
    pub(crate) fn shutdown(&self) {
        super::stream::shutdown(self.fd(), std::net::Shutdown::Both);
    }

    /// Bytes the peer sent that the reader has not read yet (in the
    /// socket's receive queue).
    pub(crate) fn unread_input(&self) -> usize {
        super::stream::unread_bytes(self.fd())
    }

    /// The reader task is done (the peer's input ended, or failed).
    pub(crate) fn reader_done(&self) {
        self.reader_gone.raise();
    }
}
