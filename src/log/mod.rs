//! Per-shard append-only segment log: the durable store of every message a
//! gateway acknowledged, with group commit, per-inbox reads, checkpoints,
//! retention and crash recovery.
//!
//! | file             | owns                                                       |
//! |------------------|------------------------------------------------------------|
//! | `record.rs`      | the logical records shared with the delivery core          |
//! | `state.rs`       | the state derived from records (heads, cursors, dedup)     |
//! | `format.rs`      | byte layout: segment header, record framing, checkpoints   |
//! | `segment.rs`     | segment file names and per-segment metadata                |
//! | `io.rs`          | file I/O trait (O_DIRECT glommio files; faults in tests)   |
//! | `index.rs`       | inbox -> record locations                                  |
//! | `segment_log.rs` | append, reads, checkpoints, retention                      |
//! | `commit.rs`      | write buffers, write-behind, the group committer           |
//! | `scan.rs`        | finding records, damage and the end in one segment file    |
//! | `damage.rs`      | torn tail or damage: the evidence, refusal and salvage reports |
//! | `recovery.rs`    | open a log: cut a torn tail, refuse, or salvage; rebuild   |
//! | `verify.rs`      | `surepush log verify`: the offline, read-only check        |
//! | `window.rs`      | the state kept per append; rebuilding the QoS 1 dedup window |

mod commit;
pub mod damage;
pub mod format;
mod index;
pub mod io;
pub mod record;
mod recovery;
pub mod scan;
mod segment;
mod segment_log;
pub mod state;
pub mod verify;
mod window;

pub use record::{InboxQuery, MessageRecord, Record, StateKey};
pub use segment_log::{
    LogConfig, LogError, LogStats, Lsn, RecoveryMode, RecoveryReport, RetentionReport, SegmentLog,
};
pub use state::{apply_membership, DedupConfig, DedupEntry, DedupWindow, RecoveredState, SendKey};

#[cfg(test)]
mod damage_tests;
#[cfg(test)]
mod tests;
