//! Partition moves, the control side (issue #20, docs/CLUSTER.md "Moving
//! a partition"): the order an operator sends to a move's target node, its
//! result, and the plans of `surepush cluster rebalance` and `leave`.
//!
//! An order is a NATS request on the target's subject
//! `surepush.node.<id>.move` ([`MoveOrder`], kind 7); the target's node
//! hands it to its owner ([`ClusterNode::take_move_orders`]), which runs
//! the move (the core's pages between the shards, then the placement CAS)
//! and answers with a [`MoveResult`] (kind 8). Plans are pure functions of
//! the placement and the live nodes, so they are tested without NATS.
//!
//! [`ClusterNode::take_move_orders`]: crate::ClusterNode::take_move_orders

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};

use crate::node_id::NodeId;
use crate::partition::PartitionId;
use crate::placement::table::PlacementTable;
use crate::wire::{kinds, put_str, MessageKind, Reader, Wire, WireError};

/// Operator to target node: take `partition` from its current owner, or
/// (with `shard`) move a partition the node holds onto that shard of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveOrder {
    /// The partition to move here.
    pub partition: PartitionId,
    /// Version 2: move the partition, already on the node, to this shard of
    /// it (`surepush cluster move-shard`); `None`: take it from its owner.
    pub shard: Option<u16>,
}

impl Wire for MoveOrder {
    const KIND: MessageKind = kinds::MOVE_ORDER;
    const VERSION: u8 = 2;

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_u32_le(self.partition.0);
        match self.shard {
            None => out.put_u8(0),
            Some(s) => {
                out.put_u8(1);
                out.put_u16_le(s);
            }
        }
    }

    fn decode_body(version: u8, body: &mut Reader<'_>) -> Result<Self, WireError> {
        let partition = PartitionId(body.u32()?);
        let shard = match version {
            1 => None,
            _ => match body.u8()? {
                0 => None,
                1 => Some(body.u16()?),
                other => {
                    return Err(WireError::Invalid {
                        field: "shard",
                        reason: format!("{other} is not an option tag"),
                    })
                }
            },
        };
        Ok(MoveOrder { partition, shard })
    }
}

/// Target node to operator: how a [`MoveOrder`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveResult {
    /// The partition.
    pub partition: PartitionId,
    /// True if the partition is now placed on the target (or was already).
    pub moved: bool,
    /// Placement revision after the flip (0 if none happened).
    pub revision: u64,
    /// Log records copied.
    pub records: u64,
    /// Milliseconds from the order to the flip (or the failure).
    pub elapsed_ms: u64,
    /// Why it failed, or a note ("already here").
    pub message: String,
}

impl Wire for MoveResult {
    const KIND: MessageKind = kinds::MOVE_RESULT;
    const VERSION: u8 = 1;

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_u32_le(self.partition.0);
        out.put_u8(u8::from(self.moved));
        out.put_u64_le(self.revision);
        out.put_u64_le(self.records);
        out.put_u64_le(self.elapsed_ms);
        put_str(out, &self.message);
    }

    fn decode_body(_version: u8, body: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(MoveResult {
            partition: PartitionId(body.u32()?),
            moved: match body.u8()? {
                0 => false,
                1 => true,
                other => {
                    return Err(WireError::Invalid {
                        field: "moved",
                        reason: format!("{other} is not a bool"),
                    })
                }
            },
            revision: body.u64()?,
            records: body.u64()?,
            elapsed_ms: body.u64()?,
            message: body.str()?.to_owned(),
        })
    }
}

/// An order as the target's owner receives it: answer once on `done`.
#[cfg(feature = "nats")]
#[derive(Debug)]
pub struct IncomingMove {
    /// The order.
    pub order: MoveOrder,
    /// Where the result goes (the cluster thread publishes it as the
    /// request's reply).
    pub done: flume::Sender<MoveResult>,
}

/// One planned move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMove {
    /// The partition.
    pub partition: PartitionId,
    /// Its owner now.
    pub from: NodeId,
    /// Where it goes.
    pub to: NodeId,
}

