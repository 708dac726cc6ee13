//! The thread-per-core server: glommio shards around the sans-IO core.
//!
//! Ground rules:
//! - one glommio executor per shard, pinned to a core; a user's whole state
//!   lives on its owner shard (`ShardLoop::owner`, which asks
//!   [`surepush_core::Router`]);
//! - every shard listens on the same port (SO_REUSEPORT); the accepting
//!   shard runs the protocol's handshake, checks the token, and hands the
//!   socket to the owner shard through the channel mesh — one path for
//!   every protocol (`transport`, where new transports go);
//! - this layer owns sockets, files and the clock and does nothing the core
//!   could decide: it carries out the core's actions ([`runtime`]).

pub mod admin;
pub mod admin_api;
mod admin_backend;
pub mod auth;
mod cluster;
pub mod config;
pub mod data_dir;
pub mod layout;
/// Process limits (the `surepush-host` crate).
pub use surepush_host::limits;
mod listeners;
mod log_every;
pub mod logging;
mod mesh;
pub mod metrics;
mod mqtt_legacy;
mod node;
pub mod offline;
pub mod reload;
mod runtime;
pub mod tls;
mod transport;
pub mod webhooks;

pub use config::{Config, ConfigError, ConfigSources, LogSettings};
pub use node::{serve, Reload, ServeError};
pub use runtime::NodeShared;
