//! The NATS side: the cluster thread and what runs on it.
//!
//! - [`thread`]: the dedicated thread (tokio current-thread runtime).
//! - [`connect`]: NATS connection settings.
//! - [`kv`]: the buckets and following their entries.
//! - `view`, `latch`: state shared between the cluster thread and others.

pub mod connect;
pub mod kv;
pub(crate) mod latch;
pub mod thread;
pub(crate) mod view;
