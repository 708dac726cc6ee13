//! The segment log of one shard: appends with group commit, per-inbox
//! reads, checkpoints and retention. Recovery lives in `recovery.rs`.
//!
//! Ground rules:
//! - [`SegmentLog::append`] is synchronous: it encodes the record into the
//!   pending buffer, updates the index and the derived state, and returns
//!   the record's end position. Durability is separate: [`SegmentLog::wait_durable`].
//! - Durability comes from the group committer (`commit.rs`): one
//!   fdatasync covers every append made before it started.
//! - A failed write or sync poisons the log: every waiter gets the error and
//!   every later append is refused. The caller stops acknowledging.
//! - Readers see only durable records: nothing a crash could still lose is
//!   ever returned.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::channels::local_channel::{self, LocalSender};

use super::commit::{committer, roll, start_write_behind, Behind, Chunk};
use super::format::{self, Decoded, SEGMENT_HEADER_LEN};
use super::index::{Index, Location};
use super::io::LogFs;
use super::record::{InboxQuery, MessageRecord, Record};
use super::segment::{self, Segment};
use super::state::{DedupConfig, RecoveredState};
use super::storage::{self, Storage};
use super::window::{Tracked, WindowStart};
use surepush_core::ConversationConfig;
use surepush_proto::{Seq, UserId};

/// A position in the log (byte offset in the log's address space; each
/// segment covers `[base, base + capacity)`).
pub type Lsn = u64;

/// What to do with a damaged log on open (TOML `log.recovery`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryMode {
    /// Any damage, a torn tail included, is an error (for audits and tests).
    AbsoluteConsistency,
    /// A torn tail (bytes after the last completed sync: never
    /// acknowledged) is cut off and reported; its valid records, if any,
    /// are kept in a file next to the segment. Damage to durable bytes
    /// refuses the open without changing anything ([`LogError::Damaged`]).
    /// See `damage.rs` for how the two are told apart.
    #[default]
    TolerateTailCorruption,
    /// As above, but every segment is scanned (no sidecar is trusted) and
    /// damage to durable bytes is salvaged: the damaged stretches are moved
    /// aside to `<segment>.damaged-<offset>` files and
    /// overwritten with filler, every valid record is kept, and what was
    /// lost is reported ([`RecoveryReport::salvage`]). Inbox heads never
    /// go back: lost sequences are not handed out again.
    Salvage,
}

/// Settings of one log.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Directory of the segment files.
    pub dir: PathBuf,
    /// Segment file size (header included).
    pub segment_bytes: u64,
    /// Commit at once when this many bytes are pending.
    pub sync_bytes: usize,
    /// Otherwise commit this long after the first pending append (zero:
    /// as soon as the committer is idle; batching still happens, since
    /// appends made during one sync all go into the next).
    pub sync_interval: Duration,
    /// Append a checkpoint after this many bytes of log.
    pub checkpoint_bytes: u64,
    /// Segments whose newest message is older than this are deleted.
    pub retention_max_age: Duration,
    /// Send dedup window (shared with the delivery core).
    pub dedup: DedupConfig,
    /// Conversation summaries' limits (shared with the delivery core): the
    /// log keeps the summaries too, for its checkpoints.
    pub conversations: ConversationConfig,
    /// Damage policy on open.
    pub recovery: RecoveryMode,
    /// Recent message records kept in memory for reads.
    pub cache_bytes: usize,
    /// Hand full blocks to the disk in pieces of this size while appends go
    /// on, instead of only at commit (0: never). See [`LogFile::write_behind`].
    pub write_behind_bytes: u64,
    /// A commit's marker (the record saying how far the log is durable)
    /// rides with the next commit; when nothing else is appended for this
    /// long, a commit of the marker alone is made, so the last
    /// acknowledged batch is claimed too (zero: only with the next commit).
    pub marker_delay: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            dir: PathBuf::from("data/log"),
            segment_bytes: 64 << 20,
            sync_bytes: 256 << 10,
            sync_interval: Duration::ZERO,
            checkpoint_bytes: 256 << 20,
            retention_max_age: Duration::from_secs(7 * 24 * 3600),
            dedup: DedupConfig::default(),
            conversations: ConversationConfig::default(),
            recovery: RecoveryMode::default(),
            cache_bytes: 16 << 20,
            write_behind_bytes: 1 << 20,
            marker_delay: Duration::from_millis(10),
        }
    }
}

