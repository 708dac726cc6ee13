//! Counters the core keeps for `/metrics`.

/// Monotonic counters and gauges of one shard's delivery core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Room frames handed to subscriber connections.
    pub room_pushes: u64,
    /// Room subscriptions dropped from live delivery (slow consumers).
    pub room_lags: u64,
    /// Room subscriptions and publishes refused, and subscriptions ended,
    /// by room permissions.
    pub room_forbidden: u64,
    /// Live room subscriptions that found a hole in their shard's ring (a
    /// push lost between nodes) and asked the home shard again.
    pub room_resyncs: u64,
    /// TOPIC notices sent between shards: a topic stream message matched
    /// a shard's wildcard filters (`topic_filters.rs`).
    pub topic_notices: u64,
    /// TOPIC notices sent to other nodes: a topic stream message matched
    /// another node's wildcard filters, once per message per node
    /// (`topic_nodes.rs`).
    pub topic_relays: u64,
    /// Wildcard filters of other nodes this shard matches its streams
    /// against (gauge).
    pub remote_topic_filters: u64,
    /// Messages of share groups handed to a member's connection
    /// (SHAREPUSH, `share_groups.rs`).
    pub share_deliveries: u64,
    /// Messages of share groups dropped undelivered: further back than a
    /// subscriber may resume, or QoS 2 to a member whose session ended.
    pub share_dropped: u64,
    /// Persistent share group members whose session expired before they
    /// came back: they left their group (docs/MQTT.md 2.3a).
    pub share_expired: u64,
    /// FILTERs refused (a limit, or not an MQTT connection).
    pub topic_filters_refused: u64,
    /// Retained messages of free-form topics refused: the shard holds
    /// `core.max_retained_topics` already (`keyed.rs`).
    pub retained_topics_refused: u64,
    /// Sessions established (CONNACK sent).
    pub sessions_opened: u64,
    /// Sessions currently established (gauge).
    pub sessions_live: u64,
    /// SENDs received (all QoS).
    pub sends: u64,
    /// SENDs recognised as retries of stored sends.
    pub send_duplicates: u64,
    /// SENDs refused because their id was used for a different message.
    pub send_conflicts: u64,
    /// Message copies made durable.
    pub copies_stored: u64,
    /// Live pushes written (first transmissions).
    pub pushes: u64,
    /// Retransmitted pushes.
    pub retransmits: u64,
    /// ACK frames processed.
    pub acks: u64,
    /// Pushes awaiting ACK (gauge).
    pub pending_acks: u64,
    /// Connections closed for exceeding max retries.
    pub dead_connections: u64,
    /// SYNC pages sent.
    pub sync_pages: u64,
    /// CONVPAGE and CONVMSGS frames sent (issue #22).
    pub conversation_pages: u64,
    /// ERROR frames caused by peer protocol violations.
    pub protocol_errors: u64,
    /// Authentication failures.
    pub auth_failures: u64,
    /// Log failures observed.
    pub storage_failures: u64,
    /// Webhook events emitted, per [`crate::WebhookKind`] (in `ALL` order).
    pub webhook_events: [u64; 4],
    /// Webhook events dropped because the shard's backlog was full.
    pub webhooks_dropped: u64,
    /// Webhook events the dispatcher gave up on (past the give-up age).
    pub webhooks_given_up: u64,
    /// Webhook events stored and not delivered yet (gauge).
    pub webhooks_pending: u64,
    /// Presence changes sent to watching shards (one per shard per
    /// coalesced change).
    pub presence_events: u64,
    /// Partitions fenced here for a move (as its source).
    pub moves_fenced: u64,
    /// Records this shard exported to move targets.
    pub move_records_exported: u64,
}
