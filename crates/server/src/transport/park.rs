//! Idle connections without tasks (issue #17 goal 4, issue #21 item 5).
//!
//! A served connection is two glommio tasks (the read loop and the write
//! loop), glommio's readiness `Source` for its socket and the stream's
//! split halves: ~1.5 KiB that a connection with nothing to do holds for
//! as long as it is idle, which for a push gateway is most of its life.
//! Every `park_idle_ms` a sweep asks each plain TCP connection that read
//! and wrote nothing since the last sweep to park; its read loop does if
//! nothing is buffered, nothing queued to write and its writer waits
//! (`ConnIo::can_park`): both tasks end, the socket (a duplicate of its
//! descriptor: glommio closes its own) is registered with this shard's
//! [`Parker`], and what the read loop owned (the protocol's decoder) waits
//! in the connection's [`ConnIo`] as a closure that starts the loops
//! again. Output counts as activity, so a subscriber that only receives
//! does not park between messages.
//!
//! A parked connection wakes on either side:
//! - **input or hang-up**: the parker's thread, blocked in `epoll_wait`,
//!   sends the connection's id to the shard, which resumes it;
//! - **output**: anything that wakes the writer ([`ConnIo::wake`]: a push,
//!   a reply, a close) resumes it first.
//!
//! Nothing about the connection changes for the core or the protocol:
//! its `ConnId`, session, output queue and signals stay where they were;
//! only the descriptor number (a duplicate) does. TLS and WebSocket
//! connections are not parked (their layers hold state glommio cannot
//! give back); they keep the loops.
//!
//! The parker's epoll registrations are one-shot: a readiness report
//! comes once per park, and a stale report (the connection woke for output
//! meanwhile, or closed) finds the connection not parked and is ignored.

use std::cell::Cell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};
use std::thread::JoinHandle;

use surepush_core::ConnId;

use super::stream::{self, StreamReader};
use super::{ConnIo, Inbound, ShardLoop};

/// Most readiness reports taken per `epoll_wait`.
const EVENTS: usize = 256;
/// The token of the parker's own stop eventfd.
const STOP: u64 = u64::MAX;

/// One shard's parked sockets: an epoll set and the thread that waits on it.
pub(crate) struct Parker {
    epoll: OwnedFd,
    stop: OwnedFd,
    ready: flume::Receiver<Vec<u64>>,
    thread: Option<JoinHandle<()>>,
    /// Connections parked now (the `surepush_connections_parked` gauge).
    parked: Cell<usize>,
    /// Resumes since the metrics last took them
    /// (`surepush_connections_resumed_total`).
    resumed: Cell<u64>,
}

impl Parker {
    /// An epoll set for shard `shard` and its waiting thread.
    pub(crate) fn new(shard: u16) -> std::io::Result<Parker> {
        // SAFETY: plain syscalls; each result is checked before it is
        // wrapped into the descriptor it owns.
        let epoll = unsafe { owned(libc::epoll_create1(libc::EPOLL_CLOEXEC))? };
        let stop = unsafe { owned(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))? };
        ctl(
            &epoll,
            libc::EPOLL_CTL_ADD,
            stop.as_raw_fd(),
            STOP,
            libc::EPOLLIN as u32,
        )?;
        let (tx, ready) = flume::unbounded();
        let waiting = epoll.try_clone()?;
        let thread = std::thread::Builder::new()
            .name(format!("surepush-park-{shard}"))
            .spawn(move || wait_loop(&waiting, &tx))?;
        Ok(Parker {
            epoll,
            stop,
            ready,
            thread: Some(thread),
            parked: Cell::new(0),
            resumed: Cell::new(0),
        })
    }

    /// Watches `fd` (the parked connection `conn`'s socket) for input, its
    /// peer's end or an error, once.
    fn watch(&self, conn: ConnId, fd: RawFd) -> std::io::Result<()> {
        let events = libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT;
        ctl(
            &self.epoll,
            libc::EPOLL_CTL_ADD,
            fd,
            conn.as_u64(),
            events as u32,
        )?;
        self.parked.set(self.parked.get() + 1);
        Ok(())
    }

    /// Stops watching `fd` (its connection resumes).
    fn unwatch(&self, fd: RawFd) {
        // Fails only if `fd` was never added (not reached); a report already
        // taken is ignored by `resume_ready`.
        let _ = ctl(&self.epoll, libc::EPOLL_CTL_DEL, fd, 0, 0);
        self.parked.set(self.parked.get().saturating_sub(1));
    }

    /// Connections parked now.
    pub(crate) fn parked(&self) -> usize {
        self.parked.get()
    }

    /// Parked connections resumed since the last call.
    pub(crate) fn take_resumed(&self) -> u64 {
        self.resumed.take()
    }

    /// The ids of parked connections with something to read (their
    /// sockets), as the thread reports them.
    async fn ready(&self) -> Option<Vec<u64>> {
        self.ready.recv_async().await.ok()
    }
}

