//! NV primitives on the TPM thread, and chains: one record spread over a head index and
//! continuation indices, self-checking so a torn write is detected rather than trusted.
//!
//! A chain's byte stream: `"CNV1" | generation u64 | payload length u32 | continuation count
//! u16 | continuation handles u32... | payload | BLAKE3 of everything before`. The head index
//! holds the first `index_max` bytes, each continuation the next. Reads and writes go in pieces
//! of at most `buffer_max` bytes (tpm.md: 2048 and 1024 on swtpm; real TPMs have less).

use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::CapabilityType;
use tss_esapi::constants::NvIndexType;
use tss_esapi::handles::NvIndexTpmHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{CapabilityData, MaxNvBuffer, NvPublicBuilder};

use crate::device::{AuthFor, Encrypt};
use crate::error::TssContext;
use crate::{Session, TpmError};

const MAGIC: &[u8; 4] = b"CNV1";
const FIXED: usize = 4 + 8 + 4 + 2;
const HASH: usize = 32;

/// Where a chain lives: its head and continuations, with their defined sizes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Chain {
    pub head: u32,
    pub head_size: usize,
    pub conts: Vec<(u32, usize)>,
}

impl Chain {
    /// Every handle of the chain.
    pub fn handles(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.head).chain(self.conts.iter().map(|(h, _)| *h))
    }
}

/// How many continuations a payload needs.
pub(super) fn continuations(payload: usize, index_max: usize) -> usize {
    let mut n = 0;
    loop {
        let total = FIXED + 4 * n + payload + HASH;
        let need = total.saturating_sub(index_max).div_ceil(index_max);
        if need <= n {
            return n;
        }
        n = need;
    }
}

/// The byte stream of a chain, and the sizes of its head and continuations.
pub(super) fn encode(
    generation: u64,
    conts: &[u32],
    payload: &[u8],
    index_max: usize,
) -> (Vec<u8>, Vec<usize>) {
    let mut stream = Vec::with_capacity(FIXED + 4 * conts.len() + payload.len() + HASH);
    stream.extend_from_slice(MAGIC);
    stream.extend_from_slice(&generation.to_le_bytes());
    stream.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    stream.extend_from_slice(&(conts.len() as u16).to_le_bytes());
    for h in conts {
        stream.extend_from_slice(&h.to_le_bytes());
    }
    stream.extend_from_slice(payload);
    let hash = blake3::hash(&stream);
    stream.extend_from_slice(hash.as_bytes());
    let sizes = stream.chunks(index_max).map(<[u8]>::len).collect();
    (stream, sizes)
}

/// What a head says, before the continuations are read.
pub(super) struct Head {
    pub generation: u64,
    pub conts: Vec<u32>,
    total: usize,
}

pub(super) fn parse_head(head: &[u8]) -> Option<Head> {
    if head.len() < FIXED || &head[..4] != MAGIC {
        return None;
    }
    let generation = u64::from_le_bytes(head[4..12].try_into().ok()?);
    let len = u32::from_le_bytes(head[12..16].try_into().ok()?) as usize;
    let n = u16::from_le_bytes(head[16..18].try_into().ok()?) as usize;
    if head.len() < FIXED + 4 * n {
        return None;
    }
    let conts = (0..n)
        .map(|i| {
            let at = FIXED + 4 * i;
            head[at..at + 4].try_into().map(u32::from_le_bytes)
        })
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some(Head {
        generation,
        total: FIXED + 4 * n + len + HASH,
        conts,
    })
}

/// Checks a whole stream and answers its payload.
pub(super) fn verify(stream: &[u8], head: &Head) -> Option<Vec<u8>> {
    if stream.len() != head.total {
        return None;
    }
    let (body, hash) = stream.split_at(stream.len() - HASH);
    (blake3::hash(body).as_bytes() == hash).then(|| body[FIXED + 4 * head.conts.len()..].to_vec())
}

fn nv_handle(handle: u32) -> Result<NvIndexTpmHandle, TpmError> {
    NvIndexTpmHandle::new(handle)
        .map_err(|_| TpmError::refused("address an NV index", "not an NV index handle"))
}

