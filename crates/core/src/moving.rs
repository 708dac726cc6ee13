//! Partition moves between nodes (issue #20, docs/CLUSTER.md "Moving a
//! partition"): the source's export and fence, the target's import.
//!
//! Owns: the partitions this shard exports (fenced) and imports.
//!
//! Protocol, as the core sees it (the driver adds the placement CAS):
//! 1. the driver of the target node calls [`Shard::handle_move_start`] on
//!    the partition's shard; it clears stale state of the partition (group
//!    members and keyed state left by an earlier owner period or an
//!    abandoned import: both are replaced by the source's) and sends a
//!    [`MoveFetch`] from the start to the partition's owner;
//! 2. the source's shard fences the partition on the first fetch: it
//!    closes the sessions of its users (DISCONNECT `ShuttingDown`, so they
//!    reconnect), refuses their CONNECTs and every new write for its ids
//!    (copies answer `Failed`: SENDACK `StorageUnavailable`, the client
//!    retries; membership and keyed writes fail the same way), waits until
//!    every append issued before the fence is durable, and lists the
//!    partition's ids (inboxes, groups, rooms, keyed owners) in order;
//! 3. each fetch is answered with one [`MovePage`] of at most
//!    [`PAGE_BYTES`]: per id, its durable messages read from the log in
//!    order, then its device cursors, members, keyed state and released
//!    QoS 2 dedup entries, in log record form;
//! 4. the target applies each page to its state and appends its records;
//!    once they are durable it fetches the next page, and after the last
//!    one reports [`Action::MoveImported`]: the driver flips the placement
//!    entry by CAS (with the revision read before the move began);
//! 5. on the new placement the source drops the partition's state
//!    ([`Shard::set_cluster_routes`]) and the target serves it.
//!
//! A source whose target goes quiet ([`MOVE_IDLE_NS`] without a fetch)
//! reports [`Action::MoveStalled`]; its driver reclaims the partition by
//! a CAS of its own (epoch + 1, which makes the target's later CAS fail)
//! and then calls [`Shard::handle_move_reclaimed`] to lift the fence.

use crate::action::Action;
use crate::hashing::FastHashMap;
use crate::peer::{encoded_len, MoveCursor, MoveFetch, MovePage, MoveStatus};
use crate::record::{InboxQuery, MessageRecord, Record, StateKey};
use crate::router::ShardId;
use crate::sessions::Device;
use crate::shard::{AppendPurpose, ReadPurpose, Shard, TimerEvent};
use crate::state::SendKey;
use surepush_cluster::PartitionId;
use surepush_proto::{ErrorCode, Frame, Seq, UserId};

/// Most bytes of records in one page (at least one record): a page is one
/// answer inside a reply batch, which NATS carries as one message under
/// its `max_payload` (1 MiB by default).
pub const PAGE_BYTES: usize = 256 * 1024;

/// Messages asked of the log per read while exporting.
const READ_LIMIT: u32 = 1024;

/// A fenced partition whose target sent no fetch for this long is
/// reported stalled ([`Action::MoveStalled`]).
pub const MOVE_IDLE_NS: u64 = 5_000_000_000;

/// The moves this shard takes part in.
#[derive(Debug, Default)]
pub(crate) struct Moves {
    exports: FastHashMap<u32, Export>,
    imports: FastHashMap<u32, Import>,
}

impl Moves {
    /// True if no partition is fenced here (the hot path's one check).
    pub(crate) fn none_fenced(&self) -> bool {
        self.exports.is_empty()
    }

    /// True if no move touches this shard.
    fn idle(&self) -> bool {
        self.exports.is_empty() && self.imports.is_empty()
    }
}

/// A partition this shard exports (and keeps fenced).
#[derive(Debug)]
struct Export {
    /// The partition's ids, sorted.
    ids: Vec<UserId>,
    /// Per id, the records that follow its messages.
    extras: FastHashMap<UserId, Vec<Record>>,
    /// Appends issued before the fence: the export waits for them.
    fence_token: u64,
    /// Fetches waiting for those appends.
    parked: Vec<Serving>,
    /// Last fetch seen (ns), for the stall timer.
    last_fetch_ns: u64,
    /// A stall was reported and not answered yet.
    stalled: bool,
}

/// A fetch being answered.
#[derive(Debug)]
pub(crate) struct Serving {
    origin: ShardId,
    partition: u32,
    cursor: MoveCursor,
    records: Vec<Record>,
    bytes: usize,
}

