//! Group commit of one shard's log: the write buffers, write-behind and
//! the committer task (`segment_log.rs` owns appends, reads and retention).
//!
//! Ground rules:
//! - One committer task per log writes the pending bytes with O_DIRECT,
//!   block-aligned (the partial last block is rewritten by the next
//!   commit), then fdatasyncs, then wakes every waiter the sync covers. It
//!   commits at once when `sync_bytes` are pending, otherwise after
//!   `sync_interval`, so concurrent appenders share one sync.
//! - Write-behind: glommio submits io_uring requests only when the task
//!   queue yields, so while a shard appends, its commit's writes wait. Once
//!   `write_behind_bytes` of full blocks are pending, `append` splits them
//!   off the (block-aligned) write buffer and hands them to glommio's
//!   blocking thread, which writes them O_DIRECT at once. A commit hands
//!   what they do not cover to the same thread straight away (queued behind
//!   them, not after they came back), takes all the bytes back (no copy)
//!   and issues its fdatasync once every write completed. A commit that is
//!   one write to one file with no piece in flight (the usual small
//!   commit) has that thread fdatasync right after its write: one hand-off
//!   per commit, no io_uring FSYNC on a kernel worker (issue #17). The block a
//!   commit in flight writes is never written by a piece; the piece keeps a
//!   copy of it for the next commit.
//! - Sidecars, new segment files and the checkpoint pointer are written on
//!   the blocking thread too (their fsyncs would stall the shard), each
//!   through the storage seam's atomic write (`storage.rs`).
//! - Commit markers: once a commit is durable, the next commit carries a
//!   marker record saying so (`up_to` = the durable end); with nothing
//!   else to commit for `marker_delay`, a commit of the marker alone. A
//!   marker claims only what was durable before it was made, so it stays
//!   true whatever order a crash lets its own commit reach the disk in.
//!   Recovery uses markers to tell a torn tail (never acknowledged) from
//!   damage to acknowledged records (`recovery.rs`).
//! - A failed write or sync poisons the log: every waiter gets the error and
//!   every later append is refused.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use glommio::channels::local_channel::LocalReceiver;

use super::format::{self, SEGMENT_HEADER_LEN};
use super::io::{WriteBehind, BLOCK};
use super::segment::{self, Segment};
use super::segment_log::{io_error, Inner, LogError, Lsn, State};
use super::storage::{self, NewFile, Storage};
use super::window::WindowStart;

/// A write-behind piece of the segment at `base`: it carries the bytes
/// `[start, end)` (from the pending buffer's start at hand-off) and writes
/// `[from, end)`. A piece cut while a commit was writing its first block
/// leaves that block alone and keeps a copy of it in `head`, so the next
/// commit can write it without waiting for the piece to come back.
pub(super) struct Behind {
    pub(super) base: u64,
    pub(super) start: Lsn,
    pub(super) from: Lsn,
    pub(super) end: Lsn,
    pub(super) head: Option<BytesMut>,
    pub(super) done: WriteBehind,
}

/// Committed bytes of the log kept for reads.
pub(super) struct Chunk {
    /// Position of the first byte.
    pub(super) start: Lsn,
    pub(super) bytes: Bytes,
    /// Size of the allocation behind `bytes`.
    pub(super) held: usize,
}

/// Emptied write buffers kept for reuse.
const SPARE_BUFFERS: usize = 4;

/// Smallest write buffer. A log starts with buffers this small and grows
/// them on demand ([`note_buffer_use`]): a quiet log (idle sessions'
/// state records) then holds a few of these instead of a few MiB (issue
/// #17 goal 4: 1 MiB buffers were 0.4 KiB per idle connection at 10,000).
/// A busy log's buffers follow what its commits carry, so they rarely
/// grow within a commit (growing means a new allocation whose pages the
/// kernel zeroes as they are touched).
const MIN_WRITE_BUFFER: usize = 64 << 10;

