//! One owner per data directory.
//!
//! Two gateways on one data dir number the same inboxes twice and
//! overwrite each other's segments (issue #16: six acknowledged sends got
//! seqs 1, 2, 1, 2, 3, 4 and four were lost). So a node takes an exclusive
//! `flock` on `<data_dir>/lock` before it reads or writes anything there,
//! and holds it for the life of the process; the kernel releases it when
//! the process ends, also by kill -9, so a stale lock never blocks a
//! restart. The file holds the holder's pid, which a refused process names.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Name of the lock file inside the data dir.
pub const LOCK_FILE: &str = "lock";

/// Why a data dir cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another live process holds the lock.
    #[error(
        "{dir} is in use by another surepush process (pid {holder}); stop it first, or give this \
         one its own data dir"
    )]
    InUse {
        /// The data dir.
        dir: PathBuf,
        /// The holder's pid as it wrote it into the lock file ("unknown" if unreadable).
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// The exclusive lock on a data dir; released when dropped (or when the
/// process ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    /// Keeps the `flock`: it belongs to this open file description.
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock on `dir` (which must exist) or says who holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, DataDirError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| DataDirError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor `file` owns and keeps open; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "unknown".to_string(),
                    pid => pid.to_string(),
                };
                return Err(DataDirError::InUse {
                    dir: dir.to_owned(),
                    holder,
                });
            }
            return Err(io(e));
        }
        // Ours now: say who we are for the next process that asks.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue #16 item 1: a second gateway on the same data dir must be refused.
    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        match DataDirLock::acquire(dir.path()) {
            Err(DataDirError::InUse { holder, dir: d }) => {
                assert_eq!(holder, std::process::id().to_string());
                assert_eq!(d, dir.path());
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        // Released with its holder: the next one gets it.
        let again = DataDirLock::acquire(dir.path()).unwrap();
        assert_eq!(again.path(), dir.path().join(LOCK_FILE));
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "999999\n").unwrap();
        let lock = DataDirLock::acquire(dir.path()).unwrap();
        let pid = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
    }
}
