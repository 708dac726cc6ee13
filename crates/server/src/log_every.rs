//! Logging a condition that can repeat per message or per connection (a
//! slow consumer dropped, a failed accept, a failed read or state write)
//! at most once per interval, with the number of occurrences the line
//! stands for: a flood of the same event is one line a second, not a
//! gigabyte of log (issue #25). Counting each occurrence is the metrics'
//! job.
//!
//! Thread-safe (atomics), so one limiter can serve a shard or the node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One rate-limited log condition.
#[derive(Debug)]
pub(crate) struct LogEvery {
    every_ns: u64,
    /// When the last line was allowed (ns since [`origin`], plus one so 0
    /// means "never").
    last_ns: AtomicU64,
    /// Occurrences since the last line.
    pending: AtomicU64,
}

/// A fixed point to measure from (`Instant` has no integer form).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl LogEvery {
    /// At most one line per `every`.
    pub(crate) fn new(every: Duration) -> LogEvery {
        origin();
        LogEvery {
            every_ns: every.as_nanos() as u64,
            last_ns: AtomicU64::new(0),
            pending: AtomicU64::new(0),
        }
    }

    /// Counts one occurrence. `Some(n)`: log a line now for the `n`
    /// occurrences since the last one (this one included); `None`: stay
    /// quiet, it is counted for the next line.
    pub(crate) fn tick(&self) -> Option<u64> {
        self.tick_at(origin().elapsed().as_nanos() as u64 + 1)
    }

    fn tick_at(&self, now_ns: u64) -> Option<u64> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let last = self.last_ns.load(Ordering::Relaxed);
        let due = last == 0 || now_ns.saturating_sub(last) >= self.every_ns;
        if !due {
            return None;
        }
        // One thread wins the line; the others' counts go into it or the next.
        self.last_ns
            .compare_exchange(last, now_ns, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(self.pending.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn the_first_occurrence_logs_and_repeats_within_the_interval_are_counted_into_the_next_line() {
        let limit = LogEvery::new(Duration::from_secs(1));
        assert_eq!(limit.tick_at(1), Some(1));
        for t in 2..1_000 {
            assert_eq!(limit.tick_at(t * 1000), None);
        }
        // 998 quiet ones, then this one: one line covers all 999.
        assert_eq!(limit.tick_at(SECOND + 1), Some(999));
        assert_eq!(limit.tick_at(SECOND + 2), None);
        assert_eq!(limit.tick_at(3 * SECOND), Some(2));
    }
}
