//! Node-to-node messaging over NATS.
//!
//! - Subjects: node `X` receives requests on `surepush.node.X.req` and
//!   replies on `surepush.node.X.rep`; room `R` is `surepush.room.R`
//!   ([`subjects`]).
//! - Per peer, messages are batched and numbered, with a window of batches
//!   in flight and retries ([`outbound`]); the receiver hands each batch on
//!   once, in order, and caches replies for resends ([`inbound`]). The
//!   encoding is [`batch`].
//! - The runtime side (the cluster thread's tasks and the lanes shards
//!   talk through) is in `crate::runtime`.

pub mod batch;
pub mod inbound;
pub mod outbound;
pub mod subjects;

#[cfg(test)]
mod tests;
