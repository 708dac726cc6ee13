//! Opening a log: scan every segment in order, verify each record, cut a
//! torn tail, and rebuild the index, the segment metadata and the derived
//! delivery state (from the newest checkpoint on).
//!
//! Scanning (finding valid records) is kept apart from what is rebuilt
//! from them (`Rebuild`), so the policy for damage stays in one place.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::format::{self, Decoded, Pointer, SegmentHeader, SEGMENT_HEADER_LEN};
use super::index::{Index, Location};
use super::io::{LogFs, BLOCK, UNFINISHED_EXTENSION};
use super::record::Record;
use super::segment::{self, Segment};
use super::segment_log::{
    io_error, LogConfig, LogError, LogStats, RecoveryMode, RecoveryReport, State,
};
use super::state::RecoveredState;
use super::window::{MessageKey, QosOneFold, Tracked, WindowStart};
use crate::proto::{Seq, UserId};

/// Whether the segments after a damaged one hold no record yet: then the
/// damage is the torn tail of the log, not a hole in it. A commit that
/// rolls creates the new segment's file before it writes the bytes that
/// finish the one before, and writes them in log order (one blocking
/// thread, pieces queued in order), so a crash can leave the older segment
/// torn and the newer ones created but empty; never a newer record after
/// a torn older one. Empty means the first record header is still zeros
/// (segments are preallocated); anything else keeps the damage an error.
fn hold_no_records(paths: &[std::path::PathBuf]) -> bool {
    use std::os::unix::fs::FileExt;
    paths.iter().all(|path| {
        let mut first = [0u8; format::RECORD_HEADER_LEN];
        std::fs::File::open(path)
            .and_then(|f| f.read_exact_at(&mut first, SEGMENT_HEADER_LEN))
            .is_ok_and(|()| first.iter().all(|b| *b == 0))
    })
}

/// Deletes segments a crash left half built (under their temporary name:
/// they never held a record).
fn remove_unfinished_segments(dir: &std::path::Path) -> Result<(), LogError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("list", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| io_error("list", dir, e))?.path();
        let unfinished = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(&format!(".{UNFINISHED_EXTENSION}")));
        if unfinished {
            tracing::warn!(file = %path.display(), "removing a segment a crash left half built");
            std::fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?;
        }
    }
    Ok(())
}

/// Bytes read per scan step.
const SCAN_CHUNK: usize = 4 << 20;

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

/// Recovers the log in `config.dir`: the log's state, the delivery state
/// for the core, and what was found.
pub(super) async fn recover(
    config: &LogConfig,
    fs: &dyn LogFs,
) -> Result<(State, RecoveredState, RecoveryReport), LogError> {
    let pointer = std::fs::read_to_string(config.dir.join(format::CHECKPOINT_POINTER))
        .ok()
        .and_then(|t| format::parse_pointer(&t));
    if let Some(p) = pointer {
        let recovered = recover_from(config, fs, Some(p)).await?;
        if recovered.2.checkpoint == Some(p.lsn) {
            return Ok(recovered);
        }
        tracing::warn!(dir = %config.dir.display(), pointer = p.lsn, "no checkpoint where the pointer says; folding the whole log");
    }
    recover_from(config, fs, None).await
}

