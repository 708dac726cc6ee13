//! Retained messages of free-form topics (issue #21): what a new wildcard
//! subscription costs a stream's home shard when 100,000 retained topics
//! are homed there: finding the names the filter matches
//! (`topic_filters.rs` `on_filter_join`, walking the trie of names,
//! `filter_trie::NameTrie`), beside the linear scan of every name with
//! `topic_matches` that it replaced (the baseline, same run); and the
//! memory the names take.
//!
//! Run: `cargo bench -p surepush-core --bench retained_names` (results:
//! BENCHMARKS.md). The memory figure is printed before the timings.

use std::hint::black_box;
use std::sync::atomic::Ordering;

use criterion::{criterion_group, criterion_main, Criterion};
use surepush_core::filter_trie::NameTrie;
use surepush_proto::topic::topic_matches;

#[path = "support/counting.rs"]
mod counting;
use counting::LIVE;

const TOPICS: u32 = 100_000;

/// Retained topic `i`: devices' readings under sites, as fleets name them.
fn name(i: u32) -> String {
    let kind = ["temp", "hum", "power", "status"][(i % 4) as usize];
    format!("site/{}/dev/{}/{kind}", i % 100, i / 4)
}

fn bench(c: &mut Criterion) {
    let before = LIVE.load(Ordering::Relaxed);
    let mut t = NameTrie::default();
    for i in 0..TOPICS {
        t.insert(&name(i), u64::from(i));
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "name trie: {TOPICS} names hold {bytes} bytes: {:.0} bytes per name",
        bytes as f64 / f64::from(TOPICS)
    );
    let names: Vec<(u64, String)> = (0..TOPICS).map(|i| (u64::from(i), name(i))).collect();
    let filters = [
        ("everything", "#"),
        ("one site", "site/7/#"),
        ("one kind everywhere", "site/+/dev/+/temp"),
        ("one device", "site/7/dev/+/power"),
        ("no match", "fleet/#"),
    ];
    for (what, filter) in filters {
        let mut hits = 0;
        t.matching(filter, |_, _| hits += 1);
        let linear = names
            .iter()
            .filter(|(_, n)| topic_matches(filter, n))
            .count();
        assert_eq!(hits, linear, "{filter}");
        println!("{what} `{filter}`: {hits} matching names");
        let mut g = c.benchmark_group(format!("new filter, 100k retained names, {what}"));
        g.sample_size(10);
        g.bench_function("name trie", |b| {
            b.iter(|| {
                let mut found: Vec<(u64, String)> = Vec::new();
                t.matching(black_box(filter), |n, room| {
                    found.push((room, n.to_string()))
                });
                found.len()
            })
        });
        g.bench_function("linear scan (baseline)", |b| {
            b.iter(|| {
                let found: Vec<(u64, String)> = names
                    .iter()
                    .filter(|(_, n)| topic_matches(black_box(filter), n))
                    .map(|(r, n)| (*r, n.clone()))
                    .collect();
                found.len()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
