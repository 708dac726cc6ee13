//! Telling a torn tail from damage to acknowledged records, and what the
//! log says about either.
//!
//! A crash can leave only the bytes written after the last completed
//! fdatasync unfinished, in any order after a power loss. Nothing there was
//! acknowledged. Bytes a completed fdatasync covered can only be bad by
//! damage (a disk error, a flipped bit), and records there may have been
//! acknowledged. The [`Ledger`] collects, during recovery's scan, every
//! damaged stretch and the evidence found after it that the log was durable
//! beyond it:
//! - a commit marker whose `up_to` lies past the stretch (`commit.rs`);
//! - a later sealed segment with a valid sidecar (sidecars are written
//!   only once their segment is complete and durable);
//! - the checkpoint pointer (written once its checkpoint is durable);
//! - for a stretch that is not in the newest segment, any valid record in
//!   a newer segment (a commit writes the segments in log order).
//!
//! A stretch with no such evidence is a torn tail; one with evidence is
//! damage. Evidence for one stretch is evidence for every earlier one, so
//! the damage forms a prefix of the list and the first tail stretch cuts
//! everything after it.

use std::path::PathBuf;

use super::scan::Guess;
use surepush_proto::{Seq, UserId};

/// What says the log was durable beyond a damaged stretch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// A commit marker at this position.
    Marker {
        /// Position of the marker.
        at: u64,
    },
    /// A newer sealed segment with a valid sidecar.
    SealedSegment {
        /// Its base position.
        base: u64,
    },
    /// The checkpoint pointer names a durable checkpoint here.
    Pointer {
        /// Position of the checkpoint.
        at: u64,
    },
    /// A valid record in a newer segment.
    NewerRecord {
        /// Position of the first one.
        at: u64,
    },
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claim::Marker { at } => write!(f, "the commit marker at lsn {at}"),
            Claim::SealedSegment { base } => {
                write!(f, "the sealed segment at lsn {base} (with its sidecar)")
            }
            Claim::Pointer { at } => write!(f, "the checkpoint pointer (checkpoint at lsn {at})"),
            Claim::NewerRecord { at } => write!(f, "a record in a newer segment (lsn {at})"),
        }
    }
}

/// One damaged stretch of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub segment: PathBuf,
    /// Its place in the log's segment list.
    pub seg_index: usize,
    /// Its base position.
    pub base: u64,
    /// Position of the first bad byte (a record start).
    pub lsn: u64,
    /// Where valid records resume (or the segment's end).
    pub resume: u64,
    /// What was wrong.
    pub why: &'static str,
    /// The furthest durable position evidence after the stretch claims,
    /// and that evidence.
    pub claimed: Option<(u64, Claim)>,
    /// Valid records seen before this stretch was (for counting what follows).
    records_before: u64,
}

impl Damage {
    /// Offset of the stretch in its segment file.
    pub fn offset(&self) -> u64 {
        super::format::SEGMENT_HEADER_LEN + self.lsn - self.base
    }

    /// Its length in bytes.
    pub fn bytes(&self) -> u64 {
        self.resume - self.lsn
    }

    /// Whether evidence says the bytes were durable (else a torn tail).
    fn durable(&self) -> bool {
        self.claimed.is_some_and(|(up_to, _)| up_to > self.lsn)
    }
}

/// The stretches found by one scan, and the evidence after each.
#[derive(Debug, Default)]
pub struct Ledger {
    damages: Vec<Damage>,
    /// Valid records seen after the first damage.
    records: u64,
    /// Position of the last of them, and where it ends.
    last: Option<(u64, u64)>,
    /// Valid records per segment index after the first damage.
    per_segment: Vec<u64>,
    /// The first record of each segment after the first damage.
    first_in_segment: Vec<Option<u64>>,
    /// What the checkpoint pointer claims (applies to every stretch).
    pointer: Option<u64>,
}

/// Most damaged stretches tracked in one log: beyond it the log is
/// refused as a whole (it is not a few bad records).
pub const MAX_DAMAGES: usize = 4096;

/// What a ledger concludes.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Damage to durable bytes, in log order.
    pub damaged: Vec<Damage>,
    /// The torn tail: the log is cut where its first stretch starts; the
    /// others lie after it (in record-less newer segments, say).
    pub tail: Vec<Damage>,
    /// Valid records after the first stretch of either kind.
    pub records_after: u64,
    /// Valid records after the tail's start (never acknowledged).
    pub tail_records: u64,
    /// Where the last valid record after the first stretch ends.
    pub last_end: Option<u64>,
}

impl Ledger {
    /// A ledger for a log whose checkpoint pointer names a durable
    /// checkpoint at `pointer`.
    pub fn new(pointer: Option<u64>) -> Ledger {
        Ledger {
            pointer,
            ..Ledger::default()
        }
    }