/// Log failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// An I/O operation failed.
    #[error("{op} {path}: {message}")]
    Io {
        /// What was done.
        op: &'static str,
        /// Which file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// An earlier write or sync failed; the log accepts nothing more.
    #[error("log poisoned by an earlier failure: {0}")]
    Poisoned(String),
    /// The log on disk is damaged where it may not be.
    #[error("corrupt log: {0}")]
    Corrupt(String),
    /// Durable (possibly acknowledged) records are damaged; nothing was
    /// changed. Salvage is the operator's decision.
    #[error("{0}")]
    Damaged(Box<super::damage::DamageReport>),
    /// A record larger than a segment.
    #[error("record of {0} bytes does not fit in a segment")]
    TooLarge(usize),
    /// The log is closing.
    #[error("log closed")]
    Closed,
}

pub(super) fn io_error(op: &'static str, path: &std::path::Path, e: std::io::Error) -> LogError {
    LogError::Io {
        op,
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Counters for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Bytes appended since open.
    pub bytes_appended: u64,
    /// Records appended since open.
    pub records_appended: u64,
    /// Completed group commits since open.
    pub syncs: u64,
    /// Segment files.
    pub segments: u64,
    /// Reads served from the file (not the cache).
    pub file_reads: u64,
    /// Bytes held by the cache of recent commits (at most
    /// [`LogConfig::cache_bytes`], past it only the newest commit).
    pub cached_bytes: u64,
}

/// What recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments read.
    pub segments: u64,
    /// Valid records found.
    pub records: u64,
    /// Bytes of valid records.
    pub bytes: u64,
    /// Where a torn tail was cut, and why.
    pub truncated: Option<(u64, &'static str)>,
    /// The cut bytes, kept next to the segment when they held valid
    /// (never acknowledged) records.
    pub cut_file: Option<PathBuf>,
    /// What salvage skipped and lost ([`RecoveryMode::Salvage`] only).
    pub salvage: Option<super::damage::SalvageReport>,
    /// Position of the newest checkpoint applied.
    pub checkpoint: Option<Lsn>,
    /// Sealed segments taken from their sidecar index instead of scanned.
    pub sidecars: u64,
    /// Time taken.
    pub elapsed: Duration,
}

/// What retention removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments_deleted: u64,
    /// Their capacity in bytes.
    pub bytes_deleted: u64,
    /// Inbox messages deleted that a device of the inbox had not
    /// acknowledged (past the maximum age): (inbox, first seq, last seq).
    pub unacked: Vec<(UserId, Seq, Seq)>,
}

impl RetentionReport {
    /// How many unacknowledged messages were deleted.
    pub fn unacked_messages(&self) -> u64 {
        self.unacked.iter().map(|(_, a, b)| b.0 - a.0 + 1).sum()
    }
}

