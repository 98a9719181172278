//! The service over a real SQLite store in a temporary directory: gates in order, seal
//! states, unseal through every slot kind, and the key-file failure modes.
#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use common::Handle;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use coffer_core::bootstrap;
use coffer_core::{
    FirstBoot, Gate, Identity, NewSlot, Operation, Reply, SealState, SecretOp, Service,
    ServiceConfig, Vault, VaultOptions, WriteOptions,
};
use coffer_crypto::SecretBytes;
use coffer_crypto::kdf::Argon2Params;
use coffer_store::{Backend, SqliteBackend};
use coffer_types::wire::UnsealWith;
use coffer_types::{ErrorCode, Target};

fn root() -> Identity {
    Identity::peer(0, 0, None)
}

fn nobody() -> Identity {
    Identity::peer(65534, 65534, None)
}

fn backend(dir: &Path) -> Arc<dyn Backend> {
    Arc::new(SqliteBackend::open(&dir.join("coffer.db")).unwrap())
}

fn cheap() -> Argon2Params {
    Argon2Params {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    }
}

fn first_boot(dir: &Path) -> Arc<Service> {
    let vault = Vault::start(
        backend(dir),
        VaultOptions {
            first_boot: Some(FirstBoot::KeyFile(dir.join("coffer.key"))),
            ..VaultOptions::default()
        },
    );
    Arc::new(Service::new(vault, ServiceConfig::default()))
}

fn on(name: &str, op: SecretOp) -> Operation {
    Operation::Secret {
        target: Target::parse(None, name),
        op,
    }
}

fn set(name: &str, value: &str) -> Operation {
    on(
        name,
        SecretOp::Set {
            value: SecretBytes::copy_from(value.as_bytes()),
            options: WriteOptions::default(),
        },
    )
}

fn get(name: &str) -> Operation {
    on(name, SecretOp::Get { version: None })
}

async fn value(service: &Arc<Service>, name: &str) -> Vec<u8> {
    match service.handle(&root(), get(name)).await {
        Ok(Reply::Value { value, .. }) => value.expose_secret().to_vec(),
        Ok(other) => panic!("unexpected reply {other:?}"),
        Err(r) => panic!("refused at {}: {}", r.gate, r.error),
    }
}

async fn refused(service: &Arc<Service>, who: &Identity, request: Operation) -> (Gate, ErrorCode) {
    match service.handle(who, request).await {
        Ok(reply) => panic!("expected a refusal, got {reply:?}"),
        Err(r) => (r.gate, r.error.code()),
    }
}

