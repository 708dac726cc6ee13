//! What the load generator reads from /proc: a process's resident memory
//! and the process that listens on a TCP port.

use std::collections::HashSet;

/// Resident set size of process `pid` (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("{path}: no VmRSS line"))
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
        drop(l);
        assert!(listener_pid(port).is_err());
    }
}
