//! Delivery state that is derived from the log: inbox heads, device cursors,
//! the send dedup window, group members and keyed state.
//!
//! Recovery folds every record after the last checkpoint into a
//! [`RecoveredState`] (starting from the checkpoint's copy of it), so the
//! delivery core can resume exactly where the durable log ends. The fold is a
//! pure function of the records, which lets the simulator's in-memory storage
//! and the real segment log share it.
//!
//! Invariants kept by [`RecoveredState::apply`]:
//! - `heads[u]` is the highest `seq` of any message stored in `u`'s inbox,
//!   or acknowledged by one of `u`'s devices if that is higher (sequences
//!   lost to damage are never numbered again);
//! - `cursors[(u, d)]` only grows (an older cursor record is ignored);
//! - `dedup` holds the newest entries in log order, at most
//!   `DedupConfig::max_entries` of QoS 1 and none older than
//!   `DedupConfig::max_age_ms` (relative to the newest message seen); QoS 2
//!   entries stay until released (or until they are older than
//!   `DedupConfig::qos2_max_age_ms`), then as many and as long as QoS 1
//!   ones, counted apart;
//! - `keyed[k]` is the value of the newest [`Record::State`] of `k`; a
//!   deletion removes the key.

use std::collections::{BTreeMap, VecDeque};

use std::hash::BuildHasher;

use bytes::Bytes;

use hashbrown::hash_table::{Entry, HashTable};

use crate::hashing::FastHashMap;

use crate::record::{MessageRecord, Record, StateKey};
use surepush_proto::{DeviceId, Qos, Seq, UserId};

/// How much send history the gateway remembers to recognise retries
/// (TOML: `[core.dedup]`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    /// QoS 1 entries kept at most (oldest evicted first); released QoS 2
    /// entries are counted apart, with the same limit.
    pub max_entries: usize,
    /// QoS 1 entries older than this (ms, relative to the newest message) are evicted.
    #[serde(deserialize_with = "crate::durations::millis")]
    pub max_age_ms: u64,
    /// Unreleased QoS 2 entries are kept this long at most (ms), so a sender
    /// that never sends REL cannot grow the window without bound.
    #[serde(deserialize_with = "crate::durations::millis")]
    pub qos2_max_age_ms: u64,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            max_entries: 1 << 20,
            max_age_ms: 10 * 60 * 1000,
            qos2_max_age_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// Identity of one send: the dedup key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SendKey {
    /// Sending user.
    pub from: UserId,
    /// Sending device.
    pub from_device: DeviceId,
    /// Sender-chosen id.
    pub client_msg_id: u64,
}

/// What the gateway remembers about one stored copy of a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupEntry {
    /// The send.
    pub key: SendKey,
    /// Inbox the copy was stored in.
    pub inbox: UserId,
    /// Sequence assigned in that inbox.
    pub seq: Seq,
    /// QoS of the send.
    pub qos: Qos,
    /// Gateway receive time (ms since the Unix epoch), or the release time
    /// once released.
    pub ts_ms: u64,
    /// A QoS 2 entry the sender released: kept only as long as a QoS 1 one.
    pub released: bool,
}

impl DedupEntry {
    /// The entry for a stored message.
    pub fn of(m: &MessageRecord) -> DedupEntry {
        DedupEntry {
            key: SendKey {
                from: m.from,
                from_device: m.from_device,
                client_msg_id: m.client_msg_id,
            },
            inbox: m.inbox,
            seq: m.seq,
            qos: m.qos,
            ts_ms: m.ts_ms,
            released: false,
        }
    }
}