/// The fewest moves that leave the nodes in `nodes` within one partition
/// of each other; partitions of nodes not in `nodes` (gone,
/// leaving) all move. Deterministic: the most loaded node gives its
/// highest partition to the least loaded one (ties by node id).
pub fn plan_rebalance(table: &PlacementTable, nodes: &[NodeId]) -> Vec<PlannedMove> {
    if nodes.is_empty() {
        return Vec::new();
    }
    let mut owned: BTreeMap<NodeId, Vec<PartitionId>> =
        nodes.iter().map(|n| (n.clone(), Vec::new())).collect();
    let mut orphans: Vec<(PartitionId, NodeId)> = Vec::new();
    for p in 0..table.partitions() {
        let p = PartitionId(p);
        let Some(owner) = table.owner(p) else {
            continue;
        };
        match owned.get_mut(owner) {
            Some(list) => list.push(p),
            None => orphans.push((p, owner.clone())),
        }
    }
    let mut plan = Vec::new();
    let least = |owned: &BTreeMap<NodeId, Vec<PartitionId>>| {
        owned
            .iter()
            .min_by_key(|(id, list)| (list.len(), (*id).clone()))
            .map(|(id, _)| id.clone())
            .expect("nodes is not empty")
    };
    for (p, from) in orphans {
        let to = least(&owned);
        owned.get_mut(&to).expect("a planned node").push(p);
        plan.push(PlannedMove {
            partition: p,
            from,
            to,
        });
    }
    loop {
        let (most, most_len) = owned
            .iter()
            .max_by_key(|(id, list)| (list.len(), std::cmp::Reverse((*id).clone())))
            .map(|(id, list)| (id.clone(), list.len()))
            .expect("nodes is not empty");
        let to = least(&owned);
        // Balanced once no two nodes differ by more than one partition.
        if most_len <= owned[&to].len() + 1 {
            break;
        }
        let p = owned
            .get_mut(&most)
            .and_then(Vec::pop)
            .expect("the most loaded node owns some");
        owned.get_mut(&to).expect("a planned node").push(p);
        plan.push(PlannedMove {
            partition: p,
            from: most,
            to,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::PartitionCount;
    use crate::placement::record::PlacementRecord;

    fn id(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    fn table(owners: &[&str]) -> PlacementTable {
        let mut t = PlacementTable::new(PartitionCount::new(owners.len() as u64).unwrap());
        for (i, o) in owners.iter().enumerate() {
            let record = PlacementRecord {
                node: id(o),
                epoch: 1,
            };
            t.apply(PartitionId(i as u32), Some(record), i as u64 + 1);
        }
        t
    }

    fn counts_after(t: &PlacementTable, plan: &[PlannedMove]) -> BTreeMap<NodeId, usize> {
        let mut owners: Vec<NodeId> = (0..t.partitions())
            .map(|p| t.owner(PartitionId(p)).unwrap().clone())
            .collect();
        for m in plan {
            assert_eq!(owners[m.partition.0 as usize], m.from, "{m:?}");
            owners[m.partition.0 as usize] = m.to.clone();
        }
        let mut counts = BTreeMap::new();
        for o in owners {
            *counts.entry(o).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn a_fourth_node_gets_a_quarter_with_the_fewest_moves() {
        let owners: Vec<&str> = (0..12).map(|p| ["a", "b", "c"][p % 3]).collect();
        let t = table(&owners);
        let nodes = [id("a"), id("b"), id("c"), id("d")];
        let plan = plan_rebalance(&t, &nodes);
        assert_eq!(plan.len(), 3, "{plan:?}");
        assert!(plan.iter().all(|m| m.to == id("d")));
        let counts = counts_after(&t, &plan);
        assert!(counts.values().all(|c| *c == 3), "{counts:?}");
    }

    #[test]
    fn a_leaving_node_hands_everything_to_the_others() {
        let owners: Vec<&str> = (0..10).map(|p| ["a", "b", "c"][p % 3]).collect();
        let t = table(&owners);
        let plan = plan_rebalance(&t, &[id("a"), id("b")]);
        let counts = counts_after(&t, &plan);
        assert_eq!(counts.get(&id("c")), None, "{counts:?}");
        assert_eq!(counts[&id("a")] + counts[&id("b")], 10);
        assert!(counts.values().all(|c| (5..=5).contains(c)), "{counts:?}");
    }

    #[test]
    fn a_balanced_placement_needs_no_move() {
        let owners: Vec<&str> = (0..7).map(|p| ["a", "b", "c"][p % 3]).collect();
        let t = table(&owners);
        assert!(plan_rebalance(&t, &[id("a"), id("b"), id("c")]).is_empty());
        let all_on_one = table(&["a"; 8]);
        let plan = plan_rebalance(&all_on_one, &[id("a"), id("b"), id("c")]);
        let counts = counts_after(&all_on_one, &plan);
        assert!(counts.values().all(|c| (2..=3).contains(c)), "{counts:?}");
        assert_eq!(plan.len(), 5);
    }

    #[test]
    fn orders_and_results_round_trip() {
        for shard in [None, Some(0), Some(3)] {
            let order = MoveOrder {
                partition: PartitionId(7),
                shard,
            };
            assert_eq!(
                crate::wire::decode::<MoveOrder>(&crate::wire::to_bytes(&order)).unwrap(),
                order
            );
        }
        // A first-version order (no shard field) still reads: take it here.
        let mut v1 = BytesMut::new();
        v1.put_u32_le(7);
        let v1 = crate::wire::decode_body::<MoveOrder>(kinds::MOVE_ORDER, 1, &v1.freeze());
        assert_eq!(
            v1.unwrap(),
            MoveOrder {
                partition: PartitionId(7),
                shard: None
            }
        );
        let result = MoveResult {
            partition: PartitionId(7),
            moved: true,
            revision: 42,
            records: 1000,
            elapsed_ms: 12,
            message: String::new(),
        };
        assert_eq!(
            crate::wire::decode::<MoveResult>(&crate::wire::to_bytes(&result)).unwrap(),
            result
        );
    }
}
