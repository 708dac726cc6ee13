//! The two KV buckets: their settings, opening them, and following their
//! entries across NATS outages.
//!
//! Following a bucket: a watch with history delivers the latest entry of
//! every key, then live changes. The first watch ends its initial load
//! with [`BucketEvent::Current`]. If the watch fails (NATS gone long
//! enough for the consumer to be lost), a new one starts after a pause
//! with [`BucketEvent::Resync`]: the follower collects the full set of
//! entries again and, at `Current`, replaces its table (reporting the
//! difference), so removals missed meanwhile are not missed for good.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_lite::StreamExt;

use crate::error::ClusterError;

/// Bucket holding the cluster record and partition → node.
pub const PLACEMENT_BUCKET: &str = "surepush-placement";
/// Bucket holding live nodes (entries expire unless heartbeated).
pub const NODES_BUCKET: &str = "surepush-nodes";

/// Values kept per placement key: the recent owners of a partition, for
/// operators tracing a move.
const PLACEMENT_HISTORY: i64 = 16;

/// The placement bucket's settings.
pub fn placement_bucket(replicas: usize) -> kv::Config {
    kv::Config {
        bucket: PLACEMENT_BUCKET.into(),
        description: "surepush: cluster record and partition -> node".into(),
        history: PLACEMENT_HISTORY,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// The registry bucket's settings: entries live `ttl` after their last
/// write; the server then writes a removal marker (so watchers see the
/// node leave), which itself lives `ttl` (at least 1 s, the server's
/// minimum).
pub fn nodes_bucket(replicas: usize, ttl: Duration) -> kv::Config {
    kv::Config {
        bucket: NODES_BUCKET.into(),
        description: "surepush: live nodes (heartbeated)".into(),
        history: 1,
        max_age: ttl,
        limit_markers: Some(ttl.max(Duration::from_secs(1))),
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// Opens a bucket, or returns `None` if it does not exist.
pub async fn open(
    js: &jetstream::Context,
    bucket: &str,
) -> Result<Option<kv::Store>, ClusterError> {
    use jetstream::context::GetStreamErrorKind;
    match js.get_stream(format!("KV_{bucket}")).await {
        Ok(_) => {}
        Err(e) => {
            if let GetStreamErrorKind::JetStream(j) = e.kind() {
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND {
                    return Ok(None);
                }
            }
            return Err(ClusterError::nats("open bucket", e));
        }
    }
    js.get_key_value(bucket)
        .await
        .map(Some)
        .map_err(|e| ClusterError::nats("open bucket", e))
}

/// Opens a bucket, creating it with `config` if it does not exist. An
/// existing bucket keeps its settings (operators may have tuned them).
pub async fn open_or_create(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, ClusterError> {
    if let Some(store) = open(js, &config.bucket).await? {
        return Ok(store);
    }
    let bucket = config.bucket.clone();
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another process created it meanwhile (with other settings).
        Err(create) => match open(js, &bucket).await? {
            Some(store) => Ok(store),
            None => Err(ClusterError::nats("create bucket", create)),
        },
    }
}

/// What a bucket follower is told.
#[derive(Debug)]
pub enum BucketEvent {
    /// One key's latest value (or its removal).
    Entry(kv::Entry),
    /// Every key's value as of the watch's start has been delivered.
    Current,
    /// The watch restarts: a complete set of values follows, then
    /// `Current`.
    Resync,
}

/// Receives a bucket's events (on the cluster thread).
pub trait Follower {
    /// Handles one event.
    fn on_event(&mut self, event: BucketEvent) -> impl std::future::Future<Output = ()>;
}

/// Pause before watching again after a failure.
const REWATCH_PAUSE: Duration = Duration::from_millis(250);
/// How often an empty-looking bucket is checked while no entry arrived.
const EMPTY_RECHECK: Duration = Duration::from_millis(300);

/// Feeds `follower` with `store`'s entries forever (until the task is
/// dropped).
pub async fn follow(store: kv::Store, follower: &mut impl Follower) {
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(REWATCH_PAUSE).await;
            follower.on_event(BucketEvent::Resync).await;
        }
        first = false;
        let mut watch = match store.watch_with_history(">").await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(bucket = %store.name, error = %e, "watch failed; retrying");
                continue;
            }
        };
        let mut current = false;
        loop {
            let next = if current {
                watch.next().await
            } else {
                // An empty bucket delivers nothing, so "current" is also
                // reached when the stream holds no message at all.
                match tokio::time::timeout(EMPTY_RECHECK, watch.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        if is_empty(&store).await {
                            current = true;
                            follower.on_event(BucketEvent::Current).await;
                        }
                        continue;
                    }
                }
            };
            match next {
                Some(Ok(entry)) => {
                    let reached = !current && (entry.seen_current || entry.delta == 0);
                    follower.on_event(BucketEvent::Entry(entry)).await;
                    if reached {
                        current = true;
                        follower.on_event(BucketEvent::Current).await;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(bucket = %store.name, error = %e, "watch broke; watching again");
                    break;
                }
                None => break,
            }
        }
    }
}

async fn is_empty(store: &kv::Store) -> bool {
    store
        .stream
        .get_info()
        .await
        .is_ok_and(|info| info.state.messages == 0)
}
