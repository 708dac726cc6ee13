//! The shared state behind a KV view: a table the cluster thread updates
//! and any thread reads, a readiness flag, and change subscribers.
//!
//! Readers take a short mutex (no await inside); blocking waits use a
//! condvar. Changes go to each subscriber's bounded channel from the
//! cluster thread *after* the lock is released; a subscriber that does not
//! drain its channel makes that thread's follower wait (backpressure, no
//! drop), so subscribers must keep up or drop their receiver.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ClusterError;

/// Changes a subscriber may have queued before the follower waits.
pub const CHANGE_QUEUE: usize = 4096;

struct State<T, C> {
    table: T,
    ready: bool,
    subscribers: Vec<flume::Sender<C>>,
}

/// A table, its readiness, and who wants its changes.
pub struct ViewCell<T, C> {
    state: Mutex<State<T, C>>,
    changed: Condvar,
}

impl<T: Clone, C: Clone> ViewCell<T, C> {
    /// A cell holding `table`, not ready.
    pub fn new(table: T) -> ViewCell<T, C> {
        ViewCell {
            state: Mutex::new(State {
                table,
                ready: false,
                subscribers: Vec::new(),
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T, C>> {
        // A panic while holding the lock cannot leave the table half
        // updated in a way readers could misuse more than a stale value.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the table.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.lock().table)
    }

    /// True once the first complete load has been applied.
    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    /// Applies `f` (which returns the changes it made) and hands the
    /// changes to every subscriber (on the cluster thread).
    pub async fn update(&self, f: impl FnOnce(&mut T) -> Vec<C>) {
        let (changes, subscribers) = {
            let mut state = self.lock();
            let changes = f(&mut state.table);
            state.subscribers.retain(|s| !s.is_disconnected());
            let subs = if changes.is_empty() {
                Vec::new()
            } else {
                state.subscribers.clone()
            };
            (changes, subs)
        };
        self.changed.notify_all();
        for s in subscribers {
            for c in &changes {
                if s.send_async(c.clone()).await.is_err() {
                    break; // the subscriber is gone
                }
            }
        }
    }

    /// The bucket's watch is current again: the table rebuilt since a
    /// resync (if any) replaces the view's, its differences (`diff(old,
    /// new)`) going to the subscribers, and the view is ready.
    pub async fn caught_up(&self, rebuilt: Option<T>, diff: fn(&T, &T) -> Vec<C>) {
        if let Some(fresh) = rebuilt {
            self.update(|t| {
                let changes = diff(t, &fresh);
                *t = fresh;
                changes
            })
            .await;
        }
        self.set_ready();
    }

    /// Marks the view ready (wakes waiters).
    pub fn set_ready(&self) {
        self.lock().ready = true;
        self.changed.notify_all();
    }

    /// A copy of the table and a channel of every change after it.
    pub fn subscribe(&self) -> (T, flume::Receiver<C>) {
        let (tx, rx) = flume::bounded(CHANGE_QUEUE);
        let mut state = self.lock();
        state.subscribers.push(tx);
        (state.table.clone(), rx)
    }

    /// Waits (blocking this thread) until the view is loaded and
    /// `pred(table)` holds; on timeout, [`ClusterError::Timeout`] naming
    /// `what` (the view).
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &'static str,
        pred: impl Fn(&T) -> bool,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if state.ready && pred(&state.table) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClusterError::Timeout(what));
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
