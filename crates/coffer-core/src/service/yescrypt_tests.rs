//! The yescrypt computation's bounds: a flood of requests whose callers leave (an HTTP client
//! that resets its stream, a socket client that closes) must not pile up without end behind
//! the two permits, since the work of a vanished caller runs on.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use coffer_store::SqliteBackend;
use coffer_types::{ErrorCode, Target};

use super::super::state::{YESCRYPT_CONCURRENCY, YESCRYPT_QUEUE};
use crate::op::{Operation, SecretOp, SpecInput, WriteOptions};
use crate::{Caller, FirstBoot, Identity, Reply, Service, ServiceConfig, Vault, VaultOptions};

fn yescrypt() -> Operation {
    Operation::Secret {
        target: Target::parse(None, "pw"),
        op: SecretOp::Yescrypt { setting: None },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yescrypt_flood_is_refused_past_a_bounded_queue() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(SqliteBackend::open(&dir.path().join("coffer.db")).unwrap());
    let vault = Vault::start(
        backend,
        VaultOptions {
            first_boot: Some(FirstBoot::KeyFile(dir.path().join("coffer.key"))),
            ..VaultOptions::default()
        },
    );
    let service = Arc::new(Service::new(vault, ServiceConfig::default()));
    let root = || Caller::peer(Identity::peer(0, 0, None));
    let generate = Operation::Secret {
        target: Target::parse(None, "pw"),
        op: SecretOp::Generate {
            spec: SpecInput::default(),
            options: WriteOptions::default(),
            rotation: None,
        },
    };
    assert!(matches!(
        service.call(root(), generate).await,
        Ok(Reply::Minted { .. })
    ));

    // Both computations busy (as with two slow hashes running).
    let busy = Arc::clone(&service.yescrypt)
        .acquire_many_owned(YESCRYPT_CONCURRENCY as u32)
        .await
        .unwrap();
    let extra = 8;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..YESCRYPT_QUEUE + extra {
        let service = Arc::clone(&service);
        calls.spawn(async move { service.call(root(), yescrypt()).await });
    }
    // Past the queue's places, requests are refused at once instead of waiting.
    let guard = std::time::Duration::from_secs(120);
    let mut refused = 0;
    while refused < extra {
        let done = tokio::time::timeout(guard, calls.join_next())
            .await
            .expect("every yescrypt request waits: the queue has no bound")
            .unwrap()
            .unwrap();
        match done {
            Err(r) => {
                assert_eq!(r.error.code(), ErrorCode::RateLimited, "{:?}", r.error);
                refused += 1;
            }
            Ok(other) => panic!("answered while the computations were busy: {other:?}"),
        }
    }
    // The queued ones are all answered once the computations free up.
    drop(busy);
    let mut hashed = 0;
    while let Some(done) = calls.join_next().await {
        match done.unwrap() {
            Ok(Reply::PasswordHash(h)) => {
                assert!(h.starts_with("$y$j9T$"), "{h}");
                hashed += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(hashed, YESCRYPT_QUEUE);
    // And the places are given back: another request is answered.
    assert!(matches!(
        service.call(root(), yescrypt()).await,
        Ok(Reply::PasswordHash(_))
    ));
}
