//! Keeping this node's registry entry alive.
//!
//! The entry expires one TTL (the bucket's `max_age`) after its last
//! write, so the heartbeat rewrites it three times per TTL: one lost or
//! late write does not make the node look dead. A clean shutdown deletes
//! the entry, so peers see the node leave at once instead of after the
//! TTL.

use std::time::Duration;

use async_nats::jetstream::kv;

use super::record::{node_key, NodeRecord};
use crate::error::ClusterError;
use crate::wire;

/// Writes per TTL.
const BEATS_PER_TTL: u32 = 3;
/// Lower bound of the interval, whatever the bucket says.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// The interval for a bucket: its entry lifetime over [`BEATS_PER_TTL`].
pub fn interval(store: &kv::Store) -> Duration {
    let ttl = store.stream.cached_info().config.max_age;
    if ttl.is_zero() {
        // A bucket without expiry (created by hand): beat now and then so
        // the record stays fresh for readers.
        return Duration::from_secs(10);
    }
    (ttl / BEATS_PER_TTL).max(MIN_INTERVAL)
}

/// Writes the record once.
pub async fn register(store: &kv::Store, record: &NodeRecord) -> Result<u64, ClusterError> {
    store
        .put(node_key(&record.id), wire::to_bytes(record))
        .await
        .map_err(|e| ClusterError::nats("register node", e))
}

/// Rewrites the record every `interval`, forever (until the task is
/// dropped). Failures (NATS down) are logged; the next beat retries.
pub async fn run(store: kv::Store, record: NodeRecord, interval: Duration) {
    let value = wire::to_bytes(&record);
    let key = node_key(&record.id);
    loop {
        tokio::time::sleep(interval).await;
        if let Err(error) = store.put(key.as_str(), value.clone()).await {
            tracing::warn!(%error, "registry heartbeat failed; retrying");
        }
    }
}

/// Removes the record (clean shutdown).
pub async fn deregister(store: &kv::Store, record: &NodeRecord) -> Result<(), ClusterError> {
    store
        .delete(node_key(&record.id))
        .await
        .map_err(|e| ClusterError::nats("deregister node", e))
}
