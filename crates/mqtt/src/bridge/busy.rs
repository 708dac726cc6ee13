//! The part of a bridge only a busy connection uses, boxed apart and made
//! on first use (issue #17 goal 4): an idle session's queues, tables and
//! trees are all empty, yet as fields they made every bridge 1 KiB. A
//! connection that goes idle drops the part again
//! ([`super::Bridge::release_idle_memory`]).
//!
//! Reads of a part not made see an empty one (a shared static): only a
//! write makes it, so callers check emptiness before a `pop_front` or a
//! `remove` on paths an idle connection takes.

use std::collections::{BTreeSet, VecDeque};
use std::ops::{Deref, DerefMut};
use std::sync::LazyLock;

use foldhash::{HashMap as FastHashMap, HashSet as FastHashSet};

use super::retained::RetainChange;
use super::{
    release_if_empty, release_map_if_empty, release_tree_if_empty, Delivery, Held, Outbound,
    PendingPub, PendingSubAck,
};
use crate::{Packet, PacketId, Publish};

/// What a part made on demand needs: an empty value to read while it is
/// not made, and whether a made one holds nothing (so it can go).
pub(super) trait OnDemand: Default + 'static {
    /// The empty value reads see while the part is not made.
    fn empty() -> &'static Self;
    /// Holds nothing a connection needs: dropping it loses nothing.
    fn is_idle(&self) -> bool;
    /// Frees what the empty queues of a part still in use keep.
    fn shrink(&mut self);
}

/// A `T` boxed apart, made on the first write ([`DerefMut`]).
pub(super) struct Lazy<T: OnDemand>(Option<Box<T>>);

impl<T: OnDemand> Lazy<T> {
    pub(super) const fn new() -> Lazy<T> {
        Lazy(None)
    }

    /// Drops the part if it holds nothing, else frees its empty queues.
    pub(super) fn release_idle_memory(&mut self) {
        match self.0.as_deref_mut() {
            Some(part) if part.is_idle() => self.0 = None,
            Some(part) => part.shrink(),
            None => {}
        }
    }

    /// The part if it is made: for taking from a queue on a path an idle
    /// connection takes, which should not make it.
    pub(super) fn made_mut(&mut self) -> Option<&mut T> {
        self.0.as_deref_mut()
    }

    /// Whether the part is made (for tests of the memory it holds).
    #[cfg(test)]
    pub(super) fn is_made(&self) -> bool {
        self.0.is_some()
    }
}

impl<T: OnDemand> Default for Lazy<T> {
    fn default() -> Self {
        Lazy::new()
    }
}

impl<T: OnDemand> Deref for Lazy<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self.0.as_deref() {
            Some(part) => part,
            None => T::empty(),
        }
    }
}

impl<T: OnDemand> DerefMut for Lazy<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }
}

impl<T: OnDemand + std::fmt::Debug> std::fmt::Debug for Lazy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(part) => part.fmt(f),
            None => f.write_str("(not made)"),
        }
    }
}

/// The bridge's queues, tables and trees of packets and messages in
/// flight: empty on an idle connection.
#[derive(Debug, Default)]
pub(super) struct Busy {
    /// Inbox messages delivered and not yet acknowledged, in seq order.
    pub(super) inbox: VecDeque<Held>,
    /// Payload bytes of the `inbox` entries not done.
    pub(super) inbox_bytes: usize,
    /// Outbound QoS 1/2 PUBLISHes awaiting the client, by packet id.
    pub(super) inflight: FastHashMap<u16, Outbound>,
    /// PUBLISHes beyond the client's Receive Maximum.
    pub(super) waiting: VecDeque<(Publish, Delivery)>,
    /// Payload bytes in `waiting` (output held here, not yet in the
    /// connection's buffer: it counts against the same budgets).
    pub(super) waiting_bytes: usize,
    /// Inbound PUBLISHes awaiting the core's SENDACK, by native id.
    pub(super) sends: FastHashMap<u64, PendingPub>,
    /// Retained-message changes to make durable before the packets queued
    /// after them go out.
    pub(super) retains: VecDeque<RetainChange>,
    /// Rooms whose retained message the new subscription should get.
    pub(super) retained_wanted: BTreeSet<u64>,
    /// Rooms whose retained message the server should hand in
    /// ([`super::Bridge::deliver_retained`]).
    pub(super) retained_queries: VecDeque<u64>,
    /// Inbound QoS 2 releases awaiting COMP: client_msg_id → packet id.
    pub(super) releases: FastHashMap<u64, PacketId>,
    /// v5: packet ids of QoS 1/2 PUBLISHes received on this connection
    /// and not yet answered by PUBACK, PUBCOMP or an error PUBREC: what the
    /// advertised Receive Maximum bounds (MQTT-3.3.4-7/-8; a QoS 2 message
    /// counts until PUBCOMP, issue #21 item 4). The core counts only SENDs
    /// awaiting storage.
    pub(super) unanswered: FastHashSet<u16>,
    pub(super) subacks: VecDeque<PendingSubAck>,
    /// Packets that arrived before the CONNACK, handled after it.
    pub(super) early: VecDeque<Packet>,
}

static NOT_BUSY: LazyLock<Busy> = LazyLock::new(Busy::default);

impl OnDemand for Busy {
    fn empty() -> &'static Busy {
        &NOT_BUSY
    }

    fn is_idle(&self) -> bool {
        self.inbox.is_empty()
            && self.inflight.is_empty()
            && self.waiting.is_empty()
            && self.sends.is_empty()
            && self.retains.is_empty()
            && self.retained_wanted.is_empty()
            && self.retained_queries.is_empty()
            && self.releases.is_empty()
            && self.unanswered.is_empty()
            && self.subacks.is_empty()
            && self.early.is_empty()
    }

    fn shrink(&mut self) {
        release_if_empty(&mut self.waiting);
        release_if_empty(&mut self.early);
        release_if_empty(&mut self.subacks);
        release_if_empty(&mut self.retains);
        release_if_empty(&mut self.retained_queries);
        release_if_empty(&mut self.inbox);
        release_map_if_empty(&mut self.inflight);
        release_map_if_empty(&mut self.sends);
        release_map_if_empty(&mut self.releases);
        if self.unanswered.is_empty() && self.unanswered.capacity() > 0 {
            self.unanswered = FastHashSet::default();
        }
        release_tree_if_empty(&mut self.retained_wanted);
    }
}
