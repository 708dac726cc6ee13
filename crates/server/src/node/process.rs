//! The process settings a node applies once at its start, before any shard
//! allocates: the open-file limit and transparent huge pages.

use crate::config::Config;
use crate::limits;

/// Raises the open-file limit to its hard value (every connection is a
/// descriptor) and applies `transparent_huge_pages`. Neither failure stops
/// the node: each is logged, and the node runs with what it has.
pub(super) fn tune(config: &Config) {
    match limits::raise_nofile() {
        Ok(l) => tracing::info!(nofile = l.soft, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let allow = config.transparent_huge_pages;
    match limits::allow_transparent_huge_pages(allow) {
        Ok(()) => tracing::info!(allowed = allow, "transparent huge pages"),
        Err(e) => tracing::warn!(error = %e, "cannot set transparent huge pages"),
    }
}
