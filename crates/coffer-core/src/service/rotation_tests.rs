//! The scheduler over a real SQLite store: the events a rotation leaves (never a value), and
//! a pending version found at start (the daemon stopped while its hook ran) dropped.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_crypto::SecretBytes;
use coffer_store::{Change, RotationStep, SqliteBackend, Write, WriteMode};
use coffer_types::{Namespace, SecretName, Target};

use crate::op::{Operation, RotationInput, SecretOp, SpecInput, WriteOptions};
use crate::{Caller, FirstBoot, Identity, Reply, Service, ServiceConfig, Vault, VaultOptions};

fn service(dir: &Path) -> Arc<Service> {
    let backend = Arc::new(SqliteBackend::open(&dir.join("coffer.db")).unwrap());
    let vault = Vault::start(
        backend,
        VaultOptions {
            first_boot: Some(FirstBoot::KeyFile(dir.join("coffer.key"))),
            ..VaultOptions::default()
        },
    );
    Arc::new(Service::new(vault, ServiceConfig::default()))
}

fn hook(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn generate(service: &Arc<Service>, name: &str, rotation: RotationInput) -> String {
    let op = Operation::Secret {
        target: Target::parse(None, name),
        op: SecretOp::Generate {
            spec: SpecInput::default(),
            options: WriteOptions::default(),
            rotation: Some(rotation),
        },
    };
    match service
        .call(Caller::peer(Identity::peer(0, 0, None)), op)
        .await
    {
        Ok(Reply::Minted { value, .. }) => value.expose_str().unwrap().to_owned(),
        other => panic!("{other:?}"),
    }
}

fn key(name: &str) -> (Namespace, SecretName) {
    (
        Namespace::default_namespace(),
        SecretName::parse(name).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_leave_events_without_values() {
    let dir = tempfile::tempdir().unwrap();
    let service = service(dir.path());
    let out = dir.path().join("got");
    let ok = hook(dir.path(), "ok.sh", &format!("cat > {}\n", out.display()));
    let fail = hook(dir.path(), "fail.sh", "cat > /dev/null\nexit 3\n");
    let every = |command: &Path| RotationInput {
        every: 1,
        command: Some(command.to_str().unwrap().to_owned()),
        grace: Some(1),
    };
    let first_ok = generate(&service, "ok", every(&ok)).await;
    let first_fail = generate(&service, "fail", every(&fail)).await;
    let plain = generate(
        &service,
        "plain",
        RotationInput {
            every: 1,
            command: None,
            grace: None,
        },
    )
    .await;
    let store = service.vault.store().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        service.rotate_due().await;
        let stats = service.rotation_stats();
        // Two rotated (hook and no hook), one failed.
        if stats.rotated >= 2 && stats.failed >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no rotations: {stats:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ns, name) = key("ok");
    let now = store.get(&ns, &name, None).unwrap();
    let rotated = now.value.expose_str().unwrap().to_owned();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), rotated);
    let (ns, fail_name) = key("fail");
    assert_eq!(
        store.get(&ns, &fail_name, None).unwrap().value.expose_str(),
        Some(first_fail.as_str()),
        "a failed hook leaves the current version"
    );
    let events = store.events(0, 10_000).unwrap();
    let plain_events: Vec<&coffer_types::ChangeEvent> = events.iter().map(|e| &**e).collect();
    let text = serde_json::to_string(&plain_events).unwrap();
    let plain_now = store
        .get(&ns, &SecretName::parse("plain").unwrap(), None)
        .unwrap();
    for secret in [
        &first_ok,
        &first_fail,
        &plain,
        &rotated,
        &plain_now.value.expose_str().unwrap().to_owned(),
    ] {
        assert!(!text.contains(secret.as_str()), "a value in the events");
    }
    let of = |n: &str, action: &str| {
        events
            .iter()
            .filter(|e| e.name.as_deref() == Some(n) && e.action.as_str() == action)
            .count()
    };
    assert!(of("ok", "secret.rotated") >= 1, "{text}");
    assert!(of("plain", "secret.rotated") >= 1, "{text}");
    assert!(of("fail", "secret.rotation_failed") >= 1, "{text}");
    assert_eq!(of("fail", "secret.rotated"), 0, "{text}");
    assert!(
        events
            .iter()
            .filter(|e| e.action.as_str().starts_with("secret.rotat"))
            .all(|e| e.actor == "coffer"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_version_found_at_start_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let service = service(dir.path());
    let ok = hook(dir.path(), "ok.sh", "cat > /dev/null\n");
    let first = generate(
        &service,
        "db",
        RotationInput {
            every: 3600,
            command: Some(ok.to_str().unwrap().to_owned()),
            grace: None,
        },
    )
    .await;
    let store = service.vault.store().unwrap();
    let (ns, name) = key("db");
    let due = store
        .metadata(&ns, &name)
        .unwrap()
        .rotation
        .unwrap()
        .next_due;
    // A rotation that wrote its pending version, then the daemon stopped.
    let value = SecretBytes::copy_from(b"pending-value");
    let mut write = Write::new(&value, "coffer");
    write.mode = WriteMode::Update;
    write.change = Change::by("coffer").quiet();
    write.rotation = Some(RotationStep::Scheduled { due, pending: true });
    let pending = store.set(&ns, &name, write).unwrap().version;
    // A plain read does not serve it.
    assert_eq!(
        store.get(&ns, &name, None).unwrap().value.expose_str(),
        Some(first.as_str())
    );
    // The same period cannot be rotated again.
    let mut again = Write::new(&value, "coffer");
    again.mode = WriteMode::Update;
    again.rotation = Some(RotationStep::Scheduled {
        due,
        pending: false,
    });
    assert!(matches!(
        store.set(&ns, &name, again),
        Err(coffer_store::StoreError::Conflict(_))
    ));
    drop(store);
    drop(service);
    // The next start drops it.
    let service = service_again(dir.path());
    service.rotate_due().await;
    let store = service.vault.store().unwrap();
    let meta = store.metadata(&ns, &name).unwrap();
    let rotation = meta.rotation.unwrap();
    assert_eq!(rotation.pending, None);
    let last = rotation.last.unwrap();
    assert_eq!(last.outcome, "failed");
    assert_eq!(last.version, Some(pending));
    assert!(last.reason.unwrap().contains("stopped"));
    assert!(
        meta.versions
            .iter()
            .any(|v| v.version == pending && v.destroyed)
    );
    assert_eq!(
        store.get(&ns, &name, None).unwrap().value.expose_str(),
        Some(first.as_str())
    );
    assert_eq!(service.rotation_stats().failed, 1);
}

fn service_again(dir: &Path) -> Arc<Service> {
    service(dir)
}
