//! The whole-file half of the storage seam: every file and directory
//! operation the log does besides reading and writing segment data
//! (`io.rs`), behind one [`Storage`] trait, and the atomic small-file write
//! ([`write_atomically`]) written once over it.
//!
//! Ground rules:
//! - Everything that makes something durable by name goes through here:
//!   new segment files, sidecars, the checkpoint pointer, the side files
//!   salvage and tail cuts keep, removals (half-built segments, retention)
//!   and the directory fsyncs that make them stick, plus the listings and
//!   small reads recovery depends on. Tests swap in a file layer that
//!   fails, tears or "crashes" any of these (`fault.rs`).
//! - The operations are blocking (std::fs shaped) and [`Storage`] is
//!   `Send + Sync`: callers run them where they ran before the seam, on the
//!   shard's thread or on glommio's blocking thread.
//! - A file that replaces another, or appears under a name readers trust,
//!   is written to a temporary name, synced, renamed (or linked, when it
//!   must not replace anything) and its directory synced: a crash at any
//!   point leaves the old file or the new one under the name, never a
//!   part of one.
//! - The server's own small files (layout, secrets) use the same function
//!   with [`StdStorage`]: one place for the rule.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of a new file before the umask (what `File::create` uses).
pub const DEFAULT_MODE: u32 = 0o666;

/// Whole-file and directory operations (blocking).
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Creates `path` with `file`'s contents, length and mode and makes its
    /// data durable (fsync). A stale file of that name is replaced.
    fn create_synced(&self, path: &Path, file: &NewFile<'_>) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to` (rename(2): atomic).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Gives the file `from` the name `to` too; `AlreadyExists` if `to`
    /// exists (link(2): publishes atomically without replacing).
    fn link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable (creations, renames, removals).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Every entry of `dir`, unsorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Size of the file `path` in bytes.
    fn len(&self, path: &Path) -> io::Result<u64>;
    /// Up to `len` bytes of `path` from `pos` (fewer at its end).
    fn read_at(&self, path: &Path, pos: u64, len: usize) -> io::Result<Vec<u8>>;
    /// The whole file `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
}

/// Writes the bytes of a new file into whatever the storage gives it.
pub type Contents<'a> = &'a dyn Fn(&mut dyn Write) -> io::Result<()>;

/// What [`write_atomically`] writes, and how.
#[derive(Clone, Copy)]
pub struct NewFile<'a> {
    /// Its bytes, from the start of the file.
    pub contents: Contents<'a>,
    /// Extend the file to this size with zeros (preallocated segments).
    pub len: Option<u64>,
    /// Permission bits for the new file (before the umask).
    pub mode: u32,
    /// Whether it replaces a file of the same name (else `AlreadyExists`).
    pub replace: bool,
    /// How its temporary name is made.
    pub temp: TempName,
}

impl<'a> NewFile<'a> {
    /// A file holding what `contents` writes, replacing any old one, with
    /// the default mode and a temporary name `<name>.tmp`.
    pub fn new(contents: Contents<'a>) -> NewFile<'a> {
        NewFile {
            contents,
            len: None,
            mode: DEFAULT_MODE,
            replace: true,
            temp: TempName::Beside,
        }
    }

    /// Extends the file to `len` bytes.
    pub fn len(self, len: u64) -> Self {
        NewFile {
            len: Some(len),
            ..self
        }
    }

    /// Creates the file with `mode` (e.g. 0o600 for secrets).
    pub fn mode(self, mode: u32) -> Self {
        NewFile { mode, ..self }
    }

    /// Never replaces an existing file: `AlreadyExists` instead.
    pub fn keep_existing(self) -> Self {
        NewFile {
            replace: false,
            ..self
        }
    }

    /// A temporary name of its own per write (for files that two writers
    /// in one process may write at once).
    pub fn unique_temp(self) -> Self {
        NewFile {
            temp: TempName::Unique,
            ..self
        }
    }
}

impl std::fmt::Debug for NewFile<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewFile")
            .field("len", &self.len)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("replace", &self.replace)
            .field("temp", &self.temp)
            .finish()
    }
}

/// How the temporary name of an atomic write is made from the file's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TempName {
    /// `<name>.tmp`: one writer at a time (a crash's leftover is simply
    /// written over next time; recovery removes half-built segments by it).
    Beside,
    /// `<name>.<pid>-<n>.tmp`: unique per write.
    Unique,
}

/// The temporary name `path` is written under before it takes its name.
pub fn temp_path(path: &Path, temp: TempName) -> PathBuf {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    match temp {
        TempName::Beside => name.push(".tmp"),
        TempName::Unique => {
            let n = WRITES.fetch_add(1, Ordering::Relaxed);
            name.push(format!(".{}-{n}.tmp", std::process::id()));
        }
    }
    path.with_file_name(name)
}

/// Writes `file` to `path` so that a crash at any point leaves the old file
/// (or none) or the new one under `path`, never a part of one: temporary
/// file, write, fsync, rename (or link, if it must not replace anything),
/// fsync of the directory. On an error the temporary file is removed
/// (best effort) and `path` is as it was, unless only the final directory
/// sync failed (then the new file is in place but may not survive a
/// crash).
pub fn write_atomically(storage: &dyn Storage, path: &Path, file: &NewFile<'_>) -> io::Result<()> {
    let temp = temp_path(path, file.temp);
    let published = storage.create_synced(&temp, file).and_then(|()| {
        if file.replace {
            storage.rename(&temp, path)
        } else {
            storage.link(&temp, path)?;
            // The file is in place under `path`; a leftover second name
            // costs nothing but a stray file (removed on the next try).
            if let Err(e) = storage.remove(&temp) {
                tracing::warn!(file = %temp.display(), error = %e, "temporary name left behind");
            }
            Ok(())
        }
    });
    if let Err(e) = published {
        // Whatever the temporary file holds is not the file.
        let _ = storage.remove(&temp);
        return Err(e);
    }
    storage.sync_dir(parent(path))
}

/// Removes the file `path` and makes that durable (fsync of its directory).
pub fn remove_durably(storage: &dyn Storage, path: &Path) -> io::Result<()> {
    storage.remove(path)?;
    storage.sync_dir(parent(path))
}

/// The directory holding `path` (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The operating system's files (std::fs).
#[derive(Clone, Copy, Debug, Default)]
pub struct StdStorage;

impl Storage for StdStorage {
    fn create_synced(&self, path: &Path, file: &NewFile<'_>) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // A stale file of this name (a crash's leftover) could carry
        // another mode: start from a new one.
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .open(path)?;
        // Small pieces (headers, checksums) are gathered; large ones (a
        // sidecar's lists) go straight from memory.
        let mut out = io::BufWriter::new(f);
        (file.contents)(&mut out)?;
        let f = out.into_inner().map_err(|e| e.into_error())?;
        if let Some(len) = file.len {
            f.set_len(len)?;
        }
        f.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn read_at(&self, path: &Path, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek};
        let mut f = std::fs::File::open(path)?;
        f.seek(io::SeekFrom::Start(pos))?;
        let mut out = Vec::with_capacity(len);
        f.take(len as u64).read_to_end(&mut out)?;
        Ok(out)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
