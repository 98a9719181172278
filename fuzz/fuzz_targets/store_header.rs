//! The store header and its key slots, as the backend hands them to `StoreHeader::load`:
//! decoded, written back and read again unchanged; every slot's parameters inspected and its
//! wrapped master key opened with a key file and a recovery key (AES-GCM only: no Argon2 run,
//! no TPM). Asserts no panic, a stable round trip, and that a wrong key never opens a slot.
#![no_main]

use coffer_crypto::{RecoveryKey, SecretBytes, SlotKey};
use coffer_store::{Backend, MemoryBackend, StoreHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let backend = MemoryBackend::new();
    backend.put_header(data).expect("a header is stored");
    let Ok(Some(header)) = StoreHeader::load(&backend) else {
        return;
    };
    header.save(&backend).expect("a header is written back");
    let again = StoreHeader::load(&backend)
        .expect("a header written back reads")
        .expect("a header written back is there");
    assert_eq!(again, header, "the header changes on a round trip");
    let _ = header.next_slot_id();
    let file =
        SlotKey::from_key_file(&SecretBytes::from_vec(vec![0x5a; 32])).expect("a 32-byte key file");
    let recovery = RecoveryKey::generate().map(|k| SlotKey::from_recovery(&k));
    for slot in &header.slots {
        let _ = (slot.kind(), slot.params.pcrs(), slot.params.sealed());
        // A fixed key file and a fresh recovery key are not this slot's (the fuzzer would
        // have to forge AES-GCM): opening must fail, cleanly.
        let _ = slot.unwrap_master(&file);
        if let Ok(k) = &recovery {
            assert!(slot.unwrap_master(k).is_err(), "a random key opened a slot");
        }
    }
});
