//! A minimal epoll wrapper for the load generator's thread-per-core
//! client loops: one `Poller` per thread watches that thread's sockets and
//! reports them by index.

use std::os::fd::RawFd;

/// An epoll instance over sockets registered by index; closed on drop.
pub(crate) struct Poller {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Poller {
    /// Watches `sockets` for input (level-triggered); each is reported by
    /// its position.
    pub(crate) fn new(sockets: impl Iterator<Item = RawFd>) -> Result<Poller, String> {
        let mut poller = Poller::empty()?;
        for (i, socket) in sockets.enumerate() {
            poller.ctl(libc::EPOLL_CTL_ADD, socket, i, libc::EPOLLIN as u32)?;
        }
        Ok(poller)
    }

    /// A poller watching nothing yet.
    pub(crate) fn empty() -> Result<Poller, String> {
        // SAFETY: plain epoll_create1; the fd is owned by the Poller.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(format!(
                "epoll_create1: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Poller {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 1024],
        })
    }

    /// Watches `socket` edge-triggered for input and for room to write (a
    /// connect that completed, a full send buffer that drained), reported
    /// as `index`. The owner must read and write until `WouldBlock`.
    pub(crate) fn add_edge(&mut self, socket: RawFd, index: usize) -> Result<(), String> {
        let interest = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        self.ctl(libc::EPOLL_CTL_ADD, socket, index, interest as u32)
    }

    /// Stops watching `socket` (closing a socket also does that).
    pub(crate) fn remove(&mut self, socket: RawFd) -> Result<(), String> {
        self.ctl(libc::EPOLL_CTL_DEL, socket, 0, 0)
    }

    fn ctl(&mut self, op: i32, socket: RawFd, index: usize, events: u32) -> Result<(), String> {
        let mut ev = libc::epoll_event {
            events,
            u64: index as u64,
        };
        // SAFETY: `self.fd` and `socket` are open; `ev` lives for the call.
        if unsafe { libc::epoll_ctl(self.fd, op, socket, &mut ev) } < 0 {
            return Err(format!("epoll_ctl: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` and returns the indices of sockets with
    /// something to do (empty on timeout).
    pub(crate) fn wait(&mut self, timeout_ms: i32) -> Vec<usize> {
        // SAFETY: `events` has room for its length; `fd` is open.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                timeout_ms,
            )
        };
        self.events
            .iter()
            .take(n.max(0) as usize)
            .map(|ev| ev.u64 as usize)
            .collect()
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // SAFETY: closing the epoll fd this Poller created.
        unsafe { libc::close(self.fd) };
    }
}