/// A partition this shard imports.
#[derive(Debug, Default)]
struct Import {
    /// Records applied so far.
    records: u64,
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
                .is_some_and(|p| self.moves.exports.contains_key(&p))
    }

    /// True if a write for `id` must be refused here: its partition is
    /// fenced for a move, or (in a cluster) placed elsewhere now — a peer
    /// routing by an older placement retries once its routes catch up.
    pub(crate) fn refuses_writes(&self, id: UserId) -> bool {
        self.is_fenced(id) || (self.router.cluster().is_some() && !self.router.is_mine(id))
    }

    /// Starts importing `partition` from its current owner (the target
    /// side, step 1 of the module doc). The partition must be placed on
    /// another node and map to this shard.
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
        let fetch = MoveFetch {
            origin: self.params.id,
            partition,
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
        for record in records {
            self.apply_imported(&record);
            self.append(record, AppendPurpose::Bookkeeping);
        }
        // Appends complete in order: once everything issued so far is
        // durable, so is the page.
        let token = self.storage.last_token();
        if let Some(import) = self.moves.imports.get_mut(&partition) {
            import.records += n;
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
        match next {
            Some(cursor) => self.fetch_page(partition, cursor),
            None => {
                let records = self
                    .moves
                    .imports
                    .remove(&partition)
                    .map_or(0, |i| i.records);
                self.actions
                    .push_back(Action::MoveImported { partition, records });
            }
        }
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

    /// A fetch from the target (the source side).
    pub(crate) fn on_move_fetch(&mut self, fetch: MoveFetch) {
        let MoveFetch {
            origin,
            partition,
            from,
        } = fetch;
        let p = PartitionId(partition);
        if self.router.cluster().is_none() || self.router.owner_of_partition(p) != self.params.id {
            self.answer_page(origin, partition, MoveStatus::NotOwner, Vec::new(), None);
            return;
        }
        let restart = from == MoveCursor::default();
        if restart {
            self.fence(partition);
        }
        let now = self.now_ns;
        let Some(export) = self.moves.exports.get_mut(&partition) else {
            // A fetch past the start that this process never began (it
            // restarted): the target abandons the move.
            self.answer_page(origin, partition, MoveStatus::Failed, Vec::new(), None);
            return;
        };
        export.last_fetch_ns = now;
        let serving = Serving {
            origin,
            partition,
            cursor: from,
            records: Vec::new(),
            bytes: 0,
        };
        if !self.storage.durable_through(export.fence_token) {
            export.parked.push(serving);
            return;
        }
        self.serve(serving);
    }

    /// Fences `partition` and lists what it owns (step 2 of the module doc).
    fn fence(&mut self, partition: u32) {
        let in_p = |s: &Shard, id: UserId| s.partition_of(id) == Some(partition);
        let first = !self.moves.exports.contains_key(&partition);
        // Sessions of the partition's users go: their ACKs would move
        // cursors the export has already copied.
        let leaving: Vec<_> = self
            .sessions
            .conns()
            .filter(|(_, c)| c.session.is_some_and(|(u, _)| in_p(self, u)))
            .map(|(id, _)| id)
            .collect();
        for conn in leaving {
            self.close_with(conn, Frame::disconnect(ErrorCode::ShuttingDown, ""));
        }
        let mut ids: Vec<UserId> = self
            .sessions
            .inboxes()
            .map(|(u, _)| u)
            .filter(|u| in_p(self, *u))
            .collect();
        let mut extras: FastHashMap<UserId, Vec<Record>> = FastHashMap::default();
        for (user, inbox) in self.sessions.inboxes() {
            if !in_p(self, user) {
                continue;
            }
            let out = extras.entry(user).or_default();
            for d in &inbox.devices {
                out.push(Record::Cursor {
                    user,
                    device: d.id,
                    seq: d.cursor,
                });
            }
        }
        for group in self.members.ids().filter(|g| in_p(self, *g)) {
            ids.push(group);
            let out = extras.entry(group).or_default();
            for user in self.members.of(group) {
                out.push(Record::Member {
                    group,
                    user: *user,
                    joined: true,
                });
            }
        }
        for (key, value) in self.keyed.values() {
            let Some(owner) = key.owner().filter(|o| in_p(self, *o)) else {
                continue;
            };
            ids.push(owner);
            extras.entry(owner).or_default().push(Record::State {
                key: *key,
                value: Some(value.clone()),
            });
        }
        for e in self.sends.window_entries() {
            if e.released && in_p(self, e.inbox) {
                ids.push(e.inbox);
                extras.entry(e.inbox).or_default().push(Record::Release {
                    from: e.key.from,
                    from_device: e.key.from_device,
                    client_msg_id: e.key.client_msg_id,
                    to: e.inbox,
                });
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let fence_token = self.storage.last_token();
        let parked = self
            .moves
            .exports
            .remove(&partition)
            .map(|e| e.parked)
            .unwrap_or_default();
        self.moves.exports.insert(
            partition,
            Export {
                ids,
                extras,
                fence_token,
                parked,
                last_fetch_ns: self.now_ns,
                stalled: false,
            },
        );
        if first {
            tracing::info!(
                partition,
                shard = self.params.id.0,
                "partition fenced for a move"
            );
            self.stats.moves_fenced += 1;
            let at = self.now_ns + MOVE_IDLE_NS;
            self.timers.insert(at, TimerEvent::MoveIdle { partition });
        }
    }

    /// Serves `s` from its cursor: reads the next inbox part, or answers.
    fn serve(&mut self, mut s: Serving) {
        let Some(export) = self.moves.exports.get(&s.partition) else {
            return;
        };
        loop {
            let Some(id) = export.ids.get(s.cursor.position as usize).copied() else {
                let (origin, partition) = (s.origin, s.partition);
                self.answer_page(origin, partition, MoveStatus::Page, s.records, None);
                return;
            };
            if s.bytes >= PAGE_BYTES {
                let (origin, partition, next) = (s.origin, s.partition, s.cursor);
                self.answer_page(origin, partition, MoveStatus::Page, s.records, Some(next));
                return;
            }
            if self.durable_head(id) > s.cursor.after {
                let query = InboxQuery::After {
                    after: s.cursor.after,
                    limit: READ_LIMIT,
                };
                self.read(id, query, ReadPurpose::Move(s));
                return;
            }
            // The id's messages are all sent: its other records follow.
            for r in export.extras.get(&id).into_iter().flatten() {
                s.bytes += encoded_len(r);
                s.records.push(r.clone());
            }
            s.cursor = MoveCursor {
                position: s.cursor.position + 1,
                after: Seq::ZERO,
            };
        }
    }

    /// A read of the export came back.
    pub(crate) fn on_move_read(&mut self, mut s: Serving, result: Result<Vec<MessageRecord>, ()>) {
        let Ok(messages) = result else {
            let (origin, partition) = (s.origin, s.partition);
            self.answer_page(origin, partition, MoveStatus::Failed, Vec::new(), None);
            return;
        };
        let id = self
            .moves
            .exports
            .get(&s.partition)
            .and_then(|e| e.ids.get(s.cursor.position as usize).copied());
        let Some(id) = id else {
            return; // the export ended meanwhile (the placement moved on)
        };
        match messages.last() {
            Some(last) => s.cursor.after = last.seq,
            // Only holes (salvage) in this range: skip it.
            None => {
                s.cursor.after =
                    Seq(s.cursor.after.0 + u64::from(READ_LIMIT)).min(self.durable_head(id))
            }
        }
        for m in messages {
            let r = Record::Message(m);
            s.bytes += encoded_len(&r);
            s.records.push(r);
        }
        self.serve(s);
    }

    fn answer_page(
        &mut self,
        origin: ShardId,
        partition: u32,
        status: MoveStatus,
        records: Vec<Record>,
        next: Option<MoveCursor>,
    ) {
        if status == MoveStatus::Page {
            self.stats.move_records_exported += records.len() as u64;
        }
        let page = MovePage {
            partition,
            status,
            records,
            next,
        };
        self.route_to(origin, page);
    }

    /// Appends are durable up to a later token: serve parked fetches and
    /// go on with imports whose page is durable.
    pub(crate) fn resume_moves(&mut self) {
        if self.moves.idle() {
            return;
        }
        let ready: Vec<u32> = self
            .moves
            .exports
            .iter()
            .filter(|(_, e)| !e.parked.is_empty() && self.storage.durable_through(e.fence_token))
            .map(|(p, _)| *p)
            .collect();
        for p in ready {
            let parked = self
                .moves
                .exports
                .get_mut(&p)
                .map(|e| std::mem::take(&mut e.parked))
                .unwrap_or_default();
            for s in parked {
                self.serve(s);
            }
        }
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

    /// The stall timer of `partition` fired.
    pub(crate) fn on_move_idle(&mut self, partition: u32) {
        let now = self.now_ns;
        let Some(export) = self.moves.exports.get_mut(&partition) else {
            return;
        };
        let quiet = now.saturating_sub(export.last_fetch_ns);
        if quiet >= MOVE_IDLE_NS && !export.stalled {
            export.stalled = true;
            self.actions.push_back(Action::MoveStalled { partition });
        }
        let at = now + MOVE_IDLE_NS;
        self.timers.insert(at, TimerEvent::MoveIdle { partition });
    }

    /// The driver reclaimed a stalled partition (a CAS of the placement
    /// entry to this node; `ok`) or found it moved: lift the fence if
    /// this node still owns it.
    pub fn handle_move_reclaimed(&mut self, partition: u32, ok: bool, now: u64) {
        self.set_now(now);
        let Some(export) = self.moves.exports.get_mut(&partition) else {
            return;
        };
        if !ok {
            export.stalled = false; // reported again on the next tick
            return;
        }
        self.moves.exports.remove(&partition);
        tracing::info!(partition, "move abandoned; partition unfenced");
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