pub(super) struct State {
    pub(super) segments: BTreeMap<u64, Segment>,
    pub(super) active: u64,
    /// Segments rolled to whose files the committer has yet to create.
    pub(super) create_pending: Vec<u64>,
    /// Last bytes of sealed segments not yet written: (base, chunk start,
    /// bytes after the segment's write-behind pieces).
    pub(super) sealed: Vec<(u64, u64, BytesMut)>,
    /// Pending bytes of the active segment, from `pending_start` (block-aligned,
    /// and block-aligned in memory when possible, so write-behind pieces
    /// split off its front go to the disk without a copy).
    pub(super) pending: BytesMut,
    pub(super) pending_start: Lsn,
    /// Where the active segment's uncommitted bytes begin: write-behind
    /// pieces away on the blocking thread hold `[chunk_start, pending_start)`.
    pub(super) chunk_start: Lsn,
    /// Where the next write-behind piece of the active segment starts
    /// (block-aligned; never inside the block a commit in flight writes).
    pub(super) behind_from: Lsn,
    /// Write-behind pieces not yet taken by a commit.
    pub(super) behind: Vec<Behind>,
    pub(super) next: Lsn,
    pub(super) durable: Lsn,
    pub(super) poisoned: Option<String>,
    pub(super) closed: bool,
    /// The [`SegmentLog`] was dropped without `close`: like a crash, the
    /// committer stops without writing anything more.
    pub(super) abandoned: bool,
    /// The committer has stopped (closed or poisoned).
    pub(super) committer_done: bool,
    pub(super) waiters: Vec<(Lsn, Waker)>,
    /// Scratch list of the waiters a commit wakes (kept for its allocation).
    pub(super) ready: Vec<Waker>,
    pub(super) index: Index,
    /// Heads, cursors, groups and the QoS 2 dedup entries (`window.rs`).
    pub(super) tracked: Tracked,
    /// The newest committed (durable) write buffers, oldest first:
    /// `(position of the first byte, bytes)`. Reads decode records from
    /// here before going to the files. Consecutive chunks overlap by at
    /// most the partial block a commit rewrites, and a record never spans
    /// two chunks (a commit always ends on a record boundary).
    pub(super) tail: VecDeque<Chunk>,
    /// Memory the tail holds (allocations, not just lengths).
    pub(super) tail_bytes: usize,
    /// A message record was appended since the last commit took the
    /// pending bytes: only such commits go to the tail (reads decode only
    /// message records from it; the core keeps every state record's newest
    /// value itself, so a cached copy of one is never read).
    pub(super) pending_messages: bool,
    /// Emptied write buffers for reuse: a commit allocates nothing once warm.
    pub(super) spare: Vec<BytesMut>,
    /// Capacity of the next write buffer (see [`super::commit::note_buffer_use`]).
    pub(super) buffer_size: usize,
    /// Sidecar writes under way ([`SegmentLog::flush`] waits for them).
    pub(super) sidecar_tasks: Vec<glommio::Task<()>>,
    pub(super) since_checkpoint: u64,
    /// A checkpoint (start, end, window start) whose pointer file is
    /// written once it is durable.
    pub(super) pointer_due: Option<(Lsn, Lsn, WindowStart)>,
    pub(super) stats: LogStats,
    pub(super) first_pending_at: Option<Instant>,
    /// Commit markers (`commit.rs`): the end of the last record appended
    /// that is not a marker, the part of it a completed commit made
    /// durable, and the part a marker appended so far claims.
    pub(super) marks: Marks,
}

/// How far the log's data is appended, durable, and claimed durable by a
/// commit marker in the log itself.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Marks {
    pub(super) appended: Lsn,
    pub(super) durable: Lsn,
    pub(super) claimed: Lsn,
}

pub(super) struct Inner {
    pub(super) config: LogConfig,
    pub(super) fs: Rc<dyn LogFs>,
    /// `fs`'s whole-file operations (sidecars, pointer, removals).
    pub(super) storage: Arc<dyn Storage>,
    pub(super) st: RefCell<State>,
    pub(super) wake: LocalSender<()>,
}

/// The segment log of one shard. Lives on one glommio executor.
pub struct SegmentLog {
    pub(super) inner: Rc<Inner>,
}

impl Drop for SegmentLog {
    fn drop(&mut self) {
        // The committer must not outlive its log: a commit (an idle
        // marker, say) after the drop would write into files a reopened
        // log of the same directory owns.
        self.inner.st.borrow_mut().abandoned = true;
        let _ = self.inner.wake.try_send(());
    }
}

