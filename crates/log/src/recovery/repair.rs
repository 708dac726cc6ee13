//! Changing the files once the verdict allows opening: cutting a torn
//! tail (its valid records kept aside, its sequences treated as handed
//! out) and salvage (damaged stretches moved aside and overwritten with
//! filler). Only `recovery.rs` calls it, after the first scan, which
//! writes nothing.

use std::path::Path;
use std::rc::Rc;

use bytes::BytesMut;

use crate::damage::{SalvageReport, Skipped, Verdict};
use crate::format;
use crate::io::{LogFile, BLOCK};
use crate::scan::{self, Guess};
use crate::segment;
use crate::segment_log::{io_error, LogError};
use crate::storage::{self, NewFile, Storage};
use surepush_proto::{Seq, UserId};

use super::Pass;

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
pub(super) async fn cut_tail(pass: &mut Pass, verdict: &Verdict) -> Result<(), LogError> {
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
    tail: &crate::damage::Damage,
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
pub(super) async fn apply_salvage(pass: &mut Pass) -> Result<SalvageReport, LogError> {
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
pub(super) fn note_lost(pass: &mut Pass, salvage: &SalvageReport) {
    for (inbox, seq) in &salvage.lost {
        pass.rebuild.tracked.state.note_head(*inbox, *seq);
    }
}
