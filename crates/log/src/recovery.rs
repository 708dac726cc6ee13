//! Opening a log: scan every segment in order, sort what does not verify
//! into a torn tail or damage (`damage.rs`), then cut the tail, refuse, or
//! salvage, and rebuild the index, the segment metadata and the derived
//! delivery state (from the newest checkpoint on).
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
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::damage::{Claim, DamageReport, Ledger, SalvageReport, Skipped, Verdict};
use super::format::{self, Internal, Pointer, SegmentHeader, SEGMENT_HEADER_LEN};
use super::index::{Index, Location};
use super::io::{LogFile, LogFs, BLOCK, UNFINISHED_EXTENSION};
use super::record::Record;
use super::scan::{self, Found, Guess};
use super::segment::{self, Segment, SidecarJob};
use super::segment_log::{
    io_error, LogConfig, LogError, LogStats, Marks, RecoveryMode, RecoveryReport, State,
};
use super::state::RecoveredState;
use super::storage::{self, NewFile, Storage};
use super::window::{MessageKey, QosOneFold, Tracked, WindowStart};
use surepush_proto::{Seq, UserId};

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
            tracked: Tracked::default(),
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

/// Writes `bytes` to a new file next to the log's files, durably and
/// whole ([`storage::write_atomically`]; a repeated salvage or cut after a
/// crash writes it again).
fn keep_aside(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let contents = |out: &mut dyn std::io::Write| out.write_all(bytes);
    storage::write_atomically(storage, path, &NewFile::new(&contents))
        .map_err(|e| io_error("write", path, e))
}

/// Replaces `[pos, pos + data.len())` of `file` (block-aligned writes: the
/// blocks around the range are read and written back) and syncs.
async fn overwrite(
    file: &Rc<dyn LogFile>,
    path: &Path,
    pos: u64,
    data: &[u8],
) -> Result<(), LogError> {
    let start = pos / BLOCK * BLOCK;
    let end = (pos + data.len() as u64).div_ceil(BLOCK) * BLOCK;
    let old = file
        .read_at(start, (end - start) as usize)
        .await
        .map_err(|e| io_error("read", path, e))?;
    let mut blocks = vec![0u8; (end - start) as usize];
    blocks[..old.len()].copy_from_slice(&old);
    let from = (pos - start) as usize;
    blocks[from..from + data.len()].copy_from_slice(data);
    file.write_at(&blocks, start)
        .await
        .map_err(|e| io_error("write", path, e))?;
    file.sync()
        .await
        .map_err(|e| io_error("fdatasync", path, e))
}

/// Zeros a segment file from `pos` to its end, so a later, shorter write
/// cannot make stale records behind it readable again.
async fn zero_from(
    storage: &dyn Storage,
    file: &Rc<dyn LogFile>,
    path: &Path,
    pos: u64,
) -> Result<(), LogError> {
    let size = storage.len(path).map_err(|e| io_error("stat", path, e))?;
    let block_start = pos / BLOCK * BLOCK;
    let head = file
        .read_at(block_start, (pos - block_start) as usize)
        .await
        .map_err(|e| io_error("read", path, e))?;
    let mut block = vec![0u8; BLOCK as usize];
    block[..head.len()].copy_from_slice(&head);
    file.write_at(&block, block_start)
        .await
        .map_err(|e| io_error("write", path, e))?;
    let rest = block_start + BLOCK;
    if size > rest {
        file.zero_range(rest, size - rest)
            .await
            .map_err(|e| io_error("zero", path, e))?;
    }
    file.sync()
        .await
        .map_err(|e| io_error("fdatasync", path, e))
}