impl std::fmt::Debug for SegmentLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentLog")
            .field("dir", &self.inner.config.dir)
            .finish()
    }
}

impl SegmentLog {
    /// Opens (creating if needed) and recovers the log in `config.dir` with
    /// O_DIRECT files, and spawns its committer on the current executor.
    pub async fn open(
        config: LogConfig,
    ) -> Result<(SegmentLog, RecoveredState, RecoveryReport), LogError> {
        Self::open_with(config, Rc::new(super::io::DmaFs::default())).await
    }

    /// As [`SegmentLog::open`], with a chosen file layer (tests inject faults).
    pub async fn open_with(
        config: LogConfig,
        fs: Rc<dyn LogFs>,
    ) -> Result<(SegmentLog, RecoveredState, RecoveryReport), LogError> {
        let (state, derived, report) = super::recovery::recover(&config, &*fs).await?;
        let (wake, rx) = local_channel::new_bounded(1);
        let inner = Rc::new(Inner {
            config,
            storage: fs.storage(),
            fs,
            st: RefCell::new(state),
            wake,
        });
        glommio::spawn_local(committer(inner.clone(), rx)).detach();
        let log = SegmentLog { inner };
        if report.salvage.is_some() {
            // The heads salvage raised over lost sequences are durable
            // before anything is served: a restart must not lower them.
            log.checkpoint().await?;
        }
        Ok((log, derived, report))
    }

    /// Buffers `record` for the next group commit; returns its end position
    /// (pass it to [`SegmentLog::wait_durable`]).
    pub fn append(&self, record: &Record) -> Result<Lsn, LogError> {
        let inner = &self.inner;
        let mut st = inner.st.borrow_mut();
        if let Some(p) = &st.poisoned {
            return Err(LogError::Poisoned(p.clone()));
        }
        if st.closed {
            return Err(LogError::Closed);
        }
        let len = format::encoded_len(record);
        let capacity = inner
            .config
            .segment_bytes
            .saturating_sub(SEGMENT_HEADER_LEN);
        if len as u64 > capacity {
            return Err(LogError::TooLarge(len));
        }
        let active_end = {
            let seg = &st.segments[&st.active];
            seg.base + seg.capacity
        };
        if st.next + len as u64 > active_end {
            roll(&mut st, inner.config.segment_bytes);
        }
        let lsn = st.next;
        format::encode(record, &mut st.pending);
        st.next += len as u64;
        let end = st.next;
        let active = st.active;
        let seg = st.segments.get_mut(&active).expect("active segment exists");
        seg.end = end;
        if let Record::Message(m) = record {
            st.pending_messages = true;
            let seg = st.segments.get_mut(&active).expect("active segment exists");
            seg.note_message(m, lsn, len);
            st.index.add(
                m.inbox,
                m.seq,
                Location {
                    lsn,
                    len: len as u32,
                },
            );
        }
        st.tracked.apply(record, lsn, &inner.config.dedup);
        st.marks.appended = end;
        st.stats.bytes_appended += len as u64;
        st.stats.records_appended += 1;
        st.since_checkpoint += len as u64;
        st.first_pending_at.get_or_insert_with(Instant::now);
        start_write_behind(&mut st, inner.config.write_behind_bytes);
        let checkpoint_due = st.since_checkpoint >= inner.config.checkpoint_bytes
            && !matches!(record, Record::Checkpoint(_));
        drop(st);
        if checkpoint_due {
            self.append_checkpoint()?;
        }
        let _ = inner.wake.try_send(());
        Ok(end)
    }

