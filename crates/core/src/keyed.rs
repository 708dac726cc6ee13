//! Keyed state for the layers above the core (the MQTT bridge's sessions
//! and retained messages), kept in the segment log as [`Record::State`].
//!
//! Why through the core: the core already owns the order of this shard's
//! appends and learns their durability ([`Shard::handle_appended`]). A
//! state write appended here sits in the same log, in the same order, as
//! the messages and cursors the core appends after it, so whatever the
//! core makes durable later covers it too; and the simulator, which drives
//! the core with a storage model that loses its unsynced tail, tests it
//! with the messages instead of beside them.
//!
//! Rules:
//! - a key lives on the owner shard of [`StateKey::owner`] (a session on
//!   its user's shard, a retained message on its room's home shard); a
//!   write or a read of a key owned elsewhere goes there through the mesh;
//! - the owner keeps the newest value it appended of each key in memory
//!   ([`Shard::state`]), starting from what recovery folded;
//! - a write is appended now, and reported to the connection that asked
//!   ([`Action::StateStored`]) once durable, or it is **deferred**: kept
//!   until the next bookkeeping flush (`core.cursor_flush_ms`, with the
//!   cursors), replaced by a newer write of the same key meanwhile, never
//!   reported. Deferred is for state whose loss in a crash costs a repeat
//!   the protocol allows (a QoS 1 message delivered again), never a loss;
//! - once the log failed, nothing is appended: a reported write answers
//!   failed at once;
//! - the retained messages of a topic stream (`StateKey::Retained` with a
//!   topic stream's id) are a list, one entry per topic name
//!   (`surepush_proto::topic_stream::retained_entry`): a write carries one
//!   entry and is **merged** here by name, so two names sharing a stream
//!   id never replace each other's. The entries held are counted and
//!   bounded by `core.max_retained_topics`: a write that would add one more
//!   is refused (answered failed, counted in
//!   `Stats::retained_topics_refused`); replacing or clearing never is.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::action::{Action, ConnId};
use super::shard::{AppendPurpose, Shard};
use crate::hashing::FastHashMap;
use crate::peer::{QueryState, StateStored, StateValue, StoreState};
use crate::router::ShardId;
use crate::{Record, StateKey};
use surepush_proto::topic_stream::{is_topic_stream, merge_retained, retained_entries};

/// Whether `key` holds the retained messages of a topic stream (merged by
/// name, see the module docs).
fn topic_retained_key(key: &StateKey) -> bool {
    matches!(key, StateKey::Retained { room } if is_topic_stream(room.0))
}

/// When a state write must be durable ([`Shard::handle_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateDurability {
    /// Appended now; `conn` hears [`Action::StateStored`] with `id` once it
    /// is durable (or failed).
    Report {
        /// The asking connection.
        conn: ConnId,
        /// Echoed in the report.
        id: u64,
    },
    /// Appended now; nobody waits (the asking connection is gone).
    Now,
    /// With the next bookkeeping flush (see the module docs).
    Deferred,
}

/// Who hears about a state append (carried by [`StoreState`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateReport {
    /// The asking connection's shard.
    pub origin: ShardId,
    /// The asking connection.
    pub conn: ConnId,
    /// The id it gave.
    pub id: u64,
}

/// The keyed state owned by this shard.
#[derive(Debug, Default)]
pub(super) struct KeyedState {
    /// The newest value appended of each key owned here.
    values: FastHashMap<StateKey, Bytes>,
    /// Deferred writes not appended yet (newest per key; `None` deletes).
    /// Ordered, so a flush appends in the same order on every run.
    deferred: BTreeMap<StateKey, Option<Bytes>>,
    /// Topic names with a retained message among `values`.
    retained_topics: usize,
}

impl KeyedState {
    /// The state recovery folded.
    pub(super) fn recovered(keyed: BTreeMap<StateKey, Bytes>) -> KeyedState {
        let retained_topics = keyed
            .iter()
            .filter(|(k, _)| topic_retained_key(k))
            .filter_map(|(_, v)| retained_entries(v))
            .map(|e| e.len())
            .sum();
        KeyedState {
            values: keyed.into_iter().collect(),
            deferred: BTreeMap::new(),
            retained_topics,
        }
    }

    /// The keys with a value here.
    pub(super) fn keys(&self) -> impl Iterator<Item = StateKey> + '_ {
        self.values.keys().copied()
    }

    /// Every value here.
    pub(super) fn values(&self) -> impl Iterator<Item = (&StateKey, &Bytes)> {
        self.values.iter()
    }

    /// Sets or deletes (`None`) a value in memory only (a move's import
    /// appends the record itself).
    pub(super) fn set_value(&mut self, key: StateKey, value: &Option<Bytes>) {
        self.set(key, value);
    }

    fn set(&mut self, key: StateKey, value: &Option<Bytes>) {
        if topic_retained_key(&key) {
            let count = |v: Option<&Bytes>| v.and_then(retained_entries).map_or(0, |e| e.len());
            let old = count(self.values.get(&key));
            self.retained_topics = self.retained_topics - old + count(value.as_ref());
        }
        match value {
            Some(v) => self.values.insert(key, v.clone()),
            None => self.values.remove(&key),
        };
    }
}

