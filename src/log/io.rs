//! File I/O of the log behind a small trait, so tests can inject torn
//! writes and failed syncs; the production implementation is glommio's
//! O_DIRECT [`DmaFile`].
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

use bytes::Bytes;
use glommio::io::{DmaFile, OpenOptions};

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
}

/// Creates, opens and removes segment files.
pub trait LogFs {
    /// Creates `path` holding `header`, preallocated to `size` bytes, and opens it.
    fn create<'a>(
        &'a self,
        path: &'a Path,
        header: &'a [u8],
        size: u64,
    ) -> LocalFuture<'a, io::Result<Rc<dyn LogFile>>>;
    /// Opens an existing segment for reading and writing.
    fn open<'a>(&'a self, path: &'a Path) -> LocalFuture<'a, io::Result<Rc<dyn LogFile>>>;
    /// Deletes a segment.
    fn remove<'a>(&'a self, path: &'a Path) -> LocalFuture<'a, io::Result<()>>;
    /// Segment files (`*.seg`) in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "seg") {
                out.push(p);
            }
        }
        Ok(out)
    }
}

/// glommio DMA files.
#[derive(Debug, Default, Clone, Copy)]
pub struct DmaFs;

struct Dma(DmaFile);

/// Largest single O_DIRECT write (a multiple of [`BLOCK`]).
const WRITE_PIECE: usize = 256 << 10;

impl Dma {
    async fn write_piece(&self, data: &[u8], pos: u64) -> io::Result<()> {
        let padded = (data.len() as u64).div_ceil(BLOCK) * BLOCK;
        let mut buf = self.0.alloc_dma_buffer(padded as usize);
        let bytes = buf.as_bytes_mut();
        bytes[..data.len()].copy_from_slice(data);
        bytes[data.len()..].fill(0);
        let n = self.0.write_at(buf, pos).await.map_err(io::Error::from)?;
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
        Box::pin(async move { self.0.fdatasync().await.map_err(io::Error::from) })
    }

    fn read_at(&self, pos: u64, len: usize) -> LocalFuture<'_, io::Result<Bytes>> {
        Box::pin(async move {
            let r = self.0.read_at(pos, len).await.map_err(io::Error::from)?;
            Ok(Bytes::copy_from_slice(&r))
        })
    }

    fn zero_range(&self, pos: u64, len: u64) -> LocalFuture<'_, io::Result<()>> {
        Box::pin(async move {
            if len > 0 {
                self.0.deallocate(pos, len).await.map_err(io::Error::from)?;
            }
            Ok(())
        })
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
            {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)?;
                f.write_all(header)?;
                f.set_len(size)?;
                f.sync_all()?;
            }
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            let f = dma_open(path).await?;
            // Reserve the blocks now so appends do not allocate; a failure
            // (e.g. a filesystem without fallocate) only costs speed.
            let _ = f.pre_allocate(size, true).await;
            Ok(Rc::new(Dma(f)) as Rc<dyn LogFile>)
        })
    }

    fn open<'a>(&'a self, path: &'a Path) -> LocalFuture<'a, io::Result<Rc<dyn LogFile>>> {
        Box::pin(async move { Ok(Rc::new(Dma(dma_open(path).await?)) as Rc<dyn LogFile>) })
    }

    fn remove<'a>(&'a self, path: &'a Path) -> LocalFuture<'a, io::Result<()>> {
        Box::pin(async move {
            std::fs::remove_file(path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
    }
}
