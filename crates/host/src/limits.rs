//! Process resource limits the server adjusts or sizes itself by.

use std::io;

/// Soft and hard value of one limit (`u64::MAX` = unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// In force.
    pub soft: u64,
    /// Ceiling the soft value may be raised to without privileges.
    pub hard: u64,
}

fn get(resource: libc::__rlimit_resource_t) -> io::Result<Limit> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(resource, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Limit {
        soft: r.rlim_cur,
        hard: r.rlim_max,
    })
}

/// Open-file limit.
pub fn nofile() -> io::Result<Limit> {
    get(libc::RLIMIT_NOFILE)
}

/// Locked-memory limit (bytes), which caps io_uring registered buffers.
pub fn memlock() -> io::Result<Limit> {
    get(libc::RLIMIT_MEMLOCK)
}

/// Raises the open-file soft limit to the hard limit; returns the new limit.
/// Every client connection is a descriptor, so the soft default (often
/// 1024) would cap the gateway long before memory does.
pub fn raise_nofile() -> io::Result<Limit> {
    let l = nofile()?;
    if l.soft < l.hard {
        let r = libc::rlimit {
            rlim_cur: l.hard,
            rlim_max: l.hard,
        };
        // SAFETY: `r` is a valid rlimit; setrlimit only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    nofile()
}

/// Lets the kernel back this process's memory with transparent huge pages
/// (`allow = true`) or not (`prctl(PR_SET_THP_DISABLE)`). The flag holds
/// for pages faulted from now on, whatever `madvise(MADV_HUGEPAGE)` the
/// allocator put on its arenas, and children inherit it.
pub fn allow_transparent_huge_pages(allow: bool) -> io::Result<()> {
    let disable = libc::c_ulong::from(!allow);
    // SAFETY: PR_SET_THP_DISABLE takes one integer argument and the rest
    // zero; it changes only this process's flags.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, disable, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether transparent huge pages are disabled for this process
/// (`PR_GET_THP_DISABLE`).
pub fn transparent_huge_pages_disabled() -> io::Result<bool> {
    // SAFETY: PR_GET_THP_DISABLE takes no arguments and only reads a flag.
    match unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) } {
        -1 => Err(io::Error::last_os_error()),
        flag => Ok(flag != 0),
    }
}

/// glommio refuses io memory below this.
pub const MIN_IO_MEMORY: usize = 512 << 10;
/// Enough registered buffer memory for one shard's DMA log writes.
pub const DEFAULT_IO_MEMORY: usize = 2 << 20;

/// io_uring buffer memory per shard: the configured value, or the default
/// shrunk so all shards together use at most half the locked-memory limit
/// (the limit counts per user, across every executor).
pub fn io_memory_per_shard(configured_kib: u64, shards: u16) -> usize {
    if configured_kib > 0 {
        return ((configured_kib as usize) << 10).max(MIN_IO_MEMORY);
    }
    let budget = memlock().map_or(u64::MAX, |l| l.soft) / 2 / u64::from(shards.max(1));
    (DEFAULT_IO_MEMORY as u64)
        .min(budget)
        .max(MIN_IO_MEMORY as u64) as usize
}

/// Bytes an unprivileged writer can still use on the filesystem of `path`.
pub fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable
    // memory of the right type; statvfs writes nothing else.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Ok(st.f_bavail * st.f_frsize)
}

/// A TCP port on 127.0.0.1 that is free now and below the host's
/// ephemeral range (`net.ipv4.ip_local_port_range`, read from /proc;
/// 32768 if unreadable), for tests and benchmarks that start servers.
///
/// A port picked by binding port 0 lies *inside* the ephemeral range, where
/// any outgoing connection of the machine may take it before the server
/// binds it (a test once connected to an HTTP server there). Ports are
/// probed from a per-process pseudo-random start, so concurrent test
/// processes rarely probe the same ones.
pub fn free_loopback_port() -> io::Result<u16> {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOWEST: u16 = 10_000;
    let span = u64::from(ephemeral_start.saturating_sub(LOWEST).max(1));
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let start = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33;
    for _ in 0..span {
        let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = LOWEST + ((start + i * 7919) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        "no free loopback port below the ephemeral range",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_nofile_never_lowers_it() {
        let before = nofile().unwrap();
        let after = raise_nofile().unwrap();
        assert!(after.soft >= before.soft);
        assert_eq!(after.soft, after.hard);
    }

    #[test]
    fn transparent_huge_pages_follow_the_setting() {
        allow_transparent_huge_pages(false).unwrap();
        assert!(transparent_huge_pages_disabled().unwrap());
        allow_transparent_huge_pages(true).unwrap();
        assert!(!transparent_huge_pages_disabled().unwrap());
    }

    #[test]
    fn io_memory_respects_configuration_and_floor() {
        assert_eq!(io_memory_per_shard(1024, 2), 1 << 20);
        assert_eq!(io_memory_per_shard(1, 2), MIN_IO_MEMORY);
        let auto = io_memory_per_shard(0, 2);
        assert!((MIN_IO_MEMORY..=DEFAULT_IO_MEMORY).contains(&auto));
        let l = memlock().unwrap();
        if l.soft != u64::MAX && l.soft >= 4 * DEFAULT_IO_MEMORY as u64 {
            assert_eq!(auto, DEFAULT_IO_MEMORY);
        }
    }
}