/// Cuts the torn tail: keeps its valid records (never acknowledged) in a
/// file next to the segment, then zeros it, and the torn bytes in the
/// (record-less) newer segments after it.
async fn cut_tail(pass: &mut Pass, verdict: &Verdict) -> Result<(), LogError> {
    let tail = &verdict.tail[0];
    let seg = &pass.segments[&tail.base];
    let (file, path) = (seg.file.clone(), seg.path.clone());
    let pos = tail.offset();
    tracing::warn!(file = %path.display(), offset = pos, reason = tail.why, "cutting a torn log tail");
    let kept = verdict
        .last_end
        .filter(|_| verdict.tail_records > 0)
        .filter(|end| *end <= tail.base + seg.capacity);
    note_cut_sequences(pass, tail, kept).await?;
    if let Some(end) = kept {
        let len = (end - tail.lsn) as usize;
        let bytes = file
            .read_at(pos, len)
            .await
            .map_err(|e| io_error("read", &path, e))?;
        let aside = path.with_extension(format!("{}.cut-{pos}", segment::EXTENSION));
        keep_aside(&*pass.storage, &aside, &bytes)?;
        tracing::warn!(file = %aside.display(), records = verdict.tail_records, "the cut tail held valid records (no durable evidence they were acknowledged); kept for inspection");
        pass.report.cut_file = Some(aside);
    }
    zero_from(&*pass.storage, &file, &path, pos).await?;
    for torn in verdict.tail.iter().filter(|d| d.base != tail.base) {
        let seg = &pass.segments[&torn.base];
        zero_from(&*pass.storage, &seg.file, &seg.path, torn.offset()).await?;
    }
    pass.report.truncated = Some((tail.lsn, tail.why));
    Ok(())
}

/// Raises inbox heads over the messages in the cut bytes that may have
/// been acknowledged, so no sequence in them is numbered again: valid
/// records after the bad one, and the bad one itself when all its bytes
/// were written (damage rather than an unfinished write).
///
/// A cut tail was never acknowledged when it is what it looks like: the
/// end of a commit whose fdatasync a crash interrupted. But the evidence
/// that a commit was durable (its marker) reaches the disk only with the
/// next commit, or `marker_delay_ms` later; damage to the last acknowledged
/// commit in that window looks the same as a torn tail (found by the
/// TypeScript SDK's tests: a flipped bit in the newest message, kill -9 at
/// once, and its sequence was numbered again). Its messages are cut either
/// way, but their sequences are treated as handed out: devices learn they
/// are gone (SYNCPAGE `GAP`), and a sender's SENDACK never names a
/// sequence twice.
///
/// A record cut short by a crash (kill -9 mid-commit, power loss) was
/// never acknowledged, and it always has a sector that never reached the
/// disk: segments are preallocated with zeros and never reused. Such a
/// record does not raise its inbox's head, so an ordinary crash leaves no
/// gap. Nothing valid follows it after a kill -9 (the blocking writer
/// completes writes in order); after a power loss whatever follows was
/// never acknowledged either, and raising over it costs only a reported
/// gap.
async fn note_cut_sequences(
    pass: &mut Pass,
    tail: &super::damage::Damage,
    kept_end: Option<u64>,
) -> Result<(), LogError> {
    let seg = &pass.segments[&tail.base];
    let end = kept_end
        .unwrap_or(tail.resume)
        .max(tail.resume)
        .min(tail.base + seg.capacity);
    if end <= tail.lsn {
        return Ok(());
    }
    let bytes = seg
        .file
        .read_at(tail.offset(), (end - tail.lsn) as usize)
        .await
        .map_err(|e| io_error("read", &seg.path, e))?;
    // As for salvage: a sequence is believed only up to the inbox's known
    // head plus the number of messages the cut bytes could hold.
    let room = bytes.len() as u64 / MIN_MESSAGE_LEN + 1;
    let mut raised = Vec::new();
    for g in scan::guess_records(&bytes, tail.lsn) {
        if let Guess::Message {
            lsn,
            inbox,
            seq,
            payload_len,
            ..
        } = g
        {
            let start = (lsn - tail.lsn) as usize;
            let len = MIN_MESSAGE_LEN as usize + payload_len;
            if lsn == tail.lsn && has_unwritten_sector(&bytes, start, len, tail.offset()) {
                continue; // cut short by a crash: never acknowledged
            }
            let state = &mut pass.rebuild.tracked.state;
            let known = state.heads.get(&UserId(inbox)).map_or(0, |s| s.0);
            if seq > known && seq <= known.saturating_add(room) {
                state.note_head(UserId(inbox), Seq(seq));
                raised.push((inbox, seq));
            }
        }
    }
    if !raised.is_empty() {
        tracing::warn!(
            file = %seg.path.display(),
            ?raised,
            "the cut tail named these (inbox, seq): they will not be numbered again"
        );
    }
    Ok(())
}

