//! The durable floor (issue #17 goal 2): what one acknowledged durable
//! message cannot go below on this host, measured beside a run so the run
//! is read against it rather than against a bare number. A SENDACK waits
//! for at least one `fdatasync` of the gateway's disk and one loopback
//! round trip (SEND in, SENDACK out), so the floor is their sum.
//!
//! - `fdatasync`: a 256-byte append to a scratch file in the directory
//!   given (the gateway's data dir, so the same file system and disk),
//!   then `fdatasync`, timed together, one after another.
//! - Round trip: a 64-byte ping over a loopback TCP connection to a thread
//!   that echoes it (Nagle off), timed from write to the echo's last byte.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::raw::new_histogram;
use crate::{latency, Latency};

/// `fdatasync`s timed per floor measurement (~0.1–0.5 s on a VM disk).
pub const FLOOR_SYNCS: u32 = 500;
/// Loopback round trips timed per floor measurement.
pub const FLOOR_ROUND_TRIPS: u32 = 2_000;

/// The floor's two parts and their sum.
#[derive(Clone, Debug, Serialize)]
pub struct Floor {
    /// `write` of 256 B appended + `fdatasync`, in the directory measured.
    pub fdatasync: Latency,
    /// Loopback TCP round trip of 64 B.
    pub round_trip: Latency,
    /// `fdatasync` p50 + round trip p50 (ms): the median floor of one
    /// durable acknowledgement.
    pub p50_ms: f64,
    /// `fdatasync` p99 + round trip p99 (ms): the disk's own tail, which
    /// a durable p99 cannot beat either.
    pub p99_ms: f64,
}

impl Floor {
    /// One line for people.
    pub fn to_text(&self) -> String {
        format!(
            "durable floor: fdatasync p50 {:.3} / p99 {:.3} ms + loopback round trip p50 {:.3} / p99 {:.3} ms = p50 {:.3} ms, p99 {:.3} ms",
            self.fdatasync.p50_ms,
            self.fdatasync.p99_ms,
            self.round_trip.p50_ms,
            self.round_trip.p99_ms,
            self.p50_ms,
            self.p99_ms,
        )
    }

    /// `ack_p50_ms` as a multiple of the median floor.
    pub fn ratio(&self, ack_p50_ms: f64) -> f64 {
        ack_p50_ms / self.p50_ms.max(f64::MIN_POSITIVE)
    }
}

/// Measures `syncs` appends + `fdatasync` in `dir` and `round_trips`
/// loopback round trips.
pub fn measure_floor(dir: &Path, syncs: u32, round_trips: u32) -> Result<Floor, String> {
    let fdatasync = latency(&sync_times(dir, syncs)?);
    let round_trip = latency(&round_trip_times(round_trips)?);
    Ok(Floor {
        p50_ms: fdatasync.p50_ms + round_trip.p50_ms,
        p99_ms: fdatasync.p99_ms + round_trip.p99_ms,
        fdatasync,
        round_trip,
    })
}

fn nanos(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn sync_times(dir: &Path, syncs: u32) -> Result<Histogram<u64>, String> {
    let what = |e: std::io::Error| format!("fdatasync floor in {}: {e}", dir.display());
    let mut file = tempfile::tempfile_in(dir).map_err(what)?;
    let record = [0x5a_u8; 256];
    let mut h = new_histogram();
    for _ in 0..syncs {
        let t = Instant::now();
        file.write_all(&record).map_err(what)?;
        file.sync_data().map_err(what)?;
        h.saturating_record(nanos(t));
    }
    Ok(h)
}

fn round_trip_times(round_trips: u32) -> Result<Histogram<u64>, String> {
    let what = |e: std::io::Error| format!("round-trip floor: {e}");
    let listener = TcpListener::bind("127.0.0.1:0").map_err(what)?;
    let addr = listener.local_addr().map_err(what)?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        loop {
            match s.read_exact(&mut buf) {
                Ok(()) => s.write_all(&buf)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut s = TcpStream::connect(addr).map_err(what)?;
    s.set_nodelay(true).map_err(what)?;
    let (ping, mut pong) = ([0x33_u8; 64], [0u8; 64]);
    let mut h = new_histogram();
    for _ in 0..round_trips {
        let t = Instant::now();
        s.write_all(&ping).map_err(what)?;
        s.read_exact(&mut pong).map_err(what)?;
        h.saturating_record(nanos(t));
    }
    drop(s);
    echo.join()
        .map_err(|_| "round-trip floor: the echo thread panicked".to_string())?
        .map_err(what)?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_counts_every_sample_and_adds_its_parts() {
        let dir = tempfile::tempdir().unwrap();
        let syncs = sync_times(dir.path(), 20).unwrap();
        assert_eq!(syncs.len(), 20);
        let trips = round_trip_times(50).unwrap();
        assert_eq!(trips.len(), 50);
        let f = measure_floor(dir.path(), 10, 10).unwrap();
        assert!(f.fdatasync.p50_ms > 0.0 && f.round_trip.p50_ms > 0.0);
        assert_eq!(f.p50_ms, f.fdatasync.p50_ms + f.round_trip.p50_ms);
        assert_eq!(f.p99_ms, f.fdatasync.p99_ms + f.round_trip.p99_ms);
        assert!((f.ratio(f.p50_ms * 3.0) - 3.0).abs() < 1e-9);
        // The scratch file is gone with the run.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let e = measure_floor(Path::new("/nonexistent/surepush-floor"), 1, 1).unwrap_err();
        assert!(e.contains("fdatasync floor"), "{e}");
    }
}
