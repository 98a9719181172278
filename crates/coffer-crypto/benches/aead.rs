//! The AES-256-GCM envelope ([`coffer_crypto::aead`]): opening a value as a cache miss does
//! (32 bytes, 1 KiB, 64 KiB; the plaintext lands in a fresh locked [`SecretBytes`]), sealing
//! one, and the locked allocation alone, which every open pays.
//!
//! Locked memory is counted per page: the first secret on a page costs an `mlock` and the
//! last one leaving it a `munlock`. `*/cold` runs with no other secret alive, so every
//! iteration pays both system calls (the worst case); `*/warm` keeps 4,096 secrets of the
//! same size alive beside it (every other one freed again, so the allocator reuses chunks on
//! pages that stay locked), as the daemon's cache does.
//!
//! `cargo bench -p coffer-crypto --bench aead -- --warm-up-time 1 --measurement-time 2`
#![allow(clippy::unwrap_used, missing_docs)] // A benchmark: a failed unwrap is a failed run.

use std::hint::black_box;

use coffer_crypto::SecretBytes;
use coffer_crypto::aead::{Aad, open, seal};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn aad() -> Aad {
    // The shape of an entry's associated data: a label, the secret id, a version, a kind.
    Aad::new("coffer entry v1")
        .with([7u8; 16])
        .with_u32(3)
        .with("text")
}

/// 4,096 live secrets of `len` bytes with every other one freed again: the allocator's next
/// chunks of that size are the holes, on pages that other secrets keep locked.
fn warm(len: usize) -> Vec<Option<SecretBytes>> {
    let mut ballast: Vec<Option<SecretBytes>> = (0..4096)
        .map(|_| Some(SecretBytes::copy_from(&vec![0; len])))
        .collect();
    for hole in ballast.iter_mut().step_by(2) {
        *hole = None;
    }
    ballast
}

fn envelope(c: &mut Criterion) {
    let key = SecretBytes::copy_from(&[0x42; 32]);
    let aad = aad();
    let mut group = c.benchmark_group("aead");
    for size in [32usize, 1024, 64 * 1024] {
        let plain = vec![b'v'; size];
        let sealed = seal(&key, &plain, &aad).unwrap();
        assert_eq!(
            open(&key, &sealed, &aad).unwrap().expose_secret(),
            &plain[..]
        );
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", size), &plain, |b, plain| {
            b.iter(|| seal(&key, black_box(plain), &aad).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("open/cold", size), &sealed, |b, sealed| {
            b.iter(|| open(&key, black_box(sealed), &aad).unwrap())
        });
        group.bench_with_input(
            BenchmarkId::new("locked_copy/cold", size),
            &plain,
            |b, plain| b.iter(|| SecretBytes::copy_from(black_box(plain))),
        );
        let ballast = warm(size);
        group.bench_with_input(BenchmarkId::new("open/warm", size), &sealed, |b, sealed| {
            b.iter(|| open(&key, black_box(sealed), &aad).unwrap())
        });
        group.bench_with_input(
            BenchmarkId::new("locked_copy/warm", size),
            &plain,
            |b, plain| b.iter(|| SecretBytes::copy_from(black_box(plain))),
        );
        drop(ballast);
    }
    group.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);
