//! `surepush log verify`: an offline, read-only check of one shard's log
//! directory, in the spirit of Kafka's `DumpLogSegments --verify` and
//! PostgreSQL's amcheck: every segment header and record CRC, every
//! sidecar against the segment it indexes, the checkpoint pointer and the
//! checkpoint it names. Damage is sorted as recovery would sort it
//! (`damage.rs`): a torn tail (cut on the next start, nothing acknowledged
//! lost) or damage to durable records (the gateway refuses to start).
//!
//! Nothing is written: files are opened read-only with ordinary reads, so
//! it runs on a copy, a snapshot or a read-only mount as well.

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

use super::damage::{Claim, Ledger};
use super::format::{self, Internal, SegmentHeader, SEGMENT_HEADER_LEN};
use super::record::Record;
use super::scan::{self, Found};
use super::segment;
use super::state::DedupConfig;

/// What verifying one log directory found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// One line per file checked.
    pub lines: Vec<String>,
    /// Stretches of durable (possibly acknowledged) records that are damaged.
    pub damaged: usize,
    /// Other files that are damaged but rebuilt on the next start
    /// (sidecars, the pointer).
    pub repairable: usize,
    /// Whether a torn tail was found (cut on the next start).
    pub torn_tail: bool,
}

impl VerifyReport {
    /// Whether acknowledged data may be affected (exit non-zero).
    pub fn is_damaged(&self) -> bool {
        self.damaged > 0
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Counts per segment.
#[derive(Default)]
struct Tally {
    messages: u64,
    /// Keyed state records (MQTT sessions, retained messages), deletions
    /// included.
    states: u64,
    other: u64,
    markers: u64,
    fillers: u64,
    checkpoints_bad: u64,
    /// (offset in segment, framed length) of each message, for the sidecar.
    entries: Vec<(u32, u32, u64, u64)>,
    pointer_found: bool,
}

/// Verifies the log in `dir` (one shard's directory).
pub fn verify(dir: &Path, dedup: &DedupConfig) -> std::io::Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let paths = segment::list(&super::storage::StdStorage, dir)?;
    let pointer_path = dir.join(format::CHECKPOINT_POINTER);
    let pointer = match std::fs::read_to_string(&pointer_path) {
        Ok(text) => match format::parse_pointer(&text) {
            Some(p) => Some(p),
            None => {
                report.repairable += 1;
                report.lines.push(format!(
                    "{}: DAMAGED (checksum or syntax); the next start folds every segment instead",
                    pointer_path.display()
                ));
                None
            }
        },
        Err(_) => None,
    };
    let mut ledger = Ledger::new(pointer.map(|p| p.lsn));
    let mut pointer_found = false;
    let last = paths.len().saturating_sub(1);
    for (i, (base, path)) in paths.iter().enumerate() {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        let mut head = vec![0u8; SEGMENT_HEADER_LEN as usize];
        let header_ok = file.read_exact_at(&mut head, 0).is_ok()
            && SegmentHeader::parse(&head).is_some_and(|h| h.base_lsn.get() == *base);
        if !header_ok {
            report.damaged += 1;
            report.lines.push(format!(
                "{}: DAMAGED segment header (the gateway refuses to start)",
                path.display()
            ));
            continue;
        }
        let mut tally = Tally::default();
        let read = |pos: u64, len: usize| {
            let want = len.min(size.saturating_sub(pos) as usize);
            let mut buf = vec![0u8; want];
            let r = file.read_exact_at(&mut buf, pos).map(|()| Bytes::from(buf));
            std::future::ready(r)
        };
        let next_data = |pos: u64| {
            use std::os::fd::AsRawFd;
            super::io::next_data(file.as_raw_fd(), pos)
        };
        let lsn_of = |at: u64| base + at - SEGMENT_HEADER_LEN;
        let scanned = futures_lite::future::block_on(scan::scan_file(
            SEGMENT_HEADER_LEN,
            size,
            scan::Reads { read, next_data },
            |found| -> std::io::Result<bool> {
                match found {
                    Found::Record { at, len, record } => {
                        let lsn = lsn_of(at);
                        ledger.record(i, lsn, lsn + len as u64);
                        match &record {
                            Record::Message(m) => {
                                tally.messages += 1;
                                tally.entries.push((
                                    (lsn - base) as u32,
                                    len as u32,
                                    m.inbox.0,
                                    m.seq.0,
                                ));
                            }
                            Record::Checkpoint(body) => {
                                tally.other += 1;
                                if pointer.is_some_and(|p| p.lsn == lsn) {
                                    tally.pointer_found = true;
                                }
                                if format::decode_checkpoint(body, dedup).is_none() {
                                    tally.checkpoints_bad += 1;
                                }
                            }
                            Record::State { .. } => tally.states += 1,
                            _ => tally.other += 1,
                        }
                    }
                    Found::Internal { at, what, .. } => match what {
                        Internal::Durable { up_to } => {
                            tally.markers += 1;
                            let at = lsn_of(at);
                            ledger.claim(at, up_to, Claim::Marker { at });
                        }
                        Internal::Filler => tally.fillers += 1,
                    },
                    Found::Damage { at, resume, why } => {
                        ledger.damage(path.clone(), i, *base, (lsn_of(at), lsn_of(resume)), why)
                    }
                    Found::End { .. } => return Ok(false),
                }
                Ok(true)
            },
        ));
        scanned?;
        pointer_found |= tally.pointer_found;
        let mut line = format!(
            "{}: {} messages, {} state records, {} other records, {} commit markers",
            path.display(),
            tally.messages,
            tally.states,
            tally.other,
            tally.markers
        );
        if tally.fillers > 0 {
            let _ = write!(line, ", {} salvage fillers", tally.fillers);
        }
        if tally.checkpoints_bad > 0 {
            report.damaged += 1;
            let _ = write!(
                line,
                ", {} checkpoints that verify but do not parse (DAMAGED)",
                tally.checkpoints_bad
            );
        }
        report.lines.push(line);
        if i != last {
            check_sidecar(path, *base, &tally, &mut report);
        }
    }
    if let Some(p) = pointer {
        if pointer_found {
            report.lines.push(format!(
                "{}: ok (checkpoint at lsn {})",
                pointer_path.display(),
                p.lsn
            ));
        } else {
            report.repairable += 1;
            report.lines.push(format!(
                "{}: names lsn {} where no valid checkpoint is; the next start folds every segment",
                pointer_path.display(),
                p.lsn
            ));
        }
    }
    let verdict = ledger.verdict(last);
    for d in &verdict.damaged {
        report.damaged += 1;
        let claim = d
            .claimed
            .map(|(up_to, c)| format!("{c} says the log was durable up to lsn {up_to}"))
            .unwrap_or_default();
        report.lines.push(format!(
            "DAMAGED {} at offset {} (lsn {}, {} bytes): {}; {claim}",
            d.segment.display(),
            d.offset(),
            d.lsn,
            d.bytes(),
            d.why
        ));
    }
    if let Some(t) = verdict.tail.first() {
        report.torn_tail = true;
        report.lines.push(format!(
            "torn tail {} at offset {} (lsn {}): {}; after the last durable commit, never \
             acknowledged; the next start cuts it ({} valid records in it)",
            t.segment.display(),
            t.offset(),
            t.lsn,
            t.why,
            verdict.tail_records
        ));
    }
    report
        .lines
        .push(match (report.damaged, report.repairable) {
            (0, 0) => format!("{}: ok", dir.display()),
            (0, n) => format!(
                "{}: {n} index files damaged, rebuilt from the segments on the next start",
                dir.display()
            ),
            (n, _) => format!(
                "{}: {n} damaged; the gateway refuses to start until `surepush log salvage` \
             (it keeps every valid record and reports what was lost)",
                dir.display()
            ),
        });
    Ok(report)
}

/// Checks a sealed segment's sidecar against what the scan found.
fn check_sidecar(path: &Path, base: u64, tally: &Tally, report: &mut VerifyReport) {
    let sidecar_path = segment::sidecar_path(path);
    if !sidecar_path.exists() {
        report.lines.push(format!(
            "{}: missing (written on the next start)",
            sidecar_path.display()
        ));
        return;
    }
    let Some(sidecar) = segment::read_sidecar(&super::storage::StdStorage, path, base, true) else {
        report.repairable += 1;
        report.lines.push(format!(
            "{}: DAMAGED (checksum); the next start scans the segment and rewrites it",
            sidecar_path.display()
        ));
        return;
    };
    let listed: Vec<(u32, u32, u64, u64)> = sidecar
        .entries
        .iter()
        .map(|e| (e.offset.get(), e.len.get(), e.inbox.get(), e.seq.get()))
        .collect();
    if listed == tally.entries {
        report.lines.push(format!(
            "{}: ok ({} messages)",
            sidecar_path.display(),
            listed.len()
        ));
    } else {
        report.damaged += 1;
        report.lines.push(format!(
            "{}: DISAGREES with its segment ({} messages listed, {} found); reads of the \
             missing ones fail: run `surepush log salvage`",
            sidecar_path.display(),
            listed.len(),
            tally.entries.len()
        ));
    }
}
