//! Waiting for a socket to become readable or writable, with a precise
//! timeout (`ppoll`): a socket read timeout is rounded up to a scheduler
//! tick (1-4 ms), which skews paced load generators; ppoll's is not.
//!
//! The one `unsafe` call lives here, behind a safe function, so the client
//! SDK that needs it can forbid `unsafe` altogether.

use std::io;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// What to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Bytes to read, or an error or EOF pending.
    Readable,
    /// Room to write.
    Writable,
}

/// Waits until `fd` is ready as asked, at most `timeout` (`None`: no limit;
/// zero: only checks). Returns `Ok` on readiness, on timeout and on an
/// interrupting signal alike: the caller tries its I/O and sees.
pub fn wait(fd: &impl AsFd, what: Readiness, timeout: Option<Duration>) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: match what {
            Readiness::Readable => libc::POLLIN,
            Readiness::Writable => libc::POLLOUT,
        },
        revents: 0,
    };
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs() as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `pfd` and `ts` live for the whole call; one pollfd is passed
    // with nfds = 1 and its fd is open (borrowed from `fd`); a null
    // sigmask leaves the signal mask as it is.
    let r = unsafe { libc::ppoll(&mut pfd, 1, ts_ptr, std::ptr::null()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}
