//! Node-to-node messaging over NATS.
//!
//! - Subjects: node `X` receives requests on `surepush.node.X.req` and
//!   replies on `surepush.node.X.rep`; room `R` is `surepush.room.R`
//!   ([`subjects`]).
//! - Per peer, messages are batched and numbered, with a window of batches
//!   in flight and retries ([`outbound`]); the receiver hands each batch on
//!   once, in order, and caches replies for resends ([`inbound`]). The
//!   encoding is [`batch`].
//! - With the `nats` feature: [`Lane`], the API a shard uses, and the
//!   service running the links on the cluster thread.

pub mod batch;
pub mod chunks;
pub mod inbound;
pub mod outbound;
pub mod subjects;

#[cfg(feature = "nats")]
mod lane;
#[cfg(feature = "nats")]
pub(crate) mod service;
#[cfg(feature = "nats")]
mod spin;

#[cfg(feature = "nats")]
pub(crate) use lane::{lanes, LaneWiring};
#[cfg(feature = "nats")]
pub use lane::{FailReason, Lane, LaneEvent, Replier, Reply, ReplyTo, Request, TrySendError};
#[cfg(feature = "nats")]
pub use service::MessagingStats;

#[cfg(feature = "nats")]
pub use config::{MessagingConfig, RouteToLane};

#[cfg(feature = "nats")]
mod config {
    use std::fmt;
    use std::sync::Arc;
    use std::time::Duration;

    use super::outbound::LinkConfig;

    /// Maps an envelope's route key to the receiving node's lane.
    pub type RouteToLane = Arc<dyn Fn(u32) -> u16 + Send + Sync>;

    /// Lanes, queues and link settings of a node's messaging.
    #[derive(Clone)]
    pub struct MessagingConfig {
        /// Lanes (one per shard).
        pub lanes: u16,
        /// Which lane receives a request with a given route key. Default:
        /// `route % lanes`. surepush maps the partition to its shard.
        pub route_to_lane: RouteToLane,
        /// Batching and retries per peer.
        pub link: LinkConfig,
        /// Messages queued per peer before senders wait.
        pub peer_queue: usize,
        /// Events queued per lane before the cluster thread waits.
        pub lane_queue: usize,
        /// Lane commands (replies, room changes) queued before lanes wait.
        pub command_queue: usize,
        /// Replies and room pushes queued for NATS before they are dropped
        /// (both are recovered), presence states before they wait (the
        /// latest per user: see the service's doc).
        pub publish_queue: usize,
        /// How long the cluster thread keeps polling after the last
        /// message before it parks (zero: it parks at once). Saves the
        /// wake-ups of a thread that would sleep between messages, at
        /// the price of the CPU it spins (`spin.rs`).
        pub spin_before_park: Duration,
    }

    impl MessagingConfig {
        /// Defaults for `lanes` lanes.
        pub fn new(lanes: u16) -> MessagingConfig {
            let lanes = lanes.max(1);
            MessagingConfig {
                lanes,
                route_to_lane: Arc::new(move |route| (route % u32::from(lanes)) as u16),
                link: LinkConfig::default(),
                peer_queue: 4096,
                lane_queue: 4096,
                command_queue: 4096,
                publish_queue: 4096,
                spin_before_park: Duration::ZERO,
            }
        }
    }

    impl fmt::Debug for MessagingConfig {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("MessagingConfig")
                .field("lanes", &self.lanes)
                .field("link", &self.link)
                .field("peer_queue", &self.peer_queue)
                .field("lane_queue", &self.lane_queue)
                .field("command_queue", &self.command_queue)
                .field("publish_queue", &self.publish_queue)
                .field("spin_before_park", &self.spin_before_park)
                .finish_non_exhaustive()
        }
    }
}

#[cfg(test)]
mod tests;
