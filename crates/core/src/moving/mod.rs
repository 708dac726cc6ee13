//! Partition moves between nodes (issue #20, docs/CLUSTER.md "Moving a
//! partition"): the source's export and fence, the target's import. A
//! move between the shards of one node is the same exchange between two
//! local shards (docs/CLUSTER.md "Moving a partition between shards").
//!
//! Owns: the partitions this shard exports (fenced) and imports.
//!
//! Protocol, as the core sees it (the driver adds the placement CAS):
//! 1. the driver of the target node calls [`Shard::handle_move_start`] on
//!    the partition's shard; it clears stale state of the partition (group
//!    members and keyed state left by an earlier owner period or an
//!    abandoned import: both are replaced by the source's) and starts copy
//!    round 0 with a [`MoveRoundFetch`] from the start to the owner;
//! 2. the copy goes in rounds (snapshot + tail). At the start of each
//!    round the source lists what the round copies: round 0 (the
//!    snapshot) every inbox of the partition up to its durable head then;
//!    each later round every inbox whose durable head moved since, from
//!    the head the rounds before copied (`copied`) to its durable head
//!    now (`upto`). Writes go on meanwhile. A round that copied at most
//!    [`FENCE_AT_MESSAGES`] messages, or the round after
//!    [`MAX_UNFENCED_ROUNDS`] of them, is followed by the **fenced
//!    round**: the source closes the sessions of the partition's users
//!    (DISCONNECT `ShuttingDown`, so they reconnect), refuses their
//!    CONNECTs and every new write for its ids (copies answer `Failed`:
//!    SENDACK `StorageUnavailable`, the client retries; membership and
//!    keyed writes fail the same way), waits until every append issued
//!    before the fence is durable, and lists all the partition's ids
//!    (inboxes, groups, rooms, keyed owners) in order. So the tail is
//!    precisely: per inbox, the messages after the head copied before,
//!    plus every cursor, member, keyed value and released QoS 2 entry as
//!    they stand at the fence (those are small and copied only here);
//! 3. each fetch is answered with one [`MovePage`] of at most
//!    [`PAGE_BYTES`]: per id, its durable messages of the round read from
//!    the log in order, then (fenced round only) its device cursors,
//!    members, keyed state and released QoS 2 dedup entries, in log
//!    record form; `next: None` ends the round;
//! 4. the target applies each page to its state and appends its records;
//!    once they are durable it fetches the next page or starts the next
//!    round, and after the fenced round's last page reports
//!    [`Action::MoveImported`]: the driver flips the placement entry by
//!    CAS (with the revision read before the move began);
//! 5. on the new placement the source drops the partition's state
//!    ([`Shard::set_cluster_routes`]) and the target serves it.
//!
//! A source whose target goes quiet ([`MOVE_IDLE_NS`] without a fetch)
//! before the fence just forgets the copy (nothing was refused). Once
//! fenced it reports [`Action::MoveStalled`]; its driver reclaims the
//! partition by a CAS of its own (epoch + 1, which makes the target's
//! later CAS fail) and then calls [`Shard::handle_move_reclaimed`] to
//! lift the fence. A first-version [`MoveFetch`] is served as one fenced
//! round 0 (the whole copy under the fence).

mod export;

pub(crate) use export::Serving;

use crate::action::Action;
use crate::hashing::FastHashMap;
use crate::peer::{MoveCursor, MovePage, MoveRoundFetch, MoveStatus};
use crate::record::{Record, StateKey};
use crate::sessions::Device;
use crate::shard::{AppendPurpose, Shard};
use crate::state::SendKey;
use export::Export;
use surepush_cluster::PartitionId;
use surepush_proto::{ErrorCode, Frame, UserId};

/// Most bytes of records in one page (at least one record): a page is one
/// answer inside a reply batch, which NATS carries as one message under
/// its `max_payload` (1 MiB by default).
pub const PAGE_BYTES: usize = 256 * 1024;

/// Messages asked of the log per read while exporting.
const READ_LIMIT: u32 = 1024;

/// A fenced partition whose target sent no fetch for this long is
/// reported stalled ([`Action::MoveStalled`]); an unfenced copy is
/// forgotten.
pub const MOVE_IDLE_NS: u64 = 5_000_000_000;

/// A copy round that carried at most this many messages is followed by
/// the fenced round: the pause then covers about as many (the writes of
/// one short round), a fraction of a second at the copy's pace.
pub const FENCE_AT_MESSAGES: u64 = 8192;

/// Most unfenced copy rounds: writes that keep pace with the copy never
/// let the tail shrink, so the round after this many fences anyway.
pub const MAX_UNFENCED_ROUNDS: u32 = 4;

/// The moves this shard takes part in.
#[derive(Debug, Default)]
pub(crate) struct Moves {
    exports: FastHashMap<u32, Export>,
    imports: FastHashMap<u32, Import>,
}

