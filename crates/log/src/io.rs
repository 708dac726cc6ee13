//! Segment file I/O of the log behind a small trait, so tests can inject
//! torn writes and failed syncs; the production implementation is
//! glommio's O_DIRECT [`DmaFile`]. This is one half of the storage seam;
//! the other, every whole-file and directory operation, is [`Storage`]
//! (`storage.rs`), which a [`LogFs`] hands out with its files.
//!
//! Contract: `write_at` gets block-aligned positions and lengths (the log
//! pads); `read_at` takes any range. A file is created with its header
//! already written and synced through the page cache, because glommio
//! probes whether polled O_DIRECT reads work on the first DmaFile a process
//! opens, and an empty file makes that probe pass wrongly (every later read
//! then fails with EOPNOTSUPP; see MACHINE-NOTES.md).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use super::storage::{self, NewFile, StdStorage, Storage};

/// A boxed local future (no `Send`: the log lives on one shard).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Block size for positions and lengths of writes.
pub const BLOCK: u64 = 4096;

/// One open segment file.
pub trait LogFile {
    /// Writes `data` at `pos` (a multiple of [`BLOCK`]), zero-padded to a
    /// multiple of [`BLOCK`].
    fn write_at<'a>(&'a self, data: &'a [u8], pos: u64) -> LocalFuture<'a, io::Result<()>>;
    /// Makes every completed write durable (fdatasync).
    fn sync(&self) -> LocalFuture<'_, io::Result<()>>;
    /// Reads up to `len` bytes at `pos` (fewer at the end of the file).
    fn read_at(&self, pos: u64, len: usize) -> LocalFuture<'_, io::Result<Bytes>>;
    /// Turns `[pos, pos + len)` (block-aligned) into zeros.
    fn zero_range(&self, pos: u64, len: u64) -> LocalFuture<'_, io::Result<()>>;
    /// Where the file next holds data at or after `pos` (`None`: nowhere
    /// up to its end); everything before that is zeros the file system
    /// never stored (a hole, or preallocated and unwritten). Recovery skips
    /// it instead of reading it. The default knows no holes.
    fn next_data(&self, pos: u64) -> io::Result<Option<u64>> {
        Ok(Some(pos))
    }
    /// Starts writing `part[from..]` (whole blocks) at `pos` (block-aligned)
    /// at once, off the shard's thread; the completion hands `part` back.
    /// `Err(part)` if this file cannot (then the log writes everything at
    /// commit). Not durable until a [`LogFile::sync`] issued after it
    /// completed.
    fn write_behind(
        &self,
        part: BytesMut,
        _from: usize,
        _pos: u64,
    ) -> Result<WriteBehind, BytesMut> {
        Err(part)
    }
    /// [`LogFile::write_behind`] followed by an fdatasync on the same
    /// thread: when it completes, these bytes and every write to this file
    /// that completed before the call are durable. A commit with nothing
    /// else in flight uses it, so its bytes cross to the disk and back in
    /// one hand-off (issue #17). `Err(part)` if this file cannot (then the
    /// log writes and syncs separately).
    fn write_synced(
        &self,
        part: BytesMut,
        _from: usize,
        _pos: u64,
    ) -> Result<WriteBehind, BytesMut> {
        Err(part)
    }
}

/// Completion of a [`LogFile::write_behind`] or [`LogFile::write_synced`]:
/// the result and the bytes.
pub type WriteBehind = LocalFuture<'static, (io::Result<()>, BytesMut)>;

/// Creates and opens segment files, and hands out the [`Storage`] that
/// goes with them (removals, small files, listings, directory syncs).
pub trait LogFs {
    /// Creates `path` holding `header`, preallocated to `size` bytes, and
    /// opens it. The file appears under `path` whole or not at all
    /// ([`storage::write_atomically`]).
    fn create<'a>(
        &'a self,
        path: &'a Path,
        header: &'a [u8],
        size: u64,
    ) -> LocalFuture<'a, io::Result<Rc<dyn LogFile>>>;
    /// Opens an existing segment for reading and writing.
    fn open<'a>(&'a self, path: &'a Path) -> LocalFuture<'a, io::Result<Rc<dyn LogFile>>>;
    /// Every other file operation of the log.
    fn storage(&self) -> Arc<dyn Storage>;
}

