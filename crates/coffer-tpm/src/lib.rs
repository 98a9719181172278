//! coffer's TPM 2.0 layer, on tss-esapi over the system's tpm2-tss.
//!
//! - [`Tpm`]: a TPM reached through a TCTI, its context owned by one thread.
//! - [`Tpm::seal`] / [`Tpm::unseal`]: node keys sealed to a [`PcrPolicy`].
//! - [`nv::NvBackend`]: the device daemon's storage model, secrets in TPM NV indices.
//! - [`NvCounter`]: the NV counter the audit checkpoint is anchored in.
//! - `fixture::Swtpm` (feature `fixture`): a real swtpm per test.
//!
//! Errors keep "the TPM refused" (with its return code) apart from "coffer refused".
#![forbid(unsafe_code)]

mod counter;
mod device;
mod error;
#[cfg(any(test, feature = "fixture"))]
pub mod fixture;
pub mod nv;
mod pcr;
mod seal;

pub use counter::{COUNTER_HANDLE, CounterState, NvCounter};
pub use device::{DEVICE, Session, TCTI_VARIABLE, Tpm, TpmAuth, discover};
pub use error::{TpmError, TpmRc};
pub use pcr::{PcrPolicy, PcrPolicyError};
pub use seal::{NODE_KEY_LEN, SealedKey};
