//! Per-shard append-only segment log: durable offline storage.

pub mod record;
pub mod state;

pub use record::{InboxQuery, MessageRecord, Record};
pub use state::{DedupConfig, DedupEntry, DedupWindow, RecoveredState, SendKey};