impl Moves {
    /// True if no partition is fenced here (the hot path's one check).
    pub(crate) fn none_fenced(&self) -> bool {
        self.exports.is_empty() || !self.exports.values().any(|e| e.fenced)
    }

    /// True if no move touches this shard.
    fn idle(&self) -> bool {
        self.exports.is_empty() && self.imports.is_empty()
    }
}

/// A partition this shard imports.
#[derive(Debug, Default)]
struct Import {
    /// Records applied so far.
    records: u64,
    /// The copy round being fetched.
    round: u32,
    /// That round fences the partition (the last one).
    fence: bool,
    /// Messages the round carried so far (decides whether the next fences).
    round_messages: u64,
    /// A page applied and appended: the last append token it needs
    /// durable, and where the next page starts.
    waiting: Option<(u64, Option<MoveCursor>)>,
}

impl Shard {
    /// Partition of `id` in a cluster (`None` on a single node).
    fn partition_of(&self, id: UserId) -> Option<u32> {
        self.router.cluster().map(|r| r.partition_of(id).0)
    }

    /// True if `id` belongs to a partition fenced here for a move: writes
    /// for it are refused until the move ends.
    pub(crate) fn is_fenced(&self, id: UserId) -> bool {
        !self.moves.none_fenced()
            && self
                .partition_of(id)
                .and_then(|p| self.moves.exports.get(&p))
                .is_some_and(|e| e.fenced)
    }

    /// True if a write for `id` must be refused here: its partition is
    /// fenced for a move, or (in a cluster) placed elsewhere now — a peer
    /// routing by an older placement retries once its routes catch up.
    pub(crate) fn refuses_writes(&self, id: UserId) -> bool {
        self.is_fenced(id) || (self.router.cluster().is_some() && !self.router.is_mine(id))
    }

    /// Starts importing `partition` from its current owner (the target
    /// side, step 1 of the module doc). The partition must be placed on
    /// another node and map to this shard, or (a move between the shards
    /// of this node) be held by another shard here: the fetches and pages
    /// then cross the shard mesh, and the driver flips the node's shard
    /// map instead of the placement.
    pub fn handle_move_start(&mut self, partition: u32, now: u64) {
        self.set_now(now);
        let in_p = |s: &Shard, id: UserId| s.partition_of(id) == Some(partition);
        // Stale members and keyed state of the partition (an earlier owner
        // period, an abandoned import) would outlive the source's: clear
        // them durably before the first page.
        let groups: Vec<UserId> = self.members.ids().filter(|g| in_p(self, *g)).collect();
        for group in groups {
            for user in self.members.of(group).to_vec() {
                self.members.set(group, user, false);
                let record = Record::Member {
                    group,
                    user,
                    joined: false,
                };
                self.append(record, AppendPurpose::Bookkeeping);
            }
        }
        let keys: Vec<StateKey> = self
            .keyed
            .keys()
            .filter(|k| k.owner().is_some_and(|o| in_p(self, o)))
            .collect();
        for key in keys {
            self.keyed.set_value(key, &None);
            self.append(
                Record::State { key, value: None },
                AppendPurpose::Bookkeeping,
            );
        }
        self.moves.imports.insert(partition, Import::default());
        self.fetch_page(partition, MoveCursor::default());
    }

    fn fetch_page(&mut self, partition: u32, from: MoveCursor) {
        let Some(import) = self.moves.imports.get(&partition) else {
            return;
        };
        let fetch = MoveRoundFetch {
            origin: self.params.id,
            partition,
            round: import.round,
            fence: import.fence,
            from,
        };
        let owner = self.router.owner_of_partition(PartitionId(partition));
        self.route_to(owner, fetch);
    }

    /// The source answered a fetch (the target side).
    pub(crate) fn on_move_page(&mut self, page: MovePage) {
        let MovePage {
            partition,
            status,
            records,
            next,
        } = page;
        if !self.moves.imports.contains_key(&partition) {
            tracing::warn!(partition, "a move page for no import here; dropped");
            return;
        }
        if status != MoveStatus::Page {
            self.moves.imports.remove(&partition);
            let why = match status {
                MoveStatus::NotOwner => "the source does not own the partition",
                _ => "the source's log failed",
            };
            self.actions
                .push_back(Action::MoveFailed { partition, why });
            return;
        }
        let n = records.len() as u64;
        let messages = records
            .iter()
            .filter(|r| matches!(r, Record::Message(_)))
            .count() as u64;
        for record in records {
            self.apply_imported(&record);
            self.append(record, AppendPurpose::Bookkeeping);
        }
        // Appends complete in order: once everything issued so far is
        // durable, so is the page.
        let token = self.storage.last_token();
        if let Some(import) = self.moves.imports.get_mut(&partition) {
            import.records += n;
            import.round_messages += messages;
            import.waiting = Some((token, next));
        }
        self.resume_moves();
    }

