//! Hash maps of the hot paths.
//!
//! std's default SipHash costs more than the rest of an append; foldhash
//! (hashbrown's default hasher) is several times faster and still seeded
//! per process, so keys a client chooses (user ids, client message ids)
//! cannot be precomputed into collisions.

/// A `HashMap` with foldhash's seeded hasher. Build it with `default()`.
pub type FastHashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