impl Drop for Parker {
    fn drop(&mut self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to the parker's own eventfd.
        let _ = unsafe {
            libc::write(
                self.stop.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Wraps a syscall's descriptor result.
///
/// # Safety
/// `fd`, if not negative, is a new descriptor nothing else owns.
unsafe fn owned(fd: RawFd) -> std::io::Result<OwnedFd> {
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn ctl(
    epoll: &OwnedFd,
    op: libc::c_int,
    fd: RawFd,
    token: u64,
    events: u32,
) -> std::io::Result<()> {
    let mut event = libc::epoll_event { events, u64: token };
    // SAFETY: `epoll` is an open epoll descriptor; `event` lives for the
    // call; the kernel checks `fd`.
    let rc = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut event) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The parker's thread: reports ready sockets until the stop eventfd is
/// written or the shard is gone.
fn wait_loop(epoll: &OwnedFd, tx: &flume::Sender<Vec<u64>>) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    loop {
        // SAFETY: `events` holds `EVENTS` entries for the kernel to fill.
        let n =
            unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), EVENTS as i32, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!(error = %std::io::Error::last_os_error(), "the idle-connection parker failed; parked connections wake only for output");
            return;
        }
        let mut ready = Vec::with_capacity(n as usize);
        for e in &events[..n as usize] {
            let token = e.u64;
            if token == STOP {
                return;
            }
            ready.push(token);
        }
        if tx.send(ready).is_err() {
            return;
        }
    }
}

/// The shard's parking task, when idle connections park: the idle sweep
/// and the resumes the parker reports.
pub(crate) async fn run<S: ShardLoop>(rt: Rc<S>) {
    if rt.parker().is_none() {
        return;
    }
    let every = std::time::Duration::from_millis(rt.config().park_idle_ms);
    futures_lite::future::zip(sweep_idle(rt.clone(), every), resume_ready(rt)).await;
}

/// Every `every`, asks each connection with nothing read or written since
/// the last sweep to park (`ConnIo::sweep`): a connection parks after
/// between one and two periods of silence both ways. A sweep is one pass
/// over the shard's connections; no timer is armed per read.
async fn sweep_idle<S: ShardLoop>(rt: Rc<S>, every: std::time::Duration) {
    loop {
        glommio::timer::sleep(every).await;
        rt.sweep_idle();
    }
}

/// Resumes the parked connections the parker reports.
async fn resume_ready<S: ShardLoop>(rt: Rc<S>) {
    loop {
        let Some(ready) = (match rt.parker() {
            Some(parker) => parker.ready().await,
            None => None,
        }) else {
            return;
        };
        for token in ready {
            if let Some(io) = rt.conn_by_token(token) {
                io.resume();
            }
        }
    }
}

/// Parks the connection: called by its read loop, which owns `reader` and
/// `inbound`, once [`ConnIo::can_park`] holds; the caller stops the writer
/// task when this succeeds (nothing here awaits, so no report of the
/// parker can be handled before the connection is parked). `Err` gives
/// the reader back (not plain TCP, or the parker refused the socket) and
/// the caller reads on.
pub(super) fn park<S: ShardLoop, R: StreamReader, I: Inbound>(
    rt: &Rc<S>,
    conn: ConnId,
    io: &Rc<ConnIo>,
    reader: R,
    inbound: I,
) -> Result<(), (R, I)> {
    let Some(parker) = rt.parker() else {
        return Err((reader, inbound));
    };
    if !reader.parks() {
        return Err((reader, inbound));
    }
    let Ok(fd) = stream::duplicate(io.fd()) else {
        return Err((reader, inbound));
    };
    if let Err(e) = parker.watch(conn, fd.as_raw_fd()) {
        tracing::debug!(error = %e, "cannot park an idle connection");
        return Err((reader, inbound));
    }
    // The reader (and then the writer) close glommio's descriptor; the
    // duplicate is the connection's socket from here on.
    drop(reader);
    io.set_parkable(false);
    io.set_fd(fd.as_raw_fd());
    let watched = Watched {
        rt: rt.clone(),
        fd: Some(fd),
    };
    let weak: Weak<ConnIo> = Rc::downgrade(io);
    io.set_parked(Box::new(move || {
        let Some(io) = weak.upgrade() else {
            return; // gone: the socket closes with `watched`
        };
        // Not started here: this runs inside `ConnIo::wake`, whose callers
        // may hold the session, and glommio polls a spawned task at once.
        glommio::spawn_local(async move {
            futures_lite::future::yield_now().await;
            let rt = watched.rt.clone();
            let tcp = stream::adopt_fd(watched.release());
            super::spawn_loops(&rt, conn, io, super::resumed(tcp), inbound);
        })
        .detach();
    }));
    Ok(())
}

/// A parked socket, registered with its shard's [`Parker`] until it is
/// released (the connection resumes) or dropped (the connection is gone
/// while parked: the socket closes).
struct Watched<S: ShardLoop> {
    rt: Rc<S>,
    fd: Option<OwnedFd>,
}

impl<S: ShardLoop> Watched<S> {
    /// The socket, no longer watched (the connection resumes).
    fn release(mut self) -> OwnedFd {
        let fd = self.fd.take().expect("released once");
        self.unwatch(fd.as_raw_fd());
        if let Some(parker) = self.rt.parker() {
            parker.resumed.set(parker.resumed.get() + 1);
        }
        fd
    }

    fn unwatch(&self, fd: RawFd) {
        if let Some(parker) = self.rt.parker() {
            parker.unwatch(fd);
        }
    }
}

impl<S: ShardLoop> Drop for Watched<S> {
    fn drop(&mut self) {
        if let Some(fd) = &self.fd {
            self.unwatch(fd.as_raw_fd());
        }
    }
}
