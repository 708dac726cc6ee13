//! Finding what one segment file holds, damaged or not.
//!
//! [`Scanner`] is fed the file in chunks and yields, in file order, valid
//! records, damaged stretches and the end ([`Found`]). It decides nothing
//! about damage: recovery (`recovery.rs`) and `surepush log verify`
//! classify what it finds, with the commit markers it reports.
//!
//! Past a record that does not verify it resyncs, so whatever follows
//! damage is seen:
//! 1. it first trusts the damaged record's own length (a flipped byte in a
//!    body leaves the framing intact): if a valid record, or zeros, start
//!    right after it, the damage is exactly that record. This also keeps
//!    a record framed inside a payload from being mistaken for a real one;
//! 2. otherwise it tries every byte position for a record whose header and
//!    CRC verify, skipping runs of zeros a block at a time (a record never
//!    starts with four zero bytes). A resync gives up after
//!    [`RESYNC_BUDGET`] bytes of CRC (a crafted region could otherwise
//!    make it quadratic) and calls the rest of the file damaged.
//!
//! Zeros where a record should start are the end of the written part only
//! if nothing but zeros follows to the end of the file; otherwise they are
//! damage too (a block lost or zeroed under later records). The zeros the
//! file system never stored (the preallocated rest of the newest segment)
//! are skipped, not read: [`scan_file`] asks where data is next
//! (`SEEK_DATA`), so checking a clean end costs one read at most.
#![forbid(unsafe_code)]

use std::future::Future;

use bytes::{Bytes, BytesMut};

use super::format::{self, Decoded, Internal, Kind, RECORD_HEADER_LEN};
use super::record::Record;

/// CRC work allowed to one resync before the rest of the file is called
/// damaged.
pub const RESYNC_BUDGET: u64 = 256 << 20;

/// Why zeros were not the end.
pub const ZEROS_BEFORE_RECORDS: &str = "zeros where a record should start, with records after them";

/// One thing found in a segment file (positions are file offsets).
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A valid record of `len` framed bytes at `at`.
    Record {
        /// File offset.
        at: u64,
        /// Framed length.
        len: usize,
        /// The record.
        record: Record,
    },
    /// A valid log-internal record.
    Internal {
        /// File offset.
        at: u64,
        /// Framed length.
        len: usize,
        /// What it says.
        what: Internal,
    },
    /// `[at, resume)` holds no valid record; scanning goes on at `resume`
    /// (the file size when nothing valid follows).
    Damage {
        /// Where the first bad record starts.
        at: u64,
        /// Where the next valid record starts, or the file size.
        resume: u64,
        /// What was wrong at `at`.
        why: &'static str,
    },
    /// Only zeros from `at` to the end of the file.
    End {
        /// File offset.
        at: u64,
    },
}

/// What [`Scanner::step`] has to say.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The next thing in the file.
    Found(Found),
    /// Feed the bytes at [`Scanner::wants`].
    NeedMore,
    /// The file is done.
    Done,
}

/// A damaged stretch being searched past.
#[derive(Clone, Copy, Debug)]
struct Bad {
    at: u64,
    why: &'static str,
    /// Started at zeros (the end, unless something follows).
    zeros: bool,
    /// Something other than zeros was seen since `at`.
    nonzero: bool,
    /// The next candidate is the damaged record's own end (step 1).
    trusted: bool,
    /// Next position to try.
    search: u64,
    /// CRC bytes left.
    budget: u64,
}

/// Scans one segment file from a start offset (after its header).
#[derive(Debug)]
pub struct Scanner {
    /// Unparsed bytes from `pos`.
    buf: Bytes,
    pos: u64,
    size: u64,
    bad: Option<Bad>,
    done: bool,
}

enum Candidate {
    Valid,
    Invalid,
    NeedMore,
}

impl Scanner {
    /// A scan of a file of `size` bytes from offset `start`.
    pub fn new(start: u64, size: u64) -> Scanner {
        Scanner {
            buf: Bytes::new(),
            pos: start,
            size,
            bad: None,
            done: start >= size,
        }
    }

    /// Where the bytes [`Step::NeedMore`] asks for start.
    pub fn wants(&self) -> u64 {
        self.pos + self.buf.len() as u64
    }

