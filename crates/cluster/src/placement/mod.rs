//! Partition placement: which node owns each partition.

pub mod record;
