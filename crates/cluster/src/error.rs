//! Errors of the NATS side of the cluster.

use crate::partition::PartitionId;
use crate::wire::WireError;

/// What went wrong talking to NATS or with the cluster's state in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// A NATS or JetStream operation failed (connection down, timeout,
    /// server error). Retrying later may succeed.
    #[error("NATS {op} failed: {detail}")]
    Nats {
        /// The operation.
        op: &'static str,
        /// The client's error text.
        detail: String,
    },
    /// The cluster has not been created (`surepush cluster init`, or a
    /// node configured with a partition count).
    #[error("no surepush cluster in this NATS account (run `surepush cluster init`)")]
    NotInitialized,
    /// The node is configured for another partition count than the
    /// cluster's; it must not join (every id would map elsewhere).
    #[error("the cluster has {cluster} partitions, this node is configured for {configured}")]
    PartitionCountMismatch {
        /// The cluster's count.
        cluster: u32,
        /// The node's configured count.
        configured: u32,
    },
    /// A compare-and-set lost: the entry changed since it was read.
    #[error("partition {partition} changed meanwhile (now at revision {current})")]
    Conflict {
        /// The partition.
        partition: PartitionId,
        /// Its revision now (0 if it has no entry).
        current: u64,
    },
    /// The partition is not one of the cluster's.
    #[error("partition {0} is not in the cluster")]
    UnknownPartition(PartitionId),
    /// A KV value does not decode.
    #[error("KV entry {key}: {error}")]
    Decode {
        /// The key.
        key: String,
        /// Why.
        error: WireError,
    },
    /// A wait ran out of time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The cluster thread has stopped.
    #[error("the cluster thread has stopped")]
    Stopped,
    /// A setting is out of range.
    #[error("invalid cluster setting: {0}")]
    Config(String),
}

impl ClusterError {
    /// A NATS failure of `op`.
    pub(crate) fn nats(op: &'static str, err: impl std::fmt::Display) -> ClusterError {
        ClusterError::Nats {
            op,
            detail: err.to_string(),
        }
    }
}