    /// Adds the bytes read at [`Scanner::wants`]; an empty chunk means the
    /// file ends there.
    pub fn feed(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            self.size = self.wants();
            return;
        }
        if self.buf.is_empty() {
            self.buf = chunk;
            return;
        }
        let mut joined = BytesMut::with_capacity(self.buf.len() + chunk.len());
        joined.extend_from_slice(&self.buf);
        joined.extend_from_slice(&chunk);
        self.buf = joined.freeze();
    }

    fn eof(&self) -> bool {
        self.wants() >= self.size
    }

    /// Drops the buffered bytes before `to`.
    fn advance(&mut self, to: u64) {
        let skip = ((to - self.pos) as usize).min(self.buf.len());
        self.buf = self.buf.slice(skip..);
        self.pos = to;
    }

    /// The next thing found, or what the scan needs first.
    pub fn step(&mut self) -> Step {
        if self.done {
            return Step::Done;
        }
        if self.bad.is_some() {
            return self.resync();
        }
        match format::decode(&self.buf) {
            Decoded::Record(record, len) => {
                let at = self.pos;
                self.advance(at + len as u64);
                Step::Found(Found::Record { at, len, record })
            }
            Decoded::Internal(what, len) => {
                let at = self.pos;
                self.advance(at + len as u64);
                Step::Found(Found::Internal { at, len, what })
            }
            Decoded::End if self.buf.len() >= RECORD_HEADER_LEN || self.eof() => {
                if self.pos >= self.size {
                    self.done = true;
                    return Step::Found(Found::End { at: self.pos });
                }
                self.start_resync(ZEROS_BEFORE_RECORDS, true, None);
                self.resync()
            }
            Decoded::Truncated | Decoded::End if !self.eof() => Step::NeedMore,
            Decoded::Truncated | Decoded::End => {
                self.start_resync("record cut off at the end of the file", false, None);
                self.resync()
            }
            Decoded::Corrupt(why) => {
                let len = u32::from_le_bytes(self.buf[..4].try_into().expect("a header is here"));
                self.start_resync(why, false, Some(len));
                self.resync()
            }
        }
    }

    fn start_resync(&mut self, why: &'static str, zeros: bool, own_len: Option<u32>) {
        let at = self.pos;
        let own_end = own_len
            .filter(|len| (1..=format::MAX_RECORD_LEN).contains(len))
            .map(|len| at + (RECORD_HEADER_LEN as u64) + u64::from(len))
            .filter(|end| *end <= self.size);
        self.bad = Some(Bad {
            at,
            why,
            zeros,
            nonzero: !zeros,
            trusted: own_end.is_some(),
            search: own_end.unwrap_or(if zeros { at } else { at + 1 }),
            budget: RESYNC_BUDGET,
        });
    }

    /// Searches for the next valid record after damage.
    fn resync(&mut self) -> Step {
        let mut bad = self.bad.expect("resyncing");
        let found = loop {
            let c = bad.search;
            if c + RECORD_HEADER_LEN as u64 > self.size || bad.budget == 0 {
                break None;
            }
            let i = (c - self.pos) as usize;
            if i + RECORD_HEADER_LEN > self.buf.len() {
                self.bad = Some(bad);
                return self.more_for_search(bad);
            }
            let rest = &self.buf[i..];
            if bad.trusted {
                // Step 1: right after the damaged record's own length.
                match self.candidate(i, &mut bad.budget) {
                    Candidate::Valid => break Some(c),
                    Candidate::NeedMore => {
                        self.bad = Some(bad);
                        return Step::NeedMore;
                    }
                    Candidate::Invalid if rest[..RECORD_HEADER_LEN].iter().all(|b| *b == 0) => {
                        break Some(c);
                    }
                    Candidate::Invalid => {
                        bad.trusted = false;
                        bad.search = bad.at + 1;
                        continue;
                    }
                }
            }
            // Step 2: every position, zero runs skipped.
            if rest[..4].iter().all(|b| *b == 0) {
                match first_nonzero(rest) {
                    Some(j) => {
                        bad.nonzero = true;
                        bad.search = c + j as u64 - 3;
                    }
                    None => {
                        // All zeros so far: the next candidate can start
                        // no earlier than 3 bytes before the buffer's end.
                        bad.search = (self.wants().saturating_sub(3)).max(c);
                        if self.eof() {
                            break None;
                        }
                        self.bad = Some(bad);
                        return self.more_for_search(bad);
                    }
                }
                continue;
            }
            bad.nonzero = true;
            match self.candidate(i, &mut bad.budget) {
                Candidate::Valid => break Some(c),
                Candidate::Invalid => bad.search = c + 1,
                Candidate::NeedMore => {
                    self.bad = Some(bad);
                    return Step::NeedMore;
                }
            }
        };
        self.bad = None;
        match found {
            Some(resume) => {
                self.advance(resume);
                Step::Found(Found::Damage {
                    at: bad.at,
                    resume,
                    why: bad.why,
                })
            }
            None if bad.zeros && !bad.nonzero => {
                self.done = true;
                Step::Found(Found::End { at: bad.at })
            }
            None => {
                self.done = true;
                Step::Found(Found::Damage {
                    at: bad.at,
                    resume: self.size,
                    why: bad.why,
                })
            }
        }
    }

    /// Where a search through zeros stands, if it does (every byte from
    /// there on that is buffered is zero): bytes the file system does not
    /// hold from there on may be skipped with [`Scanner::skip_zeros_to`].
    pub fn in_zeros(&self) -> Option<u64> {
        let bad = self.bad?;
        let from = (bad.search.max(self.pos) - self.pos) as usize;
        let zeros = !bad.trusted && self.buf[from.min(self.buf.len())..].iter().all(|b| *b == 0);
        zeros.then(|| self.wants())
    }

    /// Everything from [`Scanner::wants`] up to `to` is zeros the file
    /// system does not hold: the search goes on at `to`. (A record whose
    /// header would straddle the start of such a hole was never written
    /// whole, so no candidate is lost.)
    pub fn skip_zeros_to(&mut self, to: u64) {
        let to = to.min(self.size);
        if to <= self.wants() {
            return;
        }
        self.advance(self.wants());
        self.pos = to;
        if let Some(bad) = &mut self.bad {
            bad.search = to;
        }
    }

    /// Asks for more bytes during a search, dropping the buffered bytes no
    /// candidate needs any more (a trusted candidate may still fall back
    /// to the bytes after the damage start).
    fn more_for_search(&mut self, bad: Bad) -> Step {
        if !bad.trusted {
            self.advance(bad.search.min(self.wants()));
        }
        Step::NeedMore
    }

    /// Whether a valid record starts at `buf[i..]`.
    fn candidate(&self, i: usize, budget: &mut u64) -> Candidate {
        let b = &self.buf[i..];
        let len = u32::from_le_bytes(b[..4].try_into().expect("header present"));
        let at = self.pos + i as u64;
        if len == 0
            || len > format::MAX_RECORD_LEN
            || at + RECORD_HEADER_LEN as u64 + u64::from(len) > self.size
        {
            return Candidate::Invalid;
        }
        let Some(&kind) = b.get(RECORD_HEADER_LEN) else {
            return Candidate::NeedMore;
        };
        if !plausible_kind(kind, len) {
            return Candidate::Invalid;
        }
        let total = RECORD_HEADER_LEN + len as usize;
        if b.len() < total {
            return Candidate::NeedMore;
        }
        if u64::from(len) > *budget {
            *budget = 0;
            return Candidate::Invalid;
        }
        *budget -= u64::from(len);
        match format::decode(&self.buf.slice(i..i + total)) {
            Decoded::Record(..) | Decoded::Internal(..) => Candidate::Valid,
            _ => Candidate::Invalid,
        }
    }
}