    /// Whether any stretch was found.
    pub fn is_clean(&self) -> bool {
        self.damages.is_empty()
    }

    /// Too many stretches to track.
    pub fn overflowed(&self) -> bool {
        self.damages.len() >= MAX_DAMAGES
    }

    /// A damaged stretch `[lsn, resume)` of the segment at `base`.
    pub fn damage(
        &mut self,
        segment: PathBuf,
        seg_index: usize,
        base: u64,
        (lsn, resume): (u64, u64),
        why: &'static str,
    ) {
        // The pointer is written once its checkpoint record is durable:
        // the record at `at` itself was, so damage there is damage too.
        let claimed = self
            .pointer
            .filter(|at| *at >= lsn)
            .map(|at| (at + 1, Claim::Pointer { at }));
        self.damages.push(Damage {
            segment,
            seg_index,
            base,
            lsn,
            resume,
            why,
            claimed,
            records_before: self.records,
        });
    }

    /// A valid record `[lsn, end)` in segment `seg_index`.
    pub fn record(&mut self, seg_index: usize, lsn: u64, end: u64) {
        if self.damages.is_empty() {
            return;
        }
        self.records += 1;
        self.last = Some((lsn, end));
        if self.per_segment.len() <= seg_index {
            self.per_segment.resize(seg_index + 1, 0);
            self.first_in_segment.resize(seg_index + 1, None);
        }
        self.per_segment[seg_index] += 1;
        self.first_in_segment[seg_index].get_or_insert(lsn);
    }

    /// Evidence found at `at` that the log was durable up to `up_to`.
    pub fn claim(&mut self, at: u64, up_to: u64, claim: Claim) {
        for d in &mut self.damages {
            if d.lsn < at && d.claimed.is_none_or(|(c, _)| up_to > c) {
                d.claimed = Some((up_to, claim));
            }
        }
    }

    /// Sorts the stretches into damage and a torn tail; `last_segment` is
    /// the newest segment's index.
    pub fn verdict(mut self, last_segment: usize) -> Verdict {
        // A valid record in a newer segment is evidence too.
        for d in &mut self.damages {
            let newer = self
                .first_in_segment
                .iter()
                .enumerate()
                .skip(d.seg_index + 1)
                .find_map(|(_, first)| *first);
            if let (Some(at), false) = (newer, d.durable()) {
                if d.seg_index < last_segment {
                    d.claimed = Some((at + 1, Claim::NewerRecord { at }));
                }
            }
        }
        let records = self.records;
        let first_tail = self
            .damages
            .iter()
            .position(|d| !d.durable())
            .unwrap_or(self.damages.len());
        let mut damaged = self.damages;
        let tail = damaged.split_off(first_tail);
        let after = |d: Option<&Damage>| d.map_or(0, |d| records - d.records_before);
        Verdict {
            records_after: after(damaged.first().or(tail.first())),
            tail_records: after(tail.first()),
            damaged,
            tail,
            last_end: self.last.map(|(_, end)| end),
        }
    }
}

/// Why a log was not opened: acknowledged records are damaged. Nothing on
/// disk was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamageReport {
    /// The log's directory.
    pub dir: PathBuf,
    /// The damaged stretches, in log order.
    pub damaged: Vec<Damage>,
    /// Valid records after the first stretch.
    pub records_after: u64,
    /// Where the last of them ends.
    pub last_end: Option<u64>,
}

impl std::fmt::Display for DamageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first = &self.damaged[0];
        write!(
            f,
            "damaged log in {}: {} at offset {} (lsn {}, {} bytes): {}; ",
            self.dir.display(),
            first.segment.display(),
            first.offset(),
            first.lsn,
            first.bytes(),
            first.why
        )?;
        if let Some(end) = self.last_end {
            write!(
                f,
                "{} valid records up to lsn {end} follow",
                self.records_after
            )?;
        } else {
            write!(f, "no valid record follows")?;
        }
        if let Some((up_to, claim)) = first.claimed {
            write!(
                f,
                ", and {claim} says the log was durable up to lsn {up_to}"
            )?;
        }
        if self.damaged.len() > 1 {
            write!(f, " ({} more damaged stretches)", self.damaged.len() - 1)?;
        }
        write!(
            f,
            ". Acknowledged records may be affected, so the log was not opened and nothing was \
             changed. `surepush log verify` lists the damage; `surepush log salvage` (or \
             log.recovery = \"salvage\") keeps every valid record, moves the damaged bytes aside \
             and reports what was lost"
        )
    }
}

