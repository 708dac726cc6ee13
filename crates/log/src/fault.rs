//! A file layer for tests that fails, tears or "crashes" any operation of
//! the storage seam: segment writes, syncs, write-behind pieces, zeroing
//! and reads (`io.rs`), and every whole-file operation (`storage.rs`).
//!
//! Faults are rules: an operation, a piece of the path it must touch, and
//! what happens. A crash stands for the process dying at that point: the
//! operation and every later one (of any kind, on any file) does nothing
//! and fails, so what is on disk is what a kill -9 there would leave.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use super::io::{DmaFs, LocalFuture, LogFile, LogFs, WriteBehind};
use super::storage::{NewFile, StdStorage, Storage};

/// An operation of the seam.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// [`Storage::create_synced`] (segment files, sidecars, pointer, side files).
    Create,
    /// [`Storage::rename`].
    Rename,
    /// [`Storage::link`].
    Link,
    /// [`Storage::remove`].
    Remove,
    /// [`Storage::sync_dir`].
    SyncDir,
    /// [`Storage::list`].
    List,
    /// [`Storage::read_at`] and [`Storage::read`].
    ReadFile,
    /// [`LogFile::write_at`].
    Write,
    /// [`LogFile::sync`].
    Sync,
    /// [`LogFile::write_behind`].
    WriteBehind,
    /// [`LogFile::write_synced`], checked before the [`Op::WriteBehind`]
    /// and [`Op::Sync`] rules, which it honours too (it is both).
    WriteSynced,
}

/// What a matching operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Fails (EIO) and changes nothing.
    Fail,
    /// A [`Op::Create`] writes only this many bytes of the file (not
    /// synced), then fails.
    Tear(usize),
    /// The process dies here: nothing more reaches the disk.
    Crash,
}

#[derive(Debug)]
struct Rule {
    op: Op,
    path_has: String,
    fault: Fault,
}

/// The fault rules, shared by a [`FaultyFs`], its files and its storage.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: Mutex<Vec<Rule>>,
    crashed: AtomicBool,
}

impl Faults {
    /// From now on, `op` on a path containing `path_has` does `fault`.
    pub(crate) fn set(&self, op: Op, path_has: &str, fault: Fault) {
        self.rules.lock().expect("not poisoned").push(Rule {
            op,
            path_has: path_has.to_owned(),
            fault,
        });
    }

    /// No more faults (a crash is over too: the "next process" runs).
    pub(crate) fn clear(&self) {
        self.rules.lock().expect("not poisoned").clear();
        self.crashed.store(false, Ordering::SeqCst);
    }

    /// Whether a crash rule fired.
    pub(crate) fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// The fault for `op` on `path`: an error to return at once, a tear,
    /// or nothing.
    fn check(&self, op: Op, path: &Path) -> io::Result<Option<usize>> {
        if self.crashed() {
            return Err(crashed());
        }
        let rules = self.rules.lock().expect("not poisoned");
        let path = path.to_string_lossy();
        let Some(rule) = rules
            .iter()
            .find(|r| r.op == op && path.contains(r.path_has.as_str()))
        else {
            return Ok(None);
        };
        match rule.fault {
            Fault::Fail => Err(io::Error::from_raw_os_error(libc::EIO)),
            Fault::Tear(n) => Ok(Some(n)),
            Fault::Crash => {
                self.crashed.store(true, Ordering::SeqCst);
                Err(crashed())
            }
        }
    }
}

fn crashed() -> io::Error {
    io::Error::other("the process crashed here (test fault)")
}

/// [`StdStorage`] with faults.
#[derive(Debug)]
pub(crate) struct FaultyStorage {
    pub(crate) faults: Arc<Faults>,
}

