//! Messages of a partition move between nodes (issue #20,
//! docs/CLUSTER.md "Moving a partition").
//!
//! The target's shard for the partition pulls it page by page from the
//! source's shard with [`MoveFetch`]; each answer is one [`MovePage`]. The
//! first fetch fences the partition on the source; the source's page
//! cursor ([`MoveCursor`]) travels with every fetch, so a fetch resent by
//! the link is answered with the same page again (the source keeps no
//! per-page state besides the fence and its list of ids).

use crate::record::Record;
use crate::router::ShardId;
use surepush_proto::Seq;

/// Where the next page of a partition's export starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MoveCursor {
    /// Index into the source's sorted list of the partition's ids.
    pub position: u32,
    /// Inbox messages of that id up to here are sent already.
    pub after: Seq,
}

/// Target to source: the next page of `partition` from `from` (the first
/// fetch, at the default cursor, fences the partition on the source).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveFetch {
    /// The importing shard (the driver's return ticket across nodes).
    pub origin: ShardId,
    /// The partition being moved.
    pub partition: u32,
    /// Where the page starts.
    pub from: MoveCursor,
}

/// How the source answered a [`MoveFetch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MoveStatus {
    /// `records` are the next part of the partition.
    Page = 0,
    /// The source does not own the partition (any more): nothing to copy.
    NotOwner = 1,
    /// The source's log failed a read or an append: the move is abandoned
    /// (the partition stays where it is, unfenced).
    Failed = 2,
}

/// Source to target: one page of a partition's state, in log record form
/// (the target appends them as they are).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovePage {
    /// The partition being moved.
    pub partition: u32,
    /// Outcome of the fetch.
    pub status: MoveStatus,
    /// Messages (ascending per inbox), then each id's cursors, group or
    /// room members, keyed state and released QoS 2 entries.
    pub records: Vec<Record>,
    /// The next page's start; `None`: this was the last page.
    pub next: Option<MoveCursor>,
}
