//! Wire format of the surepush protocol (see `docs/PROTOCOL.md`).
#![forbid(unsafe_code)]

mod types;

pub use types::{DeviceId, Qos, Seq, UserId};
