//! The JIT cache in front of the store ([`JitCache`]): a hit (the get path of every cached
//! read) and a miss, with 1,000 and 1,000,000 entries (limits raised to hold them), and an
//! insert that replaces an entry.
//!
//! `cargo bench -p coffer-core --bench cache -- --warm-up-time 1 --measurement-time 2`
#![allow(clippy::unwrap_used, missing_docs)] // A benchmark: a failed unwrap is a failed run.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use coffer_core::cache::{CacheKey, CacheLimits, Cached, Facts, JitCache};
use coffer_crypto::SecretBytes;
use coffer_types::{Kind, Namespace, SecretName, Timestamp, Version};
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};

fn key(i: usize) -> CacheKey {
    (
        Namespace::default(),
        SecretName::parse(&format!("app/bench-{i}")).unwrap(),
    )
}

fn filled(entries: usize) -> JitCache {
    let cache = JitCache::new(CacheLimits {
        ttl: Duration::from_secs(3600),
        max_entries: entries,
        max_bytes: entries * 64,
    });
    // One value shared by every entry: the cache's own cost per entry is what is measured.
    let cached = Cached {
        value: Arc::new(SecretBytes::copy_from(&[b'v'; 32])),
        version: Version::FIRST,
        kind: Kind::Text,
        facts: Arc::new(Facts {
            created: Timestamp::now(),
            deletion: None,
            custom_metadata: BTreeMap::new(),
        }),
    };
    for i in 0..entries {
        cache.insert(key(i), &cached, cache.epoch());
    }
    assert_eq!(cache.usage().0, entries);
    cache
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache");
    for entries in [1_000, 1_000_000] {
        let cache = filled(entries);
        let hit = key(entries / 2);
        let miss = key(entries + 1);
        assert!(cache.get(&hit).is_some() && cache.get(&miss).is_none());
        group.bench_with_input(BenchmarkId::new("hit", entries), &hit, |b, k| {
            b.iter(|| cache.get(black_box(k)).is_some())
        });
        group.bench_with_input(BenchmarkId::new("miss", entries), &miss, |b, k| {
            b.iter(|| cache.get(black_box(k)).is_none())
        });
        let again = cache.get(&hit).unwrap();
        group.bench_with_input(BenchmarkId::new("replace", entries), &hit, |b, k| {
            b.iter_batched(
                || k.clone(),
                |k| cache.insert(k, &again, cache.epoch()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
