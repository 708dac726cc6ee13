//! The cluster's series in `/metrics` (docs/CLUSTER.md "What to watch"),
//! read at each scrape from the counters the cluster thread keeps
//! ([`MessagingStats`]), the placement view and this node's redirects.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use surepush_cluster::messaging::MessagingStats;
use surepush_cluster::placement::Placement;

/// A counter of the cluster: (name without `_total`, help, accessor).
type Series = (
    &'static str,
    &'static str,
    fn(&MessagingStats) -> &AtomicU64,
);

/// Counters copied from [`MessagingStats`].
const COUNTERS: &[Series] = &[
    (
        "cluster_request_batches_sent",
        "Request batches sent to other nodes for the first time",
        |s| &s.batches_sent,
    ),
    (
        "cluster_requests_sent",
        "Messages in them (requests / batches = mean batch size)",
        |s| &s.messages_sent,
    ),
    (
        "cluster_request_batches_resent",
        "Request batches sent again after a timeout or a gap (NATS or a peer down)",
        |s| &s.batches_resent,
    ),
    (
        "cluster_request_bytes_sent",
        "Bytes of request batches published, resends included",
        |s| &s.request_bytes_sent,
    ),
    (
        "cluster_request_batches_received",
        "Request batches from other nodes handed to the shards",
        |s| &s.batches_received,
    ),
    (
        "cluster_reply_batches_received",
        "Reply batches received from other nodes",
        |s| &s.replies_received,
    ),
    (
        "cluster_reply_bytes_received",
        "Bytes of them",
        |s| &s.reply_bytes_received,
    ),
    (
        "cluster_replies_chunked",
        "Reply batches sent in chunks because they outgrew the NATS server's max_payload",
        |s| &s.replies_chunked,
    ),
    (
        "cluster_room_messages_published",
        "Room pushes published on room subjects by this node (each once, whatever the subscriber count)",
        |s| &s.room_messages_published,
    ),
    (
        "cluster_room_bytes_published",
        "Bytes of them",
        |s| &s.room_bytes_published,
    ),
    (
        "cluster_room_messages_received",
        "Room pushes received from other nodes on room subjects (one per push per node)",
        |s| &s.room_messages_received,
    ),
    (
        "cluster_presence_messages_published",
        "Presence changes published on user subjects by this node (each once, whatever the number of watching nodes)",
        |s| &s.presence_messages_published,
    ),
    (
        "cluster_presence_messages_received",
        "Presence changes received from other nodes on user subjects (one per change per node)",
        |s| &s.presence_messages_received,
    ),
    (
        "cluster_room_pushes_to_shards",
        "Those pushes handed to shards with subscribers (one per push per shard)",
        |s| &s.room_pushes_received,
    ),
    (
        "cluster_decode_errors",
        "NATS messages from other nodes that did not decode (skipped)",
        |s| &s.decode_errors,
    ),
    (
        "cluster_publishes_dropped",
        "Replies and room pushes dropped because NATS could not take them (recovered by resends and room resyncs)",
        |s| &s.publishes_dropped,
    ),
    (
        "cluster_presence_states_delayed",
        "Presence states NATS could not take at once, published again as it drained (the latest per user)",
        |s| &s.presence_states_delayed,
    ),
];

/// Partition moves this node carried out as their target (orders of
/// `surepush cluster move|rebalance|leave`), counted as each order ends.
#[derive(Debug, Default)]
pub(crate) struct MoveStats {
    started: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    records: AtomicU64,
    elapsed_ms: AtomicU64,
    shard_finished: AtomicU64,
    shard_failed: AtomicU64,
}

impl MoveStats {
    /// An order arrived.
    pub(crate) fn started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    /// An order ended with `result`.
    pub(crate) fn ended(&self, result: &surepush_cluster::moves::MoveResult) {
        let outcome = if result.moved {
            &self.finished
        } else {
            &self.failed
        };
        outcome.fetch_add(1, Ordering::Relaxed);
        if result.moved {
            self.records.fetch_add(result.records, Ordering::Relaxed);
        }
        self.elapsed_ms
            .fetch_add(result.elapsed_ms, Ordering::Relaxed);
    }

