//! The process's own resource use, read from `/proc` the way Prometheus's
//! process collector reads it (same quantities, same units), so the
//! standard `process_*` metrics and the dashboards built on them work for
//! surepush as for any other exporter.
//!
//! Each read is a few small procfs files (no syscalls per connection):
//! cheap enough for every scrape. Counting open descriptors uses the
//! directory size of `/proc/self/fd` where the kernel reports it (Linux
//! 6.2+), so a node with a million sockets does not list a million
//! entries per scrape; older kernels fall back to counting.

use std::io;
use std::path::Path;

/// One reading of the process's resource use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessStats {
    /// Resident memory (bytes).
    pub resident_bytes: u64,
    /// Virtual memory (bytes).
    pub virtual_bytes: u64,
    /// Open file descriptors (sockets included).
    pub open_fds: u64,
    /// The open-file soft limit (`u64::MAX`: unlimited).
    pub max_fds: u64,
    /// User plus system CPU time of every thread, io_uring workers included
    /// (seconds).
    pub cpu_seconds: f64,
    /// When the process started (seconds since the Unix epoch).
    pub start_time_seconds: f64,
}

/// Fields of `/proc/<pid>/stat` after the command name (`comm` may hold
/// spaces and parentheses, so it is cut at the last `)`), counted from 0 at
/// field 3 (`state`) of proc(5).
mod stat_field {
    /// Field 14, user time (clock ticks).
    pub const UTIME: usize = 11;
    /// Field 15, system time (clock ticks).
    pub const STIME: usize = 12;
    /// Field 22, start time after boot (clock ticks).
    pub const STARTTIME: usize = 19;
    /// Field 23, virtual memory (bytes).
    pub const VSIZE: usize = 20;
    /// Field 24, resident set (pages).
    pub const RSS: usize = 21;
}

impl ProcessStats {
    /// Reads the current process's figures.
    pub fn read() -> io::Result<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        let boot_time_s = boot_time_s(&std::fs::read_to_string("/proc/stat")?)?;
        let open_fds = open_fds(Path::new("/proc/self/fd"))?;
        let max_fds = crate::limits::nofile()?.soft;
        parse_stat(&stat, boot_time_s, host_units(), open_fds, max_fds)
    }
}

/// Clock ticks per second and the page size, from sysconf.
fn host_units() -> HostUnits {
    // SAFETY: sysconf only reads its argument and returns a value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    HostUnits {
        ticks_per_s: if ticks > 0 { ticks as f64 } else { 100.0 },
        page_bytes: if page > 0 { page as u64 } else { 4096 },
    }
}

#[derive(Clone, Copy, Debug)]
struct HostUnits {
    ticks_per_s: f64,
    page_bytes: u64,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// `btime` of `/proc/stat`: boot time, seconds since the epoch.
fn boot_time_s(proc_stat: &str) -> io::Result<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| invalid("no btime in /proc/stat"))
}

fn parse_stat(
    stat: &str,
    boot_time_s: u64,
    units: HostUnits,
    open_fds: u64,
    max_fds: u64,
) -> io::Result<ProcessStats> {
    let after_comm = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| invalid("/proc/self/stat has no command name"))?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| invalid("/proc/self/stat is shorter than proc(5) says"))
    };
    let ticks = (field(stat_field::UTIME)? + field(stat_field::STIME)?) as f64;
    Ok(ProcessStats {
        resident_bytes: field(stat_field::RSS)? * units.page_bytes,
        virtual_bytes: field(stat_field::VSIZE)?,
        open_fds,
        max_fds,
        cpu_seconds: ticks / units.ticks_per_s,
        start_time_seconds: boot_time_s as f64
            + field(stat_field::STARTTIME)? as f64 / units.ticks_per_s,
    })
}

/// Open descriptors: the directory's size where the kernel reports the
/// count in it (Linux 6.2+; older kernels say 0), else its entries.
fn open_fds(dir: &Path) -> io::Result<u64> {
    let size = std::fs::metadata(dir)?.len();
    if size > 0 {
        return Ok(size);
    }
    Ok(std::fs::read_dir(dir)?.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNITS: HostUnits = HostUnits {
        ticks_per_s: 100.0,
        page_bytes: 4096,
    };

    #[test]
    fn stat_fields_are_read_after_a_command_name_with_spaces() {
        // comm "(a) b)" holds the separators that fool a split on spaces.
        let stat = "42 ((a) b)) S 1 42 42 0 -1 4194304 99 0 0 0 250 50 0 0 20 0 3 0 \
                    1000 3133440 415 18446744073709551615 0";
        let s = parse_stat(stat, 1_700_000_000, UNITS, 9, 1024).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.start_time_seconds, 1_700_000_010.0);
        assert_eq!(s.virtual_bytes, 3_133_440);
        assert_eq!(s.resident_bytes, 415 * 4096);
        assert_eq!((s.open_fds, s.max_fds), (9, 1024));
    }

    #[test]
    fn a_truncated_stat_is_an_error_not_a_zero() {
        assert!(parse_stat("42 (x) S 1 2 3", 0, UNITS, 0, 0).is_err());
        assert!(parse_stat("no parenthesis", 0, UNITS, 0, 0).is_err());
        assert!(boot_time_s("cpu 1 2 3\n").is_err());
        assert_eq!(
            boot_time_s("cpu 1\nbtime 1796589374\n").unwrap(),
            1_796_589_374
        );
    }

    #[test]
    fn this_process_reads_plausible_figures() {
        let s = ProcessStats::read().unwrap();
        assert!(s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes);
        // stdin, stdout and stderr at least.
        assert!(s.open_fds >= 3, "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(s.start_time_seconds <= now + 1.0, "{s:?}");
        assert!(s.start_time_seconds > now - 86_400.0 * 365.0, "{s:?}");
    }

    #[test]
    fn open_descriptors_follow_files_opened() {
        let before = open_fds(Path::new("/proc/self/fd")).unwrap();
        let files: Vec<_> = (0..8).map(|_| tempfile_like()).collect();
        let after = open_fds(Path::new("/proc/self/fd")).unwrap();
        // Other test threads may open files meanwhile: at least ours.
        assert!(after >= before + 8, "{before} -> {after}");
        drop(files);
    }

    fn tempfile_like() -> std::fs::File {
        std::fs::File::open("/proc/self/stat").unwrap()
    }
}
