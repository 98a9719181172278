//! Round trips and refusals of the backup format over real stores.

use std::io::Read;
use std::sync::Arc;

use age::secrecy::ExposeSecret;
use coffer_crypto::{MasterKey, RecoveryKey, SecretBytes, SlotKey, SlotParams, SlotRecord};
use coffer_store::{
    Backend, EncryptedStore, MemoryBackend, SecretStore, SqliteBackend, StoreHeader, Write,
};
use coffer_types::wire::UnsealWith;
use coffer_types::{ErrorCode, Namespace, SecretName};

use super::format::{Frame, FrameReader, FrameWriter};
use super::*;
use crate::CoreError;

struct Made {
    backend: Arc<MemoryBackend>,
    master: MasterKey,
    recovery: RecoveryKey,
}

fn store(values: &[(&str, &str)]) -> Made {
    let backend = Arc::new(MemoryBackend::new());
    let master = MasterKey::generate().unwrap();
    let recovery = RecoveryKey::generate().unwrap();
    let mut header = StoreHeader::new().unwrap();
    header.slots.push(
        SlotRecord::wrap(
            1,
            SlotParams::Recovery {},
            &SlotKey::from_recovery(&recovery),
            &master,
        )
        .unwrap(),
    );
    header.save(backend.as_ref()).unwrap();
    let store = EncryptedStore::open(backend.clone(), master.duplicate()).unwrap();
    store
        .create_namespace(&Namespace::default(), coffer_store::Change::by("uid:0"))
        .unwrap();
    for (n, v) in values {
        let v = SecretBytes::copy_from(v.as_bytes());
        store
            .set(
                &Namespace::default(),
                &SecretName::parse(n).unwrap(),
                Write::new(&v, "uid:0"),
            )
            .unwrap();
    }
    Made {
        backend,
        master,
        recovery,
    }
}

fn backup(made: &Made, to: &age::x25519::Identity) -> Vec<u8> {
    let source = Source {
        backend: made.backend.as_ref(),
        master: &made.master,
        audit_anchor: Some(b"anchor-bytes".to_vec()),
    };
    let recipients = Recipients::parse(&[to.to_public().to_string()]).unwrap();
    write(&source, &recipients, Vec::new(), &mut |_| {})
        .unwrap()
        .0
}

fn unlock(rk: &RecoveryKey) -> Unlock {
    Unlock {
        with: UnsealWith::Recovery,
        key: Some(rk.display()),
        key_file: None,
    }
}

fn identity(id: &age::x25519::Identity) -> Identity {
    let text = id.to_string();
    let parsed: age::x25519::Identity = text.expose_secret().parse().unwrap();
    Identity::File(vec![Box::new(parsed)])
}

fn verify(
    bytes: &[u8],
    id: &age::x25519::Identity,
    rk: &RecoveryKey,
) -> Result<Verified, CoreError> {
    let u = unlock(rk);
    Rows::open(bytes, &identity(id), &u, &mut |_| {})?.verify()
}

fn restore_into(
    bytes: Vec<u8>,
    id: &age::x25519::Identity,
    rk: &RecoveryKey,
    dir: &std::path::Path,
) -> Result<Verified, CoreError> {
    let open = move || Ok(Box::new(std::io::Cursor::new(bytes.clone())) as Box<dyn Read>);
    restore(&open, &identity(id), &unlock(rk), dir, &mut |_, _| {})
}

fn empty_or_missing(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[test]
fn a_backup_round_trips_into_a_new_data_directory() {
    let made = store(&[("app/db", "VALUE-one"), ("app/api", "VALUE-two")]);
    let id = age::x25519::Identity::generate();
    let bytes = backup(&made, &id);
    let v = verify(&bytes, &id, &made.recovery).unwrap();
    assert_eq!(v.manifest.counts.secrets, 2);
    assert_eq!(v.audit_anchor.as_deref(), Some(&b"anchor-bytes"[..]));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("restored");
    restore_into(bytes, &id, &made.recovery, &dir).unwrap();
    let backend = Arc::new(SqliteBackend::open(&dir.join("coffer.db")).unwrap());
    assert!(StoreHeader::load(backend.as_ref()).unwrap().is_some());
    let store = EncryptedStore::open(backend.clone(), made.master.duplicate()).unwrap();
    let got = store
        .get(
            &Namespace::default(),
            &SecretName::parse("app/api").unwrap(),
            None,
        )
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"VALUE-two");
    assert_eq!(backend.feed().head(), made.backend.feed().head());
    assert!(dir.join(restore::RESTORED_ANCHOR).exists());
}

