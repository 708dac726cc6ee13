//! The node's shard map on disk: `<data_dir>/shard-map` (issue #20,
//! docs/CLUSTER.md "Moving a partition between shards").
//!
//! Which shard of this node holds each partition decides where its records
//! are in the per-shard logs, so the map is read before any shard serves
//! and rewritten after every move between shards, crash-safe through the
//! log's atomic small-file write (temporary file, fsync, rename, fsync of
//! the directory): a crash leaves the old map or the new one.
//!
//! A resize of the node's shards that started and has not finished is
//! marked by an empty `<data_dir>/shard-map.resizing` ([`mark_resizing`]).
//!
//! A data dir without the file (a node from before shard maps, or a new
//! one) gets the jump hash of the partition the router used before
//! ([`surepush_core::hashed_shard_of_partition`]), written at once, so
//! nothing moves.
//!
//! Format (little endian), version 1:
//!
//! | bytes | field                                              |
//! |-------|----------------------------------------------------|
//! | 8     | magic `SPSHDMAP`                                   |
//! | 2     | version                                            |
//! | 4     | partitions `P`                                     |
//! | 2     | shards                                             |
//! | 2 × P | per partition its shard ([`NOT_HELD`]: none)       |
//! | 4     | crc32c of everything before                        |

use std::path::{Path, PathBuf};

use surepush_cluster::shard_map::ShardMap;
use surepush_cluster::{PartitionCount, PartitionId};
use surepush_log::storage::{write_atomically, NewFile, StdStorage};

/// Name of the file in the data directory.
pub(crate) const SHARD_MAP_FILE: &str = "shard-map";

const MAGIC: &[u8; 8] = b"SPSHDMAP";
const VERSION: u16 = 1;
/// A partition the map does not hold.
const NOT_HELD: u16 = u16::MAX;
/// Magic, version, partitions, shards.
const HEADER: usize = MAGIC.len() + 2 + 4 + 2;
const CRC: usize = 4;

/// Why the shard map file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ShardMapFileError {
    /// Reading or writing it failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// It does not verify (checksum, size, magic, version, entries).
    #[error("{path} is damaged: {why}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The path of the map in `data_dir`.
pub(crate) fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(SHARD_MAP_FILE)
}