/// Largest write buffer chosen up front: a log whose commits carry more
/// grows its buffers (a copy) rather than keep more memory per shard.
const MAX_WRITE_BUFFER: usize = 16 << 20;

/// Sizes the next write buffers after one that carried `used` bytes from
/// its start until a commit took it, with a quarter to spare: a buffer
/// that runs out while write-behind pieces still share its allocation
/// cannot grow in place, and growing copies it into fresh pages (which the
/// kernel zeroes first). Shrinks slowly once commits get smaller.
pub(super) fn note_buffer_use(st: &mut State, used: usize) {
    let want = (used + used / 4).clamp(MIN_WRITE_BUFFER, MAX_WRITE_BUFFER);
    st.buffer_size = if want >= st.buffer_size {
        want
    } else {
        st.buffer_size - (st.buffer_size - want) / 16
    };
}

/// The next write buffer: a warm one from the tail if it is big enough,
/// else a new one of the size recent commits needed, so appends do not
/// grow it by doubling and copying.
fn fresh_buffer(st: &mut State) -> BytesMut {
    let want = st.buffer_size.max(MIN_WRITE_BUFFER);
    let mut buf = loop {
        match st.spare.pop() {
            Some(b) if reusable(st, b.capacity()) => break b,
            Some(_) => continue, // too small now: freed
            None => break BytesMut::with_capacity(want + BLOCK as usize),
        }
    };
    align_empty(&mut buf);
    buf
}

/// Whether a buffer of `capacity` is worth keeping for the next write
/// buffer: it holds what a commit carried (the wanted size has a quarter
/// on top). Demanding the full size would throw away every spare whenever
/// commits grow a little, and a new buffer of this size comes as fresh
/// pages the kernel zeroes first; keeping smaller ones (copies made for
/// the cache) would take the spare slots a busy log's buffers need.
fn reusable(st: &State, capacity: usize) -> bool {
    capacity >= st.buffer_size.max(MIN_WRITE_BUFFER) / 5 * 4
}

/// Moves the start of an empty buffer to the next block boundary in memory
/// (no copy: the skipped bytes stay unused), so block-aligned log positions
/// are block-aligned addresses, as O_DIRECT wants them.
fn align_empty(buf: &mut BytesMut) {
    debug_assert!(buf.is_empty());
    let skip = buf.as_ptr().align_offset(BLOCK as usize);
    if skip != 0 && skip < buf.capacity() {
        buf.resize(skip, 0);
        bytes::Buf::advance(buf, skip);
    }
}

/// Starts a new segment after the active one: its bytes are written by the
/// committer, which also creates the file.
pub(super) fn roll(st: &mut State, segment_bytes: u64) {
    let (base, capacity) = {
        let seg = &st.segments[&st.active];
        (seg.base, seg.capacity)
    };
    let next = fresh_buffer(st);
    let pending = std::mem::replace(&mut st.pending, next);
    let start = st.chunk_start;
    st.sealed.push((base, start, pending));
    let new_base = base + capacity;
    st.create_pending.push(new_base);
    st.segments.insert(
        new_base,
        Segment {
            base: new_base,
            capacity: segment_bytes - SEGMENT_HEADER_LEN,
            file: st.segments[&base].file.clone(), // replaced once created
            path: PathBuf::new(),
            inbox_max: Default::default(),
            max_ts_ms: 0,
            end: new_base,
            // Sized like the last segment's: growing them while appending
            // would fault in fresh pages again and again.
            entries: Vec::with_capacity(st.segments[&base].entries.len()),
            keys: Vec::with_capacity(st.segments[&base].keys.len()),
        },
    );
    st.active = new_base;
    st.pending_start = new_base;
    st.chunk_start = new_base;
    st.behind_from = new_base;
    st.next = new_base;
}