/// Extension of a segment being built, before it is linked into place
/// (not `seg`, so a listing of segments never returns one).
pub const UNFINISHED_EXTENSION: &str = "seg.tmp";

/// Where the segment `path` is built before it is linked into place.
pub fn temporary_name(path: &Path) -> PathBuf {
    storage::temp_path(path, storage::TempName::Beside)
}

/// glommio DMA files. The files of one log share a pool of write buffers.
#[derive(Clone)]
pub struct DmaFs {
    pieces: Pieces,
    behind_pool: Rc<std::cell::RefCell<Vec<AlignedBuf>>>,
    storage: Arc<dyn Storage>,
}

impl Default for DmaFs {
    fn default() -> Self {
        DmaFs::with_storage(Arc::new(StdStorage))
    }
}

impl DmaFs {
    /// DMA segment files, with `storage` for every other file operation
    /// (segment files are created through it too).
    pub fn with_storage(storage: Arc<dyn Storage>) -> DmaFs {
        DmaFs {
            pieces: Pieces::default(),
            behind_pool: Default::default(),
            storage,
        }
    }
}

impl std::fmt::Debug for DmaFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaFs")
            .field("pooled_pieces", &self.pieces.borrow().len())
            .finish()
    }
}

/// Full-size write pieces kept for reuse: a warm log allocates none, so no
/// memory is faulted in (zeroed by the kernel) per commit.
type Pieces = Rc<std::cell::RefCell<Vec<DmaBuffer>>>;

/// Pieces pooled at most (16 MiB).
const POOLED_PIECES: usize = 64;

struct Dma {
    file: DmaFile,
    pieces: Pieces,
    /// Its path: write-behind opens it O_DIRECT on glommio's blocking
    /// thread for each piece (no second descriptor held per segment).
    path: std::sync::Arc<PathBuf>,
    /// Aligned buffers for write-behind, returned by each write.
    behind_pool: Rc<std::cell::RefCell<Vec<AlignedBuf>>>,
}

/// A heap buffer with a block-aligned window (O_DIRECT wants aligned
/// memory): safe code, no custom allocator; `Send`, so the blocking thread
/// can write from it.
#[derive(Debug)]
pub struct AlignedBuf {
    vec: Vec<u8>,
    offset: usize,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer able to hold `capacity` bytes at an aligned address.
    fn new(capacity: usize) -> AlignedBuf {
        let vec = vec![0u8; capacity + BLOCK as usize];
        let offset = vec.as_ptr().align_offset(BLOCK as usize);
        AlignedBuf {
            vec,
            offset,
            len: 0,
        }
    }

    fn capacity(&self) -> usize {
        self.vec.len() - self.offset
    }

    /// Holds a copy of `data`.
    fn fill(&mut self, data: &[u8]) {
        self.vec[self.offset..self.offset + data.len()].copy_from_slice(data);
        self.len = data.len();
    }

    fn as_slice(&self) -> &[u8] {
        &self.vec[self.offset..self.offset + self.len]
    }
}

/// What the blocking thread does after a hand-off's write.
#[derive(Clone, Copy)]
enum AfterWrite {
    Nothing,
    /// fdatasync the file: the write and every one completed before it
    /// are durable when the completion arrives.
    Sync,
}

/// Write-behind buffers kept per log (each is a write in flight at most).
const BEHIND_POOL: usize = 32;

/// Largest single O_DIRECT write (a multiple of [`BLOCK`]).
const WRITE_PIECE: usize = 256 << 10;