/// The file's bytes for `map`.
pub(crate) fn encode(map: &ShardMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 2 * map.partitions() as usize + CRC);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&map.partitions().to_le_bytes());
    out.extend_from_slice(&map.shards().to_le_bytes());
    for (_, shard) in map.entries() {
        out.extend_from_slice(&shard.unwrap_or(NOT_HELD).to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The map in a file's bytes, or what is wrong with them.
pub(crate) fn decode(bytes: &[u8]) -> Result<ShardMap, String> {
    let Some((body, crc)) = bytes.split_last_chunk::<CRC>() else {
        return Err(format!("{} bytes is too short", bytes.len()));
    };
    if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
        return Err("checksum mismatch".into());
    }
    let Some((header, entries)) = body.split_first_chunk::<HEADER>() else {
        return Err("no header".into());
    };
    if &header[..MAGIC.len()] != MAGIC {
        return Err("not a shard map (magic)".into());
    }
    let field = |at: usize, n: usize| &header[MAGIC.len() + at..MAGIC.len() + at + n];
    let version = u16::from_le_bytes(field(0, 2).try_into().expect("2 bytes"));
    if version != VERSION {
        return Err(format!("version {version}; this build reads {VERSION}"));
    }
    let partitions = u32::from_le_bytes(field(2, 4).try_into().expect("4 bytes"));
    let shards = u16::from_le_bytes(field(6, 2).try_into().expect("2 bytes"));
    let count = PartitionCount::new(u64::from(partitions)).map_err(|e| e.to_string())?;
    if entries.len() != 2 * partitions as usize {
        return Err(format!(
            "{} entry bytes for {partitions} partitions",
            entries.len()
        ));
    }
    let mut map = ShardMap::new(count, shards).map_err(|e| e.to_string())?;
    for (p, entry) in entries.chunks_exact(2).enumerate() {
        let shard = u16::from_le_bytes([entry[0], entry[1]]);
        if shard != NOT_HELD {
            map.place(PartitionId(p as u32), shard)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(map)
}

/// Name of the file that marks a resize of the node's shards as started
/// and not finished (empty; see [`mark_resizing`]).
pub(crate) const RESIZING_FILE: &str = "shard-map.resizing";

/// Marks a resize of the node's shards as started, before its first move:
/// a crash midway leaves the map naming the new count (each move writes
/// it) with partitions not yet spread, and the next start finishes the
/// resize because of this mark.
pub(crate) fn mark_resizing(data_dir: &Path) -> Result<(), ShardMapFileError> {
    let path = data_dir.join(RESIZING_FILE);
    let contents = |_: &mut dyn std::io::Write| Ok(());
    write_atomically(&StdStorage, &path, &NewFile::new(&contents))
        .map_err(|source| ShardMapFileError::Io { path, source })
}

/// Whether a resize was started and not finished.
pub(crate) fn resizing(data_dir: &Path) -> bool {
    data_dir.join(RESIZING_FILE).exists()
}

/// The resize finished (its map is written). A crash before this removal
/// is durable only makes the next start plan a resize with no moves.
pub(crate) fn resize_done(data_dir: &Path) -> Result<(), ShardMapFileError> {
    let path = data_dir.join(RESIZING_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ShardMapFileError::Io { path, source: e })
        }
        _ => Ok(()),
    }
}

/// The map in `data_dir`, `None` if there is none yet.
pub(crate) fn load(data_dir: &Path) -> Result<Option<ShardMap>, ShardMapFileError> {
    let path = path_in(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => decode(&bytes)
            .map(Some)
            .map_err(|why| ShardMapFileError::Damaged { path, why }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ShardMapFileError::Io { path, source }),
    }
}

/// Replaces the map in `data_dir` with `map`, whole or not at all.
pub(crate) fn store(data_dir: &Path, map: &ShardMap) -> Result<(), ShardMapFileError> {
    let path = path_in(data_dir);
    let bytes = encode(map);
    let contents = |out: &mut dyn std::io::Write| out.write_all(&bytes);
    write_atomically(&StdStorage, &path, &NewFile::new(&contents))
        .map_err(|source| ShardMapFileError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ShardMap {
        let p = PartitionCount::new(64).expect("valid");
        let mut map = ShardMap::filled(p, 3, |q| (q.0 % 3) as u16).expect("valid");
        map.release(PartitionId(5));
        map
    }

    #[test]
    fn the_resize_mark_stays_until_the_resize_is_done() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(!resizing(dir.path()));
        mark_resizing(dir.path()).expect("marked");
        mark_resizing(dir.path()).expect("marked again (a second start)");
        assert!(resizing(dir.path()));
        resize_done(dir.path()).expect("removed");
        assert!(!resizing(dir.path()));
        resize_done(dir.path()).expect("nothing to remove is fine");
    }

    #[test]
    fn a_map_round_trips_through_its_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(load(dir.path()).expect("readable").is_none());
        let map = sample();
        store(dir.path(), &map).expect("written");
        assert_eq!(load(dir.path()).expect("readable"), Some(map.clone()));
        let mut moved = map.clone();
        moved.move_to(PartitionId(7), 0).expect("held");
        store(dir.path(), &moved).expect("replaced");
        assert_eq!(load(dir.path()).expect("readable"), Some(moved));
    }

    /// Every file recovery reads carries a checksum: a flipped byte or a
    /// cut file is refused, never read as another map.
    #[test]
    fn any_flipped_byte_or_cut_is_refused() {
        let bytes = encode(&sample());
        assert!(decode(&bytes).is_ok());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flipped byte {i} accepted");
        }
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "cut at {n} accepted");
        }
    }
}
