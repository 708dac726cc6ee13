//! The data dir's free space after a storage failure.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::limits;
use crate::runtime::NodeShared;

/// After a shard's log failed (for example the disk filled up), waits until
/// the data dir's filesystem has `need` bytes free again, then asks for a
/// restart of every shard from its log. Meanwhile the failed shard refuses
/// sends (StorageUnavailable), `/healthz` says degraded and the
/// `storage_failed` gauge is 1.
pub(super) async fn watch_storage(
    shared: Arc<NodeShared>,
    data_dir: std::path::PathBuf,
    need: u64,
) {
    // Not sooner than this after a failure: a disk that keeps failing
    // must not turn into a restart loop.
    const SETTLE: Duration = Duration::from_secs(2);
    const REPORT_EVERY: Duration = Duration::from_secs(30);
    let mut failed_since: Option<Instant> = None;
    let mut last_report = Instant::now();
    while !shared.shutdown.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_millis(250)).await;
        let failed = shared
            .storage_failed
            .iter()
            .any(|f| f.load(Ordering::Relaxed));
        if !failed {
            failed_since = None;
            continue;
        }
        let since = *failed_since.get_or_insert_with(Instant::now);
        let free = limits::free_bytes(&data_dir);
        match free {
            Ok(free) if free >= need && since.elapsed() >= SETTLE => {
                tracing::warn!(
                    data_dir = %data_dir.display(),
                    free,
                    need,
                    "storage has room again: restarting the shards from their logs"
                );
                shared.restart.store(true, Ordering::Relaxed);
                shared.shutdown.store(true, Ordering::Relaxed);
                return;
            }
            _ if last_report.elapsed() >= REPORT_EVERY => {
                last_report = Instant::now();
                tracing::error!(
                    data_dir = %data_dir.display(),
                    free = ?free.as_ref().map_err(|e| e.to_string()),
                    need,
                    "storage failed: refusing sends until the data dir has room"
                );
            }
            _ => {}
        }
    }
}