/// Hands the active segment's full blocks to the disk in whole pieces of
/// `piece` bytes once there are enough, so the device writes while the
/// shard goes on appending; the commit then writes only the rest, and its
/// sync covers both.
pub(super) fn start_write_behind(st: &mut State, piece: u64) {
    if piece == 0 || st.behind_from == u64::MAX || st.create_pending.contains(&st.active) {
        return;
    }
    let base = st.active;
    let full = base + (st.next - base) / BLOCK * BLOCK;
    if st.behind_from + piece > full {
        return;
    }
    let from = st.behind_from;
    let end = from + (full - from) / piece * piece;
    debug_assert!(from >= st.pending_start && (from - base) % BLOCK == 0);
    // Split the front off the buffer (no copy): the piece carries its
    // bytes to the blocking thread and back to the commit.
    let start = st.pending_start;
    let part = st.pending.split_to((end - start) as usize);
    let skip = (from - start) as usize;
    // The skipped block is complete (the piece ends past it): a 4 KiB copy
    // for the next commit, which writes it.
    let head = (skip > 0).then(|| BytesMut::from(&part[..skip]));
    let file = st.segments[&base].file.clone();
    match file.write_behind(part, skip, SEGMENT_HEADER_LEN + from - base) {
        Ok(done) => {
            st.behind.push(Behind {
                base,
                start,
                from,
                end,
                head,
                done,
            });
            st.pending_start = end;
            st.behind_from = end;
        }
        // This file layer cannot: rejoin the bytes; the commit writes all.
        Err(part) => {
            let rest = std::mem::replace(&mut st.pending, part);
            st.pending.unsplit(rest);
            st.behind_from = u64::MAX;
        }
    }
}

/// Parts of `[start, end)` that no write-behind piece covers (pieces of
/// one segment are contiguous and block-aligned).
fn uncovered(start: Lsn, end: Lsn, pieces: &[(Lsn, Lsn)]) -> Vec<(Lsn, Lsn)> {
    let mut out = Vec::new();
    let mut at = start;
    for &(s, e) in pieces {
        if e <= at || s >= end {
            continue;
        }
        if s > at {
            out.push((at, s));
        }
        at = at.max(e);
    }
    if at < end {
        out.push((at, end));
    }
    out
}

/// Appends a commit marker if a completed commit made data durable that no
/// marker claims yet and the active segment has room (else the next
/// commit's marker claims it). Returns whether it did.
pub(super) fn append_marker(st: &mut State) -> bool {
    if st.marks.durable <= st.marks.claimed {
        return false;
    }
    let len = format::MARKER_LEN as u64;
    let active = st.active;
    let seg = st.segments.get_mut(&active).expect("active segment exists");
    if st.next + len > seg.base + seg.capacity {
        return false;
    }
    format::encode_marker(st.durable, &mut st.pending);
    st.next += len;
    seg.end = st.next;
    st.marks.claimed = st.marks.durable;
    true
}

/// Points recovery at the checkpoint starting at `lsn`
/// ([`storage::write_atomically`]: the old pointer or the new one, whole).
fn write_pointer(
    storage: &dyn Storage,
    dir: &std::path::Path,
    lsn: Lsn,
    window: WindowStart,
) -> Result<(), LogError> {
    let path = dir.join(format::CHECKPOINT_POINTER);
    let text = format::encode_pointer(lsn, window);
    let contents = |out: &mut dyn std::io::Write| out.write_all(text.as_bytes());
    storage::write_atomically(storage, &path, &NewFile::new(&contents))
        .map_err(|e| io_error("write", &path, e))
}