/// The send dedup window: which (send, inbox) copies are already stored.
///
/// Three queues, each touching only its own entries:
/// - QoS 1 entries (and QoS 0, which the gateway never stores) live in a
///   FIFO bounded by count and age;
/// - QoS 2 entries stay until released or past `qos2_max_age_ms`;
/// - a released QoS 2 entry is not forgotten at once: it moves to a FIFO
///   of its own, bounded like the QoS 1 one (count and age from the
///   release), so a late duplicate of the SEND is still recognised.
///
/// Because the QoS 1 part depends on nothing but the QoS 1 message records
/// in log order, the segment log rebuilds it from the log on recovery
/// instead of keeping a copy of it and writing it into every checkpoint
/// (see `log/window.rs`).
///
/// Every operation is amortised O(1), and an insert that evicts nothing
/// costs one hash insert: each queue slot carries its own timestamp, so the
/// front is checked without a lookup, and a slot whose entry was released
/// or replaced is skipped lazily when it reaches the front.
///
/// Memory: the table stores each entry once (64 bytes, the key inside it)
/// and a queue slot is 32 bytes: it finds its entry by the stored hash and
/// the copy's `(inbox, seq)`, which no other stored copy shares.
#[derive(Clone)]
pub struct DedupWindow {
    index: HashTable<DedupEntry>,
    hasher: foldhash::fast::RandomState,
    qos1: VecDeque<Slot>,
    released: VecDeque<Slot>,
    qos2: VecDeque<Slot>,
    newest_ts_ms: u64,
}

/// One seed per process, shared by every window, so two windows can be
/// merged slot by slot (and still unpredictable to clients).
fn shared_hasher() -> foldhash::fast::RandomState {
    static HASHER: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
    HASHER
        .get_or_init(foldhash::fast::RandomState::default)
        .clone()
}

impl Default for DedupWindow {
    fn default() -> Self {
        DedupWindow {
            index: HashTable::new(),
            hasher: shared_hasher(),
            qos1: VecDeque::new(),
            released: VecDeque::new(),
            qos2: VecDeque::new(),
            newest_ts_ms: 0,
        }
    }
}

impl std::fmt::Debug for DedupWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedupWindow")
            .field("entries", &self.index.len())
            .field("qos1_slots", &self.qos1.len())
            .field("released_slots", &self.released.len())
            .field("qos2_slots", &self.qos2.len())
            .field("newest_ts_ms", &self.newest_ts_ms)
            .finish()
    }
}

/// A queue position of one entry.
#[derive(Clone, Copy, Debug)]
struct Slot {
    hash: u64,
    inbox: UserId,
    seq: Seq,
    ts_ms: u64,
}

impl PartialEq for DedupWindow {
    fn eq(&self, other: &Self) -> bool {
        self.index.len() == other.index.len()
            && self
                .index
                .iter()
                .all(|e| other.get(&e.key, e.inbox) == Some(e))
    }
}
impl Eq for DedupWindow {}

impl DedupWindow {
    fn hash(&self, key: &SendKey, inbox: UserId) -> u64 {
        self.hasher.hash_one((key, inbox))
    }

