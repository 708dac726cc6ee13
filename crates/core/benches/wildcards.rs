//! Wildcard topic filters (issue #21 item 1): the cost of matching one
//! published topic name against 100,000 subscriptions held in the filter
//! trie (what a stream's home shard does per stored message,
//! `topic_filters.rs`), beside a linear scan of the same filters with
//! `topic_matches` in the same run (the baseline a trie is for); and the
//! memory the trie takes per subscription.
//!
//! Run: `cargo bench -p surepush-core --bench wildcards` (results:
//! BENCHMARKS.md). The memory figure is printed before the timings.

use std::hint::black_box;
use std::sync::atomic::Ordering;

use criterion::{criterion_group, criterion_main, Criterion};
use surepush_core::filter_trie::FilterTrie;
use surepush_proto::topic::topic_matches;

#[path = "support/counting.rs"]
mod counting;
use counting::LIVE;

const SUBSCRIPTIONS: u32 = 100_000;

/// Subscription `i`: a mix of shapes (a device's readings with `+`, a
/// site's subtree with `#`, a leading `+`, exact names), so that a name
/// matches a few filters among many, as with real fleets of devices.
fn filter(i: u32) -> String {
    match i % 4 {
        0 => format!("dev/{}/+/temp", i / 4),
        1 => format!("site/{}/#", i % 1_000),
        2 => format!("+/{}/status", i / 4),
        _ => format!("dev/{}/power/now", i / 4),
    }
}

fn trie() -> FilterTrie<u32> {
    let mut t = FilterTrie::default();
    for i in 0..SUBSCRIPTIONS {
        // The subscriber is the value: one registration each.
        t.insert(&filter(i), i);
    }
    t
}

fn bench(c: &mut Criterion) {
    let before = LIVE.load(Ordering::Relaxed);
    let t = trie();
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "filter trie: {SUBSCRIPTIONS} subscriptions ({} distinct filters) hold {bytes} bytes: {:.0} bytes per subscription",
        t.filters(),
        bytes as f64 / f64::from(SUBSCRIPTIONS)
    );
    let filters: Vec<String> = (0..SUBSCRIPTIONS).map(filter).collect();
    // Names that match: a device reading (`dev/N/+/temp`, and `+/N/...`
    // does not), a site subtree (100 subscribers of `site/9/#`), a status
    // (one `+/N/status`); and one that matches nothing.
    let names = [
        ("device reading", "dev/4242/x/temp"),
        ("site subtree", "site/9/a/b/c"),
        ("status", "fleet/4242/status"),
        ("no match", "other/topic/name"),
    ];
    for (what, name) in names {
        let mut hits = 0;
        t.matches(name, |_| hits += 1);
        let linear = filters.iter().filter(|f| topic_matches(f, name)).count();
        assert_eq!(hits, linear, "{name}");
        println!("{what} `{name}`: {hits} matching subscriptions");
        let mut g = c.benchmark_group(format!("wildcard match, 100k subscriptions, {what}"));
        g.bench_function("trie", |b| {
            b.iter(|| {
                let mut n = 0u32;
                t.matches(black_box(name), |v| n = n.wrapping_add(v));
                n
            })
        });
        g.sample_size(10);
        g.bench_function("linear scan (baseline)", |b| {
            b.iter(|| {
                filters
                    .iter()
                    .filter(|f| topic_matches(f, black_box(name)))
                    .count()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
