//! The webhook series: `surepush_webhook_events_total{shard,event}` and
//! `surepush_webhook_pending{shard}` (copied from the core with its other
//! counters), `surepush_webhook_deliveries_total{result}` (the
//! dispatcher's attempts and outcomes, and the shards' drops) and
//! `surepush_webhook_delivery_seconds` (first attempt to 2xx, retries
//! included).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use surepush_core::{CoreStats, WebhookKind};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    shard: u16,
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    /// `delivered` (2xx), `failed` (an attempt that will be retried),
    /// `gave_up` (past `give_up_after_s`), `dropped` (a shard's backlog
    /// was full).
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: u16,
}

/// The webhook families of the node's registry.
#[derive(Debug)]
pub struct WebhookMetrics {
    events: Family<EventLabel, Counter>,
    deliveries: Family<ResultLabel, Counter>,
    pending: Family<ShardLabel, Gauge>,
    latency: Histogram,
}

const RESULTS: [&str; 4] = ["delivered", "failed", "gave_up", "dropped"];

impl WebhookMetrics {
    /// Registers the families under `registry` (prefix `surepush`).
    pub fn register(registry: &mut Registry, shards: u16) -> WebhookMetrics {
        let m = WebhookMetrics {
            events: Family::default(),
            deliveries: Family::default(),
            pending: Family::default(),
            // 10 ms doubling to ~5.8 h: a delivery may wait out an outage.
            latency: Histogram::new(exponential_buckets(0.01, 2.0, 21)),
        };
        registry.register(
            "webhook_events",
            "Webhook events emitted (stored for delivery)",
            m.events.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts and outcomes: delivered, failed (retried), gave_up, dropped (backlog full)",
            m.deliveries.clone(),
        );
        registry.register(
            "webhook_pending",
            "Webhook events stored and not delivered yet",
            m.pending.clone(),
        );
        registry.register(
            "webhook_delivery_seconds",
            "Time from an event's first attempt to its 2xx answer",
            m.latency.clone(),
        );
        for shard in 0..shards {
            for kind in WebhookKind::ALL {
                drop(m.events.get_or_create(&EventLabel {
                    shard,
                    event: kind.name(),
                }));
            }
            drop(m.pending.get_or_create(&ShardLabel { shard }));
        }
        for result in RESULTS {
            drop(m.deliveries.get_or_create(&ResultLabel { result }));
        }
        m
    }

    fn count(&self, result: &'static str, n: u64) {
        self.deliveries
            .get_or_create(&ResultLabel { result })
            .inc_by(n);
    }

    /// A 2xx after `took` (from the first attempt).
    pub fn delivered(&self, took: Duration) {
        self.count("delivered", 1);
        self.latency.observe(took.as_secs_f64());
    }

    /// An attempt failed; it will be retried (or given up).
    pub fn failed_attempt(&self) {
        self.count("failed", 1);
    }

    /// An event was given up.
    pub fn gave_up(&self) {
        self.count("gave_up", 1);
    }

    /// The core's webhook counters of `shard` moved from `before` to `now`.
    pub(crate) fn record_core(&self, shard: u16, now: &CoreStats, before: &CoreStats) {
        for kind in WebhookKind::ALL {
            let i = kind as usize;
            let d = super::super::metrics::delta(now.webhook_events[i], before.webhook_events[i]);
            if d > 0 {
                let label = EventLabel {
                    shard,
                    event: kind.name(),
                };
                self.events.get_or_create(&label).inc_by(d);
            }
        }
        let dropped = super::super::metrics::delta(now.webhooks_dropped, before.webhooks_dropped);
        if dropped > 0 {
            self.count("dropped", dropped);
        }
        self.pending
            .get_or_create(&ShardLabel { shard })
            .set(now.webhooks_pending as i64);
    }
}