#[test]
fn damaged_altered_foreign_and_misaddressed_backups_are_refused_and_leave_nothing() {
    let made = store(&[("k", "VALUE-k")]);
    let id = age::x25519::Identity::generate();
    let good = backup(&made, &id);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let refused = |bytes: Vec<u8>, id: &age::x25519::Identity, rk: &RecoveryKey| {
        let err = restore_into(bytes, id, rk, &dir).expect_err("refused");
        assert!(empty_or_missing(&dir), "{err}");
        err.code()
    };
    // A flipped byte in the payload.
    let mut flipped = good.clone();
    let at = flipped.len() - 40;
    flipped[at] ^= 1;
    assert_eq!(refused(flipped, &id, &made.recovery), ErrorCode::Integrity);
    // A truncated file.
    let truncated = good[..good.len() - 100].to_vec();
    assert_eq!(
        refused(truncated, &id, &made.recovery),
        ErrorCode::Integrity
    );
    // A wrong identity.
    let other = age::x25519::Identity::generate();
    assert_eq!(
        refused(good.clone(), &other, &made.recovery),
        ErrorCode::Denied
    );
    // Another store's backup, encrypted to the same recipient.
    let foreign = store(&[("k", "other")]);
    assert_eq!(
        refused(backup(&foreign, &id), &id, &made.recovery),
        ErrorCode::Denied
    );
    // Altered and encrypted again by someone holding the identity but not the master key:
    // a row changed, the manifest's hash recomputed, the MAC kept.
    let mut plain = Vec::new();
    super::crypt::open(&good[..], &identity(&id))
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    let mut frames = FrameReader::new(&plain[..]);
    let recipients = Recipients::parse(&[id.to_public().to_string()]).unwrap();
    let mut out = FrameWriter::new(recipients.wrap(Vec::new()).unwrap());
    while let Some(frame) = frames.next_frame().unwrap() {
        let frame = match frame {
            Frame::Row(coffer_store::RowRecord::EventHead(h)) => {
                Frame::Row(coffer_store::RowRecord::EventHead(h + 1000))
            }
            Frame::Manifest(mut m) => {
                m.hash = out.hash();
                Frame::Manifest(m)
            }
            other => other,
        };
        out.write(&frame).unwrap();
    }
    let forged = out.into_inner().finish().unwrap();
    let err = verify(&forged, &id, &made.recovery).expect_err("forged");
    assert_eq!(err.code(), ErrorCode::Integrity);
    assert!(err.to_string().contains("master key"), "{err}");
    assert_eq!(refused(forged, &id, &made.recovery), ErrorCode::Integrity);
    // A directory with something in it is refused before anything is read.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("x"), b"mine").unwrap();
    assert_eq!(
        restore_into(good, &id, &made.recovery, &dir)
            .unwrap_err()
            .code(),
        ErrorCode::Conflict
    );
    assert_eq!(std::fs::read(dir.join("x")).unwrap(), b"mine");
}

#[test]
fn the_plaintext_holds_no_name_or_value_and_a_file_appears_whole() {
    let made = store(&[("probe-name", "PROBE-VALUE-xyzzy")]);
    let id = age::x25519::Identity::generate();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("b.age");
    let source = Source {
        backend: made.backend.as_ref(),
        master: &made.master,
        audit_anchor: None,
    };
    let recipients = Recipients::parse(&[id.to_public().to_string()]).unwrap();
    let written = to_file(&source, &recipients, &path, &mut |_| {}).unwrap();
    assert_eq!(written.bytes, std::fs::metadata(&path).unwrap().len());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "no partial file left"
    );
    let mut plain = Vec::new();
    super::crypt::open(std::fs::File::open(&path).unwrap(), &identity(&id))
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    for needle in [&b"probe-name"[..], b"PROBE-VALUE", b"xyzzy", b"default"] {
        assert!(!plain.windows(needle.len()).any(|w| w == needle));
    }
    // A passphrase backup opens with the passphrase only.
    let p = SecretBytes::copy_from(b"correct horse");
    let mut bytes = Vec::new();
    let to = Recipients::passphrase(&p).unwrap();
    bytes = write(&source, &to, std::mem::take(&mut bytes), &mut |_| {})
        .unwrap()
        .0;
    assert!(super::crypt::is_passphrase(&bytes[..]).unwrap());
    let u = unlock(&made.recovery);
    Rows::open(
        &bytes[..],
        &Identity::passphrase(&p).unwrap(),
        &u,
        &mut |_| {},
    )
    .unwrap()
    .verify()
    .unwrap();
    let wrong = Identity::passphrase(&SecretBytes::copy_from(b"wrong")).unwrap();
    let err = Rows::open(&bytes[..], &wrong, &u, &mut |_| {})
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Denied);
}
