//! `surepush check-host`: what on this host caps connections and throughput.
//!
//! Reads resource limits (getrlimit) and kernel settings (/proc/sys), and
//! turns each into a verdict a gateway operator can act on, pointing at the
//! files in `tuning/`. Missing or unreadable values are reported as unknown,
//! never as a failure.

use serde::Serialize;

use crate::limits;

/// Descriptors the server keeps besides client connections: listeners, log
/// segments, the mesh, the admin port, stdio. Per shard, plus a fixed part.
pub const RESERVED_FDS_FIXED: u64 = 64;
/// Per-shard part of the reserve.
pub const RESERVED_FDS_PER_SHARD: u64 = 16;
/// Client connections a node should be able to hold before the open-file
/// limit counts as a limit rather than fine.
pub const TARGET_CONNECTIONS: u64 = 100_000;
/// Per-connection memory assumed for the capacity estimate (a target that
/// the load generator's idle scenario measures).
pub const BYTES_PER_CONNECTION: u64 = 4096;

/// How a value looks for a push gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but worth tuning.
    Warn,
    /// Caps the gateway well below what the hardware could do.
    Limit,
    /// Could not be read.
    Unknown,
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// The value found.
    pub value: String,
    /// Verdict.
    pub status: Status,
    /// What it means and what to do.
    pub advice: String,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct HostReport {
    /// Cores available to this process (one shard each).
    pub cores: u64,
    /// Estimated maximum concurrent client connections.
    pub max_connections: u64,
    /// Every check.
    pub checks: Vec<Check>,
}

fn read_sys(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn parse_u64(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok()
}

/// `MemTotal` or `MemAvailable` (bytes) from /proc/meminfo text.
pub fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| parse_u64(l.split_once(':')?.1))
        .map(|kib| kib * 1024)
}

/// Lower and upper bound of `ip_local_port_range`.
pub fn port_range(text: &str) -> Option<(u64, u64)> {
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some((it.next()??, it.next()??))
}

/// The selected mode of `/sys/kernel/mm/transparent_hugepage/enabled`
/// (`always [madvise] never` -> `madvise`).
pub fn thp_mode(text: &str) -> Option<&str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
}

fn human_bytes(b: u64) -> String {
    if b == u64::MAX {
        "unlimited".into()
    } else if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} KiB", b >> 10)
    }
}

/// Connections a node can hold under an open-file soft limit.
pub fn connection_cap(nofile_soft: u64, shards: u64) -> u64 {
    nofile_soft.saturating_sub(RESERVED_FDS_FIXED + RESERVED_FDS_PER_SHARD * shards)
}

