//! The vault with a real swtpm: auto-unseal through the TPM slot, sealed after a PCR change,
//! recovery and reseal, another TPM, slot management.
#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use common::Handle;

use std::path::Path;
use std::sync::Arc;

use coffer_core::bootstrap;
use coffer_core::{
    FirstBoot, Identity, NewSlot, Operation, Reply, SealState, SecretOp, Service, ServiceConfig,
    Vault, VaultOptions, WriteOptions,
};
use coffer_crypto::SecretBytes;
use coffer_crypto::kdf::Argon2Params;
use coffer_store::{Backend, SqliteBackend};
use coffer_tpm::fixture::Swtpm;
use coffer_tpm::{PcrPolicy, Tpm};
use coffer_types::wire::UnsealWith;
use coffer_types::{ErrorCode, SlotKind, Target};

fn root() -> Identity {
    Identity::peer(0, 0, None)
}

fn backend(dir: &Path) -> Arc<dyn Backend> {
    Arc::new(SqliteBackend::open(&dir.join("coffer.db")).unwrap())
}

fn service(dir: &Path, tpm: Option<Arc<Tpm>>, first_boot: Option<FirstBoot>) -> Arc<Service> {
    let vault = Vault::start(
        backend(dir),
        VaultOptions {
            tpm,
            first_boot,
            ..VaultOptions::default()
        },
    );
    Arc::new(Service::new(vault, ServiceConfig::default()))
}

fn cheap() -> Argon2Params {
    Argon2Params {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    }
}

async fn status(s: &Arc<Service>) -> (SealState, Option<String>, Vec<coffer_core::SlotSummary>) {
    match s.handle(&root(), Operation::Status).await {
        Ok(Reply::Status(r)) => (r.state, r.reason, r.slots),
        _ => panic!("no status"),
    }
}

async fn set(s: &Arc<Service>, name: &str, value: &str) {
    s.handle(
        &root(),
        Operation::Secret {
            target: Target::parse(None, name),
            op: SecretOp::Set {
                value: SecretBytes::copy_from(value.as_bytes()),
                options: WriteOptions::default(),
            },
        },
    )
    .await
    .unwrap();
}

async fn get(s: &Arc<Service>, name: &str) -> Result<Vec<u8>, ErrorCode> {
    match s
        .handle(
            &root(),
            Operation::Secret {
                target: Target::parse(None, name),
                op: SecretOp::Get { version: None },
            },
        )
        .await
    {
        Ok(Reply::Value { value, .. }) => Ok(value.expose_secret().to_vec()),
        Ok(_) => panic!("not a value"),
        Err(r) => Err(r.error.code()),
    }
}

