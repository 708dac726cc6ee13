//! Where each inbox's messages are: seq -> (position, length).
//!
//! Sequences of one inbox are contiguous (the core assigns them that way
//! and the log is append-only), so an inbox's index is a deque addressed by
//! `seq - first`: 12 bytes per message, no tree.

use std::collections::VecDeque;

use surepush_core::hashing::FastHashMap;

use surepush_proto::{Seq, UserId};

/// Position and framed length of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Log position of the record.
    pub lsn: u64,
    /// Framed length.
    pub len: u32,
}

/// One inbox's messages.
#[derive(Debug, Default)]
pub struct InboxIndex {
    /// Sequence of `entries[0]`.
    pub first: Seq,
    /// Locations of `first`, `first + 1`, ...
    pub entries: VecDeque<Location>,
}

impl InboxIndex {
    /// Highest indexed sequence (0 if none).
    pub fn last(&self) -> Seq {
        if self.entries.is_empty() {
            Seq(self.first.0.saturating_sub(1))
        } else {
            Seq(self.first.0 + self.entries.len() as u64 - 1)
        }
    }

    /// Location of `seq`, if indexed.
    pub fn get(&self, seq: Seq) -> Option<Location> {
        let i = seq.0.checked_sub(self.first.0)?;
        self.entries.get(usize::try_from(i).ok()?).copied()
    }
}

/// Every inbox of a shard.
#[derive(Debug, Default)]
pub struct Index {
    inboxes: FastHashMap<UserId, InboxIndex>,
}

impl Index {
    /// Records where `seq` of `inbox` is. Sequences arrive in order; a
    /// repeated or older one (a retention race cannot produce one, but a
    /// corrupt log could) replaces nothing.
    pub fn add(&mut self, inbox: UserId, seq: Seq, at: Location) {
        let idx = self.inboxes.entry(inbox).or_insert_with(|| InboxIndex {
            first: seq,
            entries: VecDeque::new(),
        });
        if idx.entries.is_empty() {
            idx.first = seq;
            idx.entries.push_back(at);
            return;
        }
        let next = idx.last().next();
        if seq < next {
            return;
        }
        // A gap should not happen; keep addressing by seq correct anyway.
        while idx.last().next() < seq {
            idx.entries.push_back(Location {
                lsn: u64::MAX,
                len: 0,
            });
        }
        idx.entries.push_back(at);
    }

    /// The inbox's index.
    pub fn get(&self, inbox: UserId) -> Option<&InboxIndex> {
        self.inboxes.get(&inbox)
    }

    /// Sequences missing between indexed ones (lost to salvage), per inbox.
    pub fn holes(&self) -> Vec<(UserId, Seq)> {
        let mut out = Vec::new();
        for (inbox, idx) in &self.inboxes {
            for (i, l) in idx.entries.iter().enumerate() {
                if l.lsn == u64::MAX {
                    out.push((*inbox, Seq(idx.first.0 + i as u64)));
                }
            }
        }
        out
    }

    /// Forgets the locations before position `lsn` of `inbox` (retention);
    /// returns the first and last sequence forgotten.
    pub fn trim_before(&mut self, inbox: UserId, lsn: u64) -> Option<(Seq, Seq)> {
        let idx = self.inboxes.get_mut(&inbox)?;
        let first = idx.first;
        while idx
            .entries
            .front()
            .is_some_and(|l| l.lsn < lsn || l.lsn == u64::MAX)
        {
            idx.entries.pop_front();
            idx.first = idx.first.next();
        }
        (idx.first > first).then(|| (first, Seq(idx.first.0 - 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(lsn: u64) -> Location {
        Location { lsn, len: 10 }
    }

    #[test]
    fn addresses_by_seq_and_trims_from_the_front() {
        let mut i = Index::default();
        for s in 5..=9 {
            i.add(UserId(1), Seq(s), at(s * 100));
        }
        let idx = i.get(UserId(1)).unwrap();
        assert_eq!((idx.first, idx.last()), (Seq(5), Seq(9)));
        assert_eq!(idx.get(Seq(7)), Some(at(700)));
        assert_eq!(idx.get(Seq(4)), None);
        assert_eq!(idx.get(Seq(10)), None);
        i.add(UserId(1), Seq(9), at(1)); // repeat: ignored
        assert_eq!(i.get(UserId(1)).unwrap().get(Seq(9)), Some(at(900)));
        assert_eq!(i.trim_before(UserId(1), 750), Some((Seq(5), Seq(7))));
        assert_eq!(i.trim_before(UserId(1), 750), None);
        let idx = i.get(UserId(1)).unwrap();
        assert_eq!((idx.first, idx.last()), (Seq(8), Seq(9)));
        assert_eq!(idx.get(Seq(8)), Some(at(800)));
    }
}
