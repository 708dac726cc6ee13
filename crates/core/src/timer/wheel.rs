//! The hierarchical timer wheel (Varghese & Lauck).
//!
//! Invariants:
//! - every pending entry is in exactly one list: a slot of a level, the
//!   overflow list (beyond the wheel's range), or the ready list (expired,
//!   awaiting `poll`);
//! - an entry on level L with deadline d satisfies `level_for(elapsed, d) == L`
//!   as of when it was placed, and `elapsed` only moves to the start of the
//!   earliest occupied slot, so nothing is ever skipped: level-0 entries
//!   fire exactly at their tick, higher levels cascade down first;
//! - a level's `occupied` bit is set iff its slot list is non-empty.
//!
//! Entries live in a slab (`slab` crate) and link to each other by u32
//! index: insert and cancel are O(1) and allocate nothing once the slab has
//! grown. Handles carry a generation so a stale cancel is a no-op.

use std::num::NonZeroU32;
use std::time::Duration;

use slab::Slab;

use super::level::{
    level_for, next_occupied, slot_for, slot_start, NUM_LEVELS, SLOTS, WHEEL_RANGE,
};

const NIL: u32 = u32::MAX;
/// `Entry::list` of the overflow list.
const OVERFLOW: u8 = NUM_LEVELS as u8;
/// `Entry::list` of the ready list.
const READY: u8 = NUM_LEVELS as u8 + 1;

/// Handle of one pending timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: NonZeroU32,
}

struct Entry<T> {
    value: T,
    /// Deadline in ticks.
    deadline: u64,
    prev: u32,
    next: u32,
    generation: NonZeroU32,
    /// Level (0..NUM_LEVELS), OVERFLOW or READY.
    list: u8,
    slot: u8,
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

/// A hierarchical timer wheel holding values of type `T`.
///
/// Time is u64 nanoseconds since an origin the caller picks (time 0 is the
/// wheel's creation); the wheel never reads a clock. Deadlines are rounded
/// up to whole ticks, so a timer never fires early and fires at most one
/// tick late (given `poll` is called).
pub struct TimerWheel<T> {
    tick_ns: u64,
    /// Ticks processed: every deadline <= elapsed has been moved to `ready`.
    elapsed: u64,
    occupied: [u64; NUM_LEVELS],
    slots: [[List; SLOTS]; NUM_LEVELS],
    overflow: List,
    ready: List,
    entries: Slab<Entry<T>>,
    next_generation: u32,
}

impl<T> std::fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerWheel")
            .field("tick_ns", &self.tick_ns)
            .field("elapsed", &self.elapsed)
            .field("len", &self.entries.len())
            .field("occupied", &self.occupied)
            .finish()
    }
}

impl<T> TimerWheel<T> {
    /// An empty wheel with the given tick (1 ms is the server's default).
    pub fn new(tick: Duration) -> Self {
        Self::with_capacity(tick, 0)
    }

    /// An empty wheel with room for `capacity` timers before it allocates.
    pub fn with_capacity(tick: Duration, capacity: usize) -> Self {
        TimerWheel {
            tick_ns: (tick.as_nanos() as u64).max(1),
            elapsed: 0,
            occupied: [0; NUM_LEVELS],
            slots: [[EMPTY; SLOTS]; NUM_LEVELS],
            overflow: EMPTY,
            ready: EMPTY,
            entries: Slab::with_capacity(capacity),
            next_generation: 0,
        }
    }

    /// The tick.
    pub fn tick(&self) -> Duration {
        Duration::from_nanos(self.tick_ns)
    }

    /// Pending timers (including expired ones not yet polled).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Schedules `value` at `deadline_ns`. A deadline at or before the
    /// wheel's current time fires at the next `poll`.
    pub fn insert(&mut self, deadline_ns: u64, value: T) -> TimerId {
        let deadline = deadline_ns.div_ceil(self.tick_ns);
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let generation = NonZeroU32::new(self.next_generation).expect("never zero");
        let index = self.entries.insert(Entry {
            value,
            deadline,
            prev: NIL,
            next: NIL,
            generation,
            list: READY,
            slot: 0,
        }) as u32;
        assert!(index != NIL, "timer wheel full");
        self.place(index);
        TimerId { index, generation }
    }