/// The group committer: writes and syncs pending bytes, wakes waiters.
pub(super) async fn committer(inner: Rc<Inner>, wake: LocalReceiver<()>) {
    loop {
        let marker_owed = {
            let st = inner.st.borrow();
            if st.abandoned {
                drop(st);
                stop_committer(&inner);
                return;
            }
            st.marks.durable > st.marks.claimed
        };
        let delay = inner.config.marker_delay;
        if marker_owed && !delay.is_zero() {
            // Wait for appends, or commit the marker alone after the delay.
            let woken =
                futures_lite::future::or(async { Some(wake.recv().await.is_some()) }, async {
                    glommio::timer::sleep(delay).await;
                    None
                })
                .await;
            match woken {
                Some(false) => return,
                Some(true) => {}
                None => {
                    append_marker(&mut inner.st.borrow_mut());
                }
            }
        } else if wake.recv().await.is_none() {
            return;
        }
        loop {
            let (pending_len, first_at, closed) = {
                let st = inner.st.borrow();
                if st.abandoned {
                    drop(st);
                    stop_committer(&inner);
                    return;
                }
                (st.next - st.durable, st.first_pending_at, st.closed)
            };
            if pending_len == 0 {
                if closed {
                    stop_committer(&inner);
                    return;
                }
                break;
            }
            // Give concurrent appenders a moment to join this commit.
            if (pending_len as usize) < inner.config.sync_bytes {
                if let Some(at) = first_at {
                    let due = at + inner.config.sync_interval;
                    let now = Instant::now();
                    if due > now {
                        glommio::timer::sleep(due - now).await;
                    }
                }
            }
            if let Err(e) = commit(&inner).await {
                let message = e.to_string();
                tracing::error!(dir = %inner.config.dir.display(), error = %message, "log commit failed; log poisoned");
                inner.st.borrow_mut().poisoned = Some(message);
                stop_committer(&inner);
                return;
            }
        }
    }
}

/// Adds a committed buffer that carries message records to the read tail
/// (reads decode only those from it, `from_tail`), evicting the oldest
/// beyond `limit` bytes of memory, and recycles emptied buffers.
fn keep_in_tail(st: &mut State, chunk: Chunk, limit: usize) {
    if chunk.bytes.is_empty() {
        recycle(st, chunk.bytes);
        return;
    }
    // A small commit in a big buffer (a quiet log): keep a right-sized
    // copy, so the tail's memory stays close to the data it holds. The
    // copy leaves out the partial block the commit rewrote when the newest
    // cached chunk holds it already: on a quiet log every commit rewrites
    // up to a block, and a cache of small commits held mostly those
    // repeats (4.3 KiB per MQTT session record, issue #21 item 5).
    let chunk = if chunk.bytes.len() * 4 < chunk.held {
        let end = chunk.start + chunk.bytes.len() as u64;
        let skip = st
            .tail
            .back()
            .map(|prev| prev.start + prev.bytes.len() as u64)
            .filter(|&prev_end| prev_end > chunk.start && prev_end < end)
            .map_or(0, |prev_end| (prev_end - chunk.start) as usize);
        let copy = Bytes::copy_from_slice(&chunk.bytes[skip..]);
        recycle(st, chunk.bytes);
        Chunk {
            start: end - copy.len() as u64,
            held: copy.len(),
            bytes: copy,
        }
    } else {
        chunk
    };
    st.tail_bytes += chunk.held;
    st.tail.push_back(chunk);
    while st.tail_bytes > limit && st.tail.len() > 1 {
        let old = st.tail.pop_front().expect("len > 1");
        st.tail_bytes -= old.held;
        recycle(st, old.bytes);
    }
}

/// Keeps an emptied write buffer for reuse, unless a reader still holds a
/// record of it (then it is freed once the reader drops it) or it is too
/// small for the next write buffer ([`reusable`]: a copy made for the
/// cache, or a buffer of quieter times).
fn recycle(st: &mut State, bytes: Bytes) {
    if st.spare.len() < SPARE_BUFFERS {
        if let Ok(mut buf) = bytes.try_into_mut() {
            if reusable(st, buf.capacity()) {
                buf.clear();
                align_empty(&mut buf);
                st.spare.push(buf);
            }
        }
    }
}

/// Marks the committer stopped and wakes every waiter (they see why).
fn stop_committer(inner: &Inner) {
    let waiters = {
        let mut st = inner.st.borrow_mut();
        st.committer_done = true;
        std::mem::take(&mut st.waiters)
    };
    for (_, w) in waiters {
        w.wake();
    }
}

