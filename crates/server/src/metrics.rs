//! Node metrics in the OpenMetrics text format (prometheus-client), served
//! as `application/openmetrics-text` ([`CONTENT_TYPE`]): counters are
//! declared `# TYPE x counter` with `x_total` samples and the body ends in
//! `# EOF`, which only an OpenMetrics parser reads right (Prometheus's
//! classic text parser, chosen by the 0.0.4 content type, mislabelled
//! them: issue 22 item 6).
//!
//! Besides the gateway's own `surepush_*` series: `surepush_build_info`
//! (version, git commit, compiler) and the standard `process_*` series
//! (read from `/proc` at each scrape, [`surepush_host::process`]).
//!
//! One [`Metrics`] registry per node, shared by all shards. Each shard holds
//! a [`ShardMetrics`] whose series carry its `shard` label; updates are
//! atomic adds on series no other shard touches, so they never contend.
//! The core keeps plain counters ([`CoreStats`]); the shard copies them here
//! about once a second, turning snapshots into monotonic counter increments.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use surepush_core::CoreStats;
use surepush_host::process::ProcessStats;

/// The media type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What `surepush_build_info` says about the binary.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    /// The crate version (Cargo.toml).
    version: &'static str,
    /// The git commit built from (`unknown` outside a checkout).
    git_sha: &'static str,
    /// `rustc --version` of the compiler.
    rustc: &'static str,
}

const BUILD: BuildLabels = BuildLabels {
    version: env!("CARGO_PKG_VERSION"),
    git_sha: env!("SUREPUSH_GIT_SHA"),
    rustc: env!("SUREPUSH_RUSTC_VERSION"),
};

/// The standard `process_*` series, read at each scrape (the names and
/// units of Prometheus's process collector).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A failed read leaves the series out of this scrape rather than
        // reporting zeros that look like figures.
        let Ok(s) = ProcessStats::read() else {
            return Ok(());
        };
        let counter = ConstCounter::new(s.cpu_seconds);
        counter.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            counter.metric_type(),
        )?)?;
        let gauges: [(&str, &str, f64); 5] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes as f64,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds as f64,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                s.max_fds as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                s.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// The label every series carries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: u16,
}

/// What became of a slow consumer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlowLabel {
    shard: u16,
    /// `lagged`: a room subscription taken out of live fan-out (it resumes
    /// from the log); `dropped`: a connection closed for its unsent output.
    action: &'static str,
}

/// How a connection adopted from another shard is wrapped.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdoptedLabel {
    shard: u16,
    /// The layers under its protocol: `tcp`, `tls`, `ws`, `wss`.
    layers: &'static str,
}

/// Every `layers` value of `connections_adopted`.
const ADOPTED_LAYERS: [&str; 4] = ["tcp", "tls", "ws", "wss"];

type Counters = Family<ShardLabel, Counter>;
type Gauges = Family<ShardLabel, Gauge>;
type Histograms = Family<ShardLabel, Histogram, fn() -> Histogram>;

/// Latency buckets from 50 µs doubling to ~100 ms.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(50e-6, 2.0, 12))
}

/// A series copied from [`CoreStats`]: (name, help, accessor).
type CoreSeries = (&'static str, &'static str, fn(&CoreStats) -> u64);