    /// A page of `partition` is durable here: fetch the next or finish.
    fn on_move_page_durable(&mut self, partition: u32, next: Option<MoveCursor>) {
        if self.storage.failed() {
            self.moves.imports.remove(&partition);
            let why = "this node's log failed";
            self.actions
                .push_back(Action::MoveFailed { partition, why });
            return;
        }
        if let Some(cursor) = next {
            self.fetch_page(partition, cursor);
            return;
        }
        let Some(import) = self.moves.imports.get_mut(&partition) else {
            return;
        };
        tracing::info!(
            partition,
            round = import.round,
            fenced = import.fence,
            messages = import.round_messages,
            "move round copied"
        );
        if import.fence {
            let records = import.records;
            self.moves.imports.remove(&partition);
            self.actions
                .push_back(Action::MoveImported { partition, records });
            return;
        }
        // Small enough a tail, or enough rounds: the next one fences.
        import.fence =
            import.round_messages <= FENCE_AT_MESSAGES || import.round + 1 >= MAX_UNFENCED_ROUNDS;
        import.round += 1;
        import.round_messages = 0;
        self.fetch_page(partition, MoveCursor::default());
    }

    /// One record of a page into the live state (as recovery folds it).
    fn apply_imported(&mut self, record: &Record) {
        match record {
            Record::Message(m) => {
                let inbox = self.sessions.inbox_entry(m.inbox);
                inbox.assigned = inbox.assigned.max(m.seq);
                inbox.durable = inbox.durable.max(m.seq);
                self.sends.import_copy(m);
                if !surepush_proto::is_room(m.inbox.0) {
                    self.conversations.note(m);
                }
            }
            Record::Cursor { user, device, seq } => {
                let inbox = self.sessions.inbox_entry(*user);
                inbox.assigned = inbox.assigned.max(*seq);
                inbox.durable = inbox.durable.max(*seq);
                match inbox.device_mut(*device) {
                    Some(d) => {
                        d.cursor = d.cursor.max(*seq);
                        d.persisted = d.persisted.max(*seq);
                    }
                    None => inbox.devices.push(Device {
                        id: *device,
                        cursor: *seq,
                        persisted: *seq,
                        conn: None,
                    }),
                }
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
                self.sends.release_copy(&key, *to);
            }
            Record::Member {
                group,
                user,
                joined,
            } => {
                self.members.set(*group, *user, *joined);
            }
            Record::State { key, value } => self.keyed.set_value(*key, value),
            Record::Checkpoint(_) => {}
        }
    }

    /// Appends are durable up to a later token: serve parked fetches and
    /// go on with imports whose page is durable.
    pub(crate) fn resume_moves(&mut self) {
        if self.moves.idle() {
            return;
        }
        self.resume_exports();
        let durable: Vec<(u32, Option<MoveCursor>)> = self
            .moves
            .imports
            .iter_mut()
            .filter_map(|(p, i)| match i.waiting {
                Some((token, next)) if self.storage.durable_through(token) => {
                    i.waiting = None;
                    Some((*p, next))
                }
                _ => None,
            })
            .collect();
        for (p, next) in durable {
            self.on_move_page_durable(p, next);
        }
    }

    /// The placement changed: forget what this shard no longer owns (the
    /// source side, step 5 of the module doc). Its log records become
    /// garbage for retention.
    pub(crate) fn drop_moved_partitions(&mut self, lost: &[PartitionId]) {
        if lost.is_empty() {
            return;
        }
        let gone = |s: &Shard, id: UserId| {
            s.partition_of(id)
                .is_some_and(|p| lost.contains(&PartitionId(p)))
        };
        let leaving: Vec<_> = self
            .sessions
            .conns()
            .filter(|(_, c)| c.session.is_some_and(|(u, _)| gone(self, u)))
            .map(|(id, _)| id)
            .collect();
        for conn in leaving {
            self.close_with(conn, Frame::disconnect(ErrorCode::ShuttingDown, ""));
        }
        let users: Vec<UserId> = self
            .sessions
            .inboxes()
            .map(|(u, _)| u)
            .filter(|u| gone(self, *u))
            .collect();
        for u in users {
            self.sessions.forget_inbox(u);
        }
        let groups: Vec<UserId> = self.members.ids().filter(|g| gone(self, *g)).collect();
        for g in groups {
            self.members.forget(g);
        }
        let keys: Vec<StateKey> = self
            .keyed
            .keys()
            .filter(|k| k.owner().is_some_and(|o| gone(self, o)))
            .collect();
        for key in keys {
            self.keyed.set_value(key, &None);
        }
        for p in lost {
            if self.moves.exports.remove(&p.0).is_some() {
                tracing::info!(
                    partition = p.0,
                    "partition moved away; its state dropped here"
                );
            }
        }
    }
}
