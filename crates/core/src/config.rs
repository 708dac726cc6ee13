//! Limits and timings of the delivery core. One struct, documented defaults;
//! the server embeds it in its TOML config. Durations are numbers in the
//! unit their name ends in, or strings such as `"30s"` ([`crate::durations`]).

use serde::{Deserialize, Serialize};

use crate::DedupConfig;
use surepush_proto::DEFAULT_MAX_FRAME;

/// MQTT's largest keep alive (65,535 s), the default `max_keepalive_ms`.
pub const MQTT_MAX_KEEPALIVE_MS: u64 = 65_535_000;

/// Delivery limits and timings (`[core]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    /// Unacknowledged pushes kept in flight per connection; further messages
    /// wait in the log (like MQTT's receive maximum).
    pub push_window: u32,
    /// SENDs a connection may have awaiting SENDACK.
    pub max_pending_sends: u32,
    /// Largest frame accepted or sent, header included (bytes).
    pub max_frame: u32,
    /// First retransmit after this long without ACK.
    #[serde(deserialize_with = "crate::durations::millis")]
    pub ack_timeout_ms: u64,
    /// Backoff doubles per retry up to this.
    #[serde(deserialize_with = "crate::durations::millis")]
    pub max_backoff_ms: u64,
    /// Retransmits before the connection is declared dead (the message stays
    /// stored for the next session).
    pub max_retries: u32,
    /// Keepalive granted to clients that ask for 0 (MQTT: no keep alive);
    /// a session silent for 1.5x its keepalive is closed.
    #[serde(deserialize_with = "crate::durations::millis")]
    pub keepalive_ms: u64,
    /// Largest keepalive granted (default 65,535 s, MQTT's largest: an MQTT
    /// 3.1.1 server cannot lower a client's keep alive). At this default
    /// (or above) a client may also ask for none (`KEEPALIVE_OFF`, MQTT
    /// keep alive 0); below it, that request gets this maximum too.
    #[serde(deserialize_with = "crate::durations::millis")]
    pub max_keepalive_ms: u64,
    /// Time a new connection has to send CONNECT.
    #[serde(deserialize_with = "crate::durations::millis")]
    pub connect_timeout_ms: u64,
    /// Concurrent connections (devices) per user. SIGHUP applies a change
    /// (to CONNECTs from then on).
    pub max_connections_per_user: u32,
    /// Largest SYNC page (messages).
    pub max_sync_limit: u32,
    /// Frames per second a connection may send before it is closed.
    /// SIGHUP applies a change.
    pub max_frames_per_sec: u32,
    /// Device cursors are written to the log in batches this often.
    #[serde(deserialize_with = "crate::durations::millis")]
    pub cursor_flush_ms: u64,
    /// Room (and topic stream) messages each shard with subscribers keeps
    /// in memory, a ring of encoded frames, to catch subscribers up
    /// without reading the log. A subscriber further behind is replayed
    /// from the log (see `room_resume_limit`). Also the messages a share
    /// group holds waiting for a member in memory; its further ones stay
    /// in the log and are read back in pages (`room_page`).
    pub room_history: u32,
    /// How many messages back a room or topic (re)subscription can reach:
    /// one from an older point starts at the oldest reachable message with
    /// SUBACK `Gap`. 0 (the default): no count bound, only
    /// `room_max_age_ms` and the log's retention. A lagging subscriber
    /// (ROOMLAG) or a resuming session reads what it missed from the log,
    /// so a count bound loses messages for a connected QoS 1 subscriber
    /// that a fast publisher outruns by more than it.
    pub room_resume_limit: u32,
    /// Unacknowledged room messages a QoS 1 subscription may have before
    /// it is dropped from live delivery (ROOMLAG).
    pub room_window: u32,
    /// Room messages per replay page.
    pub room_page: u32,
    /// Room messages older than this (ms) are not replayed to resuming
    /// subscribers (0: bounded only by the log's retention age).
    #[serde(deserialize_with = "crate::durations::millis")]
    pub room_max_age_ms: u64,
    /// Whether a room without members is open to every authenticated
    /// user (read and write). `false`: every room needs a grant in the
    /// session's token or membership (admin API), the recommended setting
    /// in production. A room with members is never open to others.
    pub rooms_open: bool,
    /// Retry recognition window (`[core.dedup]`).
    pub dedup: DedupConfig,
    /// Conversation summaries (`[core.conversations]`, issue #22).
    pub conversations: crate::conversation::ConversationConfig,
    /// Users one connection may watch the presence of (WATCH beyond it:
    /// WATCHACK `TooManyWatches`).
    pub max_watches_per_conn: u32,
    /// Presence changes of a user are coalesced over this window: at most
    /// one PRESENCE per watched user per window, with the state at its end.
    #[serde(deserialize_with = "crate::durations::millis")]
    pub presence_debounce_ms: u64,
    /// Timer wheel granularity (microseconds).
    #[serde(deserialize_with = "crate::durations::micros")]
    pub timer_tick_us: u64,
    /// Distinct wildcard topic filters the connections of one shard may
    /// hold (FILTER beyond it: refused, docs/PROTOCOL.md "FILTER and
    /// TOPIC"). Every shard of the node matches each topic stream message
    /// against the filters of all shards.
    pub max_topic_filters: u32,
    /// Wildcard topic filters one connection may hold.
    pub max_filters_per_conn: u32,
    /// Topic stream names each shard remembers for the streams it homes
    /// (so a new filter finds the streams that exist); beyond it, streams
    /// are found by their next message only.
    pub max_topic_names: u32,
    /// Retained messages of free-form topics each shard keeps for the
    /// topic streams it homes (one per topic name, in memory and in the
    /// log): a retained PUBLISH that would add one more is refused
    /// (docs/MQTT.md 2.6). Replacing or clearing one is always allowed.
    pub max_retained_topics: u32,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            push_window: 64,
            max_pending_sends: 256,
            max_frame: DEFAULT_MAX_FRAME,
            ack_timeout_ms: 2_000,
            max_backoff_ms: 30_000,
            max_retries: 5,
            keepalive_ms: 30_000,
            max_keepalive_ms: MQTT_MAX_KEEPALIVE_MS,
            connect_timeout_ms: 10_000,
            max_connections_per_user: 8,
            max_sync_limit: 1_000,
            max_frames_per_sec: 10_000,
            cursor_flush_ms: 100,
            room_history: 1_000,
            room_resume_limit: 0,
            room_window: 256,
            room_page: 100,
            room_max_age_ms: 24 * 60 * 60 * 1000,
            rooms_open: true,
            dedup: DedupConfig::default(),
            conversations: Default::default(),
            max_watches_per_conn: 1_000,
            presence_debounce_ms: 500,
            timer_tick_us: 1_000,
            max_topic_filters: 100_000,
            max_filters_per_conn: 64,
            max_topic_names: 100_000,
            max_retained_topics: 100_000,
        }
    }
}

/// The limits a running shard takes without a restart (SIGHUP): each is
/// checked where it applies (a CONNECT, each frame) and none is announced
/// to clients, so a change binds every connection from its next check on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveLimits {
    /// [`CoreConfig::max_connections_per_user`].
    pub max_connections_per_user: u32,
    /// [`CoreConfig::max_frames_per_sec`].
    pub max_frames_per_sec: u32,
}

impl LiveLimits {
    /// Their paths in the TOML config.
    pub const SETTINGS: &'static [&'static str] =
        &["core.max_connections_per_user", "core.max_frames_per_sec"];

    /// The live limits of `config`.
    pub fn of(config: &CoreConfig) -> LiveLimits {
        LiveLimits {
            max_connections_per_user: config.max_connections_per_user,
            max_frames_per_sec: config.max_frames_per_sec,
        }
    }
}

impl CoreConfig {
    /// Retransmit delay before try `tries` (1-based): doubles, capped.
    pub fn backoff_ms(&self, tries: u32) -> u64 {
        let shift = tries.saturating_sub(1).min(20);
        (self.ack_timeout_ms << shift).min(self.max_backoff_ms.max(self.ack_timeout_ms))
    }
}