/// Counters copied from [`CoreStats`].
const CORE_COUNTERS: &[CoreSeries] = &[
    (
        "sessions_opened",
        "Sessions established (CONNACK sent)",
        |s| s.sessions_opened,
    ),
    ("sends", "SEND frames received, all QoS", |s| s.sends),
    ("room_pushes", "Room frames queued to subscribers", |s| {
        s.room_pushes
    }),
    (
        "room_lags",
        "Room subscriptions dropped from live delivery (slow consumers)",
        |s| s.room_lags,
    ),
    (
        "room_forbidden",
        "Room subscriptions and publishes refused, and subscriptions ended, by room permissions",
        |s| s.room_forbidden,
    ),
    (
        "topic_notices",
        "Topic stream messages matched against another shard's wildcard filters (notices sent between shards)",
        |s| s.topic_notices,
    ),
    (
        "topic_relays",
        "Topic stream messages matched against another node's wildcard filters (one notice per message per node)",
        |s| s.topic_relays,
    ),
    (
        "share_deliveries",
        "Messages of MQTT share groups handed to a member's connection",
        |s| s.share_deliveries,
    ),
    (
        "share_dropped",
        "Messages of MQTT share groups dropped undelivered (further back than a subscriber may resume, or QoS 2 sent to a member whose session ended)",
        |s| s.share_dropped,
    ),
    (
        "share_expired",
        "Persistent MQTT share group members whose session expired before they came back (they left the group; their unfinished QoS 2 messages count in share_dropped)",
        |s| s.share_expired,
    ),
    (
        "topic_filters_refused",
        "Wildcard topic filters refused (core.max_topic_filters, core.max_filters_per_conn)",
        |s| s.topic_filters_refused,
    ),
    (
        "retained_topics_refused",
        "Retained messages of free-form topics refused (core.max_retained_topics)",
        |s| s.retained_topics_refused,
    ),
    (
        "room_resyncs",
        "Live room subscriptions that found a hole (a push lost between nodes) and replayed it from the room's home node",
        |s| s.room_resyncs,
    ),
    (
        "send_conflicts",
        "SENDs refused: their client_msg_id was used before for a different message",
        |s| s.send_conflicts,
    ),
    (
        "send_duplicates",
        "SENDs recognised as retries of stored sends",
        |s| s.send_duplicates,
    ),
    ("copies_stored", "Message copies made durable", |s| {
        s.copies_stored
    }),
    ("pushes", "Live pushes written (first transmissions)", |s| {
        s.pushes
    }),
    ("retransmits", "Pushes retransmitted for lack of ACK", |s| {
        s.retransmits
    }),
    ("acks", "ACK frames processed", |s| s.acks),
    (
        "dead_connections",
        "Connections closed after max retransmits",
        |s| s.dead_connections,
    ),
    ("sync_pages", "SYNC pages sent", |s| s.sync_pages),
    (
        "protocol_errors",
        "Connections closed for protocol violations",
        |s| s.protocol_errors,
    ),
    ("auth_failures", "Refused tokens", |s| s.auth_failures),
    ("storage_failures", "Log failures observed", |s| {
        s.storage_failures
    }),
    (
        "presence_events",
        "Coalesced presence changes sent to watching shards",
        |s| s.presence_events,
    ),
];

/// Gauges copied from [`CoreStats`].
const CORE_GAUGES: &[CoreSeries] = &[
    ("sessions_live", "Established sessions", |s| s.sessions_live),
    ("pending_acks", "Pushes awaiting ACK", |s| s.pending_acks),
    (
        "remote_topic_filters",
        "Wildcard filters of other cluster nodes this shard matches its topic streams against",
        |s| s.remote_topic_filters,
    ),
];

/// The node's registry.
pub struct Metrics {
    registry: Registry,
    core_counters: Vec<Counters>,
    core_gauges: Vec<Gauges>,
    connections: Gauges,
    parked: Gauges,
    resumed: Counters,
    auth_refused_at_accept: Counters,
    read_pauses: Counters,
    log_bytes: Counters,
    log_syncs: Counters,
    log_segments: Gauges,
    storage_failed: Gauges,
    salvaged: Counters,
    unacked_expired: Counters,
    mqtt_expired: Counters,
    fsync: Histograms,
    slow_consumers: Family<SlowLabel, Counter>,
    adopted: Family<AdoptedLabel, Counter>,
    webhooks: Arc<crate::webhooks::WebhookMetrics>,
    /// A cluster node's per-shard link gauges.
    link: Option<LinkGauges>,
}

