//! Encoding of the presence messages between nodes (`peer/presence.rs`).

use bytes::BytesMut;

use super::{wire_struct, PeerWireError, Reader, Wire};
use crate::peer::presence::{PresenceNodeUnwatch, PresenceNodeWatch, PresenceUpdate};

// Node ids are encoded as in `topics.rs` (their name as text).
wire_struct!(PresenceNodeWatch {
    user,
    node,
    incarnation,
    origin
});
wire_struct!(PresenceNodeUnwatch {
    user,
    node,
    incarnation
});
wire_struct!(PresenceUpdate {
    user,
    epoch,
    version,
    devices
});
