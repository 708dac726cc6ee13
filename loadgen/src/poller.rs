//! A minimal epoll wrapper for the load generator's thread-per-core
//! client loops: one `Poller` per thread watches that thread's sockets for
//! readability and reports them by index.

use std::os::fd::RawFd;

/// An epoll instance over sockets registered by index; closed on drop.
pub(crate) struct Poller {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Poller {
    /// Watches `sockets` for input; each is reported by its position.
    pub(crate) fn new(sockets: impl Iterator<Item = RawFd>) -> Result<Poller, String> {
        // SAFETY: plain epoll_create1; the fd is owned by the Poller.
        let fd = unsafe { libc::epoll_create1(0) };
        if fd < 0 {
            return Err(format!(
                "epoll_create1: {}",
                std::io::Error::last_os_error()
            ));
        }
        let poller = Poller {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 1024],
        };
        for (i, socket) in sockets.enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: `fd` and `socket` are open; `ev` lives for the call.
            if unsafe { libc::epoll_ctl(fd, libc::EPOLL_CTL_ADD, socket, &mut ev) } < 0 {
                return Err(format!("epoll_ctl: {}", std::io::Error::last_os_error()));
            }
        }
        Ok(poller)
    }

    /// Waits up to `timeout_ms` and returns the indices of readable sockets
    /// (empty on timeout).
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