    /// Cancels a timer; `None` if it already fired or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        match self.entries.get(id.index as usize) {
            Some(e) if e.generation == id.generation => {}
            _ => return None,
        }
        self.unlink(id.index);
        Some(self.entries.remove(id.index as usize).value)
    }

    /// Advances to `now_ns` and pops one expired value; call until `None`.
    pub fn poll(&mut self, now_ns: u64) -> Option<T> {
        let target = now_ns / self.tick_ns;
        loop {
            if self.ready.head != NIL {
                let index = self.ready.head;
                self.unlink(index);
                return Some(self.entries.remove(index as usize).value);
            }
            let Some((when, list)) = self.next_expiration() else {
                self.elapsed = self.elapsed.max(target);
                return None;
            };
            if when > target {
                self.elapsed = self.elapsed.max(target);
                return None;
            }
            self.elapsed = when;
            self.cascade(list);
        }
    }

    /// Every value expired at `now_ns`, appended to `out`.
    pub fn advance(&mut self, now_ns: u64, out: &mut Vec<T>) {
        while let Some(v) = self.poll(now_ns) {
            out.push(v);
        }
    }

    /// A time (ns) no later than the earliest pending expiry, at which
    /// `poll` makes progress; `None` when empty.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.ready.head != NIL {
            return Some(self.elapsed * self.tick_ns);
        }
        self.next_expiration()
            .map(|(when, _)| when.saturating_mul(self.tick_ns))
    }

    /// Earliest slot (or the overflow list) to process, and its start tick.
    fn next_expiration(&self) -> Option<(u64, (u8, u8))> {
        for level in 0..NUM_LEVELS {
            let now_slot = slot_for(self.elapsed, level);
            if let Some(slot) = next_occupied(self.occupied[level], now_slot) {
                return Some((
                    slot_start(self.elapsed, level, slot),
                    (level as u8, slot as u8),
                ));
            }
        }
        if self.overflow.head != NIL {
            // Re-examine the overflow list when the top level wraps around.
            let next_wrap = (self.elapsed / WHEEL_RANGE + 1).saturating_mul(WHEEL_RANGE);
            return Some((next_wrap, (OVERFLOW, 0)));
        }
        None
    }

    /// Empties one list (at `elapsed` = its start), re-placing each entry:
    /// due ones go to `ready`, the others to a lower level.
    fn cascade(&mut self, (list, slot): (u8, u8)) {
        let mut index = if list == OVERFLOW {
            std::mem::replace(&mut self.overflow, EMPTY).head
        } else {
            let l = list as usize;
            self.occupied[l] &= !(1 << slot);
            std::mem::replace(&mut self.slots[l][slot as usize], EMPTY).head
        };
        while index != NIL {
            let next = self.entries[index as usize].next;
            debug_assert!(
                self.entries[index as usize].deadline >= self.elapsed,
                "entry {index} expired before its slot was processed: {self:?}"
            );
            self.place(index);
            index = next;
        }
    }

    /// Puts an unlinked entry on the list its deadline calls for.
    fn place(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        let (list, slot) = if deadline <= self.elapsed {
            (READY, 0)
        } else {
            let level = level_for(self.elapsed, deadline);
            if level >= NUM_LEVELS {
                (OVERFLOW, 0)
            } else {
                (level as u8, slot_for(deadline, level) as u8)
            }
        };
        let e = &mut self.entries[index as usize];
        e.list = list;
        e.slot = slot;
        e.prev = NIL;
        let head = self.list_mut(list, slot);
        let old_head = head.head;
        head.head = index;
        if head.tail == NIL {
            head.tail = index;
        }
        self.entries[index as usize].next = old_head;
        if old_head != NIL {
            self.entries[old_head as usize].prev = index;
        }
        if (list as usize) < NUM_LEVELS {
            self.occupied[list as usize] |= 1 << slot;
        }
    }

    fn unlink(&mut self, index: u32) {
        let (prev, next, list, slot) = {
            let e = &self.entries[index as usize];
            (e.prev, e.next, e.list, e.slot)
        };
        if prev != NIL {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        let l = self.list_mut(list, slot);
        if l.head == index {
            l.head = next;
        }
        if l.tail == index {
            l.tail = prev;
        }
        let now_empty = l.head == NIL;
        if now_empty && (list as usize) < NUM_LEVELS {
            self.occupied[list as usize] &= !(1 << slot);
        }
    }

    fn list_mut(&mut self, list: u8, slot: u8) -> &mut List {
        match list {
            READY => &mut self.ready,
            OVERFLOW => &mut self.overflow,
            l => &mut self.slots[l as usize][slot as usize],
        }
    }
}

/// Bytes the wheel keeps per pending timer holding a `T` (slab entry).
pub const fn bytes_per_timer<T>() -> usize {
    std::mem::size_of::<slab_entry::Probe<Entry<T>>>()
}

mod slab_entry {
    /// Same shape as the slab crate's internal entry (vacant index or value).
    #[allow(dead_code)]
    pub enum Probe<T> {
        Vacant(usize),
        Occupied(T),
    }
}
