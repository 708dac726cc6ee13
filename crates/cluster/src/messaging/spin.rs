//! Spinning before the cluster thread parks (issue #20).
//!
//! A cross-node message wakes the cluster thread up to four times (a
//! lane's send, the request from NATS, the shard's answer, the reply from
//! NATS), and each wake-up of a parked thread costs a futex or eventfd
//! write on the waker's side and a context switch on this one. While
//! traffic flows, [`Activity::spin`] keeps the thread's tokio runtime
//! busy for `spin` after the last message: it yields in a loop, so the
//! runtime polls its I/O driver without blocking and takes the next
//! message without being woken. After `spin` of quiet it waits again, so
//! an idle node costs nothing. Off (zero) by default: the spin is CPU,
//! which only pays on a host with a core to spare (measured in
//! docs/CLUSTER.md, "Cross-node cost").

use std::cell::Cell;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// When the messaging service last handled something, and the spinner
/// waiting for it.
pub(crate) struct Activity {
    spin: Duration,
    last: Cell<Instant>,
    /// True while the spinner spins (a touch then needs no notify).
    spinning: Cell<bool>,
    wake: Notify,
}

impl Activity {
    /// Spinning for `spin` after the last touch (zero: never).
    pub(crate) fn new(spin: Duration) -> Activity {
        Activity {
            spin,
            last: Cell::new(Instant::now()),
            spinning: Cell::new(false),
            wake: Notify::new(),
        }
    }

    /// Something was handled: keep spinning for `spin` from now.
    pub(crate) fn touch(&self) {
        if self.spin.is_zero() {
            return;
        }
        self.last.set(Instant::now());
        if !self.spinning.get() {
            self.wake.notify_one();
        }
    }

    /// The spinner task (spawn it only with a non-zero `spin`).
    pub(crate) async fn spin(self: std::rc::Rc<Self>) {
        loop {
            self.wake.notified().await;
            self.spinning.set(true);
            while self.last.get().elapsed() < self.spin {
                // Yields to the runtime, which polls I/O with a zero
                // timeout before running this task again.
                tokio::task::yield_now().await;
            }
            self.spinning.set(false);
        }
    }
}