/// How loaded each shard's cluster link is ([`crate::cluster::LinkLoad`]).
struct LinkGauges {
    tickets: Gauges,
    backlog: Gauges,
    lane_events: Gauges,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A registry for `shards` shards.
    pub fn new(shards: u16) -> Arc<Metrics> {
        Metrics::with_cluster(shards, None)
    }

    /// A registry for `shards` shards of a cluster node, whose series
    /// `cluster` reads at each scrape (`surepush_cluster_*`).
    pub(crate) fn with_cluster(
        shards: u16,
        cluster: Option<crate::cluster::ClusterCollector>,
    ) -> Arc<Metrics> {
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("surepush");
        let is_cluster = cluster.is_some();
        if let Some(cluster) = cluster {
            registry.register_collector(Box::new(cluster));
        }
        registry.register(
            "build",
            "The running binary: crate version, git commit, compiler",
            Info::new(BUILD),
        );
        let mut counter = |name: &str, help: &str| {
            let f = Counters::default();
            registry.register(name, help, f.clone());
            f
        };
        let core_counters = CORE_COUNTERS
            .iter()
            .map(|(n, h, _)| counter(n, h))
            .collect();
        let resumed = counter(
            "connections_resumed",
            "Parked connections resumed by input or output (each one restarts its two loops)",
        );
        let auth_refused_at_accept =
            counter("accept_auth_failures", "Tokens refused before handoff");
        let read_pauses = counter(
            "read_pauses",
            "Times a connection's reads paused for the rest of a second (over core.max_frames_per_sec)",
        );
        let log_bytes = counter("log_appended_bytes", "Bytes appended to the segment log");
        let log_syncs = counter("log_syncs", "Group commits (fdatasync) completed");
        let salvaged = counter(
            "log_salvaged_records",
            "Inbox messages found lost when a damaged log was salvaged (log.recovery = salvage)",
        );
        let unacked_expired = counter(
            "log_unacked_expired",
            "Unacknowledged inbox messages deleted by retention (older than retention_hours)",
        );
        let mqtt_expired = counter(
            "mqtt_messages_expired",
            "MQTT 5 messages not sent to a subscriber because their Message Expiry Interval passed while stored",
        );
        let slow_consumers = Family::<SlowLabel, Counter>::default();
        registry.register(
            "slow_consumers",
            "Slow consumers: room subscriptions lagged (out of live fan-out) and connections dropped for unsent output",
            slow_consumers.clone(),
        );
        let adopted = Family::<AdoptedLabel, Counter>::default();
        registry.register(
            "connections_adopted",
            "Connections handed to this shard, the owner of their user, by the shard that accepted them, by the layers under the protocol (tcp, tls, ws, wss)",
            adopted.clone(),
        );
        let mut gauge = |name: &str, help: &str| {
            let f = Gauges::default();
            registry.register(name, help, f.clone());
            f
        };
        let core_gauges = CORE_GAUGES.iter().map(|(n, h, _)| gauge(n, h)).collect();
        let connections = gauge("connections", "Open client TCP connections");
        let parked = gauge(
            "connections_parked",
            "Open connections parked while idle: no tasks, their sockets watched by the shard's epoll thread (park_idle_ms)",
        );
        let log_segments = gauge("log_segments", "Segment files in the log");
        let link = is_cluster.then(|| LinkGauges {
            tickets: gauge(
                "cluster_tickets_in_use",
                "Requests from other nodes this shard is serving (at the router's MAX_TICKETS it takes no more until replies go out)",
            ),
            backlog: gauge(
                "cluster_backlog",
                "Messages for other nodes waiting on this shard because their peer queue was full",
            ),
            lane_events: gauge(
                "cluster_lane_events",
                "Requests, replies and failures the cluster thread queued for this shard, not yet taken",
            ),
        });
        let storage_failed = gauge(
            "storage_failed",
            "1 while the shard's log has failed (sends refused until the node restarts it)",
        );
        let mut histogram = |name: &str, help: &str| {
            let f = Histograms::new_with_constructor(latency_histogram as fn() -> Histogram);
            registry.register(name, help, f.clone());
            f
        };
        let fsync = histogram(
            "log_fsync_seconds",
            "Time from append to durable (group commit wait)",
        );
        let webhooks = Arc::new(crate::webhooks::WebhookMetrics::register(registry, shards));
        let m = Metrics {
            webhooks,
            registry: root,
            core_counters,
            core_gauges,
            connections,
            parked,
            resumed,
            auth_refused_at_accept,
            read_pauses,
            log_bytes,
            log_syncs,
            log_segments,
            storage_failed,
            salvaged,
            unacked_expired,
            mqtt_expired,
            fsync,
            slow_consumers,
            adopted,
            link,
        };
        // Create every series up front so a scrape shows all shards at zero.
        for shard in 0..shards {
            let l = ShardLabel { shard };
            m.core_counters
                .iter()
                .for_each(|f| drop(f.get_or_create(&l)));
            m.core_gauges.iter().for_each(|f| drop(f.get_or_create(&l)));
            for f in [
                &m.auth_refused_at_accept,
                &m.read_pauses,
                &m.log_bytes,
                &m.log_syncs,
            ]
            .into_iter()
            .chain([&m.salvaged, &m.unacked_expired, &m.mqtt_expired, &m.resumed])
            {
                drop(f.get_or_create(&l));
            }
            for f in [
                &m.connections,
                &m.parked,
                &m.log_segments,
                &m.storage_failed,
            ] {
                drop(f.get_or_create(&l));
            }
            drop(m.fsync.get_or_create(&l));
            if let Some(link) = &m.link {
                for f in [&link.tickets, &link.backlog, &link.lane_events] {
                    drop(f.get_or_create(&l));
                }
            }
            for action in [SLOW_LAGGED, SLOW_DROPPED] {
                drop(m.slow_consumers.get_or_create(&SlowLabel { shard, action }));
            }
            for layers in ADOPTED_LAYERS {
                drop(m.adopted.get_or_create(&AdoptedLabel { shard, layers }));
            }
        }
        Arc::new(m)
    }

