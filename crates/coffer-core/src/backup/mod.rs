//! Encrypted backups of the whole store, and restoring them (docs/operations.md, "Backup and
//! disaster recovery"; docs/key-hierarchy.md, "Backups").
//!
//! A backup is an age v1 file ([`crypt`]) whose plaintext is a stream of frames ([`mod@format`]):
//! a consistent snapshot of the store's rows, sealed exactly as at rest (names and values
//! stay encrypted under the namespace keys, which stay wrapped by the master key, which
//! stays wrapped by the slots in the header), then a manifest authenticated under a key
//! derived from the master key. So a backup opens only with both the age identity and one
//! of the store's own slots (the recovery key, a key file or a passphrase), and whoever can
//! decrypt the age layer alone can neither read it nor forge one.
//!
//! - [`make::write`] / [`make::to_file`]: make a backup of an open store (the daemon's
//!   `backup` operation, `coffer backup --data-dir`, scheduled backups).
//! - [`read::Rows`]: read and check one ([`read::Rows::verify`]: `coffer backup verify`).
//! - [`restore::restore`]: into a new data directory.

pub mod crypt;
pub mod format;
pub mod make;
pub mod read;
pub mod restore;
pub mod schedule;
pub mod stream;

pub use crypt::{Identity, Recipients};
pub use format::Manifest;
pub use make::{PROGRESS_EVERY, Source, Written, atomic_file, to_file, write};
pub use read::{Rows, Unlock, Verified};
pub use restore::restore;
pub use schedule::Schedule;
pub use stream::{BackupStream, Chunk};

#[cfg(test)]
mod tests;