/// Whether a record of `kind` may have `len` bytes after its header
/// (checked before its CRC is computed).
fn plausible_kind(kind: u8, len: u32) -> bool {
    let body = len as usize - 1;
    match kind {
        k if k == Kind::Message as u8 => body >= 57,
        k if k == Kind::MessageWithAttrs as u8 => body > 57 + format::ATTRS_LEN_SIZE,
        k if k == Kind::Cursor as u8 => body == 24,
        k if k == Kind::Release as u8 => body == 32,
        k if k == Kind::Member as u8 => body == 17,
        k if k == Kind::Durable as u8 => body == 8,
        k if k == Kind::Checkpoint as u8 || k == Kind::Filler as u8 => true,
        _ => false,
    }
}

/// Index of the first byte that is not zero.
fn first_nonzero(b: &[u8]) -> Option<usize> {
    // A block at a time: the OR folds into vector instructions.
    const STRIDE: usize = 256;
    let mut at = 0;
    for block in b.chunks(STRIDE) {
        if block.iter().fold(0u8, |acc, x| acc | x) != 0 {
            return block.iter().position(|x| *x != 0).map(|i| at + i);
        }
        at += block.len();
    }
    None
}

/// Bytes read per step of [`scan_file`].
pub const SCAN_CHUNK: usize = 4 << 20;

