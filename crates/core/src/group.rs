//! Groups: write diffusion on top of the inbox path.
//!
//! A group is an id with [`UserId::GROUP_BIT`] set. Its member list lives on
//! its home shard (`Router::owner(group)`, `members.rs`) and in that shard's log,
//! so membership survives restarts.
//!
//! A QoS 1/2 SEND to a group goes from the sender's shard to the home shard
//! (`GroupStore`), which splits the members by owner shard and sends one
//! `StoreMany` per shard. Each member shard stores one ordinary copy per
//! member inbox (addressee = the group), deduplicated per `(send, inbox)`
//! like any copy, and answers per copy (`GroupStored`; the mesh batches
//! them). When every copy has answered, the home shard answers the sender's
//! shard once, and the SENDACK goes out: `Stored` if any copy was new,
//! `Duplicate` if all existed, `StorageUnavailable` if any failed (a retry
//! stores only what is missing), `Forbidden` for an unknown group or a
//! sender that is not a member. A member receives group messages in its own
//! inbox with the same ACK, retry and replay guarantees as direct ones.
//!
//! QoS 0 goes to the members' live devices only; a QoS 2 release is
//! expanded to the member copies the same way.

use std::collections::BTreeMap;

use super::action::StoreOutcome;
use super::send::NewCopy;
use super::shard::{AppendPurpose, Shard};
use crate::hashing::FastHashMap;
use crate::peer::{
    Ephemeral, GroupEphemeral, GroupStore, GroupStored, Release, ReleaseMany, StoreMany, Stored,
};
use crate::router::ShardId;
use crate::{Record, SendKey};
use surepush_proto::{Seq, UserId};

/// A group send waiting for its member copies (on the home shard).
#[derive(Debug)]
struct Fanout {
    /// Who waits for the send's answer: the first sender, then any other
    /// that sent the same send while this one was waiting.
    origins: Vec<ShardId>,
    remaining: usize,
    failed: bool,
    stored_any: bool,
}

/// The group sends homed here that wait for member copies.
///
/// Invariant: one entry per `(send, group)` until its last member copy
/// answered; the entry then yields the sender's answer once.
#[derive(Debug, Default)]
pub(super) struct Fanouts {
    waiting: FastHashMap<(SendKey, UserId), Fanout>,
}

impl Fanouts {
    /// Starts waiting for `copies` member answers; false if this send is
    /// already waiting (a late duplicate: the first fan-out answers it too).
    ///
    /// A duplicate from the same origin (the sender's shard merges its own
    /// retries) needs no second answer. One from another origin does: a
    /// sender node that restarted resends under a new return ticket, and
    /// that ticket is freed only by its answer (issue #20, a leaked ticket).
    fn start(&mut self, key: SendKey, group: UserId, origin: ShardId, copies: usize) -> bool {
        if let Some(f) = self.waiting.get_mut(&(key, group)) {
            if !f.origins.contains(&origin) {
                f.origins.push(origin);
            }
            return false;
        }
        let fanout = Fanout {
            origins: vec![origin],
            remaining: copies,
            failed: false,
            stored_any: false,
        };
        self.waiting.insert((key, group), fanout);
        true
    }

    /// One member copy answered; the last one gives who waits for the
    /// send and its outcome: `Failed` if any copy failed, `Stored` if any
    /// was new, else `Duplicate`.
    fn answered(
        &mut self,
        key: SendKey,
        group: UserId,
        outcome: StoreOutcome,
    ) -> Option<(Vec<ShardId>, StoreOutcome)> {
        let Some(f) = self.waiting.get_mut(&(key, group)) else {
            debug_assert!(false, "answer for an unknown group send {key:?}");
            return None;
        };
        f.remaining -= 1;
        match outcome {
            StoreOutcome::Stored(_) => f.stored_any = true,
            StoreOutcome::Duplicate(_) => {}
            // Member copies are never compared (see `retry`): no conflict here.
            StoreOutcome::Failed | StoreOutcome::Rejected | StoreOutcome::Conflict => {
                f.failed = true
            }
        }
        if f.remaining > 0 {
            return None;
        }
        let f = self.waiting.remove(&(key, group)).expect("present above");
        let outcome = if f.failed {
            StoreOutcome::Failed
        } else if f.stored_any {
            StoreOutcome::Stored(Seq::ZERO)
        } else {
            StoreOutcome::Duplicate(Seq::ZERO)
        };
        Some((f.origins, outcome))
    }
}

