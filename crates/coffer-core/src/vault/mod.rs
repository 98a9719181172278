//! The vault: the store's seal state and the slots that open it.
//!
//! ```text
//!   start ──tpm or file slot opens──> Unsealed <──unseal── Sealed <──seal── Unsealed
//!     │                                  ^
//!     ├─key file unfit──> Unavailable ──fixed (retried at most once a second)
//!     └─no slot opens by itself (passphrase; PCRs changed)──> Sealed
//! ```
//!
//! Only `Unsealed` holds keys: the store (with the namespace keys) and a copy of the master
//! key for adding slots. Sealing drops both, which zeroizes them; the service flushes the
//! cache beside it. The state is in `state`; opening one slot in `unlock`; starting, sealing and
//! unsealing in `open`; managing slots in `slots`.

mod backup;
mod open;
mod rotate;
mod slots;
mod state;
mod unlock;

pub use rotate::MasterRotated;
pub(crate) use slots::make_slot;
pub use slots::{NewSlot, SlotAdded};
pub use state::{FirstBoot, Vault, VaultOptions};
pub(crate) use unlock::open_store;
