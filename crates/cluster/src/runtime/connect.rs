//! Connecting to NATS: the settings and the one place that builds the
//! client's options.

use std::time::Duration;

use async_nats::jetstream;

use crate::error::ClusterError;

/// How to reach NATS and how hard to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated (`nats://host:4222,nats://...`).
    pub url: String,
    /// Longest pause between reconnect attempts (they start at 10 ms and
    /// double).
    pub reconnect_max_delay: Duration,
    /// Timeout of one JetStream API call (KV read, write, watch set-up).
    pub request_timeout: Duration,
    /// Replicas of the KV buckets when this process creates them: 1 on a
    /// single server, 3 on a NATS cluster.
    pub kv_replicas: usize,
}

impl NatsConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> NatsConfig {
        NatsConfig {
            url: url.into(),
            reconnect_max_delay: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            kv_replicas: 1,
        }
    }
}

/// How [`connect`] treats a server that is not reachable yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialConnect {
    /// Return at once and keep connecting in the background (a node: NATS
    /// down must not stop it from starting).
    Background,
    /// Fail if the first attempt fails (a CLI command).
    Fail,
}

/// Opens a client named `name` and its JetStream context. Reconnects
/// forever, with capped exponential delays.
pub async fn connect(
    config: &NatsConfig,
    name: &str,
    initial: InitialConnect,
) -> Result<(async_nats::Client, jetstream::Context), ClusterError> {
    let max = config.reconnect_max_delay;
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        .connection_timeout(config.request_timeout)
        .reconnect_delay_callback(move |attempts| {
            let exp = attempts.min(16) as u32;
            Duration::from_millis(10u64 << exp).min(max)
        });
    if initial == InitialConnect::Background {
        options = options.retry_on_initial_connect();
    }
    let client = options
        .connect(config.url.as_str())
        .await
        .map_err(|e| ClusterError::nats("connect", e))?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(config.request_timeout);
    Ok((client, js))
}
