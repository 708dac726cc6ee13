//! Per-shard append-only segment log: durable offline storage.

pub mod record;

pub use record::{MessageRecord, Record};
