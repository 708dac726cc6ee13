//! Opening a log: scan every segment in order, sort what does not verify
//! into a torn tail or damage (`damage.rs`), then cut the tail, refuse, or
//! salvage, and rebuild the index, the segment metadata and the derived
//! delivery state (from the newest checkpoint on). Cutting the tail and
//! salvage, the only changes to the files' contents, are in `repair.rs`.
//!
//! Ground rules:
//! - the first scan ([`scan_pass`]) writes nothing: every change to the
//!   files (cutting a tail, salvage, sidecars, removing half-built
//!   segments) happens only once the verdict allows opening, so a refused
//!   log is byte for byte what it was;
//! - scanning (`scan.rs`) is kept apart from what is rebuilt from the
//!   records ([`Rebuild`]), so the damage policy stays in one place;
//! - salvage is a second scan with a plan (which stretches to skip, where
//!   to cut), so what it keeps is what a clean scan of the salvaged files
//!   finds on the next start;
//! - every file it reads, lists, writes or removes goes through the
//!   storage seam (`LogFs` for segments, its `Storage` for the rest), and
//!   every side file it keeps is written whole (`write_atomically`).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::damage::{Claim, DamageReport, Ledger, SalvageReport};
use super::format::{self, Internal, Pointer, SegmentHeader, SEGMENT_HEADER_LEN};
use super::index::{Index, Location};
use super::io::{LogFs, BLOCK, UNFINISHED_EXTENSION};
use super::record::Record;
use super::scan::{self, Found};
use super::segment::{self, Segment, SidecarJob};
use super::segment_log::{
    io_error, LogConfig, LogError, LogStats, Marks, RecoveryMode, RecoveryReport, State,
};
use super::state::RecoveredState;
use super::storage::Storage;
use super::window::{MessageKey, QosOneFold, Tracked, WindowStart};
use surepush_proto::{Seq, UserId};

mod repair;

use repair::{apply_salvage, cut_tail, note_lost};

/// Segments a crash left half built (under their temporary name: they
/// never held a record).
fn unfinished_segments(storage: &dyn Storage, dir: &Path) -> Result<Vec<PathBuf>, LogError> {
    let entries = storage.list(dir).map_err(|e| io_error("list", dir, e))?;
    let suffix = format!(".{UNFINISHED_EXTENSION}");
    Ok(entries
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix))
        })
        .collect())
}

/// Everything rebuilt from the records.
struct Rebuild {
    index: Index,
    /// Heads, cursors, groups and the QoS 2 dedup entries: the newest
    /// checkpoint's, with every later record folded in.
    tracked: Tracked,
    /// The QoS 1 dedup entries, folded from where the window began.
    fold: QosOneFold,
    checkpoint: Option<u64>,
    /// Position of the newest durable checkpoint (from the pointer file):
    /// records before it are indexed (and their QoS 1 sends folded into
    /// the window) but not folded into `tracked`, which the checkpoint
    /// replaces.
    fold_from: Option<u64>,
}

impl Rebuild {
    fn apply(
        &mut self,
        seg: &mut Segment,
        lsn: u64,
        len: usize,
        record: Record,
        config: &LogConfig,
    ) -> Result<(), LogError> {
        let before_pointer = self.fold_from.is_some_and(|p| lsn < p);
        match &record {
            Record::Checkpoint(_) if before_pointer => return Ok(()),
            Record::Message(m) => {
                seg.note_message(m, lsn, len);
                self.index.add(
                    m.inbox,
                    m.seq,
                    Location {
                        lsn,
                        len: len as u32,
                    },
                );
                self.fold.message(lsn, &MessageKey::of(m), &config.dedup);
            }
            Record::Checkpoint(body) => {
                // A checkpoint is the whole state as of its position.
                let cp = format::decode_checkpoint(body, &config.dedup).ok_or_else(|| {
                    LogError::Corrupt(format!("checkpoint at {lsn} does not parse"))
                })?;
                let state = if cp.whole_window {
                    self.fold.take_whole_window(cp.state, lsn, &config.dedup)
                } else {
                    cp.state
                };
                // Heads never go back, whatever a checkpoint says.
                let mut state = state;
                state.conversations.set_limits(config.conversations);
                for (inbox, head) in &self.tracked.state.heads {
                    state.note_head(*inbox, *head);
                }
                self.tracked = Tracked {
                    state,
                    ..Tracked::default()
                };
                self.checkpoint = Some(lsn);
                return Ok(());
            }
            _ => {}
        }
        if !before_pointer {
            self.tracked.apply(&record, lsn, &config.dedup);
        }
        Ok(())
    }
}

