//! Segment files: names, and what the log remembers about each one.

use crate::hashing::FastHashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::format::{encode_sidecar, SegmentHeader, SidecarEntry, SEGMENT_HEADER_LEN};
use super::io::{LogFile, LogFs};
use super::record::MessageRecord;
use super::segment_log::{io_error, LogError};
use crate::proto::{Seq, UserId};

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
}

impl Segment {
    /// Notes a message stored here at `lsn` (for retention and the sidecar).
    pub fn note_message(&mut self, m: &MessageRecord, lsn: u64, len: usize) {
        self.note(m.inbox, m.seq);
        self.max_ts_ms = self.max_ts_ms.max(m.ts_ms);
        self.entries.push(SidecarEntry {
            inbox: m.inbox.0.into(),
            seq: m.seq.0.into(),
            offset: ((lsn - self.base) as u32).into(),
            len: (len as u32).into(),
        });
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

/// Writes a sealed segment's sidecar (temp file, fsync, rename, fsync dir).
pub fn write_sidecar(seg: &Segment) -> Result<(), LogError> {
    use std::io::Write;
    let path = sidecar_path(&seg.path);
    let tmp = path.with_extension("idx.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&encode_sidecar(
            seg.base,
            seg.end - seg.base,
            seg.max_ts_ms,
            &seg.entries,
        ))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| io_error("write", &path, e))
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
