//! Hierarchical timer wheel for millions of pending ACKs.
//!
//! glommio's own timers cost a task and a B-tree entry each; a shard with a
//! million unacknowledged pushes needs something flatter. [`TimerWheel`] is
//! a pure data structure (no clock, no I/O): the delivery core inserts a
//! deadline per pending push and cancels it on ACK in O(1); the server's
//! tick task calls `poll` with the current time. See `level.rs` for the
//! level granularities.
#![forbid(unsafe_code)]

mod level;
mod wheel;

pub use level::{BITS_PER_LEVEL, NUM_LEVELS, SLOTS, WHEEL_RANGE};
pub use wheel::{bytes_per_timer, TimerId, TimerWheel};

#[cfg(test)]
mod tests;