/// One segment's part of a commit: its bytes from `start` are the pieces'
/// (up to `rest_start`), then `rest`.
struct Share {
    base: u64,
    start: Lsn,
    rest_start: Lsn,
    /// `None` while its write is in flight.
    rest: Option<BytesMut>,
    /// What the pieces of this segment write.
    pieces: Vec<(Lsn, Lsn)>,
    /// Whether the segment gets any write (then it is synced).
    writes: bool,
    /// Whether its write synced it too ([`LogFile::write_synced`]).
    synced: bool,
    /// Ranges to write from the whole chunk once the pieces are back
    /// (file layers without write-behind).
    late: Vec<(Lsn, Lsn)>,
}

impl Share {
    fn new(base: u64, start: Lsn, rest: BytesMut, behind: &[Behind]) -> Share {
        let pieces: Vec<(Lsn, Lsn)> = behind
            .iter()
            .filter(|p| p.base == base)
            .map(|p| (p.from, p.end))
            .collect();
        // A segment's pieces are cut in order, each from where the last ended.
        let rest_start = pieces.last().map_or(start, |&(_, end)| end);
        Share {
            base,
            start,
            rest_start,
            writes: !(rest.is_empty() && pieces.is_empty()),
            synced: false,
            rest: Some(rest),
            pieces,
            late: Vec::new(),
        }
    }

    /// What no piece writes (they start and end on blocks).
    fn unwritten(&self) -> Vec<(Lsn, Lsn)> {
        if !self.writes {
            return Vec::new();
        }
        let len = self.rest.as_ref().map_or(0, |r| r.len()) as u64;
        uncovered(self.start, self.rest_start + len, &self.pieces)
    }
}