/// Probes this host.
pub fn probe() -> HostReport {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mut checks = Vec::new();
    let mut max_connections = u64::MAX;

    match limits::nofile() {
        Ok(l) => {
            let cap = connection_cap(l.hard, cores);
            max_connections = max_connections.min(cap);
            let status = if cap >= TARGET_CONNECTIONS {
                Status::Ok
            } else {
                Status::Limit
            };
            checks.push(Check {
                name: "open files (nofile)",
                value: format!("soft {} / hard {}", l.soft, l.hard),
                status,
                advice: format!(
                    "the server raises soft to hard at start; connections <= hard - {RESERVED_FDS_FIXED} - \
                     {RESERVED_FDS_PER_SHARD} x shards = {cap}; raise LimitNOFILE (tuning/surepush.service) \
                     for more"
                ),
            });
        }
        Err(e) => checks.push(unknown("open files (nofile)", &e.to_string())),
    }

    match limits::memlock() {
        Ok(l) => {
            let per_shard = limits::io_memory_per_shard(0, cores as u16);
            let status = if per_shard >= limits::DEFAULT_IO_MEMORY {
                Status::Ok
            } else {
                Status::Warn
            };
            checks.push(Check {
                name: "locked memory (memlock)",
                value: format!("soft {} / hard {}", human_bytes(l.soft), human_bytes(l.hard)),
                status,
                advice: format!(
                    "io_uring buffers: {} per shard x {cores} shards (half the limit at most; counted per user \
                     across executors); below that glommio falls back to unregistered buffers; raise \
                     LimitMEMLOCK for more",
                    human_bytes(per_shard as u64)
                ),
            });
        }
        Err(e) => checks.push(unknown("locked memory (memlock)", &e.to_string())),
    }

    checks.push(Check {
        name: "cores",
        value: cores.to_string(),
        status: if cores >= 4 { Status::Ok } else { Status::Warn },
        advice: format!("one shard per core: {cores} shard(s); throughput scales with cores"),
    });

    let meminfo = read_sys("/proc/meminfo").unwrap_or_default();
    match meminfo_bytes(&meminfo, "MemAvailable") {
        Some(avail) => {
            let cap = avail / BYTES_PER_CONNECTION;
            max_connections = max_connections.min(cap);
            checks.push(Check {
                name: "memory available",
                value: human_bytes(avail),
                status: Status::Ok,
                advice: format!(
                    "~{cap} connections at a target of {BYTES_PER_CONNECTION} B each (measure with the loadgen \
                     idle scenario)"
                ),
            });
        }
        None => checks.push(unknown("memory available", "/proc/meminfo unreadable")),
    }

    let sys = |name: &'static str, path: &str, good: u64, advice: &str| match read_sys(path)
        .as_deref()
        .and_then(parse_u64)
    {
        Some(v) => Check {
            name,
            value: v.to_string(),
            status: if v >= good { Status::Ok } else { Status::Warn },
            advice: format!("{advice} (suggested >= {good}, tuning/sysctl-surepush.conf)"),
        },
        None => unknown(name, path),
    };
    checks.push(sys(
        "net.core.somaxconn",
        "/proc/sys/net/core/somaxconn",
        4096,
        "accept backlog per listener: bounds reconnect storms",
    ));
    checks.push(sys(
        "net.ipv4.tcp_max_syn_backlog",
        "/proc/sys/net/ipv4/tcp_max_syn_backlog",
        8192,
        "half-open connections queued during a storm",
    ));
    checks.push(sys(
        "fs.nr_open",
        "/proc/sys/fs/nr_open",
        1 << 20,
        "ceiling for the nofile hard limit",
    ));

    match read_sys("/proc/sys/net/ipv4/ip_local_port_range")
        .as_deref()
        .and_then(port_range)
    {
        Some((lo, hi)) => {
            let ports = hi.saturating_sub(lo) + 1;
            checks.push(Check {
                name: "net.ipv4.ip_local_port_range",
                value: format!("{lo}-{hi}"),
                status: if ports >= 50_000 { Status::Ok } else { Status::Warn },
                advice: format!(
                    "a load generator here opens at most {ports} connections per (source ip, server ip:port); \
                     it uses several 127.0.0.x sources to go beyond"
                ),
            });
        }
        None => checks.push(unknown("net.ipv4.ip_local_port_range", "unreadable")),
    }

    match read_sys("/proc/sys/kernel/io_uring_disabled") {
        Some(v) if v != "0" => checks.push(Check {
            name: "io_uring",
            value: format!("kernel.io_uring_disabled = {v}"),
            status: Status::Limit,
            advice: "glommio needs io_uring: set kernel.io_uring_disabled = 0".into(),
        }),
        _ => checks.push(Check {
            name: "io_uring",
            value: "enabled".into(),
            status: Status::Ok,
            advice: "required by glommio".into(),
        }),
    }

    let release = read_sys("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version: Vec<u64> = release
        .split(['.', '-'])
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    checks.push(match version.as_slice() {
        [major, minor] => Check {
            name: "kernel",
            value: release.clone(),
            status: if (*major, *minor) >= (5, 8) {
                Status::Ok
            } else {
                Status::Limit
            },
            advice: "glommio needs Linux >= 5.8".into(),
        },
        _ => unknown("kernel", "unparsable release"),
    });

    let thp = read_sys("/sys/kernel/mm/transparent_hugepage/enabled");
    checks.push(match thp.as_deref().and_then(thp_mode) {
        Some(mode) => Check {
            name: "transparent huge pages",
            value: mode.to_string(),
            status: Status::Ok,
            advice: "the gateway turns them off for its own process (transparent_huge_pages = \
                     false): idle connections then give back what they free"
                .into(),
        },
        None => unknown("transparent huge pages", "unreadable"),
    });

    HostReport {
        cores,
        max_connections: if max_connections == u64::MAX {
            0
        } else {
            max_connections
        },
        checks,
    }
}

fn unknown(name: &'static str, why: &str) -> Check {
    Check {
        name,
        value: "unknown".into(),
        status: Status::Unknown,
        advice: why.to_string(),
    }
}

impl HostReport {
    /// Aligned text for people.
    pub fn to_text(&self) -> String {
        let w = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let v = self.checks.iter().map(|c| c.value.len()).max().unwrap_or(0);
        let mut out = format!(
            "surepush host check: {} core(s), about {} concurrent connections\n\n",
            self.cores, self.max_connections
        );
        for c in &self.checks {
            let status = match c.status {
                Status::Ok => "ok",
                Status::Warn => "WARN",
                Status::Limit => "LIMIT",
                Status::Unknown => "?",
            };
            out.push_str(&format!(
                "{status:<5}  {:<w$}  {:<v$}  {}\n",
                c.name, c.value, c.advice
            ));
        }
        out
    }
}

/// Probes, prints (text or JSON) and returns the report.
pub fn run(json: bool) -> std::io::Result<HostReport> {
    let report = probe();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(std::io::Error::other)?
        );
    } else {
        print!("{}", report.to_text());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selected_huge_page_mode_is_the_bracketed_one() {
        assert_eq!(thp_mode("always [madvise] never"), Some("madvise"));
        assert_eq!(thp_mode("[always] madvise never\n"), Some("always"));
        assert_eq!(thp_mode("always madvise never"), None);
    }

    #[test]
    fn parses_proc_texts() {
        let meminfo =
            "MemTotal:       24589304 kB\nMemFree:        1 kB\nMemAvailable:   23000000 kB\n";
        assert_eq!(
            meminfo_bytes(meminfo, "MemAvailable"),
            Some(23_000_000 * 1024)
        );
        assert_eq!(meminfo_bytes(meminfo, "MemTotal"), Some(24_589_304 * 1024));
        assert_eq!(meminfo_bytes("garbage", "MemTotal"), None);
        assert_eq!(port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(port_range("x y"), None);
    }

    #[test]
    fn connection_cap_subtracts_the_reserve() {
        // This machine: nofile 20,000 with 2 shards.
        assert_eq!(connection_cap(20_000, 2), 20_000 - 64 - 32);
        assert_eq!(connection_cap(10, 2), 0);
    }

    #[test]
    fn probing_this_host_reports_every_check() {
        let r = probe();
        assert!(r.cores >= 1);
        for name in [
            "open files (nofile)",
            "locked memory (memlock)",
            "cores",
            "kernel",
            "io_uring",
        ] {
            let c = r.checks.iter().find(|c| c.name == name).expect(name);
            assert_ne!(c.status, Status::Unknown, "{name}: {c:?}");
        }
        let text = r.to_text();
        assert!(text.contains("open files"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["checks"].as_array().is_some_and(|a| !a.is_empty()));
    }
}
