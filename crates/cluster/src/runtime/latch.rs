//! A value set once by the cluster thread and awaited by other threads.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Set once; read by anyone, blocking until set.
pub struct Latch<T> {
    value: Mutex<Option<T>>,
    set: Condvar,
}

impl<T: Clone> Latch<T> {
    /// An unset latch.
    pub fn new() -> Latch<T> {
        Latch {
            value: Mutex::new(None),
            set: Condvar::new(),
        }
    }

    /// Sets the value (a second set is ignored).
    pub fn set(&self, value: T) {
        let mut v = self.value.lock().unwrap_or_else(|p| p.into_inner());
        if v.is_none() {
            *v = Some(value);
            self.set.notify_all();
        }
    }

    /// The value, if set.
    pub fn get(&self) -> Option<T> {
        self.value.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits up to `timeout` for the value.
    pub fn wait(&self, timeout: Duration) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut v = self.value.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(value) = v.as_ref() {
                return Some(value.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            v = self
                .set
                .wait_timeout(v, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