/// The attributes of every index coffer defines: read and written with the index's own
/// authValue (derived from coffer's [`TpmAuth`](crate::TpmAuth)), never with owner
/// authorization (usually empty), so opening the TPM is not enough to read them. `no_da`:
/// a wrong guess at a 256-bit value gains nothing, and must not lock the TPM for others.
fn attributes(kind: NvIndexType) -> Result<tss_esapi::attributes::NvIndexAttributes, TpmError> {
    NvIndexAttributesBuilder::new()
        .with_auth_write(true)
        .with_auth_read(true)
        .with_no_da(true)
        .with_nv_index_type(kind)
        .build()
        .during("describe an NV index")
}

impl Session {
    /// Defines an index of `size` bytes, read and written with coffer's authorization only.
    pub(crate) fn nv_define(&mut self, handle: u32, size: usize) -> Result<(), TpmError> {
        self.nv_define_as(handle, size, NvIndexType::Ordinary)
    }

    /// Defines an index of `kind` (ordinary, or a counter) and `size` bytes, read and
    /// written with coffer's authorization only (no owner access, no dictionary-attack
    /// lockout).
    pub(crate) fn nv_define_as(
        &mut self,
        handle: u32,
        size: usize,
        kind: NvIndexType,
    ) -> Result<(), TpmError> {
        let public = NvPublicBuilder::new()
            .with_nv_index(nv_handle(handle)?)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(attributes(kind)?)
            .with_data_area_size(size)
            .build()
            .during("describe an NV index")?;
        let auth = self.auth.derive(AuthFor::NvIndex)?;
        // The authValue is a command parameter: it goes to the TPM encrypted.
        let h = self.with_salted(
            Encrypt {
                command: true,
                response: false,
            },
            |ctx, session| {
                // Defining is authorized by the owner (a password session); the salted
                // session rides along to encrypt the new index's authValue.
                ctx.execute_with_sessions((Some(AuthSession::Password), Some(session), None), |c| {
                    c.nv_define_space(Provision::Owner, Some(auth), public)
                })
                .during("define an NV index")
            },
        )?;
        self.remember_nv(handle, h)
    }

    /// Whether `handle` is an index coffer defined with its own authorization; an index in
    /// coffer's range defined otherwise (by coffer before store format 2, or by something
    /// else) is [`TpmError::Refused`], so that nothing is read from or freed in it.
    pub(crate) fn nv_check_ours(&mut self, handle: u32) -> Result<(), TpmError> {
        let h = self.nv_handle(handle)?;
        let (public, _) = self
            .ctx
            .execute_without_session(|c| c.nv_read_public(h))
            .during("read an NV index's attributes")?;
        let a = public.attributes();
        if a.auth_read() && a.auth_write() && !a.owner_read() && !a.owner_write() {
            return Ok(());
        }
        Err(TpmError::refused(
            "open the NV store",
            format!(
                "NV index 0x{handle:08x} is readable with owner authorization: it was made by \
                 a coffer before store format 2 (or by another program) and is left alone. \
                 See docs/key-hierarchy.md, \"TPM authorization\""
            ),
        ))
    }