    fn append_checkpoint(&self) -> Result<Lsn, LogError> {
        let started = Instant::now();
        let dedup = &self.inner.config.dedup;
        let (snapshot, window) = {
            let mut st = self.inner.st.borrow_mut();
            st.since_checkpoint = 0;
            let at = st.next;
            let window = st.tracked.window_start(at, dedup);
            st.tracked.state.dedup.evict(dedup);
            (format::encode_checkpoint(&st.tracked.state), window)
        };
        // The shard does nothing else meanwhile: worth seeing in the log.
        tracing::info!(
            dir = %self.inner.config.dir.display(),
            bytes = snapshot.len(),
            encode_ms = started.elapsed().as_millis() as u64,
            "checkpoint"
        );
        let len = format::encoded_len(&Record::Checkpoint(snapshot.clone())) as u64;
        let end = self.append(&Record::Checkpoint(snapshot))?;
        self.inner.st.borrow_mut().pointer_due = Some((end - len, end, window));
        Ok(end)
    }

    /// Resolves once everything up to `lsn` is durable.
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<(), LogError> {
        std::future::poll_fn(|cx| {
            let mut st = self.inner.st.borrow_mut();
            if st.durable >= lsn {
                return Poll::Ready(Ok(()));
            }
            if let Some(p) = &st.poisoned {
                return Poll::Ready(Err(LogError::Poisoned(p.clone())));
            }
            if st.committer_done {
                return Poll::Ready(Err(LogError::Closed));
            }
            // Woken (and removed) by the commit that covers `lsn`; a
            // spurious poll only adds an entry that is woken early.
            st.waiters.push((lsn, cx.waker().clone()));
            drop(st);
            let _ = self.inner.wake.try_send(());
            Poll::Pending
        })
        .await
    }

    /// Everything appended so far is durable, and so are the sidecars of
    /// the segments sealed so far.
    pub async fn flush(&self) -> Result<(), LogError> {
        let next = self.inner.st.borrow().next;
        self.wait_durable(next).await?;
        let tasks = std::mem::take(&mut self.inner.st.borrow_mut().sidecar_tasks);
        for task in tasks {
            task.await;
        }
        Ok(())
    }

    /// Highest durable position.
    pub fn durable_lsn(&self) -> Lsn {
        self.inner.st.borrow().durable
    }

    /// Counters.
    pub fn stats(&self) -> LogStats {
        let st = self.inner.st.borrow();
        LogStats {
            segments: st.segments.len() as u64,
            cached_bytes: st.tail_bytes as u64,
            ..st.stats.clone()
        }
    }