/// What a second scan does with the stretches the first one found.
#[derive(Debug, Default)]
struct Plan {
    /// Damage to skip (salvage).
    skip: Vec<super::damage::Damage>,
    /// Where the torn tail starts: nothing from here on is kept.
    cut: Option<u64>,
}

/// One scan over the log's segments.
struct Pass {
    rebuild: Rebuild,
    segments: BTreeMap<u64, Segment>,
    report: RecoveryReport,
    ledger: Ledger,
    /// Sealed segments scanned clean, whose sidecars are written on open.
    sidecar_jobs: Vec<SidecarJob>,
    /// Past an unplanned damaged stretch: records are only counted.
    frozen: bool,
    /// Past the planned cut: nothing more is kept.
    cut: bool,
    /// Damage this (planned) scan skipped.
    skipped: Vec<super::damage::Damage>,
    /// Segments salvage changed (their sidecars are rewritten).
    salvaged: Vec<PathBuf>,
    started: Instant,
    /// The log's whole-file operations (side files, sidecars, removals).
    storage: Arc<dyn Storage>,
}

/// The log's segment files, oldest first (a first one is created in an
/// empty directory).
async fn segment_files(
    config: &LogConfig,
    fs: &dyn LogFs,
) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let dir = &config.dir;
    let storage = fs.storage();
    storage
        .create_dir_all(dir)
        .map_err(|e| io_error("create dir", dir, e))?;
    let mut bases = segment::list(&*storage, dir).map_err(|e| io_error("list", dir, e))?;
    if bases.is_empty() {
        let path = segment::file_name(dir, 0);
        segment::create(fs, &path, 0, config.segment_bytes).await?;
        bases.push((0, path));
    }
    Ok(bases)
}

/// Reads the checkpoint pointer; a damaged one is only an index (recovery
/// then folds every segment, as without one).
fn read_pointer(storage: &dyn Storage, dir: &Path) -> Option<Pointer> {
    let path = dir.join(format::CHECKPOINT_POINTER);
    let bytes = storage.read(&path).ok()?;
    let pointer = std::str::from_utf8(&bytes)
        .ok()
        .and_then(format::parse_pointer);
    if pointer.is_none() {
        tracing::warn!(file = %path.display(), "checkpoint pointer damaged (checksum or syntax); rebuilding from every segment");
    }
    pointer
}

/// Recovers the log in `config.dir`: the log's state, the delivery state
/// for the core, and what was found.
pub(super) async fn recover(
    config: &LogConfig,
    fs: &dyn LogFs,
) -> Result<(State, RecoveredState, RecoveryReport), LogError> {
    let mut carried = None;
    if let Some(p) = read_pointer(&*fs.storage(), &config.dir) {
        let recovered = recover_from(config, fs, Some(p), None).await?;
        if recovered.2.checkpoint == Some(p.lsn) {
            return Ok(recovered);
        }
        tracing::warn!(dir = %config.dir.display(), pointer = p.lsn, "no checkpoint where the pointer says; folding the whole log");
        // A salvage done on the way is not found again: keep its report.
        carried = recovered.2.salvage;
    }
    recover_from(config, fs, None, carried).await
}

