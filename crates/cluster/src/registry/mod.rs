//! The node registry: which nodes are alive and where to reach them.
//!
//! - [`record`]: the bucket's keys and values.
//! - [`table`]: the in-memory picture of it (pure).
//! - `heartbeat` (with the `nats` feature): registering and keeping the
//!   entry alive.
//! - `view` (with `nats`): [`Nodes`], the watched, shared view.

pub mod record;
pub mod table;

#[cfg(feature = "nats")]
pub mod heartbeat;
#[cfg(feature = "nats")]
mod view;

#[cfg(feature = "nats")]
pub use view::Nodes;
