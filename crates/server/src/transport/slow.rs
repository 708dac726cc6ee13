//! Slow consumers: the one place that decides when a client reads too
//! slowly, for every protocol (issue #25).
//!
//! Rules (all on a connection's unsent output, [`ConnIo::unsent`]: bytes
//! queued plus what its protocol holds back):
//! - **room lag**: a room frame is not queued while the output is above
//!   `room_lag_bytes`; the subscription is taken out of the room's live
//!   fan-out (the core hears ROOMLAG once per turn) and resumes from the
//!   log, so a slow subscriber sees no hole;
//! - **output budget**: above `max_write_buffer_bytes` the connection is
//!   dropped at the next turn of the runtime's `drive`, once: its queued
//!   output is discarded, its protocol says why if it can (MQTT 5:
//!   DISCONNECT 0x97), the socket closes after a short grace;
//! - drops are counted and logged at most once a second per shard.

use std::cell::RefCell;
use std::time::Duration;

use super::ConnIo;
use crate::log_every::LogEvery;
use surepush_core::ConnId;

/// A shard's slow-consumer bookkeeping.
pub(crate) struct SlowConsumers {
    /// `max_write_buffer_bytes`.
    max_unsent: usize,
    /// `room_lag_bytes`.
    room_lag: usize,
    /// Connections over their budget, to drop at the next turn of `drive`.
    to_drop: RefCell<Vec<ConnId>>,
    /// Drops, logged at most once a second with a count.
    drops_log: LogEvery,
}

impl SlowConsumers {
    pub(crate) fn new(max_unsent: usize, room_lag: usize) -> SlowConsumers {
        SlowConsumers {
            max_unsent,
            room_lag,
            to_drop: RefCell::new(Vec::new()),
            drops_log: LogEvery::new(Duration::from_secs(1)),
        }
    }

    /// Checks the output budget of a connection something was just queued
    /// for: over it, the connection is dropped at the next turn of `drive`,
    /// once (its output stops growing meanwhile: nothing more is queued
    /// for it).
    pub(crate) fn check_budget(&self, conn: ConnId, io: &ConnIo) {
        if !io.dropped.get() && io.unsent() > self.max_unsent {
            io.dropped.set(true);
            self.to_drop.borrow_mut().push(conn);
        }
    }

    /// The next connection to drop.
    pub(crate) fn next_to_drop(&self) -> Option<ConnId> {
        self.to_drop.borrow_mut().pop()
    }

    /// No connection waits to be dropped.
    pub(crate) fn none_to_drop(&self) -> bool {
        self.to_drop.borrow().is_empty()
    }

    /// Drops a connection's output: what it never read is discarded (what
    /// it confirms or delivers stays in the log and the session), and its
    /// protocol queues its last words. The caller forgets the connection.
    pub(crate) fn drop_output(&self, shard: u16, conn: ConnId, io: &ConnIo) {
        let unsent = io.unsent();
        io.discard_queued();
        io.with_session(|s| s.drop_for_quota(io));
        if let Some(dropped) = self.drops_log.tick() {
            tracing::warn!(
                shard,
                conn = conn.as_u64(),
                unsent,
                dropped,
                "slow consumer dropped: its unsent output passed max_write_buffer_bytes \
                 (dropped = such drops on this shard since the last line)"
            );
        }
    }

    /// Whether a room frame for `conn` may be queued: not while its unsent
    /// output is above `room_lag_bytes` (every protocol alike). What is
    /// queued *before* the frame counts: a frame that would pass the
    /// allowance with it (a large one, or any behind the SUBACK of a resume)
    /// must still go out, or it lags and replays for ever (found by the
    /// simulator: 4 livelocked seeds in 1,000,000). A slow subscriber is
    /// taken out of the room's live fan-out, not out of the session (it
    /// resumes from the log), and every later frame of the room already
    /// queued in this turn is skipped, so it sees no hole.
    pub(crate) fn room_frame_fits(
        &self,
        lagged: &mut RoomLags,
        conn: ConnId,
        io: Option<&ConnIo>,
        room: u64,
    ) -> bool {
        if lagged.contains(conn, room) {
            return false;
        }
        let Some(io) = io else {
            return false;
        };
        if io.dropped.get() {
            return false;
        }
        if io.unsent() > self.room_lag {
            lagged.add(conn, room);
            return false;
        }
        true
    }
}

/// Room subscriptions found slow during one the runtime's `drive`: each is
/// reported to the core once, and frames of it still queued in the same
/// turn are skipped.
#[derive(Default)]
pub(crate) struct RoomLags {
    found: Vec<(ConnId, u64)>,
    reported: usize,
}

impl RoomLags {
    fn add(&mut self, conn: ConnId, room: u64) {
        self.found.push((conn, room));
    }

    fn contains(&self, conn: ConnId, room: u64) -> bool {
        self.found.contains(&(conn, room))
    }

    /// The next lag to report to the core.
    pub(crate) fn next_to_report(&mut self) -> Option<(ConnId, u64)> {
        let next = self.found.get(self.reported).copied();
        self.reported += usize::from(next.is_some());
        next
    }

    /// Every lag found is reported.
    pub(crate) fn all_reported(&self) -> bool {
        self.reported == self.found.len()
    }
}