    /// The webhook series (the dispatcher updates them).
    pub fn webhooks(&self) -> Arc<crate::webhooks::WebhookMetrics> {
        self.webhooks.clone()
    }

    /// The handle one shard updates.
    pub fn shard(self: &Arc<Self>, shard: u16) -> ShardMetrics {
        ShardMetrics {
            metrics: self.clone(),
            label: ShardLabel { shard },
            last: RefCell::new(Snapshot::default()),
        }
    }

    /// OpenMetrics text exposition ([`CONTENT_TYPE`]), `# EOF` included.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[derive(Default)]
struct Snapshot {
    core: CoreStats,
    log_bytes: u64,
    log_syncs: u64,
}

/// One shard's view of the registry (lives on that shard's thread).
pub struct ShardMetrics {
    metrics: Arc<Metrics>,
    label: ShardLabel,
    last: RefCell<Snapshot>,
}

const SLOW_LAGGED: &str = "lagged";
const SLOW_DROPPED: &str = "dropped";

/// Increment for a monotonic counter from two snapshots; a lower value
/// means the source restarted from zero.
pub(crate) fn delta(now: u64, before: u64) -> u64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

impl ShardMetrics {
    /// Copies the core's counters and gauges.
    pub fn record_core(&self, stats: &CoreStats) {
        let mut last = self.last.borrow_mut();
        for ((_, _, get), family) in CORE_COUNTERS.iter().zip(&self.metrics.core_counters) {
            let d = delta(get(stats), get(&last.core));
            if d > 0 {
                family.get_or_create(&self.label).inc_by(d);
            }
        }
        for ((_, _, get), family) in CORE_GAUGES.iter().zip(&self.metrics.core_gauges) {
            family.get_or_create(&self.label).set(get(stats) as i64);
        }
        // Every room lag is a slow consumer taken out of live fan-out.
        let lags = delta(stats.room_lags, last.core.room_lags);
        if lags > 0 {
            self.slow(SLOW_LAGGED).inc_by(lags);
        }
        self.metrics
            .webhooks
            .record_core(self.label.shard, stats, &last.core);
        last.core = stats.clone();
    }

