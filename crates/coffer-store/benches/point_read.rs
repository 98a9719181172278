//! A point read from the SQLite backend ([`SqliteBackend`]'s `Backend::read`): the live row
//! of one secret by (namespace id, keyed name hash) joined with its newest version, as a
//! cache miss does, in stores of 1,000 and 100,000 secrets (32-byte values, one version
//! each). Also a read of a name that is not there.
//!
//! The stores are filled through the backend's own group-committed writes (512 writers at
//! once), so each run spends some seconds filling first (it prints how long). `COFFER_BENCH_ROWS=1000000` adds a
//! larger store (its fill takes minutes on two cores).
//!
//! `cargo bench -p coffer-store --bench point_read -- --warm-up-time 1 --measurement-time 2`
#![allow(clippy::unwrap_used, missing_docs)] // A benchmark: a failed unwrap is a failed run.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use coffer_store::{
    Backend, NameHash, NamespaceId, NamespaceRow, NewSecret, Planned, SecretId, SqliteBackend,
    VersionRow,
};
use coffer_types::{Kind, Timestamp, Version};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const NAMESPACE: NamespaceId = [9; 32];
/// Enough concurrent writers to fill the writer's group commits (512 jobs each).
const WRITERS: usize = 512;

/// A well-spread 32-byte hash for row `i`, standing in for the keyed hash of its name.
fn name_hash(i: usize) -> NameHash {
    let mut out = [0u8; 32];
    let mut x = i as u64 ^ 0x9e37_79b9_7f4a_7c15;
    for chunk in out.chunks_mut(8) {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

fn write(backend: &SqliteBackend, i: usize) {
    let now = Timestamp::now();
    backend
        .write(
            &NAMESPACE,
            &name_hash(i),
            Box::new(move |_live| {
                Ok(Planned {
                    create: Some(NewSecret {
                        id: SecretId::generate()?,
                        name_ct: vec![1; 48],
                        meta_ct: vec![2; 40],
                        created: now,
                    }),
                    version: VersionRow {
                        version: Version::FIRST,
                        kind: Kind::Text,
                        created: now,
                        actor: "uid:0".to_owned(),
                        key_version: 1,
                        // An envelope of a 32-byte value: 1 + 12 + 32 + 16 bytes.
                        ciphertext: Some(vec![3; 61]),
                    },
                    meta_ct: None,
                    prune_before: None,
                })
            }),
            None,
        )
        .unwrap();
}

fn filled(dir: &std::path::Path, rows: usize) -> SqliteBackend {
    let backend = SqliteBackend::open(&dir.join(format!("coffer-{rows}.db"))).unwrap();
    backend
        .create_namespace(
            NamespaceRow {
                id: NAMESPACE,
                name_ct: vec![0; 40],
                key_version: 1,
                wrapped_key: vec![0; 61],
                created: Timestamp::now(),
                lock_wrap: None,
            },
            None,
        )
        .unwrap();
    let started = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..WRITERS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= rows {
                        break;
                    }
                    write(&backend, i);
                }
            });
        }
    });
    eprintln!(
        "filled {rows} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    backend
}

fn point_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut sizes = vec![1_000, 100_000];
    if let Some(n) = std::env::var("COFFER_BENCH_ROWS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        sizes.push(n);
    }
    let mut group = c.benchmark_group("sqlite_read");
    for rows in sizes {
        let backend = filled(dir.path(), rows);
        let hit = name_hash(rows / 2);
        let miss = name_hash(rows + 1);
        assert!(backend.read(&NAMESPACE, &hit, None).unwrap().is_some());
        assert!(backend.read(&NAMESPACE, &miss, None).unwrap().is_none());
        group.bench_with_input(BenchmarkId::new("hit", rows), &hit, |b, h| {
            b.iter(|| backend.read(&NAMESPACE, black_box(h), None).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("miss", rows), &miss, |b, h| {
            b.iter(|| backend.read(&NAMESPACE, black_box(h), None).unwrap())
        });
        // A hit on a different row each time, so SQLite's page cache is not a single path.
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::new("hit_spread", rows), &rows, |b, &rows| {
            b.iter(|| {
                i = (i + 7919) % rows;
                backend.read(&NAMESPACE, &name_hash(i), None).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, point_read);
criterion_main!(benches);