impl Dma {
    /// Writes `part[from..]` at `pos` on glommio's blocking thread (then
    /// syncs, if asked), started at once; the completion hands `part` back.
    fn hand_off(&self, part: BytesMut, from: usize, pos: u64, then: AfterWrite) -> WriteBehind {
        debug_assert!(pos % BLOCK == 0 && (part.len() - from) as u64 % BLOCK == 0);
        let path = self.path.clone();
        // Opens the segment O_DIRECT, writes `data` at `pos`, and syncs
        // through the same descriptor (fdatasync acts on the file, so it
        // covers writes made through the shard's descriptor too).
        let write = move |data: &[u8]| -> io::Result<()> {
            use std::os::unix::fs::{FileExt, OpenOptionsExt};
            let file = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(&*path)?;
            file.write_all_at(data, pos)?;
            match then {
                AfterWrite::Nothing => Ok(()),
                AfterWrite::Sync => file.sync_data(),
            }
        };
        let mut future: WriteBehind = if part[from..].as_ptr().align_offset(BLOCK as usize) == 0 {
            // The log's buffer is block-aligned in memory: write from it.
            let written = glommio::executor().spawn_blocking(move || {
                let result = write(&part[from..]);
                (result, part)
            });
            Box::pin(written)
        } else {
            // Not aligned (a buffer that had to grow): copy it.
            let mut buf = self
                .behind_pool
                .borrow_mut()
                .pop()
                .filter(|b| b.capacity() >= part.len() - from)
                .unwrap_or_else(|| AlignedBuf::new(part.len() - from));
            buf.fill(&part[from..]);
            let pool = self.behind_pool.clone();
            let written = glommio::executor().spawn_blocking(move || {
                let result = write(buf.as_slice());
                (result, buf)
            });
            Box::pin(async move {
                let (result, buf) = written.await;
                let mut pool = pool.borrow_mut();
                if pool.len() < BEHIND_POOL {
                    pool.push(buf);
                }
                (result, part)
            })
        };
        // Poll once now: that hands the write to the blocking thread at
        // once, while this shard goes on appending (glommio submits its own
        // I/O only when the task queue yields). Whoever awaits the
        // completion later registers the real waker.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if let std::task::Poll::Ready(done) = future.as_mut().poll(&mut cx) {
            future = Box::pin(std::future::ready(done));
        }
        future
    }

    async fn write_piece(&self, data: &[u8], pos: u64) -> io::Result<()> {
        let padded = (data.len() as u64).div_ceil(BLOCK) * BLOCK;
        let full = padded as usize == WRITE_PIECE;
        let pooled = full.then(|| self.pieces.borrow_mut().pop()).flatten();
        let mut buf = pooled.unwrap_or_else(|| self.file.alloc_dma_buffer(padded as usize));
        let bytes = buf.as_bytes_mut();
        bytes[..data.len()].copy_from_slice(data);
        bytes[data.len()..].fill(0);
        let buf = Rc::new(buf);
        let written = self.file.write_rc_at(buf.clone(), pos).await;
        if full {
            if let Ok(buf) = Rc::try_unwrap(buf) {
                let mut pool = self.pieces.borrow_mut();
                if pool.len() < POOLED_PIECES {
                    pool.push(buf);
                }
            }
        }
        let n = written.map_err(io::Error::from)?;
        if n as u64 != padded {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write {n} of {padded} at {pos}"),
            ));
        }
        Ok(())
    }
}

/// Polls every future until all are done; results in input order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, r) in futures.iter_mut().zip(results.iter_mut()) {
            if r.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *r = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results
        .into_iter()
        .map(|r| r.expect("every future completed"))
        .collect()
}

impl LogFile for Dma {
    fn write_at<'a>(&'a self, data: &'a [u8], pos: u64) -> LocalFuture<'a, io::Result<()>> {
        Box::pin(async move {
            debug_assert!(pos % BLOCK == 0, "unaligned write at {pos}");
            // Pieces small enough to come from the executor's registered
            // I/O memory (pinned, already touched) rather than fresh heap
            // pages, which would cost a page fault per 4 KiB; all pieces
            // are in flight at once.
            let pieces: Vec<_> = data
                .chunks(WRITE_PIECE)
                .enumerate()
                .map(|(i, piece)| self.write_piece(piece, pos + (i * WRITE_PIECE) as u64))
                .collect();
            for result in join_all(pieces).await {
                result?;
            }
            Ok(())
        })
    }

