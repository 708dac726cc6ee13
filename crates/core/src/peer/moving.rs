//! Messages of a partition move between nodes (issue #20,
//! docs/CLUSTER.md "Moving a partition").
//!
//! The target's shard for the partition pulls it page by page from the
//! source's shard in rounds ([`MoveRoundFetch`]); each answer is one
//! [`MovePage`]. Round 0 is a snapshot taken while the partition keeps
//! taking writes; each later round copies the messages written since the
//! round before; the last round fences the partition first and adds every
//! cursor, member, keyed value and released QoS 2 entry. The source's page
//! cursor ([`MoveCursor`]) travels with every fetch, so a fetch resent by
//! the link is answered with the same page again (the source keeps no
//! per-page state besides its round's lists and the fence).
//!
//! [`MoveFetch`] is the first version's fetch (one fenced round); a
//! source still serves it for targets that send it.

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

/// Target to source: the next page of copy round `round` of `partition`
/// from `from`. A fetch at the default cursor starts the round: round 0
/// (the snapshot) anew, a later one after the round before it ended. The
/// round that `fence`s is the last: the source refuses the partition's
/// writes from its start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveRoundFetch {
    /// The importing shard (the driver's return ticket across nodes).
    pub origin: ShardId,
    /// The partition being moved.
    pub partition: u32,
    /// The copy round: 0 the snapshot, then one per tail.
    pub round: u32,
    /// This round fences the partition (the last round).
    pub fence: bool,
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