/// Whether the record at `start..start + len` of `bytes` (whose first byte
/// is at file offset `file_offset`) was cut short by a crash: a sector it
/// reaches into after its first one was never written (all zeros up to the
/// sector's end, or past the end of `bytes`). A record inside one sector
/// cannot be cut short that way (a sector is written whole), so bad bytes
/// there are damage.
fn has_unwritten_sector(bytes: &[u8], start: usize, len: usize, file_offset: u64) -> bool {
    const SECTOR: u64 = 512;
    let at = file_offset + start as u64;
    let end = at + len as u64;
    let mut sector = (at / SECTOR + 1) * SECTOR;
    while sector < end {
        let from = (sector - file_offset) as usize;
        let to = ((sector + SECTOR - file_offset) as usize).min(bytes.len());
        if from >= bytes.len() || bytes[from..to].iter().all(|b| *b == 0) {
            return true;
        }
        sector += SECTOR;
    }
    false
}

/// Moves each skipped stretch aside to `<segment>.damaged-<offset>`,
/// writes filler over it, and says what was lost.
async fn apply_salvage(pass: &mut Pass) -> Result<SalvageReport, LogError> {
    let mut report = SalvageReport::default();
    let mut guessed = Vec::new();
    for d in std::mem::take(&mut pass.skipped) {
        let seg = &pass.segments[&d.base];
        let (file, path) = (seg.file.clone(), seg.path.clone());
        let (pos, len) = (d.offset(), d.bytes());
        if (len as usize) < format::MIN_FILLER_LEN {
            return Err(LogError::Corrupt(format!(
                "{} at offset {pos}: a damaged stretch of {len} bytes is too short to fill",
                path.display()
            )));
        }
        let bytes = file
            .read_at(pos, len as usize)
            .await
            .map_err(|e| io_error("read", &path, e))?;
        let moved_to = path.with_extension(format!("{}.damaged-{pos}", segment::EXTENSION));
        keep_aside(&*pass.storage, &moved_to, &bytes)?;
        let guesses = scan::guess_records(&bytes, d.lsn);
        // A sealed segment's sidecar names exactly what the stretch held.
        if let Some(sidecar) = segment::read_sidecar(&*pass.storage, &path, d.base, false) {
            for e in &sidecar.entries {
                let at = d.base + u64::from(e.offset.get());
                if (d.lsn..d.resume).contains(&at) {
                    report.lost.push((UserId(e.inbox.get()), Seq(e.seq.get())));
                }
            }
        }
        let mut filler = BytesMut::new();
        format::encode_filler(len as usize, &mut filler);
        overwrite(&file, &path, pos, &filler).await?;
        pass.salvaged.push(path.clone());
        tracing::error!(
            file = %path.display(),
            offset = pos,
            len,
            reason = d.why,
            moved_to = %moved_to.display(),
            "salvage: skipped a damaged stretch of the log"
        );
        for g in &guesses {
            if let Guess::Unreadable { len, .. } = g {
                report.unreadable_bytes += *len as u64;
            }
        }
        guessed.extend(guesses.iter().cloned());
        report.skipped.push(Skipped {
            segment: path,
            offset: pos,
            len,
            why: d.why,
            moved_to,
            guesses,
        });
    }
    // Sequences missing between surviving ones.
    report.lost.extend(pass.rebuild.index.holes());
    // What the damaged bytes say, where it fits the inbox: a message can
    // only have been numbered up to the inbox's known head plus the number
    // of messages the damaged bytes could hold.
    let room: u64 = report
        .skipped
        .iter()
        .map(|s| s.len / MIN_MESSAGE_LEN + 1)
        .sum();
    let heads = &pass.rebuild.tracked.state.heads;
    for g in guessed {
        if let Guess::Message { inbox, seq, .. } = g {
            let known = heads.get(&UserId(inbox)).map_or(0, |s| s.0);
            if seq >= 1 && seq <= known.saturating_add(room) {
                report.lost.push((UserId(inbox), Seq(seq)));
            }
        }
    }
    report.lost.sort();
    report.lost.dedup();
    Ok(report)
}

/// Framed size of the smallest message record (no payload).
const MIN_MESSAGE_LEN: u64 = format::RECORD_HEADER_LEN as u64 + 1 + 57;

/// Raises every inbox head to the sequences salvage found lost, so they
/// are never numbered again.
fn note_lost(pass: &mut Pass, salvage: &SalvageReport) {
    for (inbox, seq) in &salvage.lost {
        pass.rebuild.tracked.state.note_head(*inbox, *seq);
    }
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
