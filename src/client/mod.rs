//! Client SDK: a sans-IO [`ClientSession`] plus a blocking TCP driver
//! ([`BlockingClient`]) for tests, examples and simple tools.

mod blocking;
mod rooms;
mod session;

pub use blocking::BlockingClient;
pub use session::{ClientConfig, ClientSession, Event};

#[cfg(test)]
mod tests;
