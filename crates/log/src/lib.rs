//! Per-shard append-only segment log: the durable store of every message a
//! gateway acknowledged, with group commit, per-inbox reads, checkpoints,
//! retention and crash recovery.
//!
//! The records themselves (`record`) and the state folded from them
//! (`state`) are the delivery core's model (`surepush-core`); this crate
//! stores them and rebuilds that state on open.
//!
//! | file             | owns                                                       |
//! |------------------|------------------------------------------------------------|
//! | `format.rs`      | byte layout: segment header, record framing, checkpoints   |
//! | `segment.rs`     | segment file names and per-segment metadata                |
//! | `io.rs`          | segment file I/O trait (O_DIRECT glommio files)            |
//! | `storage.rs`     | every other file operation; the atomic small-file write    |
//! | `index.rs`       | inbox -> record locations                                  |
//! | `segment_log.rs` | append, reads, checkpoints, retention                      |
//! | `commit.rs`      | write buffers, write-behind, the group committer           |
//! | `scan.rs`        | finding records, damage and the end in one segment file    |
//! | `damage.rs`      | torn tail or damage: the evidence, refusal and salvage reports |
//! | `recovery.rs`    | open a log: cut a torn tail, refuse, or salvage; rebuild   |
//! | `verify.rs`      | `surepush log verify`: the offline, read-only check        |
//! | `fault.rs`       | (tests) a file layer that fails, tears or crashes any seam operation |
//! | `window.rs`      | the state kept per append; rebuilding the QoS 1 dedup window |

mod commit;
pub mod damage;
pub mod format;
mod index;
pub mod io;
mod recovery;
pub mod scan;
mod segment;
mod segment_log;
pub mod storage;
pub mod verify;
mod window;

pub use record::{InboxQuery, MessageRecord, Record, StateKey};
pub use segment_log::{
    LogConfig, LogError, LogStats, Lsn, RecoveryMode, RecoveryReport, RetentionReport, SegmentLog,
};
pub use state::{apply_membership, DedupConfig, DedupEntry, DedupWindow, RecoveredState, SendKey};
/// The record model this log stores (from the core).
pub use surepush_core::{record, state};

#[cfg(test)]
mod damage_tests;
#[cfg(test)]
mod fault;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;
