//! The records of the node registry bucket (`surepush-nodes`).
//!
//! Key `n.<id>` holds a [`NodeRecord`]. The bucket's entries age out after
//! the registry TTL unless the node's heartbeat rewrites them, so a key
//! present means a node that was alive at most one TTL ago.

use bytes::{BufMut, BytesMut};

use crate::node_id::NodeId;
use crate::wire::{kinds, put_opt_str, put_str, MessageKind, Reader, Wire, WireError};

/// Prefix of node keys.
pub const NODE_KEY_PREFIX: &str = "n.";

/// The KV key of node `id`.
pub fn node_key(id: &NodeId) -> String {
    format!("{NODE_KEY_PREFIX}{id}")
}

/// The node a KV key names, if it is a valid node key.
pub fn parse_node_key(key: &str) -> Option<NodeId> {
    NodeId::parse(key.strip_prefix(NODE_KEY_PREFIX)?).ok()
}

/// One live node: where to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node's id (also in the key).
    pub id: NodeId,
    /// This process's incarnation: microseconds since the Unix epoch at
    /// start, so a restarted node has a larger one. Peers keep message
    /// dedup state per incarnation.
    pub incarnation: u64,
    /// Start time, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// The newest cluster wire version the node reads.
    pub wire_version: u8,
    /// Native protocol listener, as clients should dial it (`host:port`).
    pub client_addr: String,
    /// MQTT listener, if enabled.
    pub mqtt_addr: Option<String>,
    /// WebSocket listener, if enabled.
    pub websocket_addr: Option<String>,
    /// Admin HTTP listener.
    pub admin_addr: String,
}

impl Wire for NodeRecord {
    const KIND: MessageKind = kinds::NODE_RECORD;
    const VERSION: u8 = 1;

    fn encode_body(&self, out: &mut BytesMut) {
        put_str(out, self.id.as_str());
        out.put_u64_le(self.incarnation);
        out.put_u64_le(self.started_at_ms);
        out.put_u8(self.wire_version);
        put_str(out, &self.client_addr);
        put_opt_str(out, self.mqtt_addr.as_deref());
        put_opt_str(out, self.websocket_addr.as_deref());
        put_str(out, &self.admin_addr);
    }

    fn decode_body(_version: u8, body: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(NodeRecord {
            id: body.node_id()?,
            incarnation: body.u64()?,
            started_at_ms: body.u64()?,
            wire_version: body.u8()?,
            client_addr: body.str()?.to_owned(),
            mqtt_addr: body.opt_str()?.map(str::to_owned),
            websocket_addr: body.opt_str()?.map(str::to_owned),
            admin_addr: body.str()?.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, to_bytes};

    #[test]
    fn node_record_round_trips() {
        let rec = NodeRecord {
            id: NodeId::parse("n-2").unwrap(),
            incarnation: 1_700_000_000_123_456,
            started_at_ms: 1_700_000_000_123,
            wire_version: 1,
            client_addr: "10.0.0.2:7400".into(),
            mqtt_addr: Some("10.0.0.2:1883".into()),
            websocket_addr: None,
            admin_addr: "10.0.0.2:7401".into(),
        };
        assert_eq!(decode::<NodeRecord>(&to_bytes(&rec)), Ok(rec));
    }

    #[test]
    fn node_keys_round_trip() {
        let id = NodeId::parse("n-2").unwrap();
        assert_eq!(parse_node_key(&node_key(&id)), Some(id));
        assert_eq!(parse_node_key("n."), None);
        assert_eq!(parse_node_key("p.1"), None);
    }
}
