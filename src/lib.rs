//! # surepush
//!
//! A thread-per-core push gateway for instant messaging. Every message a
//! client sends is stored durably before it is acknowledged, pushed to each
//! of the receiver's devices with a per-user sequence number, retransmitted
//! until the device acknowledges it, and replayed in pages after a reconnect.
//!
//! The layers are crates, each depending only on the ones below it
//! (docs/ARCHITECTURE.md; `docs/PROTOCOL.md` is the wire contract):
//!
//! | crate              | owns                                                        | runtime |
//! |--------------------|-------------------------------------------------------------|---------|
//! | `surepush-proto`   | wire format: zero-copy frame headers, codec, typed errors   | none    |
//! | `surepush-token`   | session tokens (JWT)                                        | none    |
//! | `surepush-core`    | sans-IO delivery state machines, timer wheel, record model  | none    |
//! | `surepush-mqtt`    | MQTT 3.1.1/5.0 codec and the sans-IO bridge                 | none    |
//! | `surepush-client`  | sans-IO client session plus a blocking TCP/WebSocket driver | std     |
//! | `surepush-host`    | host checks and process limits                              | std     |
//! | `surepush-log`     | per-shard append-only segment log, group commit, recovery   | glommio |
//! | `surepush-server`  | glommio shards, transports, mesh, admin HTTP                | glommio |
//! | `surepush-cluster` | partitions, placement and registry in NATS KV, node links   | tokio (own thread) |
//!
//! This package is the `surepush` binary; its library re-exports the layers
//! under short names for the integration tests, the simulator and the fuzz
//! targets.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use surepush_client as client;
pub use surepush_cluster as cluster;
pub use surepush_core as core;
pub use surepush_core::{hashing, timer};
pub use surepush_host::hostcheck;
pub use surepush_log as log;
pub use surepush_mqtt as mqtt;
pub use surepush_mqtt::bridge;
pub use surepush_proto as proto;
pub use surepush_server as server;
pub use surepush_token as token;
