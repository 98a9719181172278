//! What the TPM NV store reads back from NV at open: a chain's head and stream (magic,
//! generation, length, continuation handles, BLAKE3), the directory and the secret records
//! (postcard), and the rows made from them. Asserts no panic, and that any payload laid out as
//! a chain reads back as itself.
#![no_main]

use coffer_tpm::nv::fuzzing::{decode_chain, decode_records, round_trip_chain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As read from NV: the head index's bytes are a prefix of the whole stream.
    let head_len = data
        .first()
        .map_or(0, |&b| (b as usize * 8).min(data.len()));
    if let Some((_, payload)) = decode_chain(&data[..head_len], data) {
        assert!(payload.len() <= data.len());
    }
    if let Some((_, payload)) = decode_chain(data, data) {
        let _ = decode_records(&payload);
    }
    // As a payload.
    let _ = decode_records(data);
    let conts: Vec<u32> = data
        .chunks_exact(4)
        .take(3)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let read = round_trip_chain(data.len() as u64, &conts, data);
    assert_eq!(
        read.as_deref(),
        Some(data),
        "a chain does not read back as written"
    );
});