    fn slow(&self, action: &'static str) -> Counter {
        let label = SlowLabel {
            shard: self.label.shard,
            action,
        };
        self.metrics.slow_consumers.get_or_create(&label).clone()
    }

    /// A connection dropped for its unsent output.
    pub fn count_slow_drop(&self) {
        self.slow(SLOW_DROPPED).inc();
    }

    /// Open TCP connections on this shard.
    pub fn set_connections(&self, n: u64) {
        self.metrics
            .connections
            .get_or_create(&self.label)
            .set(n as i64);
    }

    /// Open connections parked while idle on this shard.
    pub fn set_parked(&self, n: u64) {
        self.metrics.parked.get_or_create(&self.label).set(n as i64);
    }

    /// This shard's cluster link queues (cluster nodes only).
    pub(crate) fn set_link_load(&self, load: crate::cluster::LinkLoad) {
        let Some(link) = &self.metrics.link else {
            return;
        };
        for (f, n) in [
            (&link.tickets, load.tickets_in_use),
            (&link.backlog, load.backlog),
            (&link.lane_events, load.lane_events),
        ] {
            f.get_or_create(&self.label).set(n as i64);
        }
    }

    /// Parked connections resumed.
    pub fn count_resumed(&self, n: u64) {
        self.metrics.resumed.get_or_create(&self.label).inc_by(n);
    }

    /// Whether this shard's log has failed.
    pub fn set_storage_failed(&self, failed: bool) {
        self.metrics
            .storage_failed
            .get_or_create(&self.label)
            .set(i64::from(failed));
    }

    /// Messages a salvage found lost.
    pub fn count_salvaged(&self, lost: u64) {
        self.metrics
            .salvaged
            .get_or_create(&self.label)
            .inc_by(lost);
    }

    /// Unacknowledged messages retention deleted.
    pub fn count_unacked_expired(&self, n: u64) {
        self.metrics
            .unacked_expired
            .get_or_create(&self.label)
            .inc_by(n);
    }

    /// MQTT messages dropped for their Message Expiry Interval.
    pub fn count_mqtt_expired(&self, n: u64) {
        self.metrics
            .mqtt_expired
            .get_or_create(&self.label)
            .inc_by(n);
    }

    /// A token refused by the accepting shard.
    pub fn count_auth_failure(&self) {
        self.metrics
            .auth_refused_at_accept
            .get_or_create(&self.label)
            .inc();
    }

    /// A connection handed over by another shard (`layers`: one of
    /// `ADOPTED_LAYERS`).
    pub fn count_adopted(&self, layers: &'static str) {
        let shard = self.label.shard;
        self.metrics
            .adopted
            .get_or_create(&AdoptedLabel { shard, layers })
            .inc();
    }

    /// A connection's reads paused: it was over its frames per second.
    pub fn count_read_pause(&self) {
        self.metrics.read_pauses.get_or_create(&self.label).inc();
    }

    /// Copies the log's totals.
    pub fn record_log(&self, appended_bytes_total: u64, syncs_total: u64, segments: u64) {
        let mut last = self.last.borrow_mut();
        let m = &self.metrics;
        m.log_bytes
            .get_or_create(&self.label)
            .inc_by(delta(appended_bytes_total, last.log_bytes));
        m.log_syncs
            .get_or_create(&self.label)
            .inc_by(delta(syncs_total, last.log_syncs));
        m.log_segments
            .get_or_create(&self.label)
            .set(segments as i64);
        last.log_bytes = appended_bytes_total;
        last.log_syncs = syncs_total;
    }

