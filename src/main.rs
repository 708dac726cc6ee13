//! The `surepush` binary.

// mimalloc: thread-per-core shards allocate and free on their own thread;
// mimalloc's per-thread heaps keep that free of cross-core contention.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    println!("surepush {}", env!("CARGO_PKG_VERSION"));
}