impl Shard {
    /// Writes keyed state (see the module docs): appended to the log of the
    /// key's owner shard, now or deferred as `durability` says. Call it
    /// before handing the core the frames whose effects the state governs:
    /// the log keeps that order.
    pub fn handle_state(
        &mut self,
        key: StateKey,
        value: Option<Bytes>,
        durability: StateDurability,
        now: u64,
    ) {
        self.set_now(now);
        let report = match durability {
            StateDurability::Report { conn, id } => Some(StateReport {
                origin: self.params.id,
                conn,
                id,
            }),
            StateDurability::Now | StateDurability::Deferred => None,
        };
        let Some(owner) = key.owner() else {
            // The shard's own keys (webhook events) are the core's alone.
            debug_assert!(false, "{key:?} written from above the core");
            tracing::warn!(?key, "refusing a write of a key only the core writes");
            return;
        };
        if !self.router.is_mine(owner) {
            let msg = StoreState { key, value, report };
            self.route_to_owner(owner, msg);
            return;
        }
        if durability == StateDurability::Deferred {
            self.keyed.set(key, &value);
            self.keyed.deferred.insert(key, value);
            self.arm_bookkeeping_flush();
            return;
        }
        self.store_state(key, value, report);
    }

    /// The newest value of a key this shard owns (`None`: not set, or
    /// owned by another shard).
    pub fn state(&self, key: &StateKey) -> Option<&Bytes> {
        self.keyed.values.get(key)
    }

    /// Every key this shard owns with its newest value (for the layers
    /// above, at start: the MQTT wills still waiting for their delay).
    pub fn states(&self) -> impl Iterator<Item = (&StateKey, &Bytes)> {
        self.keyed.values()
    }

    /// Asks for the value of `key` wherever it lives; `conn` hears
    /// [`Action::StateValue`].
    pub fn handle_state_query(&mut self, conn: ConnId, key: StateKey, now: u64) {
        self.set_now(now);
        let msg = QueryState {
            origin: self.params.id,
            conn,
            key,
        };
        match key.owner() {
            Some(owner) => self.route_to_owner(owner, msg),
            None => self.answer_state_query(msg),
        }
    }

    /// Appends a write of a key owned here (from this shard or another).
    pub(super) fn store_state(
        &mut self,
        key: StateKey,
        value: Option<Bytes>,
        report: Option<StateReport>,
    ) {
        self.store_state_for(key, value, AppendPurpose::State(report));
    }

    /// [`Shard::store_state`] with what completes once the write is
    /// durable (`purpose`); a write refused here completes it as failed.
    pub(super) fn store_state_for(
        &mut self,
        key: StateKey,
        value: Option<Bytes>,
        purpose: AppendPurpose,
    ) {
        // A newer write replaces a deferred one still waiting.
        self.keyed.deferred.remove(&key);
        let fenced = key.owner().is_some_and(|o| self.refuses_writes(o));
        if self.storage.failed() || fenced {
            return self.state_refused(purpose);
        }
        let value = if topic_retained_key(&key) {
            match self.merge_topic_retained(key, value) {
                Some(v) => v,
                None => return self.state_refused(purpose),
            }
        } else {
            value
        };
        self.keyed.set(key, &value);
        self.append(Record::State { key, value }, purpose);
    }

    /// A state write that was not appended: whoever waits for it hears so.
    fn state_refused(&mut self, purpose: AppendPurpose) {
        match purpose {
            AppendPurpose::State(Some(r)) => self.state_stored(r, false),
            AppendPurpose::ShareHandout(sends) => self.share_handout_stored(sends, false),
            _ => {}
        }
    }

    /// The value a retained write to a topic stream leaves (its entry
    /// merged by name into the current list); `None` when it is refused:
    /// it would add a name beyond `core.max_retained_topics`, or it is no
    /// single entry (a writer's bug: nothing is changed).
    fn merge_topic_retained(
        &mut self,
        key: StateKey,
        value: Option<Bytes>,
    ) -> Option<Option<Bytes>> {
        let Some(write) = value else {
            return Some(None); // the whole stream's list (a move's cleanup)
        };
        let Some(merged) = merge_retained(self.keyed.values.get(&key), &write) else {
            tracing::warn!(?key, "refusing a retained write that is no single entry");
            return None;
        };
        if merged.added && self.keyed.retained_topics >= self.config.max_retained_topics as usize {
            self.stats.retained_topics_refused += 1;
            return None;
        }
        if merged.added {
            if let (StateKey::Retained { room }, Some(entries)) = (key, retained_entries(&write)) {
                if let Some((name, _)) = entries.first() {
                    self.remember_topic_name(room.0, name);
                }
            }
        }
        Some(merged.value)
    }

    /// Appends the deferred writes (the bookkeeping flush).
    pub(super) fn flush_deferred_state(&mut self) {
        let deferred = std::mem::take(&mut self.keyed.deferred);
        for (key, value) in deferred {
            self.store_state(key, value, None);
        }
    }

    /// A state append is durable (or failed): tell whoever asked.
    pub(super) fn state_stored(&mut self, report: StateReport, ok: bool) {
        let StateReport { origin, conn, id } = report;
        if origin == self.params.id {
            self.actions.push_back(Action::StateStored { conn, id, ok });
        } else {
            self.route_to(origin, StateStored { conn, id, ok });
        }
    }

    /// A query for a key owned here: answer the asking connection.
    pub(super) fn answer_state_query(&mut self, m: QueryState) {
        let QueryState { origin, conn, key } = m;
        let value = self.keyed.values.get(&key).cloned();
        let msg = StateValue { conn, key, value };
        self.route_to(origin, msg);
    }
}
