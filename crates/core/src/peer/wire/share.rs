//! Encoding of the share group messages (`peer/share.rs`).

use bytes::{BufMut, BytesMut};

use super::{wire_struct, PeerWireError, Reader, Wire};
use crate::peer::share::{ShareAway, ShareDeliver, ShareDone, ShareJoin, ShareJoined, ShareOp};

impl Wire for ShareOp {
    fn put(&self, out: &mut BytesMut) {
        out.put_u8(match self {
            ShareOp::Join => 0,
            ShareOp::Disconnect => 1,
            ShareOp::Leave => 2,
        });
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        match u8::get(r)? {
            0 => Ok(ShareOp::Join),
            1 => Ok(ShareOp::Disconnect),
            2 => Ok(ShareOp::Leave),
            _ => Err(PeerWireError::Invalid("share op")),
        }
    }
}

wire_struct!(ShareJoin {
    group,
    filter,
    user,
    device,
    shard,
    conn,
    qos,
    receive_max,
    op,
    expiry_s
});
wire_struct!(ShareAway {
    group,
    filter,
    user,
    device,
    deadline_ms
});
wire_struct!(ShareJoined { conn, name, ok });
wire_struct!(ShareDeliver {
    key,
    conn,
    user,
    device,
    home,
    room,
    seq,
    from,
    ts_ms,
    qos,
    attrs,
    payload
});
wire_struct!(ShareDone {
    key,
    user,
    device,
    room,
    seq,
    returned
});
