//! The send path's state: what this shard remembers about sends and copies.
//!
//! Owns three things, private to this part:
//! - the dedup window of the copies stored in inboxes owned here (durable
//!   copies, per `(send key, inbox)`; released QoS 2 entries too);
//! - the copies appended here and not yet durable, each with whoever
//!   awaits its outcome (a sender's shard, a group's home);
//! - the sends accepted here (from a connection or the backend API) that
//!   still await the outcome of their copies.
//!
//! Invariants: a `(key, inbox)` is either in flight or in the window, never
//! both at once (a copy moves from flight to the window when durable); a
//! pending send is answered once and then forgotten.
//!
//! Called by the dispatcher's send path (`send.rs`, `retry.rs`, `group.rs`,
//! `room_access.rs`) and by partition moves (`moving.rs`), which import and
//! export the window. Every method costs at most the hash lookups the
//! caller needed before this part existed: the one-to-one hot path pays
//! one lookup per step.

use std::collections::hash_map::Entry;

use crate::action::{ConnId, StoreOutcome};
use crate::group::Reply;
use crate::hashing::FastHashMap;
use crate::retry::SendFingerprint;
use crate::{DedupConfig, DedupEntry, DedupWindow, MessageRecord, SendKey};
use surepush_proto::{Seq, UserId};

/// Who awaits the outcome of a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SendOrigin {
    /// A client connection (answered with SENDACK).
    Conn(ConnId),
    /// A backend publish (answered with [`crate::Action::Published`]).
    Api(u64),
}

/// A send accepted here, waiting for its copies.
#[derive(Debug)]
pub(super) struct PendingSend {
    pub(super) origin: SendOrigin,
    pub(super) to: UserId,
    /// What a retry must repeat (client sends; backend publishes refuse
    /// any concurrent reuse of their id instead).
    pub(super) fingerprint: Option<SendFingerprint>,
    pub(super) remote: Option<StoreOutcome>,
    /// `None` while awaited; equal to `remote` for a send to oneself.
    pub(super) own: Option<StoreOutcome>,
}

/// A send whose copies all have an outcome (see [`Sends::copy_answered`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct AnsweredSend {
    pub(super) origin: SendOrigin,
    /// Outcome of the addressee's copy.
    pub(super) remote: StoreOutcome,
    /// Outcome of the sender's own copy.
    pub(super) own: StoreOutcome,
}

/// What a new SEND's key finds among the pending sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PendingMatch {
    /// No send with this key is pending.
    New,
    /// A different message is pending under the same key.
    Conflict,
    /// The same message is pending: a retry. It is now answered on the
    /// retrying connection; `previous` is who awaited it before.
    Retry { previous: SendOrigin },
}

/// A copy appended and not yet durable, with whoever awaits it.
#[derive(Debug)]
pub(super) struct InFlightCopy {
    pub(super) record: MessageRecord,
    pub(super) waiters: Vec<Reply>,
}

/// The dedup window, the copies in flight and the pending sends of one
/// shard (module docs).
#[derive(Debug)]
pub(super) struct Sends {
    dedup: DedupWindow,
    config: DedupConfig,
    copies: FastHashMap<(SendKey, UserId), InFlightCopy>,
    pending: FastHashMap<SendKey, PendingSend>,
}

impl Sends {
    /// The window recovery folded from the log, kept by `config`.
    pub(super) fn recovered(dedup: DedupWindow, config: DedupConfig) -> Sends {
        Sends {
            dedup,
            config,
            copies: FastHashMap::default(),
            pending: FastHashMap::default(),
        }
    }

    // ----- pending sends ---------------------------------------------------

    /// Whether a send with `key` is pending.
    pub(super) fn is_pending(&self, key: &SendKey) -> bool {
        self.pending.contains_key(key)
    }

    /// Whether the pending send `key` is answered on connection `conn`.
    pub(super) fn awaited_on(&self, key: &SendKey, conn: ConnId) -> bool {
        self.pending
            .get(key)
            .is_some_and(|p| p.origin == SendOrigin::Conn(conn))
    }

    /// Registers an accepted send (its key is not pending).
    pub(super) fn start(&mut self, key: SendKey, send: PendingSend) {
        let old = self.pending.insert(key, send);
        debug_assert!(old.is_none(), "send {key:?} was pending already");
    }