    /// Messages of `user`'s inbox (durable ones only), ascending by seq.
    pub async fn read_inbox(
        &self,
        user: UserId,
        query: InboxQuery,
    ) -> Result<Vec<MessageRecord>, LogError> {
        let plan: Vec<(Seq, Location)> = 'plan: {
            let st = self.inner.st.borrow();
            let Some(idx) = st.index.get(user) else {
                return Ok(Vec::new());
            };
            // Highest seq whose record is durable (entries are in log order;
            // a hole salvage left is no record to wait for).
            let durable_count = idx
                .entries
                .partition_point(|l| l.lsn == u64::MAX || l.lsn + u64::from(l.len) <= st.durable);
            if durable_count == 0 {
                return Ok(Vec::new());
            }
            let first = idx.first.0;
            let last = first + durable_count as u64 - 1;
            let stored = |s: Seq| idx.get(s).filter(|l| l.lsn != u64::MAX).map(|l| (s, l));
            let (lo, hi) = match &query {
                InboxQuery::Seqs(seqs) => {
                    // A conversation page: exactly these, if stored and durable.
                    let wanted = seqs.iter().filter(|s| (first..=last).contains(&s.0));
                    break 'plan wanted.filter_map(|s| stored(*s)).collect();
                }
                InboxQuery::After { after, limit } => {
                    let lo = first.max(after.0 + 1);
                    (
                        lo,
                        last.min(lo.saturating_add(u64::from(*limit)).saturating_sub(1)),
                    )
                }
                InboxQuery::Latest { limit } => (
                    first.max((last + 1).saturating_sub(u64::from(*limit))),
                    last,
                ),
                InboxQuery::Before { before, limit } => {
                    let hi = last.min(before.0.saturating_sub(1));
                    (first.max((hi + 1).saturating_sub(u64::from(*limit))), hi)
                }
            };
            if lo > hi || hi < first {
                return Ok(Vec::new());
            }
            (lo..=hi).filter_map(|s| stored(Seq(s))).collect()
        };
        let mut out = Vec::with_capacity(plan.len());
        let mut pending_reads = Vec::new();
        {
            let st = self.inner.st.borrow();
            for (i, (_, loc)) in plan.iter().enumerate() {
                match from_tail(&st.tail, *loc) {
                    Some(m) => out.push(Some(m)),
                    None => {
                        out.push(None);
                        pending_reads.push(i);
                    }
                }
            }
        }
        // Cache misses: read them concurrently from the files.
        let tasks: Vec<_> = pending_reads
            .iter()
            .map(|&i| {
                let inner = self.inner.clone();
                let loc = plan[i].1;
                glommio::spawn_local(async move { read_record(&inner, loc).await })
            })
            .collect();
        for (&i, task) in pending_reads.iter().zip(tasks) {
            out[i] = Some(task.await?);
        }
        self.inner.st.borrow_mut().stats.file_reads += pending_reads.len() as u64;
        Ok(out.into_iter().map(|m| m.expect("filled above")).collect())
    }

    /// Appends a checkpoint of the derived state and waits until it is durable.
    pub async fn checkpoint(&self) -> Result<(), LogError> {
        let end = self.append_checkpoint()?;
        self.wait_durable(end).await
    }

    /// Deletes the oldest sealed segments whose every message is
    /// acknowledged by all known devices of its inbox, or older than the
    /// maximum age. An acknowledged segment also waits until the QoS 1
    /// dedup window no longer reaches it (recovery rebuilds the window
    /// from the log). A checkpoint is made durable
    /// first, so the state those segments carried (inbox heads, cursors)
    /// survives them.
    pub async fn enforce_retention(&self, now_ms: u64) -> Result<RetentionReport, LogError> {
        let (deletable, min_cursor) = {
            let mut st = self.inner.st.borrow_mut();
            // The QoS 1 dedup window is rebuilt from the log on recovery:
            // keep every segment it reaches into.
            let next = st.next;
            let window = st.tracked.window_start(next, &self.inner.config.dedup);
            let max_age_ms = self.inner.config.retention_max_age.as_millis() as u64;
            let mut min_cursor: HashMap<UserId, Seq> = HashMap::new();
            for ((user, _), seq) in &st.tracked.state.cursors {
                let c = min_cursor.entry(*user).or_insert(*seq);
                *c = (*c).min(*seq);
            }
            let mut out = Vec::new();
            for (base, seg) in &st.segments {
                if *base == st.active
                    || st.sealed.iter().any(|(b, _, _)| b == base)
                    || seg.end > st.durable
                {
                    break;
                }
                let expired =
                    seg.max_ts_ms > 0 && now_ms.saturating_sub(seg.max_ts_ms) > max_age_ms;
                let acked = seg
                    .inbox_max
                    .iter()
                    .all(|(inbox, max)| min_cursor.get(inbox).is_some_and(|c| c >= max));
                // Past the maximum age a segment goes even if the window
                // reaches it (a retry that old is not recognised after a
                // restart); acknowledged ones wait for the window to pass.
                if !(expired || (acked && seg.end <= window.lsn)) {
                    break;
                }
                out.push(*base);
            }
            (out, min_cursor)
        };
        if deletable.is_empty() {
            return Ok(RetentionReport::default());
        }
        self.checkpoint().await?;
        let mut report = RetentionReport::default();
        for base in deletable {
            let path = self.inner.st.borrow().segments[&base].path.clone();
            // The sidecar first: a segment left without one is only
            // scanned on the next start. The segment leaves the log's
            // state only once its file is gone, so a failed removal leaves
            // every message of it readable (found by the fault-injecting
            // storage: reads failed with "no segment holds position").
            let sidecar = segment::sidecar_path(&path);
            if let Err(e) = self.inner.storage.remove(&sidecar) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(io_error("remove", &sidecar, e));
                }
            }
            storage::remove_durably(&*self.inner.storage, &path)
                .map_err(|e| io_error("remove", &path, e))?;
            let seg = self
                .inner
                .st
                .borrow_mut()
                .segments
                .remove(&base)
                .expect("listed above");
            let mut st = self.inner.st.borrow_mut();
            for inbox in seg.inbox_max.keys() {
                let Some((first, last)) = st.index.trim_before(*inbox, seg.base + seg.capacity)
                else {
                    continue;
                };
                // Rooms have no device cursors: their history is not owed
                // to anyone.
                let acked = min_cursor.get(inbox).copied().unwrap_or_default();
                if last > acked && !surepush_proto::is_room(inbox.0) {
                    let from = first.max(acked.next());
                    tracing::warn!(
                        dir = %self.inner.config.dir.display(),
                        user = inbox.0,
                        first = from.0,
                        last = last.0,
                        "retention deleted unacknowledged messages (older than the maximum age)"
                    );
                    report.unacked.push((*inbox, from, last));
                }
            }
            report.segments_deleted += 1;
            report.bytes_deleted += seg.capacity + SEGMENT_HEADER_LEN;
        }
        Ok(report)
    }

    /// Flushes, writes a final checkpoint (and the marker claiming it) and
    /// stops the committer.
    pub async fn close(self) -> Result<(), LogError> {
        self.checkpoint().await?;
        self.flush().await?;
        let marked = super::commit::append_marker(&mut self.inner.st.borrow_mut());
        if marked {
            self.flush().await?;
        }
        self.inner.st.borrow_mut().closed = true;
        let _ = self.inner.wake.try_send(());
        Ok(())
    }
}

