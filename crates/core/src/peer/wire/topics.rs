//! Encoding of the messages about wildcard filters across nodes
//! (`topic_nodes.rs`): node ids as text, the query's wants.

use bytes::{BufMut, Bytes, BytesMut};

use super::{wire_struct, PeerWireError, Reader, Wire};
use crate::peer::messages::{FilterQuery, FilterWant, NodeFilters, StreamsAnswered, TopicRelay};

/// A node id: its name as text, checked on decode.
impl Wire for surepush_cluster::NodeId {
    fn put(&self, out: &mut BytesMut) {
        Bytes::copy_from_slice(self.as_str().as_bytes()).put(out);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        let name = String::get(r)?;
        surepush_cluster::NodeId::parse(&name).map_err(|_| PeerWireError::Invalid("node id"))
    }
}

wire_struct!(NodeFilters {
    node,
    epoch,
    version,
    full,
    joined,
    left,
    relay
});
wire_struct!(FilterQuery { node, want, relay });

impl Wire for FilterWant {
    fn put(&self, out: &mut BytesMut) {
        match self {
            FilterWant::WholeSet => out.put_u8(0),
            FilterWant::Streams {
                filter,
                shard,
                conn,
            } => {
                out.put_u8(1);
                filter.put(out);
                shard.put(out);
                conn.put(out);
            }
        }
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        match u8::get(r)? {
            0 => Ok(FilterWant::WholeSet),
            1 => Ok(FilterWant::Streams {
                filter: Wire::get(r)?,
                shard: Wire::get(r)?,
                conn: Wire::get(r)?,
            }),
            _ => Err(PeerWireError::Invalid("filter query")),
        }
    }
}
wire_struct!(TopicRelay {
    room,
    seq,
    name,
    frame,
    to
});
wire_struct!(StreamsAnswered {
    filter,
    shard,
    conn,
    node,
    shards
});
