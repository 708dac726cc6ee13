//! The records of the placement bucket (`surepush-placement`).
//!
//! | key       | value             | written                                  |
//! |-----------|-------------------|------------------------------------------|
//! | `cluster` | [`ClusterMeta`]   | once, by `cluster init` or the first node |
//! | `p.<n>`   | [`PlacementRecord`] | at creation, then by each move (CAS)   |

use bytes::{BufMut, BytesMut};

use crate::node_id::NodeId;
use crate::partition::{PartitionCount, PartitionId};
use crate::wire::{kinds, put_opt_str, put_str, MessageKind, Reader, Wire, WireError};

/// Key of the cluster record.
pub const META_KEY: &str = "cluster";

/// Prefix of partition keys.
pub const PARTITION_KEY_PREFIX: &str = "p.";

/// The KV key of partition `p`.
pub fn partition_key(p: PartitionId) -> String {
    format!("{PARTITION_KEY_PREFIX}{}", p.0)
}

/// The partition a KV key names, if it is a partition key.
pub fn parse_partition_key(key: &str) -> Option<PartitionId> {
    let n = key.strip_prefix(PARTITION_KEY_PREFIX)?;
    // Only the canonical spelling ("p.7", not "p.07" or "p.+7").
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) || !n.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    n.parse().ok().map(PartitionId)
}

/// What a cluster is, fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMeta {
    /// The number of partitions; never changes.
    pub partitions: PartitionCount,
    /// The node that received every partition at creation. `None` after
    /// `cluster init` until the first node joins and sets it (by CAS, so
    /// two nodes starting together agree on one).
    pub initial_node: Option<NodeId>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

impl Wire for ClusterMeta {
    const KIND: MessageKind = kinds::CLUSTER_META;
    const VERSION: u8 = 1;

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_u32_le(self.partitions.get());
        put_opt_str(out, self.initial_node.as_ref().map(NodeId::as_str));
        out.put_u64_le(self.created_at_ms);
    }

    fn decode_body(_version: u8, body: &mut Reader<'_>) -> Result<Self, WireError> {
        let partitions =
            PartitionCount::new(u64::from(body.u32()?)).map_err(|e| WireError::Invalid {
                field: "partitions",
                reason: e.to_string(),
            })?;
        let initial_node = body
            .opt_str()?
            .map(|s| {
                NodeId::parse(s).map_err(|e| WireError::Invalid {
                    field: "initial node",
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        Ok(ClusterMeta {
            partitions,
            initial_node,
            created_at_ms: body.u64()?,
        })
    }
}

/// The owner of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRecord {
    /// The node holding the partition's data.
    pub node: NodeId,
    /// 1 at creation, +1 at every change of owner: a fencing number the
    /// move protocol and the data it copies can be checked against.
    pub epoch: u64,
}

impl Wire for PlacementRecord {
    const KIND: MessageKind = kinds::PLACEMENT_RECORD;
    const VERSION: u8 = 1;

    fn encode_body(&self, out: &mut BytesMut) {
        put_str(out, self.node.as_str());
        out.put_u64_le(self.epoch);
    }

    fn decode_body(_version: u8, body: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(PlacementRecord {
            node: body.node_id()?,
            epoch: body.u64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, to_bytes};

    #[test]
    fn partition_keys_round_trip_and_only_canonical_ones_parse() {
        for n in [0u32, 7, 1023, 65_535] {
            let key = partition_key(PartitionId(n));
            assert_eq!(parse_partition_key(&key), Some(PartitionId(n)));
        }
        for bad in [
            "p.",
            "p.07",
            "p.+7",
            "p.-1",
            "p.1a",
            "q.1",
            "cluster",
            "p.99999999999",
        ] {
            assert_eq!(parse_partition_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn records_round_trip() {
        let meta = ClusterMeta {
            partitions: PartitionCount::new(1024).unwrap(),
            initial_node: Some(NodeId::parse("n1").unwrap()),
            created_at_ms: 1_700_000_000_000,
        };
        assert_eq!(decode::<ClusterMeta>(&to_bytes(&meta)), Ok(meta.clone()));
        let unset = ClusterMeta {
            initial_node: None,
            ..meta
        };
        assert_eq!(decode::<ClusterMeta>(&to_bytes(&unset)), Ok(unset));
        let rec = PlacementRecord {
            node: NodeId::parse("node-b").unwrap(),
            epoch: 3,
        };
        assert_eq!(decode::<PlacementRecord>(&to_bytes(&rec)), Ok(rec));
    }

    #[test]
    fn a_zero_partition_count_does_not_decode() {
        let mut body = BytesMut::new();
        body.put_u32_le(0);
        body.put_u8(0);
        body.put_u64_le(0);
        let body = body.freeze();
        assert!(matches!(
            crate::wire::decode_body::<ClusterMeta>(kinds::CLUSTER_META, 1, &body),
            Err(WireError::Invalid {
                field: "partitions",
                ..
            })
        ));
    }
}