    /// The stored copy of `key` in `inbox`, if the window still holds it.
    pub fn get(&self, key: &SendKey, inbox: UserId) -> Option<&DedupEntry> {
        let hash = self.hash(key, inbox);
        self.index.find(hash, |e| e.key == *key && e.inbox == inbox)
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Live entries in no particular order (for checkpoints).
    pub fn entries(&self) -> impl Iterator<Item = &DedupEntry> {
        self.index.iter()
    }

    /// Newest message time seen (the clock the age limits are measured by).
    pub fn newest_ts_ms(&self) -> u64 {
        self.newest_ts_ms
    }

    /// Remembers a stored copy, then evicts what fell out of the window.
    pub fn insert(&mut self, entry: DedupEntry, config: &DedupConfig) {
        self.restore(entry, config);
    }

    /// Re-inserts an entry as it was (a released QoS 2 entry stays released);
    /// used when loading a checkpoint, oldest entries first.
    pub fn restore(&mut self, entry: DedupEntry, config: &DedupConfig) {
        self.newest_ts_ms = self.newest_ts_ms.max(entry.ts_ms);
        let hash = self.hash(&entry.key, entry.inbox);
        let slot = Slot {
            hash,
            inbox: entry.inbox,
            seq: entry.seq,
            ts_ms: entry.ts_ms,
        };
        match (entry.qos, entry.released) {
            (Qos::ExactlyOnce, false) => self.qos2.push_back(slot),
            (Qos::ExactlyOnce, true) => self.released.push_back(slot),
            _ => self.qos1.push_back(slot),
        }
        let hasher = &self.hasher;
        match self.index.entry(
            hash,
            |e| e.key == entry.key && e.inbox == entry.inbox,
            |e| hasher.hash_one((&e.key, e.inbox)),
        ) {
            Entry::Occupied(mut o) => *o.get_mut() = entry,
            Entry::Vacant(v) => {
                v.insert(entry);
            }
        }
        self.evict(config);
    }

    /// Advances the window's clock to a message time seen elsewhere (a
    /// message whose entry is kept by another window); evicts nothing
    /// until the next insert, release or [`DedupWindow::evict`].
    pub fn observe(&mut self, ts_ms: u64) {
        self.newest_ts_ms = self.newest_ts_ms.max(ts_ms);
    }

    /// Releases the QoS 2 copies of `key` in the sender's own inbox and in
    /// the addressee's inbox `to`. Returns how many were newly released.
    ///
    /// A released entry moves to the released FIFO (aged from the
    /// release), so a late duplicate of the SEND — reordered behind the
    /// release — is still recognised instead of being stored a second time.
    pub fn release(&mut self, key: &SendKey, to: UserId, config: &DedupConfig) -> usize {
        let mut n = usize::from(self.release_copy(key, key.from, config));
        if to != key.from {
            n += usize::from(self.release_copy(key, to, config));
        }
        n
    }

    /// Releases the QoS 2 copy of `key` in `inbox` only (a group member's
    /// copy). Returns whether it was newly released.
    pub fn release_copy(&mut self, key: &SendKey, inbox: UserId, config: &DedupConfig) -> bool {
        // An entry past its age at the window's clock is gone, even when
        // only `observe` moved the clock (which evicts nothing): releasing
        // it would keep it alive, as a released entry, past its eviction
        // in a window that saw the same messages as inserts (the core's).
        self.evict(config);
        let hash = self.hash(key, inbox);
        let Some(e) = self
            .index
            .find_mut(hash, |e| e.key == *key && e.inbox == inbox)
        else {
            return false;
        };
        if e.qos != Qos::ExactlyOnce || e.released {
            return false;
        }
        e.released = true;
        e.ts_ms = self.newest_ts_ms;
        self.released.push_back(Slot {
            hash,
            inbox: e.inbox,
            seq: e.seq,
            ts_ms: e.ts_ms,
        });
        // Released slots at the front of the QoS 2 queue are dead now: drop
        // them here (one lookup per release), so the queue holds no more
        // than the unreleased sends.
        while let Some(front) = self.qos2.front() {
            match self.slot_entry(front) {
                Some(e) if !e.released => break,
                _ => {
                    self.qos2.pop_front();
                }
            }
        }
        self.evict(config);
        true
    }

    /// Moves every entry of `other` (same process: same hasher) into this
    /// window; an entry this window already has for the same copy is kept.
    /// The segment log joins its QoS 2 window and the QoS 1 window it
    /// rebuilt this way.
    pub fn merge(&mut self, other: DedupWindow, config: &DedupConfig) {
        let DedupWindow {
            index,
            qos1,
            released,
            qos2,
            newest_ts_ms,
            ..
        } = other;
        for entry in index {
            let hash = self.hash(&entry.key, entry.inbox);
            let hasher = &self.hasher;
            if let Entry::Vacant(v) = self.index.entry(
                hash,
                |e| e.key == entry.key && e.inbox == entry.inbox,
                |e| hasher.hash_one((&e.key, e.inbox)),
            ) {
                v.insert(entry);
            }
        }
        self.qos1.extend(qos1);
        self.released.extend(released);
        self.qos2.extend(qos2);
        self.newest_ts_ms = self.newest_ts_ms.max(newest_ts_ms);
        self.evict(config);
    }

    /// Queue slots held (QoS 1 FIFO, released FIFO, QoS 2 queue), live or not.
    #[cfg(test)]
    pub(crate) fn queued_slots(&self) -> (usize, usize, usize) {
        (self.qos1.len(), self.released.len(), self.qos2.len())
    }

    /// The entry a slot stands for, if it is still the same stored copy.
    fn slot_entry(&self, slot: &Slot) -> Option<&DedupEntry> {
        self.index
            .find(slot.hash, |e| e.inbox == slot.inbox && e.seq == slot.seq)
    }

    /// Forgets the entry of `slot` if it is still that copy and `live` says so.
    fn remove_slot(&mut self, slot: &Slot, live: impl Fn(&DedupEntry) -> bool) {
        if let Ok(o) = self
            .index
            .find_entry(slot.hash, |e| e.inbox == slot.inbox && e.seq == slot.seq)
        {
            if live(o.get()) {
                o.remove();
            }
        }
    }

    /// Drops what is past the limits at the newest time seen.
    pub fn evict(&mut self, config: &DedupConfig) {
        let now = self.newest_ts_ms;
        let past = |q: &VecDeque<Slot>, front: &Slot| {
            q.len() > config.max_entries || now.saturating_sub(front.ts_ms) > config.max_age_ms
        };
        while let Some(front) = self.qos1.front().copied() {
            if !past(&self.qos1, &front) {
                break;
            }
            self.qos1.pop_front();
            self.remove_slot(&front, |e| e.qos != Qos::ExactlyOnce);
        }
        while let Some(front) = self.released.front().copied() {
            if !past(&self.released, &front) {
                break;
            }
            self.released.pop_front();
            self.remove_slot(&front, |e| e.qos == Qos::ExactlyOnce && e.released);
        }
        while let Some(front) = self.qos2.front().copied() {
            if now.saturating_sub(front.ts_ms) <= config.qos2_max_age_ms {
                break;
            }
            self.qos2.pop_front();
            self.remove_slot(&front, |e| e.qos == Qos::ExactlyOnce && !e.released);
        }
    }
}

/// Delivery state rebuilt from the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveredState {
    /// Highest stored sequence per inbox.
    pub heads: FastHashMap<UserId, Seq>,
    /// Highest acknowledged sequence per (inbox owner, device).
    pub cursors: FastHashMap<(UserId, DeviceId), Seq>,
    /// Recent sends, for retry recognition.
    pub dedup: DedupWindow,
    /// Members of the groups homed on this shard, sorted, no repeats.
    pub groups: FastHashMap<UserId, Vec<UserId>>,
    /// Keyed state of the layers above ([`Record::State`]): the newest
    /// value of each key. Ordered, so a checkpoint's bytes are a function
    /// of the state.
    pub keyed: BTreeMap<StateKey, Bytes>,
    /// Conversation summaries of the inboxes (issue #22).
    pub conversations: crate::conversation::Conversations,
}

