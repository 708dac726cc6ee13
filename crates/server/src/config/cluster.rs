//! `[cluster]`: this node's membership of a surepush cluster on NATS
//! (docs/CLUSTER.md). Off while `nats` is empty: the node is alone and
//! starts no cluster thread.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use surepush_core::durations;

/// `[cluster]` settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// NATS server URL(s), comma-separated (`nats://127.0.0.1:4222`);
    /// empty = a single node, no cluster.
    pub nats: String,
    /// This node's id, unique in the cluster (letters, digits, `-`, `_`).
    pub node_id: String,
    /// Partitions of the cluster: fixed when the cluster is created; a node
    /// configured for another count is refused (at most 32,768).
    pub partitions: u32,
    /// `host:port` other nodes redirect this node's native clients to;
    /// empty = `listen`.
    pub advertise: String,
    /// `host:port` other nodes redirect this node's MQTT 5 clients to;
    /// empty = `mqtt.listen`.
    pub advertise_mqtt: String,
    /// How long a starting node waits for NATS and the placement before it
    /// gives up (ms).
    #[serde(deserialize_with = "durations::millis")]
    pub join_timeout_ms: u64,
    /// How long a node's registry entry outlives its last heartbeat (ms;
    /// applies when this node creates the registry bucket).
    #[serde(deserialize_with = "durations::millis")]
    pub registry_ttl_ms: u64,
    /// How long messages for another node wait for company while a batch
    /// to it is in flight (µs; 0 = send at once): fewer, larger NATS
    /// messages for closed-loop senders, at most this much added latency
    /// (docs/CLUSTER.md "Cross-node cost").
    pub batch_linger_us: u64,
    /// How long the cluster thread keeps polling after its last message
    /// before it sleeps (µs; 0 = it sleeps at once): fewer wake-ups while
    /// cross-node traffic flows, paid in CPU; only for hosts with a core
    /// to spare (docs/CLUSTER.md "Cross-node cost").
    pub spin_before_park_us: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            nats: String::new(),
            node_id: String::new(),
            partitions: 1024,
            advertise: String::new(),
            advertise_mqtt: String::new(),
            join_timeout_ms: 30_000,
            registry_ttl_ms: 10_000,
            batch_linger_us: 0,
            spin_before_park_us: 0,
        }
    }
}

impl ClusterSettings {
    /// Whether this node is part of a cluster.
    pub fn enabled(&self) -> bool {
        !self.nats.trim().is_empty()
    }

    /// Why these settings cannot run, if they cannot.
    pub fn problem(&self) -> Option<String> {
        if !self.enabled() {
            return None;
        }
        if let Err(e) = surepush_cluster::NodeId::parse(&self.node_id) {
            return Some(format!("cluster.node_id {:?}: {e}", self.node_id));
        }
        let max = surepush_core::router::MAX_CLUSTER_PARTITIONS;
        if self.partitions == 0 || self.partitions > max {
            return Some(format!("cluster.partitions must be within 1 ..= {max}"));
        }
        if self.batch_linger_us > 100_000 {
            return Some("cluster.batch_linger_us must be at most 100000 (100 ms)".into());
        }
        if self.spin_before_park_us > 10_000 {
            return Some("cluster.spin_before_park_us must be at most 10000 (10 ms)".into());
        }
        if self.join_timeout_ms == 0 || self.registry_ttl_ms < 1_000 {
            return Some(
                "cluster.join_timeout_ms must be > 0 and cluster.registry_ttl_ms >= 1000".into(),
            );
        }
        None
    }
}
