//! Members of groups and rooms: sorted, durable lists on the id's home shard.
//!
//! A group's members get its messages (`group.rs`); a room's members may
//! read and write it (`room_access.rs`). Both lists live on the home shard
//! (`Router::owner(id)`), change only through [`Shard::handle_members_update`]
//! (the admin API), and are written to that shard's log as `Member` records
//! (folded into checkpoints) before the change is answered, so they survive
//! restarts.
//!
//! A change applies in memory at once, so everything that reaches the home
//! shard after it (a send, a subscription) sees it; for a room, the
//! subscriptions in place that lose their permission are ended too.

use super::action::MembersOutcome;
use super::shard::{AppendPurpose, Shard};
use crate::hashing::FastHashMap;
use crate::peer::{MembersUpdate, MembersUpdated};
use crate::router::ShardId;
use crate::{apply_membership, Record};
use surepush_proto::{is_room, UserId};

/// The member lists of the groups and rooms homed on this shard.
///
/// Invariant: every list is sorted, without repeats, and not empty (a
/// group or room without members has no entry).
#[derive(Debug, Default)]
pub(super) struct Members {
    lists: FastHashMap<UserId, Vec<UserId>>,
}

impl Members {
    /// The lists recovery folded from the log.
    pub(super) fn recovered(lists: FastHashMap<UserId, Vec<UserId>>) -> Members {
        Members { lists }
    }

    /// The members of `id`, sorted (empty if it has none).
    pub(super) fn of(&self, id: UserId) -> &[UserId] {
        self.lists.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Whether `id` has any members.
    pub(super) fn has_any(&self, id: UserId) -> bool {
        self.lists.contains_key(&id)
    }

    /// Whether `user` is a member of `id`.
    pub(super) fn contains(&self, id: UserId, user: UserId) -> bool {
        self.of(id).binary_search(&user).is_ok()
    }

    /// The groups and rooms with members here.
    pub(super) fn ids(&self) -> impl Iterator<Item = UserId> + '_ {
        self.lists.keys().copied()
    }

    /// Adds (`joined`) or removes `user` (a partition move's import).
    pub(super) fn set(&mut self, id: UserId, user: UserId, joined: bool) {
        self.apply(id, user, joined);
    }

    /// Forgets every member of `id` (its partition moved away).
    pub(super) fn forget(&mut self, id: UserId) {
        self.lists.remove(&id);
    }

    /// Adds (`joined`) or removes `user`; true if that changed the list.
    fn apply(&mut self, id: UserId, user: UserId, joined: bool) -> bool {
        if self.contains(id, user) == joined {
            return false;
        }
        apply_membership(&mut self.lists, id, user, joined);
        true
    }
}

impl Shard {
    /// Changes the members of the group or room `id` (adds first, then
    /// removes) and answers with [`Action::MembersUpdated`] once the change
    /// is durable. With nothing to add or remove it just reports the
    /// members.
    pub fn handle_members_update(
        &mut self,
        request: u64,
        id: UserId,
        add: Vec<UserId>,
        remove: Vec<UserId>,
        now: u64,
    ) {
        self.set_now(now);
        let msg = MembersUpdate {
            origin: self.params.id,
            request,
            id,
            add,
            remove,
        };
        self.route_to_owner(id, msg);
    }

    pub(super) fn on_members_update(&mut self, m: MembersUpdate) {
        let MembersUpdate {
            origin,
            request,
            id,
            add,
            remove,
        } = m;
        let is_user = |u: &UserId| !u.is_group() && !is_room(u.0);
        let [not_group_or_room, not_users] = MembersOutcome::INVALID_REASONS;
        let invalid = if is_user(&id) {
            Some(not_group_or_room)
        } else if !add.iter().chain(&remove).all(is_user) {
            Some(not_users)
        } else {
            None
        };
        let answer = |outcome| MembersUpdated { request, outcome };
        if let Some(why) = invalid {
            self.route_to(origin, answer(MembersOutcome::Invalid(why)));
            return;
        }
        if self.storage.failed() || self.refuses_writes(id) {
            self.route_to(origin, answer(MembersOutcome::Failed));
            return;
        }
        let was_open = self.room_open_to_all(id);
        let changes: Vec<(UserId, bool)> = add
            .into_iter()
            .map(|u| (u, true))
            .chain(remove.into_iter().map(|u| (u, false)))
            .collect();
        let mut left = Vec::new();
        let mut last = None;
        for (user, joined) in changes {
            if !self.members.apply(id, user, joined) {
                continue; // no change, nothing to log
            }
            if !joined {
                left.push(user);
            }
            if let Some(record) = last.replace(Record::Member {
                group: id,
                user,
                joined,
            }) {
                self.append(record, AppendPurpose::Bookkeeping);
            }
        }
        if is_room(id.0) {
            self.room_members_changed(id.0, was_open, left);
        }
        let members = self.members.of(id).to_vec();
        match last {
            // Appends complete in order: the last one durable means all are.
            Some(record) => self.append(
                record,
                AppendPurpose::Membership {
                    origin,
                    request,
                    members,
                },
            ),
            None => self.route_to(origin, answer(MembersOutcome::Members(members))),
        }
    }

    pub(super) fn on_membership_durable(
        &mut self,
        origin: ShardId,
        request: u64,
        members: Vec<UserId>,
        ok: bool,
    ) {
        let outcome = if ok {
            MembersOutcome::Members(members)
        } else {
            MembersOutcome::Failed
        };
        self.route_to(origin, MembersUpdated { request, outcome });
    }
}
