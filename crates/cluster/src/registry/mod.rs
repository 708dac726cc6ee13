//! The node registry: which nodes are alive and where to reach them.

pub mod record;
