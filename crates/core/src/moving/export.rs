//! The source side of a partition move (see the parent module's doc):
//! copy rounds listed at their start, pages read from the log, the fence
//! of the last round, and a quiet target.
//!
//! Owns: per exported partition, the round being served and what it
//! copies ([`Export`]).

use super::{MOVE_IDLE_NS, PAGE_BYTES, READ_LIMIT};
use crate::action::Action;
use crate::hashing::FastHashMap;
use crate::peer::{encoded_len, MoveCursor, MoveFetch, MovePage, MoveRoundFetch, MoveStatus};
use crate::record::{InboxQuery, MessageRecord, Record};
use crate::router::ShardId;
use crate::shard::{ReadPurpose, Shard, TimerEvent};
use surepush_cluster::PartitionId;
use surepush_proto::{ErrorCode, Frame, Seq, UserId};

/// A partition this shard exports, one copy round at a time.
#[derive(Debug)]
pub(super) struct Export {
    /// The round being served (0: the snapshot).
    round: u32,
    /// The partition is fenced (the last round).
    pub(super) fenced: bool,
    /// The ids this round copies, sorted.
    ids: Vec<UserId>,
    /// Per inbox, its messages up to here were copied by earlier rounds.
    copied: FastHashMap<UserId, Seq>,
    /// Per inbox, this (unfenced) round copies up to here: its durable
    /// head at the round's start. A fenced round copies to the durable
    /// head, final once the fence's appends are durable.
    upto: FastHashMap<UserId, Seq>,
    /// Per id, the records that follow its messages (fenced round only).
    extras: FastHashMap<UserId, Vec<Record>>,
    /// Appends issued before the fence: a fenced round waits for them.
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

impl Shard {
    /// A first-version fetch (the source side): one fenced round 0.
    pub(crate) fn on_move_fetch(&mut self, fetch: MoveFetch) {
        let MoveFetch {
            origin,
            partition,
            from,
        } = fetch;
        self.on_move_round_fetch(MoveRoundFetch {
            origin,
            partition,
            round: 0,
            fence: true,
            from,
        });
    }