impl Storage for FaultyStorage {
    fn create_synced(&self, path: &Path, file: &NewFile<'_>) -> io::Result<()> {
        if let Some(keep) = self.faults.check(Op::Create, path)? {
            let mut bytes = Vec::new();
            (file.contents)(&mut bytes)?;
            bytes.truncate(keep);
            std::fs::write(path, &bytes)?;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        StdStorage.create_synced(path, file)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.check(Op::Rename, to)?;
        StdStorage.rename(from, to)
    }
    fn link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.check(Op::Link, to)?;
        StdStorage.link(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.faults.check(Op::Remove, path)?;
        StdStorage.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.faults.check(Op::SyncDir, dir)?;
        StdStorage.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdStorage.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.faults.check(Op::List, dir)?;
        StdStorage.list(dir)
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        StdStorage.len(path)
    }
    fn read_at(&self, path: &Path, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        self.faults.check(Op::ReadFile, path)?;
        StdStorage.read_at(path, pos, len)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.faults.check(Op::ReadFile, path)?;
        StdStorage.read(path)
    }
}

/// glommio's DMA files with faults, for a whole log.
pub(crate) struct FaultyFs {
    inner: DmaFs,
    /// The rules (set and clear them while the log runs).
    pub(crate) faults: Arc<Faults>,
}

impl FaultyFs {
    /// A file layer with no faults yet.
    pub(crate) fn new() -> FaultyFs {
        let faults = Arc::new(Faults::default());
        let storage = Arc::new(FaultyStorage {
            faults: faults.clone(),
        });
        FaultyFs {
            inner: DmaFs::with_storage(storage),
            faults,
        }
    }

    fn wrap(&self, inner: Rc<dyn LogFile>, path: &Path) -> Rc<dyn LogFile> {
        Rc::new(FaultyFile {
            inner,
            path: path.to_owned(),
            faults: self.faults.clone(),
        })
    }
}

struct FaultyFile {
    inner: Rc<dyn LogFile>,
    path: PathBuf,
    faults: Arc<Faults>,
}

impl LogFile for FaultyFile {
    fn write_at<'a>(&'a self, data: &'a [u8], pos: u64) -> LocalFuture<'a, io::Result<()>> {
        if let Err(e) = self.faults.check(Op::Write, &self.path) {
            return Box::pin(async move { Err(e) });
        }
        self.inner.write_at(data, pos)
    }
    fn sync(&self) -> LocalFuture<'_, io::Result<()>> {
        if let Err(e) = self.faults.check(Op::Sync, &self.path) {
            return Box::pin(async move { Err(e) });
        }
        self.inner.sync()
    }
    fn read_at(&self, pos: u64, len: usize) -> LocalFuture<'_, io::Result<Bytes>> {
        self.inner.read_at(pos, len)
    }
    fn zero_range(&self, pos: u64, len: u64) -> LocalFuture<'_, io::Result<()>> {
        if let Err(e) = self.faults.check(Op::Write, &self.path) {
            return Box::pin(async move { Err(e) });
        }
        self.inner.zero_range(pos, len)
    }
    fn next_data(&self, pos: u64) -> io::Result<Option<u64>> {
        self.inner.next_data(pos)
    }
    fn write_behind(&self, part: BytesMut, from: usize, pos: u64) -> Result<WriteBehind, BytesMut> {
        if let Err(e) = self.faults.check(Op::WriteBehind, &self.path) {
            return Ok(Box::pin(async move { (Err(e), part) }));
        }
        self.inner.write_behind(part, from, pos)
    }
    fn write_synced(&self, part: BytesMut, from: usize, pos: u64) -> Result<WriteBehind, BytesMut> {
        let failed =
            |e: io::Error, part| -> WriteBehind { Box::pin(async move { (Err(e), part) }) };
        for op in [Op::WriteSynced, Op::WriteBehind] {
            if let Err(e) = self.faults.check(op, &self.path) {
                return Ok(failed(e, part));
            }
        }
        match self.faults.check(Op::Sync, &self.path) {
            Ok(_) => self.inner.write_synced(part, from, pos),
            // The write happens, its sync fails (or the process dies there).
            Err(e) => match self.inner.write_behind(part, from, pos) {
                Ok(done) => Ok(Box::pin(async move { (Err(e), done.await.1) })),
                Err(part) => Ok(failed(e, part)),
            },
        }
    }
}

impl LogFs for FaultyFs {
    fn create<'a>(
        &'a self,
        path: &'a Path,
        header: &'a [u8],
        size: u64,
    ) -> LocalFuture<'a, io::Result<Rc<dyn LogFile>>> {
        Box::pin(async move {
            let inner = self.inner.create(path, header, size).await?;
            Ok(self.wrap(inner, path))
        })
    }
    fn open<'a>(&'a self, path: &'a Path) -> LocalFuture<'a, io::Result<Rc<dyn LogFile>>> {
        Box::pin(async move {
            let inner = self.inner.open(path).await?;
            Ok(self.wrap(inner, path))
        })
    }
    fn storage(&self) -> Arc<dyn Storage> {
        self.inner.storage()
    }
}
