//! The audit anchor's NV counter (issue 12, item 2): a TPM 2.0 monotonic counter the audit
//! log's checkpoint records, so that rolling the whole audit directory (and its anchor copy)
//! back to an older copy, or deleting both, is detected at unseal: the TPM's counter never
//! goes back.
//!
//! The index is [`COUNTER_HANDLE`] (`0x01530000`), outside the NV store's `0x01520000` range
//! (so the store's open never lists or frees it). It is defined like every coffer index:
//! read and incremented with coffer's own authorization ([`crate::TpmAuth`], derived for NV
//! indices), never with owner authorization, `NO_DA`; every command runs in the salted,
//! parameter-encrypted session. NV counters wear the TPM's NV: the audit log increments it
//! at most once per `counter_interval` and at shutdown, never per record.

use std::sync::Arc;

use tss_esapi::constants::NvIndexType;
use tss_esapi::interface_types::resource_handles::NvAuth;

use crate::device::Encrypt;
use crate::error::TssContext;
use crate::{Session, Tpm, TpmError, TpmRc};

/// The NV index of the audit counter.
pub const COUNTER_HANDLE: u32 = 0x0153_0000;

/// Where the counter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterState {
    /// No index at [`COUNTER_HANDLE`].
    Missing,
    /// Defined, never incremented (a counter has no value until its first increment, which
    /// sets it to the highest value any counter of this TPM ever had).
    Unset,
    /// Its value.
    At(u64),
}

/// The audit counter of a TPM.
#[derive(Clone)]
pub struct NvCounter {
    tpm: Arc<Tpm>,
}

impl std::fmt::Debug for NvCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvCounter")
            .field("handle", &format_args!("{COUNTER_HANDLE:#010x}"))
            .finish()
    }
}

impl NvCounter {
    /// The counter of `tpm` (nothing is sent to the TPM yet).
    pub fn new(tpm: Arc<Tpm>) -> Self {
        Self { tpm }
    }

    /// Reads the counter: missing, defined but never incremented, or its value. An index at
    /// the handle that coffer's authorization does not open is an error (the TPM refuses).
    pub fn state(&self) -> Result<CounterState, TpmError> {
        self.tpm.run(counter_state)
    }

    /// Defines the counter when it is missing.
    pub fn define(&self) -> Result<(), TpmError> {
        self.tpm.run(|s| match counter_state(s)? {
            CounterState::Missing => define(s),
            _ => Ok(()),
        })
    }

    /// Increments the counter and answers its new value.
    pub fn increment(&self) -> Result<u64, TpmError> {
        self.tpm.run(|s| {
            increment(s)?;
            match counter_state(s)? {
                CounterState::At(v) => Ok(v),
                _ => Err(TpmError::refused(
                    "increment the audit counter",
                    "the counter has no value after an increment",
                )),
            }
        })
    }
}

fn define(s: &mut Session) -> Result<(), TpmError> {
    // Eight bytes: a counter's size is fixed by the TPM.
    s.nv_define_as(COUNTER_HANDLE, 8, NvIndexType::Counter)
}

fn increment(s: &mut Session) -> Result<(), TpmError> {
    let h = s.nv_handle(COUNTER_HANDLE)?;
    // NV_Increment has no parameter to encrypt: the session only carries the HMAC.
    s.with_salted(
        Encrypt {
            command: false,
            response: false,
        },
        |ctx, session| {
            ctx.execute_with_session(Some(session), |c| c.nv_increment(NvAuth::NvIndex(h), h))
                .during("increment the audit counter")
        },
    )
}

fn counter_state(s: &mut Session) -> Result<CounterState, TpmError> {
    if s.nv_list(COUNTER_HANDLE, 1)?.is_empty() {
        s.forget_nv(COUNTER_HANDLE);
        return Ok(CounterState::Missing);
    }
    let h = s.nv_handle(COUNTER_HANDLE)?;
    let (public, _) = s
        .ctx
        .execute_without_session(|c| c.nv_read_public(h))
        .during("read the audit counter's attributes")?;
    let a = public.attributes();
    let ours = a.auth_read()
        && a.auth_write()
        && !a.owner_read()
        && !a.owner_write()
        && a.index_type().ok() == Some(NvIndexType::Counter)
        && public.data_size() == 8;
    if !ours {
        return Err(TpmError::refused(
            "read the audit counter",
            format!(
                "NV index 0x{COUNTER_HANDLE:08x} is not a counter coffer defined (another \
                 program uses it)"
            ),
        ));
    }
    if !a.written() {
        return Ok(CounterState::Unset);
    }
    let bytes = match s.nv_read(COUNTER_HANDLE) {
        Ok(b) => b,
        Err(e) if e.rc() == Some(TpmRc::NV_UNINITIALIZED) => return Ok(CounterState::Unset),
        Err(e) => return Err(e),
    };
    let value: [u8; 8] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| TpmError::refused("read the audit counter", "not 8 bytes"))?;
    Ok(CounterState::At(u64::from_be_bytes(value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Swtpm;

    #[test]
    fn the_counter_is_defined_once_counts_up_and_opens_only_with_our_authorization() {
        let swtpm = Swtpm::start();
        let (first, second) = {
            let tpm = Arc::new(Tpm::open(&swtpm.tcti(), crate::fixture::auth()).unwrap());
            let c = NvCounter::new(tpm);
            assert_eq!(c.state().unwrap(), CounterState::Missing);
            c.define().unwrap();
            c.define().unwrap();
            assert_eq!(c.state().unwrap(), CounterState::Unset);
            let first = c.increment().unwrap();
            assert_eq!(c.state().unwrap(), CounterState::At(first));
            let second = c.increment().unwrap();
            assert_eq!(second, first + 1);
            (first, second)
        };
        {
            let stranger =
                Arc::new(Tpm::open(&swtpm.tcti(), crate::TpmAuth::generate().unwrap()).unwrap());
            let c = NvCounter::new(stranger);
            let err = c.state().unwrap_err();
            assert!(err.rc().is_some(), "the TPM itself refuses a read: {err}");
            let err = c.increment().unwrap_err();
            assert!(
                err.rc().is_some(),
                "the TPM itself refuses an increment: {err}"
            );
        }
        let tpm = Arc::new(Tpm::open(&swtpm.tcti(), crate::fixture::auth()).unwrap());
        let c = NvCounter::new(tpm);
        assert_eq!(c.state().unwrap(), CounterState::At(second));
        assert!(second > first);
    }
}