impl RecoveredState {
    /// `seq` is stored in `inbox`: the head moves up to it.
    pub fn note_head(&mut self, inbox: UserId, seq: Seq) {
        let head = self.heads.entry(inbox).or_default();
        if seq > *head {
            *head = seq;
        }
    }

    /// Folds one record into the state.
    pub fn apply(&mut self, record: &Record, config: &DedupConfig) {
        match record {
            Record::Message(m) => {
                self.note_head(m.inbox, m.seq);
                self.dedup.insert(DedupEntry::of(m), config);
                if !surepush_proto::is_room(m.inbox.0) {
                    self.conversations.note(m);
                }
            }
            Record::Cursor { user, device, seq } => {
                let c = self.cursors.entry((*user, *device)).or_default();
                if *seq > *c {
                    *c = *seq;
                }
                // A device holds `seq`: the inbox got that far, whatever
                // else was lost (a head never goes below a cursor).
                self.note_head(*user, *seq);
            }
            Record::Release {
                from,
                from_device,
                client_msg_id,
                to,
            } => {
                let key = SendKey {
                    from: *from,
                    from_device: *from_device,
                    client_msg_id: *client_msg_id,
                };
                self.dedup.release(&key, *to, config);
            }
            Record::Member {
                group,
                user,
                joined,
            } => apply_membership(&mut self.groups, *group, *user, *joined),
            Record::State { key, value } => match value {
                Some(v) => {
                    self.keyed.insert(*key, v.clone());
                }
                None => {
                    self.keyed.remove(key);
                }
            },
            Record::Checkpoint(_) => {}
        }
    }
}