async fn state(service: &Arc<Service>) -> SealState {
    match service.handle(&root(), Operation::Status).await {
        Ok(Reply::Status(report)) => report.state,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_boot_mints_a_private_key_file_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let service = first_boot(dir.path());
    let key = dir.path().join("coffer.key");
    assert_eq!(fs::metadata(&key).unwrap().len(), 32);
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let Ok(Reply::Written { index, version }) = service.handle(&root(), set("api", "sk_1")).await
    else {
        panic!("set failed")
    };
    assert_eq!(version.get(), 1);
    assert_eq!(value(&service, "api").await, b"sk_1");
    // A write invalidates the cached value.
    let Ok(Reply::Written { index: again, .. }) = service.handle(&root(), set("api", "sk_2")).await
    else {
        panic!("set failed")
    };
    assert_eq!(again, index);
    assert_eq!(value(&service, "api").await, b"sk_2");
    // Restart: the key file opens the store with no person.
    drop(service);
    let service = first_boot(dir.path());
    assert_eq!(state(&service).await, SealState::Unsealed);
    assert_eq!(value(&service, "api").await, b"sk_2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_refuse_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let service = first_boot(dir.path());
    let bad_name = || get("../etc");
    // Validation after policy: an unprivileged caller learns nothing about the name.
    assert_eq!(
        refused(&service, &nobody(), bad_name()).await,
        (Gate::Policy, ErrorCode::Denied)
    );
    assert_eq!(
        refused(&service, &root(), bad_name()).await,
        (Gate::Validation, ErrorCode::InvalidName)
    );
    let missing_ns = Operation::Secret {
        target: Target::parse(Some("no/such"), "x"),
        op: SecretOp::Get { version: None },
    };
    assert_eq!(
        refused(&service, &nobody(), missing_ns).await,
        (Gate::Namespace, ErrorCode::NotFound)
    );
    assert_eq!(
        refused(&service, &root(), get("missing")).await,
        (Gate::Store, ErrorCode::NotFound)
    );
    let big = on(
        "big",
        SecretOp::Set {
            value: SecretBytes::zeroed((1 << 20) + 1),
            options: WriteOptions::default(),
        },
    );
    assert_eq!(
        refused(&service, &root(), big).await,
        (Gate::Validation, ErrorCode::TooLarge)
    );
    assert_eq!(
        refused(&service, &nobody(), Operation::Seal).await,
        (Gate::Policy, ErrorCode::Denied)
    );
    // Sealed beats everything, even a bad name from a stranger.
    service.handle(&root(), Operation::Seal).await.unwrap();
    assert_eq!(
        refused(&service, &nobody(), bad_name()).await,
        (Gate::Seal, ErrorCode::Sealed)
    );
    assert_eq!(state(&service).await, SealState::Sealed);
    // The key file slot opens it again on request.
    service
        .handle(
            &root(),
            Operation::Unseal {
                by_key: false,
                with: UnsealWith::KeyFile,
                key: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(state(&service).await, SealState::Unsealed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_store_starts_sealed_and_opens_by_passphrase_or_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let made = bootstrap::initialize(
        backend(dir.path()),
        NewSlot::Passphrase {
            passphrase: SecretBytes::copy_from(b"correct horse"),
            argon2: cheap(),
        },
        true,
        None,
    )
    .unwrap();
    let recovery = made.recovery.unwrap().display();
    drop(made.store);
    let service = Arc::new(Service::new(
        Vault::start(backend(dir.path()), VaultOptions::default()),
        ServiceConfig::default(),
    ));
    assert_eq!(state(&service).await, SealState::Sealed);
    assert_eq!(
        refused(&service, &root(), get("x")).await,
        (Gate::Seal, ErrorCode::Sealed)
    );
    let unseal = |with, key: &[u8]| Operation::Unseal {
        by_key: false,
        with,
        key: Some(SecretBytes::copy_from(key)),
    };
    assert_eq!(
        refused(&service, &root(), unseal(UnsealWith::Passphrase, b"wrong")).await,
        (Gate::Seal, ErrorCode::Denied)
    );
    assert_eq!(
        refused(
            &service,
            &root(),
            unseal(UnsealWith::Recovery, b"AAAA-BBBB")
        )
        .await,
        (Gate::Seal, ErrorCode::InvalidRequest)
    );
    assert_eq!(
        refused(&service, &root(), unseal(UnsealWith::KeyFile, b"")).await,
        (Gate::Seal, ErrorCode::InvalidRequest)
    );
    service
        .handle(&root(), unseal(UnsealWith::Passphrase, b"correct horse"))
        .await
        .unwrap();
    service.handle(&root(), set("k", "v")).await.unwrap();
    service.handle(&root(), Operation::Seal).await.unwrap();
    service
        .handle(
            &root(),
            unseal(UnsealWith::Recovery, recovery.expose_secret()),
        )
        .await
        .unwrap();
    assert_eq!(value(&service, "k").await, b"v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfit_key_file_makes_the_store_unavailable_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    drop(first_boot(dir.path()));
    let key = dir.path().join("coffer.key");
    let good = fs::read(&key).unwrap();

    // Group- and world-readable.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let service = first_boot(dir.path());
    assert_eq!(state(&service).await, SealState::Unavailable);
    let (gate, code) = refused(&service, &root(), get("x")).await;
    assert_eq!((gate, code), (Gate::Seal, ErrorCode::StoreUnavailable));
    let Err(r) = service.handle(&root(), get("x")).await else {
        panic!()
    };
    assert!(r.error.to_string().contains("coffer.key"), "{}", r.error);
    // Fixed while running: served again within the retry interval, no restart.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        refused(&service, &root(), get("x")).await,
        (Gate::Store, ErrorCode::NotFound)
    );
    drop(service);

    // Wrong size.
    fs::write(&key, &good[..16]).unwrap();
    let service = first_boot(dir.path());
    assert_eq!(
        refused(&service, &root(), get("x")).await,
        (Gate::Seal, ErrorCode::StoreUnavailable)
    );
    drop(service);

    // Another store's key file.
    fs::write(&key, [7u8; 32]).unwrap();
    let service = first_boot(dir.path());
    let Err(r) = service.handle(&root(), get("x")).await else {
        panic!()
    };
    assert_eq!(r.error.code(), ErrorCode::StoreUnavailable);
    assert!(
        r.error.to_string().contains("does not open this store"),
        "{}",
        r.error
    );
    drop(service);

    // Missing: never silently replaced by a new key.
    fs::remove_file(&key).unwrap();
    let service = first_boot(dir.path());
    assert_eq!(state(&service).await, SealState::Unavailable);
    assert!(
        !key.exists(),
        "a missing key file of an existing store must not be re-minted"
    );
}
