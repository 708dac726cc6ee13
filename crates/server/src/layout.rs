//! The data directory's layout file: the shard count its logs were
//! written with (it decides which shard owns which user, so logs written
//! with one count cannot be served with another).
//!
//! Text, `shards=<n> crc32c=<hex>\n`, the CRC over `shards=<n>`; a file
//! without the CRC (written before it existed) is still read. A file that
//! does not verify is refused: the count cannot be guessed safely (count
//! the `shard-NNN` directories and write it back by hand). Written once,
//! atomically (the log's storage seam: `surepush_log::storage`).

use std::path::Path;

use surepush_log::storage::{write_atomically, NewFile, StdStorage};

use super::node::ServeError;

/// Name of the file in the data directory.
pub const LAYOUT_FILE: &str = "layout";

/// The file's text for `shards` shards.
pub fn encode(shards: u16) -> String {
    let body = format!("shards={shards}");
    format!("{body} crc32c={:08x}\n", crc32c::crc32c(body.as_bytes()))
}

/// The shard count in a layout file's text; `None` if it is damaged.
pub fn parse(text: &str) -> Option<u16> {
    let mut parts = text.split_whitespace();
    let body = parts.next()?;
    let shards = body.strip_prefix("shards=")?.parse().ok()?;
    match (parts.next(), parts.next()) {
        (None, None) if text == format!("{body}\n") => Some(shards), // before the CRC
        (Some(crc), None) => {
            let crc = u32::from_str_radix(crc.strip_prefix("crc32c=")?, 16).ok()?;
            (crc == crc32c::crc32c(body.as_bytes())).then_some(shards)
        }
        _ => None,
    }
}

/// Checks the data dir's layout against `shards`, writing it on first use.
pub fn check(data_dir: &Path, shards: u16) -> Result<(), ServeError> {
    let path = data_dir.join(LAYOUT_FILE);
    let io = |what: &str, e: std::io::Error| ServeError::Io {
        context: format!("{what} {}", path.display()),
        source: e,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => match parse(&text) {
            Some(have) if have == shards => Ok(()),
            Some(have) => Err(ServeError::Layout(format!(
                "{} was written with shards={have} but this node runs {shards} shards; start \
                 with the same shard count (--shards) or use a new data dir",
                data_dir.display()
            ))),
            None => Err(ServeError::Layout(format!(
                "{} is damaged (checksum or syntax: {:?}); it must name the shard count the logs \
                 were written with: count the shard-NNN directories and write `shards=<n>` into it",
                path.display(),
                text.trim()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Whole or not at all: a crash half way through a plain write
            // left a layout file that refused every later start.
            let text = encode(shards);
            let contents = |out: &mut dyn std::io::Write| out.write_all(text.as_bytes());
            write_atomically(&StdStorage, &path, &NewFile::new(&contents))
                .map_err(|e| io("write", e))
        }
        Err(e) => Err(io("read", e)),
    }
}

/// How many shards the node runs, with the data dir's layout checked (or,
/// on a cluster node with a shard map, recorded): a cluster node restarted
/// with another shard count moves partitions between its shards at start,
/// and runs the old count once if it shrinks (`cluster/shard_moves.rs`).
pub fn node_shards(config: &crate::config::Config) -> Result<u16, ServeError> {
    let configured = config.shard_count();
    let mapped = config.cluster.enabled()
        && crate::cluster::has_shard_map(&config.data_dir).map_err(ServeError::Layout)?;
    if !mapped {
        check(&config.data_dir, configured)?;
        return Ok(configured);
    }
    let shards =
        crate::cluster::running_shards(&config.data_dir, configured).map_err(ServeError::Layout)?;
    record(&config.data_dir, shards)?;
    Ok(shards)
}

/// Records that the data dir's logs are now served with `shards` shards: a
/// cluster node, whose shard map (not the shard count) says which shard
/// holds what, so it may restart with another count (docs/CLUSTER.md
/// "Moving a partition between shards").
pub fn record(data_dir: &Path, shards: u16) -> Result<(), ServeError> {
    let path = data_dir.join(LAYOUT_FILE);
    if std::fs::read_to_string(&path)
        .ok()
        .as_deref()
        .and_then(parse)
        == Some(shards)
    {
        return Ok(());
    }
    let text = encode(shards);
    let contents = |out: &mut dyn std::io::Write| out.write_all(text.as_bytes());
    write_atomically(&StdStorage, &path, &NewFile::new(&contents)).map_err(|e| ServeError::Io {
        context: format!("write {}", path.display()),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 23, item 4: every file recovery reads carries a checksum.
    #[test]
    fn the_layout_round_trips_old_files_still_read_and_any_flipped_byte_is_refused() {
        for n in [1u16, 2, 64, u16::MAX] {
            assert_eq!(parse(&encode(n)), Some(n));
        }
        assert_eq!(parse("shards=4\n"), Some(4), "written before the checksum");
        let good = encode(12);
        for i in 0..good.len() - 1 {
            let mut bad = good.clone().into_bytes();
            bad[i] ^= 0x01;
            let bad = String::from_utf8_lossy(&bad).into_owned();
            assert_eq!(parse(&bad), None, "flip at {i}: {bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        check(dir.path(), 3).unwrap();
        check(dir.path(), 3).unwrap();
        assert!(matches!(check(dir.path(), 2), Err(ServeError::Layout(_))));
        let path = dir.path().join(LAYOUT_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[7] ^= 0x01; // the digit
        std::fs::write(&path, &bytes).unwrap();
        let e = check(dir.path(), 3).unwrap_err().to_string();
        assert!(e.contains("damaged"), "{e}");
    }
}
