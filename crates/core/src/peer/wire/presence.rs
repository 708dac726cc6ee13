//! Encoding of the presence messages between nodes (`peer/presence.rs`).

use bytes::BytesMut;
use surepush_cluster::NodeId;

use super::{wire_struct, PeerWireError, Reader, Wire};
use crate::peer::presence::{PresenceNodeUnwatch, PresenceNodeWatch, PresenceUpdate};

/// A node id: its text, checked on decode.
impl Wire for NodeId {
    fn put(&self, out: &mut BytesMut) {
        self.as_str().to_owned().put(out);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        NodeId::parse(&String::get(r)?).map_err(|_| PeerWireError::Invalid("node id"))
    }
}

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
