//! The socket protocol's per-request work outside the core: parsing one request line into
//! its typed operation ([`coffer_server::protocol::parse`]) and writing the reply to a get
//! ([`coffer_server::protocol::reply`]).
//!
//! A request carrying a value or a token puts it in locked memory ([`SecretBytes`]), whose
//! first secret on a page costs an `mlock` and whose last a `munlock`. `socket_parse/cold`
//! runs with no other secret alive (every such parse pays both system calls);
//! `socket_parse/warm` keeps a few thousand small secrets alive, as the daemon's cache does.
//!
//! `cargo bench -p coffer-server --bench parse -- --warm-up-time 1 --measurement-time 2`
#![allow(clippy::unwrap_used, missing_docs)] // A benchmark: a failed unwrap is a failed run.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use coffer_core::Reply;
use coffer_core::cache::Facts;
use coffer_crypto::SecretBytes;
use coffer_server::protocol::{parse, reply};
use coffer_types::wire::Action;
use coffer_types::{Kind, Timestamp, Version};
use criterion::{Criterion, criterion_group, criterion_main};

/// What `coffer bench` and the device daemon's clients send.
const REQUESTS: &[(&str, &str)] = &[
    ("get", r#"{"action":"get","name":"bench-42"}"#),
    (
        "get_keepalive",
        r#"{"action":"get","name":"bench-42","keep_alive":true}"#,
    ),
    (
        "get_namespace_id_token",
        r#"{"action":"get","namespace":"acme/prod","name":"db/password","id":17,"keep_alive":true,"token":"cft_0123456789abcdefghijklmnopqrstuvwxyzABCDEF"}"#,
    ),
    (
        "set_32_bytes",
        r#"{"action":"set","name":"bench-42","value":"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv","keep_alive":true}"#,
    ),
];

fn parse_requests(c: &mut Criterion) {
    let mut group = c.benchmark_group("socket_parse");
    for (label, line) in REQUESTS {
        parse(line.as_bytes()).unwrap();
        group.bench_function(format!("cold/{label}"), |b| {
            b.iter(|| parse(black_box(line.as_bytes())))
        });
    }
    // Every other one freed again: the allocator's next small chunks are the holes, on
    // pages that the others keep locked.
    let mut ballast: Vec<Option<SecretBytes>> = (0..4096)
        .flat_map(|_| [16, 32, 48, 64].map(|n| Some(SecretBytes::copy_from(&vec![0; n]))))
        .collect();
    for hole in ballast.iter_mut().step_by(2) {
        *hole = None;
    }
    for (label, line) in REQUESTS {
        group.bench_function(format!("warm/{label}"), |b| {
            b.iter(|| parse(black_box(line.as_bytes())))
        });
    }
    drop(ballast);
    group.finish();
}

fn write_reply(c: &mut Criterion) {
    let answer = Reply::Value {
        value: Arc::new(SecretBytes::copy_from(&[b'v'; 32])),
        version: Version::FIRST,
        kind: Kind::Text,
        facts: Arc::new(Facts {
            created: Timestamp::now(),
            deletion: None,
            custom_metadata: BTreeMap::new(),
        }),
    };
    let mut out = Vec::with_capacity(256);
    c.bench_function("socket_reply/get_32_bytes", |b| {
        b.iter(|| {
            out.clear();
            reply(&mut out, Action::Get, black_box(&answer), Some("17"));
            black_box(out.len())
        })
    });
}

criterion_group!(benches, parse_requests, write_reply);
criterion_main!(benches);