    /// Looks a client SEND's key up among the pending sends; a retry of the
    /// same message is moved to `conn` (see [`PendingMatch`]).
    pub(super) fn match_pending(
        &mut self,
        key: &SendKey,
        fingerprint: SendFingerprint,
        conn: ConnId,
    ) -> PendingMatch {
        let Some(p) = self.pending.get_mut(key) else {
            return PendingMatch::New;
        };
        if p.fingerprint != Some(fingerprint) {
            return PendingMatch::Conflict;
        }
        let previous = p.origin;
        p.origin = SendOrigin::Conn(conn);
        PendingMatch::Retry { previous }
    }

    /// Forgets a pending send without answering it (a refused retry);
    /// returns whether it was pending.
    pub(super) fn forget(&mut self, key: &SendKey) -> bool {
        self.pending.remove(key).is_some()
    }

    /// Notes the outcome of the send's copy in `inbox`; once every copy
    /// has one, the send is no longer pending and is returned to be
    /// answered. `None` while copies are awaited, or when the send was
    /// answered already (a duplicate answer for a merged retry).
    pub(super) fn copy_answered(
        &mut self,
        key: SendKey,
        inbox: UserId,
        outcome: StoreOutcome,
    ) -> Option<AnsweredSend> {
        let Entry::Occupied(mut e) = self.pending.entry(key) else {
            return None;
        };
        let p = e.get_mut();
        if inbox == p.to {
            p.remote = Some(outcome);
            if p.to == key.from {
                p.own = Some(outcome);
            }
        } else {
            p.own = Some(outcome);
        }
        let (Some(remote), Some(own)) = (p.remote, p.own) else {
            return None;
        };
        let origin = p.origin;
        e.remove();
        Some(AnsweredSend {
            origin,
            remote,
            own,
        })
    }

    // ----- copies ------------------------------------------------------------

    /// Sequence of the durable copy of `key` in `inbox`, if the window
    /// still holds it.
    pub(super) fn durable_copy(&self, key: &SendKey, inbox: UserId) -> Option<Seq> {
        self.dedup.get(key, inbox).map(|e| e.seq)
    }

    /// Whether a copy of `key` in `inbox` is durable or in flight.
    pub(super) fn knows_copy(&self, key: &SendKey, inbox: UserId) -> bool {
        self.dedup.get(key, inbox).is_some() || self.copies.contains_key(&(*key, inbox))
    }

    /// Adds `waiter` to the copy of `key` in `inbox` if it is in flight;
    /// gives `waiter` back when it is not.
    pub(super) fn await_in_flight(
        &mut self,
        key: SendKey,
        inbox: UserId,
        waiter: Reply,
    ) -> Result<(), Reply> {
        match self.copies.get_mut(&(key, inbox)) {
            Some(copy) => {
                copy.waiters.push(waiter);
                Ok(())
            }
            None => Err(waiter),
        }
    }

    /// Registers a copy just appended (`record`, for `key`), awaited by
    /// `waiter`.
    pub(super) fn copy_appended(&mut self, key: SendKey, record: MessageRecord, waiter: Reply) {
        self.copies.insert(
            (key, record.inbox),
            InFlightCopy {
                record,
                waiters: vec![waiter],
            },
        );
    }

    /// The append of the copy of `key` in `inbox` completed: it leaves the
    /// copies in flight and, if `durable`, enters the window. Returns the
    /// copy with its waiters (`None` if it was not in flight).
    pub(super) fn copy_completed(
        &mut self,
        key: SendKey,
        inbox: UserId,
        durable: bool,
    ) -> Option<InFlightCopy> {
        let copy = self.copies.remove(&(key, inbox))?;
        if durable {
            self.dedup
                .insert(DedupEntry::of(&copy.record), &self.config);
        }
        Some(copy)
    }

    // ----- QoS 2 release and moves -----------------------------------------

    /// Releases the QoS 2 copies of `key` in the sender's inbox and in
    /// `to`; returns whether any was newly released (to be logged).
    pub(super) fn release(&mut self, key: &SendKey, to: UserId) -> bool {
        self.dedup.release(key, to, &self.config) > 0
    }

    /// Releases the QoS 2 copy of `key` in `inbox` only (a group member's
    /// copy, an imported release); returns whether it was newly released.
    pub(super) fn release_copy(&mut self, key: &SendKey, inbox: UserId) -> bool {
        self.dedup.release_copy(key, inbox, &self.config)
    }

    /// Remembers a durable copy imported by a partition move.
    pub(super) fn import_copy(&mut self, record: &MessageRecord) {
        self.dedup.insert(DedupEntry::of(record), &self.config);
    }

    /// The entries of the window (a partition move's export).
    pub(super) fn window_entries(&self) -> impl Iterator<Item = &DedupEntry> {
        self.dedup.entries()
    }
}