/// How a scanned file is read: `read(pos, len)` (fewer bytes at the end of
/// the file) and `next_data(pos)` (where the file system next holds data,
/// `None` past the last; `Some(pos)` if it cannot tell).
pub struct Reads<R, N> {
    /// Reads bytes.
    pub read: R,
    /// Finds data past zeros.
    pub next_data: N,
}

/// Scans a file of `size` bytes from `start` and hands everything found
/// to `visit` until it returns `false` or the file is done.
pub async fn scan_file<E, Fut, R, N>(
    start: u64,
    size: u64,
    reads: Reads<R, N>,
    mut visit: impl FnMut(Found) -> Result<bool, E>,
) -> Result<(), E>
where
    Fut: Future<Output = Result<Bytes, E>>,
    R: Fn(u64, usize) -> Fut,
    N: Fn(u64) -> Result<Option<u64>, E>,
{
    let mut scanner = Scanner::new(start, size);
    loop {
        match scanner.step() {
            Step::Found(found) => {
                if !visit(found)? {
                    return Ok(());
                }
            }
            Step::NeedMore => {
                if let Some(at) = scanner.in_zeros() {
                    let data = (reads.next_data)(at)?;
                    scanner.skip_zeros_to(data.unwrap_or(size));
                    if scanner.wants() >= size {
                        continue;
                    }
                }
                let chunk = (reads.read)(scanner.wants(), SCAN_CHUNK).await?;
                scanner.feed(chunk);
            }
            Step::Done => return Ok(()),
        }
    }
}

/// What a lenient reading of damaged bytes suggests was there: each
/// record's framing and fields are read as if they were intact, without
/// the CRC. Fields may be wrong (they are damaged bytes); salvage reports
/// them as a guess.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guess {
    /// A message (its inbox and seq are the ones lost).
    Message {
        /// Log position.
        lsn: u64,
        /// Inbox.
        inbox: u64,
        /// Sequence.
        seq: u64,
        /// Sender.
        from: u64,
        /// Payload bytes.
        payload_len: usize,
    },
    /// A device cursor.
    Cursor {
        /// Log position.
        lsn: u64,
        /// Inbox owner.
        user: u64,
        /// Device.
        device: u64,
        /// Acknowledged position.
        seq: u64,
    },
    /// Another kind of record (release, membership, checkpoint, marker).
    Other {
        /// Log position.
        lsn: u64,
        /// Its kind byte.
        kind: u8,
    },
    /// Bytes whose framing does not hold together.
    Unreadable {
        /// Log position.
        lsn: u64,
        /// How many.
        len: usize,
    },
}

/// Reads `bytes` (damaged, starting at log position `lsn`) leniently.
pub fn guess_records(bytes: &[u8], lsn: u64) -> Vec<Guess> {
    let u64_at = |b: &[u8], i: usize| {
        b.get(i..i + 8)
            .map_or(0, |w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
    };
    let mut out = Vec::new();
    let mut o = 0usize;
    while o < bytes.len() {
        let rest = &bytes[o..];
        let at = lsn + o as u64;
        if rest.iter().all(|b| *b == 0) {
            break;
        }
        let len = rest
            .get(..4)
            .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")) as usize);
        let Some(len) = len.filter(|l| *l >= 1 && RECORD_HEADER_LEN + l <= rest.len()) else {
            out.push(Guess::Unreadable {
                lsn: at,
                len: rest.len(),
            });
            break;
        };
        let kind = rest[RECORD_HEADER_LEN];
        let body = &rest[RECORD_HEADER_LEN + 1..RECORD_HEADER_LEN + len];
        out.push(match kind {
            k if (k == Kind::Message as u8 || k == Kind::MessageWithAttrs as u8)
                && body.len() >= 57 =>
            {
                Guess::Message {
                    lsn: at,
                    inbox: u64_at(body, 0),
                    seq: u64_at(body, 8),
                    from: u64_at(body, 16),
                    payload_len: body.len() - 57,
                }
            }
            k if k == Kind::Cursor as u8 && body.len() == 24 => Guess::Cursor {
                lsn: at,
                user: u64_at(body, 0),
                device: u64_at(body, 8),
                seq: u64_at(body, 16),
            },
            kind => Guess::Other { lsn: at, kind },
        });
        o += RECORD_HEADER_LEN + len;
    }
    out
}

#[cfg(test)]
mod tests;
