//! Hierarchical timer wheel for pending ACKs.
