//! Entry points for coffer's fuzz targets (fuzz/nv_record): what [`NvBackend::open`] decodes
//! from NV, without a TPM. Not an API: hidden from the docs, kept to what the fuzzer needs.
//!
//! [`NvBackend::open`]: super::NvBackend::open

use super::chain;
use super::state::{Directory, SecretRecord};

/// Largest index the fuzz target lays a chain out for (swtpm's `index_max`).
const INDEX_MAX: usize = 2048;

/// Decodes `head` as a chain's head index and `stream` as the whole chain read back, as
/// `Session::read_chain` does; answers the generation and payload when both check out.
pub fn decode_chain(head: &[u8], stream: &[u8]) -> Option<(u64, Vec<u8>)> {
    let parsed = chain::parse_head(head)?;
    let payload = chain::verify(stream, &parsed)?;
    Some((parsed.generation, payload))
}

/// Lays `payload` out as a chain (generation `generation`, continuation handles `conts`) and
/// reads it back: answers the payload read, which must be `payload`.
pub fn round_trip_chain(generation: u64, conts: &[u32], payload: &[u8]) -> Option<Vec<u8>> {
    let (stream, sizes) = chain::encode(generation, conts, payload, INDEX_MAX);
    let head_len = *sizes.first()?;
    let parsed = chain::parse_head(&stream[..head_len])?;
    if parsed.generation != generation || parsed.conts != conts {
        return None;
    }
    chain::verify(&stream, &parsed)
}

/// Decodes `payload` as the directory and as one secret's record, and turns the record into
/// the store's rows, as `NvState::open` and the reads after it do. Answers whether the
/// directory and the record decoded.
pub fn decode_records(payload: &[u8]) -> (bool, bool) {
    let dir = postcard::from_bytes::<Directory>(payload).is_ok();
    let record = match postcard::from_bytes::<SecretRecord>(payload) {
        Ok(r) => {
            let _ = r.row();
            let _ = r.versions();
            for v in r.version_numbers() {
                let _ = r.version(v);
            }
            let _ = (r.key(), r.id(), r.slot());
            true
        }
        Err(_) => false,
    };
    (dir, record)
}
