//! Segment files: names, and what the log remembers about each one.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use surepush_core::hashing::FastHashMap;

use super::format::{
    self, write_sidecar_to, SegmentHeader, Sidecar, SidecarEntry, SidecarKey, SEGMENT_HEADER_LEN,
};
use super::io::{LogFile, LogFs};
use super::record::MessageRecord;
use super::segment_log::{io_error, LogError};
use super::storage::{self, NewFile, Storage};
use surepush_proto::{Seq, UserId};

/// Digits of the base position in a segment file name.
pub const NAME_WIDTH: usize = 20;
/// Segment file extension.
pub const EXTENSION: &str = "seg";

/// `<dir>/<base, zero-padded>.seg`.
pub fn file_name(dir: &Path, base_lsn: u64) -> PathBuf {
    dir.join(format!("{base_lsn:0NAME_WIDTH$}.{EXTENSION}"))
}

/// The base position encoded in a segment file name.
pub fn parse_name(path: &Path) -> Option<u64> {
    let stem = path.file_stem()?.to_str()?;
    if path.extension()? != EXTENSION
        || stem.len() != NAME_WIDTH
        || !stem.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    stem.parse().ok()
}

/// The segment files in `dir` with their base positions, oldest first.
pub fn list(storage: &dyn Storage, dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out: Vec<(u64, PathBuf)> = storage
        .list(dir)?
        .into_iter()
        .filter_map(|p| parse_name(&p).map(|b| (b, p)))
        .collect();
    out.sort();
    Ok(out)
}

/// Creates the segment file for position `base` (header block written and
/// synced, `size` bytes preallocated) and opens it.
pub async fn create(
    fs: &dyn LogFs,
    path: &Path,
    base: u64,
    size: u64,
) -> Result<Rc<dyn LogFile>, LogError> {
    let header = SegmentHeader::new(base);
    let mut block = vec![0u8; SEGMENT_HEADER_LEN as usize];
    block[..std::mem::size_of::<SegmentHeader>()]
        .copy_from_slice(zerocopy::IntoBytes::as_bytes(&header));
    fs.create(path, &block, size)
        .await
        .map_err(|e| io_error("create", path, e))
}

/// One segment of the log.
pub struct Segment {
    /// Position of its first record.
    pub base: u64,
    /// Bytes available for records (file size minus header).
    pub capacity: u64,
    /// The file.
    pub file: Rc<dyn LogFile>,
    /// Its path.
    pub path: PathBuf,
    /// Highest seq per inbox stored here (retention).
    pub inbox_max: FastHashMap<UserId, Seq>,
    /// Newest message timestamp here (retention by age).
    pub max_ts_ms: u64,
    /// End position of the data written into it.
    pub end: u64,
    /// Messages of this segment while it is active (for its sidecar).
    pub entries: Vec<SidecarEntry>,
    /// Their dedup keys, same order.
    pub keys: Vec<SidecarKey>,
}

impl Segment {
    /// Notes a message stored here at `lsn` (for the sidecar; retention's
    /// per-inbox maxima are taken from the list once the segment is sealed,
    /// see [`Segment::seal`], which keeps a hash update off every append).
    pub fn note_message(&mut self, m: &MessageRecord, lsn: u64, len: usize) {
        self.max_ts_ms = self.max_ts_ms.max(m.ts_ms);
        self.entries.push(SidecarEntry {
            inbox: m.inbox.0.into(),
            seq: m.seq.0.into(),
            offset: ((lsn - self.base) as u32).into(),
            len: (len as u32).into(),
        });
        self.keys.push(SidecarKey::of(m));
    }

    /// The segment is complete: fills the per-inbox maxima from its
    /// message list and hands the list over for its sidecar.
    pub fn seal(&mut self) -> SidecarJob {
        for e in &self.entries {
            let max = self.inbox_max.entry(UserId(e.inbox.get())).or_default();
            *max = (*max).max(Seq(e.seq.get()));
        }
        SidecarJob {
            path: self.path.clone(),
            base: self.base,
            end_offset: self.end - self.base,
            max_ts_ms: self.max_ts_ms,
            entries: std::mem::take(&mut self.entries),
            keys: std::mem::take(&mut self.keys),
        }
    }

    /// Notes that `inbox` has `seq` here.
    pub fn note(&mut self, inbox: UserId, seq: Seq) {
        let max = self.inbox_max.entry(inbox).or_default();
        *max = (*max).max(seq);
    }
}

/// Path of the sidecar index of the segment at `path`.
pub fn sidecar_path(path: &Path) -> PathBuf {
    path.with_extension("idx")
}

/// What a sealed segment's sidecar is written from (owned, so it can be
/// written off the shard's thread).
#[derive(Debug)]
pub struct SidecarJob {
    /// The segment file.
    pub path: PathBuf,
    base: u64,
    end_offset: u64,
    max_ts_ms: u64,
    entries: Vec<SidecarEntry>,
    keys: Vec<SidecarKey>,
}

impl SidecarJob {
    /// Base position of the segment.
    pub fn base(&self) -> u64 {
        self.base
    }
}

/// Writes a sealed segment's sidecar ([`storage::write_atomically`]).
/// Blocking: the log runs it on glommio's blocking thread.
pub fn write_sidecar(storage: &dyn Storage, job: &SidecarJob) -> Result<(), LogError> {
    let path = sidecar_path(&job.path);
    let contents = |out: &mut dyn std::io::Write| {
        write_sidecar_to(
            &mut &mut *out,
            job.base,
            job.end_offset,
            job.max_ts_ms,
            &job.entries,
            &job.keys,
        )
    };
    // A temporary name of its own per write: a log reopened in the same
    // process may write the same sidecar while the old one's write is
    // still running.
    let file = NewFile::new(&contents).unique_temp();
    storage::write_atomically(storage, &path, &file).map_err(|e| io_error("write", &path, e))
}

/// Reads and verifies the sidecar of the segment at `path` (based at
/// `base`): the index part only, or the keys too. `None` if it is missing,
/// of an older layout or damaged (the segment is scanned instead).
pub fn read_sidecar(
    storage: &dyn Storage,
    path: &Path,
    base: u64,
    with_keys: bool,
) -> Option<Sidecar> {
    let path = sidecar_path(path);
    let size = storage.len(&path).ok()?;
    let header = storage.read_at(&path, 0, format::SIDECAR_HEADER_LEN).ok()?;
    let want = format::sidecar_len(format::sidecar_count(&header)?, with_keys);
    if want as u64 > size {
        return None;
    }
    let bytes = storage.read_at(&path, 0, want).ok()?;
    if bytes.len() != want {
        return None;
    }
    format::decode_sidecar(&bytes, base, with_keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_position() {
        let dir = Path::new("/d");
        for base in [0u64, 4096, 64 << 20, u64::MAX] {
            let p = file_name(dir, base);
            assert_eq!(parse_name(&p), Some(base));
        }
        let mut names = [file_name(dir, 10 << 20), file_name(dir, 2 << 20)];
        names.sort();
        assert_eq!(parse_name(&names[0]), Some(2 << 20));
        for bad in [
            "/d/123.seg",
            "/d/0000000000000000000x.seg",
            "/d/00000000000000000001.idx",
        ] {
            assert_eq!(parse_name(Path::new(bad)), None, "{bad}");
        }
    }
}
