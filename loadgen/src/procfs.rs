//! What the load generator reads from /proc: a process's resident memory,
//! its CPU time, and the process that listens on a TCP port.

use std::collections::HashSet;

/// Resident set size of process `pid` (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    kib_line(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// The `key  N kB` line of a /proc file, in KiB.
fn kib_line(path: &str, key: &str) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("{path}: no {key} line"))
}

/// Memory of process `pid` backed by transparent huge pages
/// (AnonHugePages in /proc/PID/smaps_rollup), in KiB.
pub fn anon_huge_pages_kib(pid: u32) -> Result<u64, String> {
    kib_line(&format!("/proc/{pid}/smaps_rollup"), "AnonHugePages:")
}

/// CPU time process `pid` has used, user + system, summed over all its
/// threads (io_uring kernel workers included: they are threads of the
/// process), in µs; /proc counts it in clock ticks (10 ms here).
pub fn cpu_time_us(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // `pid (comm) state ...`: comm may hold spaces; fields after it are
    // numbered from 3, utime is 14 and stime 15.
    let after_comm = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("{path}: no command name"))?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let tick = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{path}: field {} unreadable", i + 3))
    };
    let ticks = tick(11)? + tick(12)?;
    // SAFETY: sysconf reads a constant of the system.
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(ticks * 1_000_000 / per_s)
}

/// A process's CPU time from one point on.
#[derive(Clone, Debug)]
pub struct CpuMeter {
    /// Each measured process and its CPU µs at the start.
    pids: Vec<(u32, u64)>,
}

impl CpuMeter {
    /// Starts measuring `pid`; `None` without a pid or when its /proc
    /// entry is unreadable.
    pub fn start(pid: Option<u32>) -> Option<CpuMeter> {
        CpuMeter::start_all(vec![pid?])
    }

    /// Starts measuring the sum over `pids` (the nodes of a cluster);
    /// `None` if there are none or one is unreadable.
    pub fn start_all(pids: Vec<u32>) -> Option<CpuMeter> {
        let pids = pids
            .into_iter()
            .map(|pid| cpu_time_us(pid).ok().map(|us| (pid, us)))
            .collect::<Option<Vec<_>>>()?;
        (!pids.is_empty()).then_some(CpuMeter { pids })
    }

    /// CPU µs used since the start; `None` if a process is gone (a
    /// restarted server is another process).
    pub fn used_us(&self) -> Option<u64> {
        self.pids.iter().try_fold(0, |sum, (pid, start_us)| {
            let now = cpu_time_us(*pid).ok()?;
            Some(sum + now.saturating_sub(*start_us))
        })
    }

    /// CPU µs since the start per message, over `messages` messages.
    pub fn per_message(&self, messages: u64) -> Option<f64> {
        let used = self.used_us()?;
        (messages > 0).then(|| used as f64 / messages as f64)
    }
}

/// `12.3 µs` or `n/a` (no measurement).
pub fn format_cpu(us_per_msg: Option<f64>) -> String {
    us_per_msg.map_or_else(|| "n/a".to_string(), |us| format!("{us:.1} µs"))
}

/// Inodes of the sockets listening on TCP `port` (any address, IPv4 or
/// IPv6) in this network namespace.
fn listening_inodes(port: u16) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && local_port == Some(port) {
                if let Ok(i) = inode.parse() {
                    inodes.insert(i);
                }
            }
        }
    }
    inodes
}

/// The process listening on TCP `port`: the owner of a listening socket
/// found in /proc/net/tcp{,6}, looked up in every /proc/PID/fd. An error
/// unless exactly one process holds such sockets (needs permission to
/// read the other process's fd table: the same user, or root).
pub fn listener_pid(port: u16) -> Result<u32, String> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return Err(format!("nothing listens on TCP port {port}"));
    }
    let mut pids = HashSet::new();
    let procs = std::fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue; // gone, or not ours to read
        };
        for fd in fds.flatten() {
            let holds = std::fs::read_link(fd.path()).ok().is_some_and(|target| {
                target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|i| i.parse::<u64>().ok())
                    .is_some_and(|i| inodes.contains(&i))
            });
            if holds {
                pids.insert(pid);
                break;
            }
        }
    }
    match pids.len() {
        1 => Ok(pids.into_iter().next().expect("one")),
        0 => Err(format!(
            "no readable process holds the listener on port {port} (pass --server-pid)"
        )),
        _ => Err(format!(
            "several processes hold listeners on port {port}: {pids:?} (pass --server-pid)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_as_the_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(listener_pid(port).unwrap(), std::process::id());
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        // Burn 30 ms of this thread's CPU (as the thread itself counts
        // it, whatever else runs), then see at least 20 ms of it (whole
        // 10 ms ticks) in the process's total.
        let meter = CpuMeter::start(Some(std::process::id())).unwrap();
        let thread_cpu_us = || {
            let mut t = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes the timespec it is given.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
            t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
        };
        let from = thread_cpu_us();
        let mut x = 0u64;
        while thread_cpu_us() - from < 30_000 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        assert!(meter.used_us().unwrap() >= 20_000, "{x}");
        drop(l);
        assert!(listener_pid(port).is_err());
    }
}
