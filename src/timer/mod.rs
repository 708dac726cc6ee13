//! Timer wheel (interim ordered-map version; replaced by the hierarchical wheel).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::Duration;

/// Handle of one pending timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId(u64);

/// Pending timers ordered by deadline.
#[derive(Debug)]
pub struct TimerWheel<T> {
    tick_ns: u64,
    now_tick: u64,
    next_id: u64,
    by_deadline: BTreeMap<(u64, u64), T>,
    deadline_of: std::collections::HashMap<u64, u64>,
}

impl<T> TimerWheel<T> {
    /// A wheel with the given tick.
    pub fn new(tick: Duration) -> Self {
        Self::with_capacity(tick, 0)
    }
    /// A wheel with room for `capacity` timers.
    pub fn with_capacity(tick: Duration, _capacity: usize) -> Self {
        TimerWheel {
            tick_ns: (tick.as_nanos() as u64).max(1),
            now_tick: 0,
            next_id: 0,
            by_deadline: BTreeMap::new(),
            deadline_of: Default::default(),
        }
    }
    /// The tick.
    pub fn tick(&self) -> Duration {
        Duration::from_nanos(self.tick_ns)
    }
    /// Schedules `value` at `deadline_ns`.
    pub fn insert(&mut self, deadline_ns: u64, value: T) -> TimerId {
        let t = deadline_ns.div_ceil(self.tick_ns).max(self.now_tick);
        let id = self.next_id;
        self.next_id += 1;
        self.by_deadline.insert((t, id), value);
        self.deadline_of.insert(id, t);
        TimerId(id)
    }
    /// Cancels a timer.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let t = self.deadline_of.remove(&id.0)?;
        self.by_deadline.remove(&(t, id.0))
    }
    /// Pops one expired value.
    pub fn poll(&mut self, now_ns: u64) -> Option<T> {
        self.now_tick = self.now_tick.max(now_ns / self.tick_ns);
        let (&(t, id), _) = self.by_deadline.first_key_value()?;
        if t > self.now_tick {
            return None;
        }
        self.deadline_of.remove(&id);
        self.by_deadline.remove(&(t, id))
    }
    /// All expired values.
    pub fn advance(&mut self, now_ns: u64, out: &mut Vec<T>) {
        while let Some(v) = self.poll(now_ns) {
            out.push(v);
        }
    }
    /// Earliest expiry.
    pub fn next_deadline(&self) -> Option<u64> {
        self.by_deadline
            .keys()
            .next()
            .map(|(t, _)| t * self.tick_ns)
    }
    /// Pending timers.
    pub fn len(&self) -> usize {
        self.by_deadline.len()
    }
    /// No pending timers.
    pub fn is_empty(&self) -> bool {
        self.by_deadline.is_empty()
    }
}