async fn recover_from(
    config: &LogConfig,
    fs: &dyn LogFs,
    pointer: Option<Pointer>,
) -> Result<(State, RecoveredState, RecoveryReport), LogError> {
    let started = Instant::now();
    let dir = &config.dir;
    std::fs::create_dir_all(dir).map_err(|e| io_error("create dir", dir, e))?;
    remove_unfinished_segments(dir)?;
    let mut bases: Vec<(u64, std::path::PathBuf)> = fs
        .list(dir)
        .map_err(|e| io_error("list", dir, e))?
        .into_iter()
        .filter_map(|p| segment::parse_name(&p).map(|b| (b, p)))
        .collect();
    bases.sort();
    if bases.is_empty() {
        let path = segment::file_name(dir, 0);
        segment::create(fs, &path, 0, config.segment_bytes).await?;
        bases.push((0, path));
    }
    let mut report = RecoveryReport::default();
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
    let mut rebuild = Rebuild {
        index: Index::default(),
        tracked: Tracked::default(),
        fold: QosOneFold::new(window),
        checkpoint: None,
        fold_from: pointer.map(|p| p.lsn),
    };
    let mut segments = BTreeMap::new();
    let last = bases.len() - 1;
    let paths: Vec<std::path::PathBuf> = bases.iter().map(|(_, p)| p.clone()).collect();
    let mut tail_block = Bytes::new();
    for (i, (base, path)) in bases.into_iter().enumerate() {
        let file = fs
            .open(&path)
            .await
            .map_err(|e| io_error("open", &path, e))?;
        let size = std::fs::metadata(&path)
            .map_err(|e| io_error("stat", &path, e))?
            .len();
        let head = file
            .read_at(0, SEGMENT_HEADER_LEN as usize)
            .await
            .map_err(|e| io_error("read", &path, e))?;
        let header = SegmentHeader::parse(&head)
            .filter(|h| h.base_lsn.get() == base)
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
        // A sealed segment wholly before the newest checkpoint contributes
        // only index entries: take them from its sidecar if it verifies.
        let before_checkpoint =
            i != last && rebuild.fold_from.is_some_and(|p| base + seg.capacity <= p);
        // Its messages' keys are needed too where the dedup window reaches.
        let with_keys = base + seg.capacity > rebuild.fold.from;
        let sidecar = before_checkpoint
            .then(|| segment::read_sidecar(&path, base, with_keys))
            .flatten();
        if let Some(sidecar) = sidecar {
            for (i, e) in sidecar.entries.iter().enumerate() {
                let (inbox, seq) = (UserId(e.inbox.get()), Seq(e.seq.get()));
                if let Some(k) = sidecar.keys.get(i) {
                    let key = MessageKey::from_sidecar(inbox, seq, k).ok_or_else(|| {
                        LogError::Corrupt(format!("{}: bad QoS in sidecar", path.display()))
                    })?;
                    rebuild
                        .fold
                        .message(base + u64::from(e.offset.get()), &key, &config.dedup);
                }
                seg.note(inbox, seq);
                let lsn = base + u64::from(e.offset.get());
                rebuild.index.add(
                    inbox,
                    seq,
                    Location {
                        lsn,
                        len: e.len.get(),
                    },
                );
            }
            seg.max_ts_ms = sidecar.max_ts_ms;
            seg.end = base + sidecar.end_offset;
            report.records += sidecar.entries.len() as u64;
            report.segments += 1;
            report.sidecars += 1;
            segments.insert(base, seg);
            continue;
        }
        // Scan the records.
        let mut pos = SEGMENT_HEADER_LEN;
        // Unparsed bytes from `pos` on; records are sliced out of it, so
        // payloads are never copied again.
        let mut buf = Bytes::new();
        let mut eof = false;
        let damage = loop {
            match format::decode(&buf) {
                Decoded::Record(record, len) => {
                    let lsn = base + pos - SEGMENT_HEADER_LEN;
                    rebuild.apply(&mut seg, lsn, len, record, config)?;
                    report.records += 1;
                    report.bytes += len as u64;
                    pos += len as u64;
                    buf = buf.slice(len..);
                }
                Decoded::Internal(_, len) => {
                    pos += len as u64;
                    buf = buf.slice(len..);
                }
                Decoded::End if buf.len() >= format::RECORD_HEADER_LEN || eof => break None,
                Decoded::Truncated | Decoded::End if !eof => {
                    let at = pos + buf.len() as u64;
                    let chunk = file
                        .read_at(at, SCAN_CHUNK)
                        .await
                        .map_err(|e| io_error("read", &path, e))?;
                    if chunk.is_empty() || at + chunk.len() as u64 >= size {
                        eof = true;
                    }
                    let mut joined = BytesMut::with_capacity(buf.len() + chunk.len());
                    joined.extend_from_slice(&buf);
                    joined.extend_from_slice(&chunk);
                    buf = joined.freeze();
                }
                Decoded::Truncated | Decoded::End => {
                    break Some("record cut off at the end of the file")
                }
                Decoded::Corrupt(why) => break Some(why),
            }
        };
        seg.end = base + pos - SEGMENT_HEADER_LEN;
        report.segments += 1;
        if let Some(why) = damage {
            // A torn end before the newest segment is a tail too when the
            // newer segments are still empty (see `hold_no_records`).
            let tail = i == last || hold_no_records(&paths[i + 1..]);
            if !tail || config.recovery == RecoveryMode::AbsoluteConsistency {
                return Err(LogError::Corrupt(format!(
                    "{} at offset {pos}: {why}",
                    path.display()
                )));
            }
            tracing::warn!(file = %path.display(), offset = pos, reason = why, "cutting a torn log tail");
            report.truncated = Some((base + pos - SEGMENT_HEADER_LEN, why));
            // Zero everything after the valid prefix, so a later, shorter
            // write cannot make stale records behind it readable again.
            let block_start = pos / BLOCK * BLOCK;
            let head = file
                .read_at(block_start, (pos - block_start) as usize)
                .await
                .map_err(|e| io_error("read", &path, e))?;
            let mut block = vec![0u8; BLOCK as usize];
            block[..head.len()].copy_from_slice(&head);
            file.write_at(&block, block_start)
                .await
                .map_err(|e| io_error("write", &path, e))?;
            let rest = block_start + BLOCK;
            if size > rest {
                file.zero_range(rest, size - rest)
                    .await
                    .map_err(|e| io_error("zero", &path, e))?;
            }
            file.sync()
                .await
                .map_err(|e| io_error("fdatasync", &path, e))?;
        }
        if i == last {
            let block_start = pos / BLOCK * BLOCK;
            tail_block = file
                .read_at(block_start, (pos - block_start) as usize)
                .await
                .map_err(|e| io_error("read", &path, e))?;
        }
        // Sealed, scanned and undamaged: leave a sidecar for the next restart.
        if i != last {
            let job = seg.seal();
            if segment::read_sidecar(&path, base, true).is_none() {
                if let Err(e) = segment::write_sidecar(&job) {
                    tracing::warn!(segment = %path.display(), error = %e, "sidecar not written; the next recovery scans this segment again");
                }
            }
        }
        segments.insert(base, seg);
    }
    let (&active, seg) = segments.iter().next_back().expect("at least one segment");
    let next = seg.end;
    let pending_start = active + (next - active) / BLOCK * BLOCK;
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
    };
    Ok((state, derived, report))
}