/// What salvage did to one log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SalvageReport {
    /// Each damaged stretch skipped.
    pub skipped: Vec<Skipped>,
    /// Inbox sequences lost: named by a sealed segment's sidecar, missing
    /// between surviving ones, or read leniently from the damaged bytes.
    pub lost: Vec<(UserId, Seq)>,
    /// Damaged bytes whose records could not be read at all (their inboxes
    /// are unknown).
    pub unreadable_bytes: u64,
}

/// One damaged stretch salvage skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The segment file.
    pub segment: PathBuf,
    /// Offset in it.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
    /// What was wrong.
    pub why: &'static str,
    /// Where the bytes were moved (the segment holds filler there now).
    pub moved_to: PathBuf,
    /// A lenient reading of them.
    pub guesses: Vec<Guess>,
}

impl std::fmt::Display for SalvageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.skipped {
            writeln!(
                f,
                "skipped {} bytes at offset {} of {} ({}); moved to {}",
                s.len,
                s.offset,
                s.segment.display(),
                s.why,
                s.moved_to.display()
            )?;
            for g in &s.guesses {
                writeln!(f, "  damaged bytes read leniently: {g:?}")?;
            }
        }
        let mut by_inbox: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
        for (inbox, seq) in &self.lost {
            by_inbox.entry(inbox.0).or_default().push(seq.0);
        }
        for (inbox, seqs) in by_inbox {
            writeln!(f, "lost: inbox {inbox} seq {}", ranges(&seqs))?;
        }
        if self.unreadable_bytes > 0 {
            writeln!(
                f,
                "{} damaged bytes could not be read as records (inboxes unknown)",
                self.unreadable_bytes
            )?;
        }
        Ok(())
    }
}

/// `1-3, 7` for `[1, 2, 3, 7]` (sorted input).
fn ranges(seqs: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            seqs[i].to_string()
        } else {
            format!("{}-{}", seqs[i], seqs[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger_with(damage_at: u64) -> Ledger {
        let mut l = Ledger::new(None);
        l.record(0, 0, 100); // before any damage: not counted
        l.damage(
            "s".into(),
            0,
            0,
            (damage_at, damage_at + 50),
            "crc mismatch",
        );
        l
    }

    #[test]
    fn a_stretch_without_later_evidence_is_the_tail() {
        let mut l = ledger_with(1000);
        l.record(0, 1050, 1100); // valid but unclaimed (write-behind landed)
        l.claim(1100, 1000, Claim::Marker { at: 1100 }); // claims only up to the stretch
        let v = l.verdict(0);
        assert!(v.damaged.is_empty());
        assert_eq!(v.tail.first().map(|t| t.lsn), Some(1000));
        assert_eq!((v.tail_records, v.last_end), (1, Some(1100)));
    }

    #[test]
    fn a_marker_claiming_past_the_stretch_makes_it_damage_and_every_earlier_one_too() {
        let mut l = ledger_with(1000);
        l.record(0, 1050, 1100);
        l.damage("s".into(), 0, 0, (2000, 2040), "crc mismatch");
        l.claim(3000, 1500, Claim::Marker { at: 3000 });
        let v = l.verdict(0);
        assert_eq!(v.damaged.iter().map(|d| d.lsn).collect::<Vec<_>>(), [1000]);
        assert_eq!(
            v.tail.first().map(|t| t.lsn),
            Some(2000),
            "the later one is still a tail"
        );
        assert_eq!((v.records_after, v.tail_records), (1, 0));
        assert_eq!(
            v.damaged[0].claimed,
            Some((1500, Claim::Marker { at: 3000 }))
        );
    }

    #[test]
    fn records_in_a_newer_segment_and_the_pointer_are_evidence() {
        let mut l = ledger_with(1000);
        l.record(1, 5000, 5100);
        let v = l.verdict(1);
        assert_eq!(v.damaged.len(), 1, "an older segment with records after it");
        let mut l = Ledger::new(Some(4000));
        l.damage("s".into(), 0, 0, (1000, 1050), "crc mismatch");
        let v = l.verdict(0);
        assert_eq!(
            v.damaged[0].claimed,
            Some((4001, Claim::Pointer { at: 4000 }))
        );
        let mut l = Ledger::new(Some(1000));
        l.damage("s".into(), 0, 0, (1000, 1050), "crc mismatch");
        let v = l.verdict(0);
        assert_eq!(v.damaged.len(), 1, "the checkpoint the pointer names");
        let mut l = Ledger::new(Some(400));
        l.damage("s".into(), 0, 0, (1000, 1050), "crc mismatch");
        assert!(
            !l.verdict(0).tail.is_empty(),
            "a pointer before the stretch says nothing"
        );
    }

    #[test]
    fn ranges_read_like_a_human_wrote_them() {
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10]), "1-3, 7, 9-10");
        assert_eq!(ranges(&[]), "");
    }
}
