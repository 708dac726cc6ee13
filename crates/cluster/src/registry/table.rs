//! A node's picture of the registry bucket (pure data).

use std::collections::BTreeMap;

use super::record::NodeRecord;
use crate::node_id::NodeId;

/// A node appeared, restarted or disappeared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeChange {
    /// A node not known before registered.
    Joined(NodeRecord),
    /// A known node registered with a new incarnation (it restarted).
    Restarted(NodeRecord),
    /// A node's entry expired (no heartbeat within the TTL) or was deleted
    /// (clean shutdown).
    Left(NodeId),
}

/// Live nodes by id, with the highest revision applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodesTable {
    nodes: BTreeMap<NodeId, (NodeRecord, u64)>,
    revision: u64,
}

impl NodesTable {
    /// The live nodes, by id.
    pub fn iter(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values().map(|(r, _)| r)
    }

    /// One node's record.
    pub fn get(&self, id: &NodeId) -> Option<&NodeRecord> {
        self.nodes.get(id).map(|(r, _)| r)
    }

    /// Number of live nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if no node is registered.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The highest KV revision applied.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Applies a write of `id`'s entry at `revision` (`None`: removed).
    /// Heartbeats of a known incarnation change nothing visible.
    pub fn apply(
        &mut self,
        id: NodeId,
        record: Option<NodeRecord>,
        revision: u64,
    ) -> Option<NodeChange> {
        if self.nodes.get(&id).is_some_and(|(_, r)| *r >= revision) {
            return None;
        }
        self.revision = self.revision.max(revision);
        match record {
            Some(rec) => {
                let change = match self.nodes.get(&id) {
                    None => Some(NodeChange::Joined(rec.clone())),
                    Some((old, _)) if old.incarnation != rec.incarnation => {
                        Some(NodeChange::Restarted(rec.clone()))
                    }
                    Some(_) => None,
                };
                self.nodes.insert(id, (rec, revision));
                change
            }
            None => self.nodes.remove(&id).map(|_| NodeChange::Left(id)),
        }
    }

    /// The changes that turn `self` into `other`.
    pub fn diff(&self, other: &NodesTable) -> Vec<NodeChange> {
        let mut out = Vec::new();
        for (id, (rec, _)) in &other.nodes {
            match self.nodes.get(id) {
                None => out.push(NodeChange::Joined(rec.clone())),
                Some((old, _)) if old.incarnation != rec.incarnation => {
                    out.push(NodeChange::Restarted(rec.clone()))
                }
                Some(_) => {}
            }
        }
        for id in self.nodes.keys() {
            if !other.nodes.contains_key(id) {
                out.push(NodeChange::Left(id.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, incarnation: u64) -> NodeRecord {
        NodeRecord {
            id: NodeId::parse(id).unwrap(),
            incarnation,
            started_at_ms: incarnation / 1000,
            wire_version: 1,
            client_addr: "127.0.0.1:7400".into(),
            mqtt_addr: None,
            websocket_addr: None,
            admin_addr: "127.0.0.1:7401".into(),
        }
    }

    #[test]
    fn join_heartbeat_restart_and_leave() {
        let mut t = NodesTable::default();
        let a = NodeId::parse("a").unwrap();
        assert_eq!(
            t.apply(a.clone(), Some(rec("a", 1)), 1),
            Some(NodeChange::Joined(rec("a", 1)))
        );
        assert_eq!(t.apply(a.clone(), Some(rec("a", 1)), 2), None, "heartbeat");
        assert_eq!(
            t.apply(a.clone(), Some(rec("a", 2)), 3),
            Some(NodeChange::Restarted(rec("a", 2)))
        );
        assert_eq!(
            t.apply(a.clone(), Some(rec("a", 1)), 2),
            None,
            "late replay"
        );
        assert_eq!(t.get(&a).unwrap().incarnation, 2);
        assert_eq!(
            t.apply(a.clone(), None, 4),
            Some(NodeChange::Left(a.clone()))
        );
        assert!(t.is_empty());
        assert_eq!(t.revision(), 4);
    }

    #[test]
    fn diff_lists_joins_restarts_and_departures() {
        let mut old = NodesTable::default();
        old.apply(NodeId::parse("a").unwrap(), Some(rec("a", 1)), 1);
        old.apply(NodeId::parse("b").unwrap(), Some(rec("b", 1)), 2);
        let mut new = NodesTable::default();
        new.apply(NodeId::parse("b").unwrap(), Some(rec("b", 2)), 5);
        new.apply(NodeId::parse("c").unwrap(), Some(rec("c", 1)), 6);
        assert_eq!(
            old.diff(&new),
            [
                NodeChange::Restarted(rec("b", 2)),
                NodeChange::Joined(rec("c", 1)),
                NodeChange::Left(NodeId::parse("a").unwrap()),
            ]
        );
    }
}