    /// One wait for durability.
    pub fn observe_fsync(&self, d: Duration) {
        self.metrics
            .fsync
            .get_or_create(&self.label)
            .observe(d.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn snapshots_become_counters_and_gauges_per_shard() {
        let m = Metrics::new(2);
        let s1 = m.shard(1);
        let mut stats = CoreStats {
            pushes: 5,
            pending_acks: 3,
            ..CoreStats::default()
        };
        s1.record_core(&stats);
        stats.pushes = 8;
        stats.pending_acks = 1;
        s1.record_core(&stats);
        let text = m.encode();
        assert_eq!(
            value(&text, "surepush_pushes_total{shard=\"1\"}"),
            Some(8.0),
            "{text}"
        );
        assert_eq!(
            value(&text, "surepush_pushes_total{shard=\"0\"}"),
            Some(0.0)
        );
        assert_eq!(
            value(&text, "surepush_pending_acks{shard=\"1\"}"),
            Some(1.0)
        );
    }

    #[test]
    fn a_restarted_source_never_makes_a_counter_go_backwards() {
        let m = Metrics::new(1);
        let s = m.shard(0);
        s.record_log(1000, 10, 1);
        s.record_log(200, 2, 1); // the log was reopened and counts from zero
        let text = m.encode();
        assert_eq!(
            value(&text, "surepush_log_appended_bytes_total{shard=\"0\"}"),
            Some(1200.0),
            "{text}"
        );
        assert_eq!(
            value(&text, "surepush_log_syncs_total{shard=\"0\"}"),
            Some(12.0)
        );
    }

    #[test]
    fn slow_consumers_are_counted_by_what_became_of_them() {
        let m = Metrics::new(1);
        let s = m.shard(0);
        s.record_core(&CoreStats {
            room_lags: 3,
            ..CoreStats::default()
        });
        s.count_slow_drop();
        let text = m.encode();
        let series = |action: &str| {
            value(
                &text,
                &format!("surepush_slow_consumers_total{{shard=\"0\",action=\"{action}\"}}"),
            )
        };
        assert_eq!(series("lagged"), Some(3.0), "{text}");
        assert_eq!(series("dropped"), Some(1.0), "{text}");
    }

    /// Issue 22 item 6: the body is OpenMetrics (a parser of that format
    /// is checked against a live node in tests/ops.rs); the shape the
    /// format requires is checked here.
    #[test]
    fn the_exposition_is_openmetrics_with_build_and_process_series() {
        let text = Metrics::new(1).encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.contains("# TYPE surepush_sends counter\n"), "{text}");
        assert!(text.contains("# TYPE surepush_build info\n"), "{text}");
        let build = format!(
            "surepush_build_info{{version=\"{}\",git_sha=\"{}\",rustc=\"{}\"}} 1",
            BUILD.version, BUILD.git_sha, BUILD.rustc
        );
        assert!(text.contains(&build), "{text}");
        assert!(BUILD.rustc.starts_with("rustc "), "{}", BUILD.rustc);
        for series in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            let v = value(&text, &format!("{series} ")).unwrap_or(-1.0);
            assert!(v >= 0.0, "{series}: {text}");
        }
        assert!(value(&text, "process_resident_memory_bytes ").unwrap() > 0.0);
    }

    #[test]
    fn latencies_land_in_histogram_buckets() {
        let m = Metrics::new(1);
        let s = m.shard(0);
        s.observe_fsync(Duration::from_micros(150));
        let text = m.encode();
        assert_eq!(
            value(&text, "surepush_log_fsync_seconds_count{shard=\"0\"}"),
            Some(1.0),
            "{text}"
        );
    }
}