async fn recover_from(
    config: &LogConfig,
    fs: &dyn LogFs,
    pointer: Option<Pointer>,
    carried: Option<SalvageReport>,
) -> Result<(State, RecoveredState, RecoveryReport), LogError> {
    let bases = segment_files(config, fs).await?;
    let last = bases.len() - 1;
    let mut pass = scan_pass(config, fs, pointer, &bases, &Plan::default()).await?;
    let verdict = std::mem::take(&mut pass.ledger).verdict(last);
    if config.recovery == RecoveryMode::AbsoluteConsistency {
        if let Some(d) = verdict.damaged.first().or(verdict.tail.first()) {
            return Err(LogError::Corrupt(format!(
                "{} at offset {}: {}",
                d.segment.display(),
                d.offset(),
                d.why
            )));
        }
    }
    let mut salvage = carried;
    if !verdict.damaged.is_empty() {
        if config.recovery != RecoveryMode::Salvage {
            return Err(LogError::Damaged(Box::new(DamageReport {
                dir: config.dir.clone(),
                damaged: verdict.damaged,
                records_after: verdict.records_after,
                last_end: verdict.last_end,
            })));
        }
        let plan = Plan {
            cut: verdict.tail.first().map(|t| t.lsn),
            skip: verdict.damaged.clone(),
        };
        pass = scan_pass(config, fs, pointer, &bases, &plan).await?;
        let again = std::mem::take(&mut pass.ledger).verdict(last);
        if !again.damaged.is_empty() || pass.skipped.len() != plan.skip.len() {
            return Err(LogError::Corrupt(format!(
                "{}: the damage changed between two scans; not salvaging",
                config.dir.display()
            )));
        }
        salvage = Some(apply_salvage(&mut pass).await?);
    }
    if !verdict.tail.is_empty() {
        cut_tail(&mut pass, &verdict).await?;
    }
    if let Some(salvage) = &salvage {
        note_lost(&mut pass, salvage);
    }
    pass.report.salvage = salvage;
    finish(config, pass).await
}

/// Scans every segment, folding records into the rebuild until the first
/// damaged stretch the plan does not name; after it, only what the
/// verdict needs is noted.
async fn scan_pass(
    config: &LogConfig,
    fs: &dyn LogFs,
    pointer: Option<Pointer>,
    bases: &[(u64, PathBuf)],
    plan: &Plan,
) -> Result<Pass, LogError> {
    // Without a pointer every record is folded; a version 1 pointer's
    // checkpoint holds the whole window (the fold starts there).
    let window = match pointer {
        None => WindowStart {
            lsn: 0,
            newest_ts_ms: 0,
        },
        Some(p) => p.window.unwrap_or(WindowStart {
            lsn: p.lsn,
            newest_ts_ms: 0,
        }),
    };
    let mut pass = Pass {
        rebuild: Rebuild {
            index: Index::default(),
            tracked: Tracked::with_conversations(config.conversations),
            fold: QosOneFold::new(window),
            checkpoint: None,
            fold_from: pointer.map(|p| p.lsn),
        },
        segments: BTreeMap::new(),
        report: RecoveryReport::default(),
        ledger: Ledger::new(pointer.map(|p| p.lsn)),
        sidecar_jobs: Vec::new(),
        frozen: false,
        cut: false,
        skipped: Vec::new(),
        salvaged: Vec::new(),
        started: Instant::now(),
        storage: fs.storage(),
    };
    let last = bases.len() - 1;
    let storage = pass.storage.clone();
    for (i, (base, path)) in bases.iter().enumerate() {
        let file = fs.open(path).await.map_err(|e| io_error("open", path, e))?;
        let size = storage.len(path).map_err(|e| io_error("stat", path, e))?;
        let head = file
            .read_at(0, SEGMENT_HEADER_LEN as usize)
            .await
            .map_err(|e| io_error("read", path, e))?;
        let header = SegmentHeader::parse(&head)
            .filter(|h| h.base_lsn.get() == *base)
            .ok_or_else(|| LogError::Corrupt(format!("{}: bad segment header", path.display())))?;
        let base = header.base_lsn.get();
        let mut seg = Segment {
            base,
            capacity: size.max(SEGMENT_HEADER_LEN) - SEGMENT_HEADER_LEN,
            file: file.clone(),
            path: path.clone(),
            inbox_max: Default::default(),
            max_ts_ms: 0,
            end: base,
            entries: Vec::new(),
            keys: Vec::new(),
        };
        if pass.cut {
            // Behind the cut: emptied with it.
            pass.segments.insert(base, seg);
            continue;
        }
        // Salvage reads every segment: damage under a sidecar is found too.
        let sidecars = config.recovery != RecoveryMode::Salvage;
        if sidecars && i != last && load_from_sidecar(&mut pass, &mut seg, i, config) {
            pass.segments.insert(base, seg);
            continue;
        }
        let frozen_before = pass.frozen;
        scan_segment(&mut pass, &mut seg, i, size, config, plan).await?;
        pass.report.segments += 1;
        // Sealed and scanned: leave a sidecar for the next restart.
        if i != last && !frozen_before {
            pass.sidecar_jobs.push(seg.seal());
        }
        pass.segments.insert(base, seg);
        if pass.ledger.overflowed() {
            return Err(LogError::Corrupt(format!(
                "{}: more than {} damaged stretches; not a few bad records",
                config.dir.display(),
                super::damage::MAX_DAMAGES
            )));
        }
    }
    Ok(pass)
}