/// Where the outcome of a stored copy goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reply {
    /// A direct send: `Stored` to this shard.
    Send(ShardId),
    /// A group member copy: `GroupStored` to the group's home shard.
    Group {
        /// The home shard.
        home: ShardId,
        /// The group.
        group: UserId,
    },
}

impl Shard {
    /// The members of `group` homed here, if `key.from` may send to it.
    fn members_for(&self, group: UserId, key: &SendKey, members_only: bool) -> Option<Vec<UserId>> {
        if !self.members.has_any(group) {
            return None;
        }
        if members_only && !self.members.contains(group, key.from) {
            return None;
        }
        Some(self.members.of(group).to_vec())
    }

    fn by_shard(&self, members: Vec<UserId>) -> BTreeMap<ShardId, Vec<UserId>> {
        let mut out: BTreeMap<ShardId, Vec<UserId>> = BTreeMap::new();
        for m in members {
            out.entry(self.router.owner(m)).or_default().push(m);
        }
        out
    }

    pub(super) fn on_group_store(&mut self, m: GroupStore) {
        let GroupStore {
            origin,
            key,
            group,
            qos,
            ts_ms,
            attrs,
            payload,
            members_only,
        } = m;
        let Some(members) = self.members_for(group, &key, members_only) else {
            let outcome = StoreOutcome::Rejected;
            self.route_to(
                origin,
                Stored {
                    key,
                    inbox: group,
                    outcome,
                },
            );
            return;
        };
        // The sender's shard merges retries of an unfinished send, so a
        // send already waiting is a late duplicate: the first fan-out answers.
        if !self.fanouts.start(key, group, origin, members.len()) {
            return;
        }
        let home = self.params.id;
        for (shard, inboxes) in self.by_shard(members) {
            let msg = StoreMany {
                home,
                key,
                group,
                inboxes,
                qos,
                ts_ms,
                attrs: attrs.clone(),
                payload: payload.clone(),
            };
            self.route_to(shard, msg);
        }
    }

    pub(super) fn on_store_many(&mut self, m: StoreMany) {
        let reply = Reply::Group {
            home: m.home,
            group: m.group,
        };
        for inbox in m.inboxes {
            let copy = NewCopy {
                key: m.key,
                inbox,
                to: m.group,
                qos: m.qos,
                ts_ms: m.ts_ms,
                attrs: m.attrs.clone(),
                payload: m.payload.clone(),
            };
            self.store_copy(reply, copy);
        }
    }

    pub(super) fn on_group_stored(&mut self, m: GroupStored) {
        let GroupStored {
            key,
            group,
            inbox: _,
            outcome,
        } = m;
        let Some((origins, outcome)) = self.fanouts.answered(key, group, outcome) else {
            return;
        };
        for origin in origins {
            let stored = Stored {
                key,
                inbox: group,
                outcome,
            };
            self.route_to(origin, stored);
        }
    }

    /// QoS 0 to a group (on its home shard): pushed to the members' live
    /// devices; answered when the SEND asked (CONFIRM, `confirm_to`).
    pub(super) fn on_group_ephemeral(&mut self, m: GroupEphemeral) {
        let GroupEphemeral {
            key,
            group,
            ts_ms,
            attrs,
            payload,
            confirm_to,
            members_only,
        } = m;
        let members = self.members_for(group, &key, members_only);
        if let Some(origin) = confirm_to {
            let outcome = match members {
                Some(_) => StoreOutcome::Stored(surepush_proto::Seq::ZERO),
                None => StoreOutcome::Rejected,
            };
            self.answer(Reply::Send(origin), key, group, outcome);
        }
        for m in members.unwrap_or_default() {
            let msg = Ephemeral {
                key,
                inbox: m,
                to: group,
                ts_ms,
                attrs: attrs.clone(),
                payload: payload.clone(),
            };
            self.route_to_owner(m, msg);
        }
    }

    /// QoS 2 release of a group send: on the home shard, split by member shard.
    pub(super) fn release_group(&mut self, m: Release) {
        let Release { key, to: group } = m;
        let members = self.members.of(group).to_vec();
        for (shard, inboxes) in self.by_shard(members) {
            self.route_to(shard, ReleaseMany { key, inboxes });
        }
    }

    pub(super) fn on_release_many(&mut self, m: ReleaseMany) {
        let ReleaseMany { key, inboxes } = m;
        for inbox in inboxes {
            if self.sends.release_copy(&key, inbox) && !self.storage.failed() {
                self.append(
                    Record::Release {
                        from: key.from,
                        from_device: key.from_device,
                        client_msg_id: key.client_msg_id,
                        to: inbox,
                    },
                    AppendPurpose::Bookkeeping,
                );
            }
        }
    }
}
