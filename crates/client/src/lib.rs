//! Client SDK: a sans-IO [`ClientSession`] plus a blocking driver
//! ([`BlockingClient`], over TCP, TLS ([`Gateway`]) or WebSocket
//! ([`Transport`])) for tests, examples and simple tools.
//!
//! The session reads no clock and does no I/O (time comes in as `now`);
//! the driver owns the socket and the clock.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod blocking;
mod conversations;
mod link;
mod presence;
mod rooms;
mod session;
mod wire;

pub use blocking::BlockingClient;
pub use link::{Gateway, TlsGateway};
pub use session::{ClientConfig, ClientSession, Event};
pub use wire::{Transport, WEBSOCKET_SUBPROTOCOL};

#[cfg(test)]
mod tests;