    fn sync(&self) -> LocalFuture<'_, io::Result<()>> {
        Box::pin(async move { self.file.fdatasync().await.map_err(io::Error::from) })
    }

    fn read_at(&self, pos: u64, len: usize) -> LocalFuture<'_, io::Result<Bytes>> {
        Box::pin(async move {
            let r = self.file.read_at(pos, len).await.map_err(io::Error::from)?;
            Ok(Bytes::copy_from_slice(&r))
        })
    }

    fn write_behind(&self, part: BytesMut, from: usize, pos: u64) -> Result<WriteBehind, BytesMut> {
        Ok(self.hand_off(part, from, pos, AfterWrite::Nothing))
    }

    fn write_synced(&self, part: BytesMut, from: usize, pos: u64) -> Result<WriteBehind, BytesMut> {
        Ok(self.hand_off(part, from, pos, AfterWrite::Sync))
    }

    fn next_data(&self, pos: u64) -> io::Result<Option<u64>> {
        use std::os::fd::AsRawFd;
        next_data(self.file.as_raw_fd(), pos)
    }

    fn zero_range(&self, pos: u64, len: u64) -> LocalFuture<'_, io::Result<()>> {
        Box::pin(async move {
            if len > 0 {
                self.file
                    .deallocate(pos, len)
                    .await
                    .map_err(io::Error::from)?;
            }
            Ok(())
        })
    }
}

/// `lseek(SEEK_DATA)`: the next offset at or after `pos` the file system
/// holds data for (block-granular, never past real data), `None` past the
/// last. A file system that cannot tell answers `pos` itself.
pub fn next_data(fd: std::os::fd::RawFd, pos: u64) -> io::Result<Option<u64>> {
    let Ok(offset) = libc::off_t::try_from(pos) else {
        return Ok(None);
    };
    // SAFETY: lseek takes a descriptor and two integers and touches no
    // memory; a bad descriptor is an error return. It moves the file's
    // offset, which nothing here uses (all reads and writes are
    // positional).
    let at = unsafe { libc::lseek(fd, offset, libc::SEEK_DATA) };
    if at >= 0 {
        return Ok(Some(at as u64));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        // No SEEK_DATA here: everything may be data.
        Some(libc::EINVAL) => Ok(Some(pos)),
        _ => Err(e),
    }
}

async fn dma_open(path: &Path) -> io::Result<DmaFile> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(path)
        .await
        .map_err(io::Error::from)
}

impl LogFs for DmaFs {
    fn create<'a>(
        &'a self,
        path: &'a Path,
        header: &'a [u8],
        size: u64,
    ) -> LocalFuture<'a, io::Result<Rc<dyn LogFile>>> {
        Box::pin(async move {
            // Create, size and sync on glommio's blocking thread: three
            // blocking syscalls with two fsyncs would stall the shard.
            // Built under a temporary name and linked into place once its
            // header is durable: a crash between creating the file and
            // writing its header left a headerless segment that recovery
            // (rightly) refuses (found by a 1,000-cycle kill -9 loop).
            let (owned_path, header) = (path.to_owned(), header.to_vec());
            let storage = self.storage.clone();
            glommio::executor()
                .spawn_blocking(move || {
                    let contents = |out: &mut dyn io::Write| out.write_all(&header);
                    let file = NewFile::new(&contents).len(size).keep_existing();
                    storage::write_atomically(&*storage, &owned_path, &file)
                })
                .await?;
            let f = dma_open(path).await?;
            // Reserve the blocks now so appends do not allocate; a failure
            // (e.g. a filesystem without fallocate) only costs speed.
            let _ = f.pre_allocate(size, true).await;
            Ok(Rc::new(Dma {
                file: f,
                pieces: self.pieces.clone(),
                path: std::sync::Arc::new(path.to_owned()),
                behind_pool: self.behind_pool.clone(),
            }) as Rc<dyn LogFile>)
        })
    }

    fn open<'a>(&'a self, path: &'a Path) -> LocalFuture<'a, io::Result<Rc<dyn LogFile>>> {
        Box::pin(async move {
            Ok(Rc::new(Dma {
                file: dma_open(path).await?,
                pieces: self.pieces.clone(),
                path: std::sync::Arc::new(path.to_owned()),
                behind_pool: self.behind_pool.clone(),
            }) as Rc<dyn LogFile>)
        })
    }

    fn storage(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }
}