/// A sealed segment wholly before the newest checkpoint contributes only
/// index entries: taken from its sidecar if that verifies (no scan). After
/// damage, a valid sidecar is evidence that everything before the
/// segment's end was durable. Returns whether the sidecar was used.
fn load_from_sidecar(pass: &mut Pass, seg: &mut Segment, i: usize, config: &LogConfig) -> bool {
    let base = seg.base;
    let storage = pass.storage.clone();
    let storage = &*storage;
    if pass.frozen {
        let Some(sidecar) = segment::read_sidecar(storage, &seg.path, base, false) else {
            return false;
        };
        let end = base + sidecar.end_offset;
        pass.ledger.claim(base, end, Claim::SealedSegment { base });
        for e in &sidecar.entries {
            let lsn = base + u64::from(e.offset.get());
            pass.ledger.record(i, lsn, lsn + u64::from(e.len.get()));
        }
        return true;
    }
    let before_checkpoint = pass
        .rebuild
        .fold_from
        .is_some_and(|p| base + seg.capacity <= p);
    if !before_checkpoint {
        return false;
    }
    // Its messages' keys are needed too where the dedup window reaches.
    let with_keys = base + seg.capacity > pass.rebuild.fold.from;
    let Some(sidecar) = segment::read_sidecar(storage, &seg.path, base, with_keys) else {
        return false;
    };
    let mut keys = Vec::with_capacity(sidecar.keys.len());
    for (n, e) in sidecar.entries.iter().enumerate() {
        let (inbox, seq) = (UserId(e.inbox.get()), Seq(e.seq.get()));
        if let Some(k) = sidecar.keys.get(n) {
            match MessageKey::from_sidecar(inbox, seq, k) {
                Some(key) => keys.push((base + u64::from(e.offset.get()), key)),
                // A QoS it cannot hold: the sidecar is not trusted.
                None => return false,
            }
        }
    }
    for (lsn, key) in keys {
        pass.rebuild.fold.message(lsn, &key, &config.dedup);
    }
    for e in &sidecar.entries {
        let (inbox, seq) = (UserId(e.inbox.get()), Seq(e.seq.get()));
        seg.note(inbox, seq);
        pass.rebuild.index.add(
            inbox,
            seq,
            Location {
                lsn: base + u64::from(e.offset.get()),
                len: e.len.get(),
            },
        );
    }
    seg.max_ts_ms = sidecar.max_ts_ms;
    seg.end = base + sidecar.end_offset;
    pass.report.records += sidecar.entries.len() as u64;
    pass.report.segments += 1;
    pass.report.sidecars += 1;
    true
}