    /// A fetch of a copy round from the target (the source side).
    pub(crate) fn on_move_round_fetch(&mut self, fetch: MoveRoundFetch) {
        let MoveRoundFetch {
            origin,
            partition,
            round,
            fence,
            from,
        } = fetch;
        let p = PartitionId(partition);
        if self.router.cluster().is_none() || self.router.owner_of_partition(p) != self.params.id {
            self.answer_page(origin, partition, MoveStatus::NotOwner, Vec::new(), None);
            return;
        }
        if from == MoveCursor::default() {
            let current = self
                .moves
                .exports
                .get(&partition)
                .map(|e| (e.round, e.fenced));
            // Round 0 starts afresh; a later round only after the one
            // before it (the same start again, resent, keeps its lists).
            let next = matches!(current, Some((r, false)) if r + 1 == round);
            if round == 0 || next {
                self.begin_round(partition, round, fence);
            }
        }
        let now = self.now_ns;
        let export = self
            .moves
            .exports
            .get_mut(&partition)
            .filter(|e| e.round == round && e.fenced == fence);
        let Some(export) = export else {
            // A round this process never began (it restarted, or dropped
            // a quiet copy): the target abandons the move.
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
        if export.fenced && !self.storage.durable_through(export.fence_token) {
            export.parked.push(serving);
            return;
        }
        self.serve(serving);
    }

    /// Starts copy round `round` of `partition` (step 2 of the module
    /// doc): lists what it copies, and fences first if `fence`.
    fn begin_round(&mut self, partition: u32, round: u32, fence: bool) {
        let in_p = |s: &Shard, id: UserId| s.partition_of(id) == Some(partition);
        let previous = self.moves.exports.remove(&partition);
        let fresh = previous.is_none();
        let was_fenced = previous.as_ref().is_some_and(|e| e.fenced);
        let (copied, parked) = match previous {
            Some(e) if round > 0 => {
                let mut copied = e.copied;
                copied.extend(e.upto);
                (copied, e.parked)
            }
            Some(e) => (FastHashMap::default(), e.parked),
            None => (FastHashMap::default(), Vec::new()),
        };
        let (ids, extras, upto) = if fence {
            self.close_partition_sessions(partition);
            let (ids, extras) = self.list_partition(partition);
            (ids, extras, FastHashMap::default())
        } else {
            // The inboxes whose durable head moved past what was copied.
            let upto: FastHashMap<UserId, Seq> = self
                .sessions
                .inboxes()
                .filter(|(u, i)| {
                    in_p(self, *u) && i.durable > copied.get(u).copied().unwrap_or(Seq::ZERO)
                })
                .map(|(u, i)| (u, i.durable))
                .collect();
            let mut ids: Vec<UserId> = upto.keys().copied().collect();
            ids.sort_unstable();
            (ids, FastHashMap::default(), upto)
        };
        tracing::info!(
            partition,
            round,
            fenced = fence,
            ids = ids.len(),
            "move round started"
        );
        self.moves.exports.insert(
            partition,
            Export {
                round,
                fenced: fence,
                ids,
                copied,
                upto,
                extras,
                fence_token: self.storage.last_token(),
                parked,
                last_fetch_ns: self.now_ns,
                stalled: false,
            },
        );
        if fence && !was_fenced {
            tracing::info!(
                partition,
                shard = self.params.id.0,
                "partition fenced for a move"
            );
            self.stats.moves_fenced += 1;
        }
        if fresh {
            let at = self.now_ns + MOVE_IDLE_NS;
            self.timers.insert(at, TimerEvent::MoveIdle { partition });
        }
    }

    /// Closes the sessions of `partition`'s users: once it is fenced their
    /// ACKs would move cursors the export has already copied.
    fn close_partition_sessions(&mut self, partition: u32) {
        let in_p = |s: &Shard, id: UserId| s.partition_of(id) == Some(partition);
        let leaving: Vec<_> = self
            .sessions
            .conns()
            .filter(|(_, c)| c.session.is_some_and(|(u, _)| in_p(self, u)))
            .map(|(id, _)| id)
            .collect();
        for conn in leaving {
            self.close_with(conn, Frame::disconnect(ErrorCode::ShuttingDown, ""));
        }
    }

    /// Every id of `partition` in order, and per id the records that
    /// follow its messages: device cursors, members, keyed values,
    /// released QoS 2 entries.
    fn list_partition(&self, partition: u32) -> (Vec<UserId>, FastHashMap<UserId, Vec<Record>>) {
        let in_p = |s: &Shard, id: UserId| s.partition_of(id) == Some(partition);
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
        (ids, extras)
    }

    /// The last message of `id` that `export`'s round copies.
    fn round_bound(&self, export: &Export, id: UserId) -> Seq {
        if export.fenced {
            self.durable_head(id)
        } else {
            export.upto.get(&id).copied().unwrap_or(Seq::ZERO)
        }
    }

    /// Serves `s` from its cursor: reads the next inbox part, or answers.
    fn serve(&mut self, mut s: Serving) {
        let Some(export) = self.moves.exports.get(&s.partition) else {
            return;
        };
        loop {
            let Some(id) = export.ids.get(s.cursor.position as usize).copied() else {
                if export.fenced {
                    tracing::info!(partition = s.partition, "move's last page answered");
                }
                let (origin, partition) = (s.origin, s.partition);
                self.answer_page(origin, partition, MoveStatus::Page, s.records, None);
                return;
            };
            if s.bytes >= PAGE_BYTES {
                let (origin, partition, next) = (s.origin, s.partition, s.cursor);
                self.answer_page(origin, partition, MoveStatus::Page, s.records, Some(next));
                return;
            }
            // Messages the rounds before copied are skipped.
            let start = export.copied.get(&id).copied().unwrap_or(Seq::ZERO);
            let after = s.cursor.after.max(start);
            if self.round_bound(export, id) > after {
                s.cursor.after = after;
                let query = InboxQuery::After {
                    after,
                    limit: READ_LIMIT,
                };
                self.read(id, query, ReadPurpose::Move(s));
                return;
            }
            // The id's messages are all sent: its other records follow.
            if export.fenced {
                for r in export.extras.get(&id).into_iter().flatten() {
                    s.bytes += encoded_len(r);
                    s.records.push(r.clone());
                }
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
        let Some(export) = self.moves.exports.get(&s.partition) else {
            return; // the export ended meanwhile (the placement moved on)
        };
        let Some(id) = export.ids.get(s.cursor.position as usize).copied() else {
            return;
        };
        let bound = self.round_bound(export, id);
        let read_any = !messages.is_empty();
        let mut last = None;
        for m in messages.into_iter().take_while(|m| m.seq <= bound) {
            last = Some(m.seq);
            let r = Record::Message(m);
            s.bytes += encoded_len(&r);
            s.records.push(r);
        }
        s.cursor.after = match last {
            Some(seq) => seq,
            // Only messages past the round's bound: its part is done.
            None if read_any => bound,
            // Only holes (salvage) in this range: skip it.
            None => Seq(s.cursor.after.0 + u64::from(READ_LIMIT)).min(bound),
        };
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

    /// Appends are durable up to a later token: serve the fetches parked
    /// behind a fence.
    pub(super) fn resume_exports(&mut self) {
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
    }

    /// The stall timer of `partition` fired.
    pub(crate) fn on_move_idle(&mut self, partition: u32) {
        let now = self.now_ns;
        let Some(export) = self.moves.exports.get_mut(&partition) else {
            return;
        };
        let quiet = now.saturating_sub(export.last_fetch_ns);
        if quiet >= MOVE_IDLE_NS && !export.fenced {
            // Nothing was refused yet: the copy is just forgotten (a later
            // round's fetch is answered `Failed`).
            self.moves.exports.remove(&partition);
            tracing::info!(partition, "a move's target went quiet before the fence");
            return;
        }
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
}