    /// Frees an index.
    pub(crate) fn nv_undefine(&mut self, handle: u32) -> Result<(), TpmError> {
        let h = self.nv_handle(handle)?;
        let result = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.nv_undefine_space(Provision::Owner, h)
            })
            .during("free an NV index");
        self.forget_nv(handle);
        result
    }

    /// Writes `data` at the start of an index, in pieces the TPM accepts, each authorized by
    /// the index's authValue in the salted session and encrypted on the bus.
    pub(crate) fn nv_write(&mut self, handle: u32, data: &[u8]) -> Result<(), TpmError> {
        let h = self.nv_handle(handle)?;
        let piece = self.buffer_max.max(1);
        for (i, chunk) in data.chunks(piece).enumerate() {
            let buf = MaxNvBuffer::try_from(chunk.to_vec()).during("write an NV index")?;
            let offset = u16::try_from(i * piece)
                .map_err(|_| TpmError::refused("write an NV index", "offset past 64 KiB"))?;
            self.with_salted(
                Encrypt {
                    command: true,
                    response: false,
                },
                |ctx, session| {
                    ctx.execute_with_session(Some(session), |c| {
                        c.nv_write(NvAuth::NvIndex(h), h, buf, offset)
                    })
                    .during("write an NV index")
                },
            )?;
        }
        Ok(())
    }

    /// The defined size of an index.
    pub(crate) fn nv_size(&mut self, handle: u32) -> Result<usize, TpmError> {
        let h = self.nv_handle(handle)?;
        let (public, _) = self
            .ctx
            .execute_without_session(|c| c.nv_read_public(h))
            .during("read an NV index's size")?;
        Ok(public.data_size())
    }

    /// Reads a whole index, each piece authorized by the index's authValue in the salted
    /// session and encrypted on the bus.
    pub(crate) fn nv_read(&mut self, handle: u32) -> Result<Vec<u8>, TpmError> {
        let size = self.nv_size(handle)?;
        let h = self.nv_handle(handle)?;
        let piece = self.buffer_max.max(1);
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let n = u16::try_from((size - out.len()).min(piece)).unwrap_or(u16::MAX);
            let offset = u16::try_from(out.len())
                .map_err(|_| TpmError::refused("read an NV index", "offset past 64 KiB"))?;
            let data = self.with_salted(
                Encrypt {
                    command: false,
                    response: true,
                },
                |ctx, session| {
                    ctx.execute_with_session(Some(session), |c| {
                        c.nv_read(NvAuth::NvIndex(h), h, n, offset)
                    })
                    .during("read an NV index")
                },
            )?;
            out.extend_from_slice(data.value());
        }
        Ok(out)
    }

    /// The defined NV indices in `first..first + count`.
    pub(crate) fn nv_list(&mut self, first: u32, count: u32) -> Result<Vec<u32>, TpmError> {
        let end = first + count;
        let mut next = first;
        let mut out = Vec::new();
        loop {
            let (data, more) = self
                .ctx
                .execute_without_session(|c| {
                    c.get_capability(CapabilityType::Handles, next, end - next)
                })
                .during("list NV indices")?;
            let CapabilityData::Handles(list) = data else {
                return Err(TpmError::refused("list NV indices", "unexpected answer"));
            };
            let handles: Vec<u32> = list.iter().map(|h| u32::from(*h)).collect();
            let last = handles.last().copied();
            out.extend(handles.into_iter().filter(|h| (first..end).contains(h)));
            match last {
                Some(l) if more && l + 1 < end => next = l + 1,
                _ => return Ok(out),
            }
        }
    }

    /// Reads and checks a chain starting at `head`; `Ok(None)` when it is missing or torn.
    /// The TPM refusing a read (the authorization does not open the index) is an error, not
    /// a torn write: what cannot be read must not be taken for free space.
    pub(super) fn read_chain(
        &mut self,
        head: u32,
    ) -> Result<Option<(u64, Vec<u8>, Chain)>, TpmError> {
        let bytes = match self.nv_read(head) {
            Ok(bytes) => bytes,
            // Defined, never written: a crash between the two.
            Err(e) if e.rc() == Some(crate::TpmRc::NV_UNINITIALIZED) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(self.read_rest(head, bytes))
    }

    fn read_rest(&mut self, head: u32, bytes: Vec<u8>) -> Option<(u64, Vec<u8>, Chain)> {
        let parsed = parse_head(&bytes)?;
        let mut chain = Chain {
            head,
            head_size: bytes.len(),
            conts: Vec::new(),
        };
        let mut stream = bytes;
        for &c in &parsed.conts {
            let more = self.nv_read(c).ok()?;
            chain.conts.push((c, more.len()));
            stream.extend_from_slice(&more);
        }
        let payload = verify(&stream, &parsed)?;
        Some((parsed.generation, payload, chain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_fit_and_round_trip() {
        for (payload, max) in [(0usize, 2048usize), (10, 2048), (5000, 2048), (3000, 512)] {
            let n = continuations(payload, max);
            let conts: Vec<u32> = (0..n as u32).collect();
            let data = vec![7u8; payload];
            let (stream, sizes) = encode(9, &conts, &data, max);
            assert_eq!(sizes.len(), n + 1, "payload {payload} max {max}");
            assert!(sizes.iter().all(|&s| s <= max));
            let head = parse_head(&stream[..sizes[0]]).unwrap();
            assert_eq!(head.generation, 9);
            assert_eq!(head.conts, conts);
            assert_eq!(verify(&stream, &head).unwrap(), data);
            // A torn write: the tail still holds older bytes.
            let mut torn = stream.clone();
            let last = torn.len() - 1;
            torn[last] ^= 1;
            assert!(verify(&torn, &head).is_none());
        }
    }
}