/// Scans one segment's records into the pass.
async fn scan_segment(
    pass: &mut Pass,
    seg: &mut Segment,
    i: usize,
    size: u64,
    config: &LogConfig,
    plan: &Plan,
) -> Result<(), LogError> {
    let (file, path, base) = (seg.file.clone(), seg.path.clone(), seg.base);
    let lsn_of = |at: u64| base + at - SEGMENT_HEADER_LEN;
    let read = |pos: u64, len: usize| {
        let (file, path) = (file.clone(), path.clone());
        async move {
            file.read_at(pos, len)
                .await
                .map_err(|e| io_error("read", &path, e))
        }
    };
    let next_data = |pos: u64| file.next_data(pos).map_err(|e| io_error("seek", &path, e));
    let mut end = base;
    let reads = scan::Reads { read, next_data };
    scan::scan_file(SEGMENT_HEADER_LEN, size, reads, |found| {
        match found {
            Found::Record { at, len, record } => {
                let lsn = lsn_of(at);
                if pass.frozen {
                    pass.ledger.record(i, lsn, lsn + len as u64);
                    return Ok(true);
                }
                pass.rebuild.apply(seg, lsn, len, record, config)?;
                pass.report.records += 1;
                pass.report.bytes += len as u64;
                end = lsn + len as u64;
            }
            Found::Internal { at, len, what } => {
                let lsn = lsn_of(at);
                if let Internal::Durable { up_to } = what {
                    pass.ledger.claim(lsn, up_to, Claim::Marker { at: lsn });
                }
                if !pass.frozen {
                    end = lsn + len as u64;
                }
            }
            Found::Damage { at, resume, why } => {
                let (lsn, resume) = (lsn_of(at), lsn_of(resume));
                if plan.cut == Some(lsn) {
                    pass.cut = true;
                    return Ok(false);
                }
                if let Some(d) = plan
                    .skip
                    .iter()
                    .find(|d| d.lsn == lsn && d.resume == resume)
                {
                    pass.skipped.push(d.clone());
                    return Ok(true);
                }
                pass.ledger
                    .damage(path.clone(), i, base, (lsn, resume), why);
                pass.frozen = true;
            }
            Found::End { .. } => return Ok(false),
        }
        Ok(true)
    })
    .await?;
    seg.end = end;
    Ok(())
}

/// Applies the changes a pass left for the open (half-built segments
/// removed, sidecars written) and builds the log's state.
async fn finish(
    config: &LogConfig,
    pass: Pass,
) -> Result<(State, RecoveredState, RecoveryReport), LogError> {
    let storage = &*pass.storage;
    for path in unfinished_segments(storage, &config.dir)? {
        tracing::warn!(file = %path.display(), "removing a segment a crash left half built");
        storage
            .remove(&path)
            .map_err(|e| io_error("remove", &path, e))?;
    }
    for job in &pass.sidecar_jobs {
        let salvaged = pass.salvaged.contains(&job.path);
        if !salvaged && segment::read_sidecar(storage, &job.path, job.base(), true).is_some() {
            continue;
        }
        if let Err(e) = segment::write_sidecar(storage, job) {
            tracing::warn!(segment = %job.path.display(), error = %e, "sidecar not written; the next recovery scans this segment again");
        }
    }
    let Pass {
        rebuild,
        segments,
        mut report,
        started,
        ..
    } = pass;
    let (&active, seg) = segments.iter().next_back().expect("at least one segment");
    let next = seg.end;
    let pending_start = active + (next - active) / BLOCK * BLOCK;
    let tail_block: Bytes = seg
        .file
        .read_at(
            SEGMENT_HEADER_LEN + pending_start - active,
            (next - pending_start) as usize,
        )
        .await
        .map_err(|e| io_error("read", &seg.path, e))?;
    debug_assert_eq!(tail_block.len() as u64, next - pending_start);
    report.checkpoint = rebuild.checkpoint;
    let (derived, tracked) = rebuild.fold.finish(rebuild.tracked.state, &config.dedup);
    report.elapsed = started.elapsed();
    let state = State {
        segments,
        active,
        create_pending: Vec::new(),
        sealed: Vec::new(),
        pending: BytesMut::from(&tail_block[..]),
        pending_start,
        chunk_start: pending_start,
        // The partial block is rewritten by the first commit.
        behind_from: pending_start + BLOCK,
        behind: Vec::new(),
        next,
        durable: next,
        poisoned: None,
        closed: false,
        abandoned: false,
        committer_done: false,
        waiters: Vec::new(),
        ready: Vec::new(),
        index: rebuild.index,
        tracked,
        tail: VecDeque::new(),
        tail_bytes: 0,
        pending_messages: false,
        spare: Vec::new(),
        buffer_size: 0,
        sidecar_tasks: Vec::new(),
        since_checkpoint: 0,
        pointer_due: None,
        stats: LogStats::default(),
        first_pending_at: None,
        // What recovery found is durable; the first commit's marker says so.
        marks: Marks {
            appended: next,
            durable: next,
            claimed: 0,
        },
    };
    Ok((state, derived, report))
}