/// One group commit: create a rolled-to segment, write the sealed
/// segment's last bytes and the active segment's pending bytes, sync, and
/// advance the durable position.
async fn commit(inner: &Inner) -> Result<(), LogError> {
    let to_create = inner.st.borrow().create_pending.clone();
    for base in to_create {
        let path = segment::file_name(&inner.config.dir, base);
        let file = segment::create(&*inner.fs, &path, base, inner.config.segment_bytes).await?;
        let mut st = inner.st.borrow_mut();
        st.create_pending.retain(|b| *b != base);
        let seg = st
            .segments
            .get_mut(&base)
            .expect("rolled segment registered");
        seg.file = file;
        seg.path = path;
    }
    let (sealed, active, target, behind, data_end, messages) = {
        let mut st = inner.st.borrow_mut();
        st.first_pending_at = None;
        let sealed = std::mem::take(&mut st.sealed);
        let messages = std::mem::take(&mut st.pending_messages);
        append_marker(&mut st);
        let data_end = st.marks.appended;
        // Take the active buffer whole (no copy); the next one starts with
        // the partial last block, which the next commit rewrites.
        let target = st.next;
        let base = st.active;
        let keep_from = base + (target - base) / BLOCK * BLOCK;
        debug_assert!(keep_from >= st.pending_start);
        let used = (target - st.chunk_start) as usize;
        note_buffer_use(&mut st, used);
        let mut next = fresh_buffer(&mut st);
        next.extend_from_slice(&st.pending[(keep_from - st.pending_start) as usize..]);
        let taken = std::mem::replace(&mut st.pending, next);
        st.pending_start = keep_from;
        let active = (
            base,
            std::mem::replace(&mut st.chunk_start, keep_from),
            taken,
        );
        // Pieces handed off so far are part of this commit. The partial
        // last block is written now and rewritten by the next commit: no
        // piece may write it meanwhile.
        let behind = std::mem::take(&mut st.behind);
        if st.behind_from != u64::MAX {
            debug_assert!(st.behind_from <= keep_from + BLOCK);
            st.behind_from = st.behind_from.max(keep_from + BLOCK);
        }
        (sealed, active, target, behind, data_end, messages)
    };
    let sealed_bases: Vec<u64> = sealed.iter().map(|(b, _, _)| *b).collect();
    let file_of = |base: u64| {
        let st = inner.st.borrow();
        let seg = &st.segments[&base];
        (seg.file.clone(), seg.path.clone())
    };
    let mut behind = behind;
    let mut shares: Vec<Share> = sealed
        .into_iter()
        .chain([active])
        .map(|(base, start, rest)| Share::new(base, start, rest, &behind))
        .collect();
    // This commit's own bytes (what no piece writes) go to the disk now,
    // queued behind the pieces still in flight rather than after them.
    // A commit that is one write to one file, with no piece in flight, has
    // the blocking thread sync the file right after writing it: one
    // hand-off instead of a write there and then an io_uring FSYNC that
    // the kernel runs on a worker thread of its own (issue #17).
    let fuse = behind.is_empty() && shares.iter().filter(|s| s.writes).count() == 1;
    let mut own: Vec<(usize, Option<usize>, WriteBehind)> = Vec::new();
    for (i, share) in shares.iter_mut().enumerate() {
        let file = file_of(share.base).0;
        for (from, to) in share.unwritten() {
            let pos = SEGMENT_HEADER_LEN + from - share.base;
            if from >= share.rest_start {
                // The bytes after the pieces, zero-padded to a block.
                let mut rest = share.rest.take().expect("one range in the rest");
                let len = rest.len();
                let skip = (from - share.rest_start) as usize;
                rest.resize(skip + (len - skip).next_multiple_of(BLOCK as usize), 0);
                let synced = match fuse {
                    true => file.write_synced(rest, skip, pos).map(|done| (done, true)),
                    false => Err(rest),
                };
                let handed = synced
                    .or_else(|rest| file.write_behind(rest, skip, pos).map(|done| (done, false)));
                match handed {
                    Ok((done, synced)) => {
                        share.synced = synced;
                        own.push((i, Some(len), done));
                    }
                    Err(mut rest) => {
                        rest.truncate(len);
                        share.rest = Some(rest);
                        share.late.push((from, to));
                    }
                }
            } else {
                // The first block of a piece, cut while a commit wrote it.
                let head = behind
                    .iter_mut()
                    .find(|p| p.base == share.base && p.start == from)
                    .and_then(|p| p.head.take())
                    .expect("a piece's skipped block has a copy");
                debug_assert_eq!(head.len() as u64, to - from);
                match file.write_behind(head, 0, pos) {
                    Ok(done) => own.push((i, None, done)),
                    Err(_) => share.late.push((from, to)),
                }
            }
        }
    }
    // The pieces, then this commit's writes, hand their bytes back.
    let mut parts: Vec<(u64, BytesMut)> = Vec::with_capacity(behind.len());
    for piece in behind {
        let (written, part) = piece.done.await;
        written.map_err(|e| io_error("write", &file_of(piece.base).1, e))?;
        parts.push((piece.base, part));
    }
    for (i, len, done) in own {
        let (written, mut bytes) = done.await;
        let share = &mut shares[i];
        let op = if share.synced {
            "write and fdatasync"
        } else {
            "write"
        };
        written.map_err(|e| io_error(op, &file_of(share.base).1, e))?;
        if let Some(len) = len {
            bytes.truncate(len);
            share.rest = Some(bytes);
        }
    }
    // (segment base, chunk): each segment's pieces rejoined (contiguous
    // in memory: no copy) with the bytes after them.
    let mut synced: Vec<(Rc<dyn super::io::LogFile>, PathBuf)> = Vec::new();
    let mut chunks: Vec<Chunk> = Vec::with_capacity(shares.len());
    for share in shares {
        let mut whole = BytesMut::new();
        for (_, part) in parts.iter_mut().filter(|p| p.0 == share.base) {
            whole.unsplit(std::mem::take(part));
        }
        whole.unsplit(share.rest.expect("every write handed its bytes back"));
        if share.writes {
            let (file, path) = file_of(share.base);
            // A file layer without write-behind: written from the chunk.
            for (from, to) in share.late {
                let slice = &whole[(from - share.start) as usize..(to - share.start) as usize];
                file.write_at(slice, SEGMENT_HEADER_LEN + from - share.base)
                    .await
                    .map_err(|e| io_error("write", &path, e))?;
            }
            if !share.synced {
                synced.push((file, path));
            }
        }
        let held = whole.capacity();
        chunks.push(Chunk {
            start: share.start,
            bytes: whole.freeze(),
            held,
        });
    }
    for (file, path) in &synced {
        file.sync()
            .await
            .map_err(|e| io_error("fdatasync", path, e))?;
    }
    // Sealed segments are complete and durable: their sidecars are written
    // on glommio's blocking thread (a buffered write and two fsyncs would
    // stall the shard); a missing one only makes the next recovery scan.
    for base in sealed_bases {
        let mut st = inner.st.borrow_mut();
        if let Some(seg) = st.segments.get_mut(&base) {
            let job = seg.seal();
            let storage = inner.storage.clone();
            let task = glommio::spawn_local(async move {
                let path = job.path.clone();
                let written = glommio::executor()
                    .spawn_blocking(move || segment::write_sidecar(&*storage, &job))
                    .await;
                if let Err(e) = written {
                    tracing::warn!(segment = %path.display(), error = %e, "sidecar not written; the next recovery scans this segment");
                }
            });
            st.sidecar_tasks.push(task);
        }
    }
    let (durable, pointer) = {
        let mut st = inner.st.borrow_mut();
        let durable = st.durable.max(target);
        let pointer = st.pointer_due.filter(|(_, end, _)| *end <= durable);
        if pointer.is_some() {
            st.pointer_due = None;
        }
        (durable, pointer)
    };
    // A checkpoint became durable: point recovery at it before anyone
    // learns that (retention deletes segments once its checkpoint is
    // durable, and recovery must then start from it). Written on the
    // blocking thread: two fsyncs would stall the shard.
    if let Some((start, _, window)) = pointer {
        let (dir, storage) = (inner.config.dir.clone(), inner.storage.clone());
        glommio::executor()
            .spawn_blocking(move || write_pointer(&*storage, &dir, start, window))
            .await?;
    }
    let mut ready = {
        let mut st = inner.st.borrow_mut();
        st.durable = durable;
        st.marks.durable = st.marks.durable.max(data_end);
        st.stats.syncs += 1;
        for chunk in chunks {
            if messages {
                keep_in_tail(&mut st, chunk, inner.config.cache_bytes);
            } else {
                // Only state records, markers or checkpoints: nothing a
                // read takes from the tail (issue #17 goal 4: ~400 bytes
                // per idle MQTT session).
                recycle(&mut st, chunk.bytes);
            }
        }
        // Into a kept vector: no allocation per commit.
        let mut ready = std::mem::take(&mut st.ready);
        let mut i = 0;
        while i < st.waiters.len() {
            if st.waiters[i].0 <= durable {
                ready.push(st.waiters.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        ready
    };
    for w in ready.drain(..) {
        w.wake();
    }
    inner.st.borrow_mut().ready = ready;
    Ok(())
}

#[cfg(test)]
mod write_behind_tests {
    use super::uncovered;

    #[test]
    fn uncovered_leaves_out_exactly_the_pieces() {
        assert_eq!(uncovered(0, 100, &[]), vec![(0, 100)]);
        assert_eq!(uncovered(0, 100, &[(0, 40)]), vec![(40, 100)]);
        assert_eq!(uncovered(0, 100, &[(10, 40)]), vec![(0, 10), (40, 100)]);
        assert_eq!(uncovered(0, 100, &[(10, 40), (40, 100)]), vec![(0, 10)]);
        assert_eq!(uncovered(50, 100, &[(10, 40)]), vec![(50, 100)]);
        assert_eq!(uncovered(0, 100, &[(0, 100)]), Vec::<(u64, u64)>::new());
        assert_eq!(uncovered(0, 30, &[(10, 40)]), vec![(0, 10)]);
    }
}