fn extend_pcr7(swtpm: &Swtpm) {
    // A real extend with tpm2-tools, as a measured boot would do.
    let out = std::process::Command::new("tpm2_pcrextend")
        .arg(format!("7:sha256={}", "ab".repeat(32)))
        .env("TPM2TOOLS_TCTI", swtpm.tcti())
        .output()
        .expect("tpm2-tools is missing: apt-get install -y tpm2-tools");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tpm_slot_opens_at_start_until_the_pcrs_change_then_recovery_and_reseal() {
    let dir = tempfile::tempdir().unwrap();
    let swtpm = Swtpm::start();
    let recovery = {
        let tpm = Arc::new(Tpm::open(&swtpm.tcti(), coffer_tpm::fixture::auth()).unwrap());
        let made = bootstrap::initialize(
            backend(dir.path()),
            NewSlot::Tpm {
                pcrs: PcrPolicy::default(),
            },
            true,
            Some(tpm),
        )
        .unwrap();
        made.recovery.unwrap().display()
    };
    // Restart: no input needed.
    {
        let tpm = Arc::new(Tpm::open(&swtpm.tcti(), coffer_tpm::fixture::auth()).unwrap());
        let s = service(dir.path(), Some(tpm), None);
        let (state, _, slots) = status(&s).await;
        assert_eq!(state, SealState::Unsealed);
        assert_eq!(slots[0].kind, "tpm");
        assert_eq!(slots[0].pcrs.as_deref(), Some("sha256:7"));
        set(&s, "k", "tpm-protected").await;
    }
    // The PCRs change; the daemon starts sealed and says why.
    extend_pcr7(&swtpm);
    let tpm = Arc::new(Tpm::open(&swtpm.tcti(), coffer_tpm::fixture::auth()).unwrap());
    let s = service(dir.path(), Some(tpm.clone()), None);
    let (state, reason, _) = status(&s).await;
    assert_eq!(state, SealState::Sealed);
    let reason = reason.unwrap();
    assert!(reason.contains("tpm slot 1 (PCRs sha256:7)"), "{reason}");
    assert!(reason.contains("rc 0x99d"), "{reason}");
    assert_eq!(get(&s, "k").await, Err(ErrorCode::Sealed));
    // Asking the TPM again does not help while the PCRs differ.
    let again = s
        .handle(
            &root(),
            Operation::Unseal {
                by_key: false,
                with: UnsealWith::Tpm,
                key: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(again.error.code(), ErrorCode::Tpm);
    assert_eq!(again.error.rc().as_deref(), Some("0x99d"));
    // Recovery opens it; reseal binds the slot to the new PCR values.
    s.handle(
        &root(),
        Operation::Unseal {
            by_key: false,
            with: UnsealWith::Recovery,
            key: Some(recovery),
        },
    )
    .await
    .unwrap();
    assert_eq!(get(&s, "k").await.unwrap(), b"tpm-protected");
    let Ok(Reply::Resealed(done)) = s
        .handle(
            &root(),
            Operation::SlotReseal {
                id: None,
                key: None,
            },
        )
        .await
    else {
        panic!("reseal failed")
    };
    assert_eq!(done, [1]);
    drop(s);
    let s = service(dir.path(), Some(tpm), None);
    assert_eq!(status(&s).await.0, SealState::Unsealed);
    assert_eq!(get(&s, "k").await.unwrap(), b"tpm-protected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_on_another_tpm_stays_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Swtpm::start(), Swtpm::start());
    {
        let s = service(
            dir.path(),
            Some(Arc::new(
                Tpm::open(&a.tcti(), coffer_tpm::fixture::auth()).unwrap(),
            )),
            Some(FirstBoot::Tpm(PcrPolicy::default())),
        );
        assert_eq!(status(&s).await.0, SealState::Unsealed);
        set(&s, "k", "bound to TPM a").await;
    }
    let copy = tempfile::tempdir().unwrap();
    for f in ["coffer.db", "coffer.db-wal", "coffer.db-shm"] {
        let from = dir.path().join(f);
        if from.exists() {
            std::fs::copy(from, copy.path().join(f)).unwrap();
        }
    }
    let s = service(
        copy.path(),
        Some(Arc::new(
            Tpm::open(&b.tcti(), coffer_tpm::fixture::auth()).unwrap(),
        )),
        None,
    );
    let (state, reason, _) = status(&s).await;
    assert_eq!(state, SealState::Sealed);
    assert!(reason.unwrap().contains("tpm slot 1"));
    assert_eq!(get(&s, "k").await, Err(ErrorCode::Sealed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_are_added_listed_and_removed_but_never_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let swtpm = Swtpm::start();
    let tpm = Arc::new(Tpm::open(&swtpm.tcti(), coffer_tpm::fixture::auth()).unwrap());
    let config = ServiceConfig {
        argon2: cheap(),
        ..ServiceConfig::default()
    };
    let s = Arc::new(Service::new(
        Vault::start(
            backend(dir.path()),
            VaultOptions {
                tpm: Some(tpm.clone()),
                first_boot: Some(FirstBoot::Tpm("sha256:0,7".parse().unwrap())),
                ..VaultOptions::default()
            },
        ),
        config,
    ));
    set(&s, "k", "v").await;
    let add = |kind: &str, key: Option<&[u8]>| Operation::SlotAdd {
        kind: kind.parse::<SlotKind>().unwrap(),
        pcrs: None,
        key: key.map(SecretBytes::copy_from),
        path: None,
    };
    let Ok(Reply::SlotAdded { id, recovery }) = s.handle(&root(), add("recovery", None)).await
    else {
        panic!()
    };
    assert_eq!(id, 2);
    let recovery = recovery.unwrap();
    let Ok(Reply::SlotAdded { id: both, .. }) = s
        .handle(&root(), add("tpm+passphrase", Some(b"second factor")))
        .await
    else {
        panic!()
    };
    let refused = s
        .handle(&root(), add("passphrase", None))
        .await
        .unwrap_err();
    assert_eq!(refused.error.code(), ErrorCode::InvalidRequest);
    let Ok(Reply::Slots(slots)) = s.handle(&root(), Operation::SlotList).await else {
        panic!()
    };
    let kinds: Vec<&str> = slots.iter().map(|s| s.kind.as_ref()).collect();
    assert_eq!(kinds, ["tpm", "recovery", "tpm+passphrase"]);
    assert_eq!(slots[0].pcrs.as_deref(), Some("sha256:0,7"));

    // tpm+passphrase needs both the TPM and the passphrase.
    s.handle(&root(), Operation::SlotRemove { id: 1 })
        .await
        .unwrap();
    s.handle(&root(), Operation::Seal).await.unwrap();
    let wrong = s
        .handle(
            &root(),
            Operation::Unseal {
                by_key: false,
                with: UnsealWith::Passphrase,
                key: Some(SecretBytes::copy_from(b"wrong")),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(wrong.error.code(), ErrorCode::Denied);
    s.handle(
        &root(),
        Operation::Unseal {
            by_key: false,
            with: UnsealWith::Passphrase,
            key: Some(SecretBytes::copy_from(b"second factor")),
        },
    )
    .await
    .unwrap();
    assert_eq!(get(&s, "k").await.unwrap(), b"v");

    s.handle(&root(), Operation::SlotRemove { id: both })
        .await
        .unwrap();
    let last = s
        .handle(&root(), Operation::SlotRemove { id: 2 })
        .await
        .unwrap_err();
    assert!(
        last.error.to_string().contains("last slot"),
        "{}",
        last.error
    );
    // The recovery slot still opens it.
    s.handle(&root(), Operation::Seal).await.unwrap();
    s.handle(
        &root(),
        Operation::Unseal {
            by_key: false,
            with: UnsealWith::Recovery,
            key: Some(recovery),
        },
    )
    .await
    .unwrap();
    assert_eq!(get(&s, "k").await.unwrap(), b"v");
    // Slot management needs the store unsealed.
    s.handle(&root(), Operation::Seal).await.unwrap();
    let sealed = s.handle(&root(), add("recovery", None)).await.unwrap_err();
    assert_eq!(sealed.error.code(), ErrorCode::Sealed);
}
