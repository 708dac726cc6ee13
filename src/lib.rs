//! # surepush
//!
//! A thread-per-core push gateway for instant messaging. Every message a
//! client sends is stored durably before it is acknowledged, pushed to each
//! of the receiver's devices with a per-user sequence number, retransmitted
//! until the device acknowledges it, and replayed in pages after a reconnect.
//!
//! The crate is layered, each layer depending only on the ones below it
//! (see `docs/PROTOCOL.md` for the wire contract):
//!
//! | module     | owns                                                        | does I/O |
//! |------------|-------------------------------------------------------------|----------|
//! | [`proto`]  | wire format: zero-copy frame headers, codec, typed errors   | no       |
//! | [`timer`]  | hierarchical timer wheel for millions of pending ACKs       | no       |
//! | [`log`]    | per-shard append-only segment log, group commit, recovery   | yes      |
//! | [`core`]   | sans-IO delivery state machines (dedup, inbox, ACK, replay) | no       |
//! | [`client`] | sans-IO client session plus a blocking TCP driver           | driver   |
//! | [`mqtt`]   | MQTT 3.1.1/5.0 packet codec: streaming decoder, encoder     | no       |
#![warn(missing_docs)]

pub mod bridge;
pub mod client;
pub mod core;
pub mod hashing;
pub mod hostcheck;
pub mod log;
pub mod mqtt;
pub mod proto;
pub mod server;
pub mod timer;
