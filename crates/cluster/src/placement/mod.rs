//! Partition placement: which node owns each partition.
//!
//! - [`record`]: the bucket's keys and values.
//! - [`table`]: the in-memory picture of it (pure).
//! - `store` (with the `nats` feature): creating the cluster, assigning
//!   partitions at creation, compare-and-set changes.
//! - `view` (with `nats`): [`Placement`], the watched, shared view.

pub mod record;
pub mod table;

#[cfg(feature = "nats")]
pub mod store;
#[cfg(feature = "nats")]
mod view;

#[cfg(feature = "nats")]
pub use view::Placement;