    /// A move between this node's shards ended with `result` (not counted
    /// as an order above).
    pub(crate) fn shard_move_ended(&self, result: &surepush_cluster::moves::MoveResult) {
        match result.moved {
            true => self.shard_finished.fetch_add(1, Ordering::Relaxed),
            false => self.shard_failed.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// (name without `_total`, help, value) of each counter.
    fn series(&self) -> [(&'static str, &'static str, u64); 7] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("cluster_moves_started", "Partition move orders this node took as the target", get(&self.started)),
            ("cluster_moves_finished", "Of them, partitions now placed here (or already were)", get(&self.finished)),
            ("cluster_moves_failed", "Of them, moves that ended without the partition here", get(&self.failed)),
            ("cluster_move_records_copied", "Log records imported by the moves that finished", get(&self.records)),
            ("cluster_move_milliseconds", "Milliseconds from order to flip (or failure), summed over moves; the source's fence lasts about as long", get(&self.elapsed_ms)),
            ("cluster_shard_moves_finished", "Partitions moved between this node's shards (move-shard orders and resizes at start)", get(&self.shard_finished)),
            ("cluster_shard_moves_failed", "Moves between this node's shards that ended with the partition where it was", get(&self.shard_failed)),
        ]
    }
}

/// Clients this node relays to their user's node (MQTT 3.1.1), counted
/// by the shards that relay them.
#[derive(Debug, Default)]
pub(crate) struct RelayStats {
    /// Relayed connections open now.
    open: AtomicU64,
    /// Relayed connections opened since the start.
    opened: AtomicU64,
    /// Connections that arrived relayed for a user not owned here, refused.
    refused: AtomicU64,
}

impl RelayStats {
    /// A relayed connection opened, closed, or was refused.
    pub(crate) fn count(&self, event: crate::transport::RelayEvent) {
        use crate::transport::RelayEvent;
        match event {
            RelayEvent::Opened => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                self.open.fetch_add(1, Ordering::Relaxed);
            }
            RelayEvent::Closed => drop(self.open.fetch_sub(1, Ordering::Relaxed)),
            RelayEvent::Refused => drop(self.refused.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

/// The cluster series (one per node, registered when it joined).
pub(crate) struct ClusterCollector {
    stats: Arc<MessagingStats>,
    placement: Placement,
    redirects: Arc<AtomicU64>,
    relays: Arc<RelayStats>,
    moves: Arc<MoveStats>,
}

impl ClusterCollector {
    pub(crate) fn new(
        stats: Arc<MessagingStats>,
        placement: Placement,
        redirects: Arc<AtomicU64>,
        relays: Arc<RelayStats>,
        moves: Arc<MoveStats>,
    ) -> ClusterCollector {
        ClusterCollector {
            stats,
            placement,
            redirects,
            relays,
            moves,
        }
    }
}

impl std::fmt::Debug for ClusterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterCollector")
    }
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = COUNTERS
            .iter()
            .map(|&(name, help, get)| (name, help, get(&self.stats).load(Ordering::Relaxed)))
            .chain(self.moves.series())
            .chain([
                (
                    "cluster_redirects",
                    "Clients refused with the address of their user's node (native WrongNode, MQTT 5 0x9C) or told it is unavailable",
                    self.redirects.load(Ordering::Relaxed),
                ),
                (
                    "cluster_relayed_connections_opened",
                    "Relayed connections opened since the start (each also counted in cluster_redirects)",
                    self.relays.opened.load(Ordering::Relaxed),
                ),
                (
                    "cluster_relays_refused",
                    "Connections that arrived relayed by another node for a user not placed here, refused rather than relayed again",
                    self.relays.refused.load(Ordering::Relaxed),
                ),
            ]);
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "cluster_relayed_connections",
                "MQTT 3.1.1 clients of other nodes' users relayed byte for byte to their node, open now",
                self.relays.open.load(Ordering::Relaxed) as i64,
            ),
            (
                "cluster_placement_revision",
                "Revision of the placement bucket this node routes by (equal on every node once a change has spread)",
                self.placement.revision() as i64,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}