/// Decodes the message at `loc` from the committed write buffers, if they
/// still hold it (the payload is a slice of the buffer: no copy).
fn from_tail(tail: &VecDeque<Chunk>, loc: Location) -> Option<MessageRecord> {
    let end = loc.lsn + u64::from(loc.len);
    // The newest chunk starting at or before the record, or the one before
    // it (chunks overlap by the rewritten partial block).
    let after = tail.partition_point(|c| c.start <= loc.lsn);
    let chunk = (after.saturating_sub(2)..after)
        .rev()
        .map(|i| &tail[i])
        .find(|c| end <= c.start + c.bytes.len() as u64)?;
    let from = (loc.lsn - chunk.start) as usize;
    match format::decode(&chunk.bytes.slice(from..from + loc.len as usize)) {
        Decoded::Record(Record::Message(m), _) => Some(m),
        // Not a message where the index says one is: let the file read
        // report it with its path.
        _ => None,
    }
}

async fn read_record(inner: &Inner, loc: Location) -> Result<MessageRecord, LogError> {
    let (file, path, offset) = {
        let st = inner.st.borrow();
        let (_, seg) =
            st.segments.range(..=loc.lsn).next_back().ok_or_else(|| {
                LogError::Corrupt(format!("no segment holds position {}", loc.lsn))
            })?;
        (
            seg.file.clone(),
            seg.path.clone(),
            SEGMENT_HEADER_LEN + loc.lsn - seg.base,
        )
    };
    let bytes = file
        .read_at(offset, loc.len as usize)
        .await
        .map_err(|e| io_error("read", &path, e))?;
    match format::decode(&bytes) {
        Decoded::Record(Record::Message(m), _) => Ok(m),
        other => Err(LogError::Corrupt(format!(
            "{} at {}: expected a message record, found {other:?}",
            path.display(),
            loc.lsn
        ))),
    }
}