/// Adds or removes `user` in `group`'s sorted member list (an emptied group
/// is forgotten).
pub fn apply_membership(
    groups: &mut FastHashMap<UserId, Vec<UserId>>,
    group: UserId,
    user: UserId,
    joined: bool,
) {
    let members = groups.entry(group).or_default();
    match (members.binary_search(&user), joined) {
        (Err(at), true) => members.insert(at, user),
        (Ok(at), false) => {
            members.remove(at);
        }
        _ => {}
    }
    if members.is_empty() {
        groups.remove(&group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use surepush_proto::{DeviceId, Qos, Seq, UserId};

    /// The window's queues stay bounded: released QoS 2 slots leave the
    /// QoS 2 queue at once, and the released FIFO and the QoS 1 FIFO each
    /// keep at most `max_entries`, however many sends pass through.
    #[test]
    fn dedup_window_queues_stay_bounded_under_release_and_churn() {
        let config = DedupConfig {
            max_entries: 1000,
            ..DedupConfig::default()
        };
        let mut w = DedupWindow::default();
        let key = |n: u64| SendKey {
            from: UserId(1),
            from_device: DeviceId(1),
            client_msg_id: n,
        };
        for n in 1..=5000u64 {
            for (inbox, seq) in [(UserId(1), n), (UserId(2), n)] {
                w.insert(
                    DedupEntry {
                        key: key(n),
                        inbox,
                        seq: Seq(seq),
                        qos: Qos::ExactlyOnce,
                        ts_ms: 1_000 + n,
                        released: false,
                    },
                    &config,
                );
            }
            assert_eq!(w.release(&key(n), UserId(2), &config), 2);
            assert_eq!(w.queued_slots().2, 0, "released slots left the QoS 2 queue");
        }
        assert_eq!(w.len(), 1000, "released entries leave their FIFO by count");
        assert!(w.queued_slots().1 <= 1000);
        // The newest releases are still recognised; the oldest are forgotten.
        assert!(w.get(&key(5000), UserId(2)).is_some_and(|e| e.released));
        assert!(w.get(&key(1), UserId(2)).is_none());
        // An unreleased QoS 2 entry survives any amount of QoS 1 churn.
        let held = DedupEntry {
            key: key(9_999_999),
            inbox: UserId(3),
            seq: Seq(1),
            qos: Qos::ExactlyOnce,
            ts_ms: 10_000,
            released: false,
        };
        w.insert(held, &config);
        for n in 0..10_000u64 {
            let mut e = held;
            e.key = key(20_000_000 + n);
            e.seq = Seq(2 + n);
            e.qos = Qos::AtLeastOnce;
            w.insert(e, &config);
        }
        assert_eq!(w.get(&held.key, UserId(3)), Some(&held));
        assert!(w.queued_slots().0 <= 1000);
        // QoS 1 churn does not push released entries out: the FIFOs are apart.
        assert!(w.get(&key(5000), UserId(2)).is_some_and(|e| e.released));
        assert_eq!(w.len(), 2001);
    }

    /// A window whose clock only `observe`d newer messages (the log's
    /// QoS 2 window: it folds QoS 1 messages as times, not entries) does
    /// not release a copy that aged out at that clock: it ends like a
    /// window that saw the same messages as inserts.
    #[test]
    fn a_release_after_observe_does_not_revive_an_aged_out_copy() {
        let config = DedupConfig {
            max_entries: 12,
            max_age_ms: 60,
            qos2_max_age_ms: 300,
        };
        let key = SendKey {
            from: UserId(2),
            from_device: DeviceId(1),
            client_msg_id: 7,
        };
        let copy = |inbox: u64, ts_ms: u64| DedupEntry {
            key,
            inbox: UserId(inbox),
            seq: Seq(1),
            qos: Qos::ExactlyOnce,
            ts_ms,
            released: false,
        };
        let mut observed = DedupWindow::default();
        observed.insert(copy(2, 1_000), &config);
        observed.insert(copy(1, 1_206), &config);
        let mut inserted = observed.clone();
        observed.observe(1_308);
        inserted.insert(
            DedupEntry {
                key: SendKey {
                    client_msg_id: 13,
                    ..key
                },
                inbox: UserId(9),
                qos: Qos::AtLeastOnce,
                ..copy(9, 1_308)
            },
            &config,
        );
        assert!(
            inserted.get(&key, UserId(2)).is_none(),
            "aged out on insert"
        );
        // Only the copy in inbox 1 is released, in both windows.
        assert_eq!(observed.release(&key, UserId(1), &config), 1);
        assert_eq!(inserted.release(&key, UserId(1), &config), 1);
        assert!(observed.get(&key, UserId(2)).is_none());
        assert_eq!(observed.queued_slots().1, 1);
        assert_eq!(observed.get(&key, UserId(1)), inserted.get(&key, UserId(1)));
    }
}
