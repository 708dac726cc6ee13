//! The thread-per-core server: glommio shards around the sans-IO core.

pub mod admin_api;
