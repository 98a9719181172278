//! coffer's audit log (DESIGN.md, Audit): one JSON line per request, in append-only files,
//! each line ending in a tag over the one before it and itself: once keys are known an HMAC
//! under the audit key, before that a BLAKE3 hash (docs/audit.md has the format), with the
//! chain head checkpointed under a MAC keyed from the master key (and, with a TPM, bound to an
//! NV counter). Editing, deleting, truncating or rolling back records is detected by
//! [`verify()`] and by the check the log runs when it gets its keys; [`tail()`] follows the
//! log for `coffer audit tail`.
//!
//! Where things live, along the path of a record:
//! - [`record`]: [`Record`] as the daemon hands it over, and how it becomes a line (names
//!   hashed under the audit key, withheld while sealed, or in the clear when configured).
//! - [`log`]: [`AuditLog`], the shared handle: group commit of appends, its health check,
//!   and the syncer thread.
//! - `message`: the state the handle and the writer share.
//! - `writer`: numbers and chains a batch of lines and writes it with one system call,
//!   rotates files, checks the file is still writable, prepares syncs and checkpoints.
//! - [`checkpoint`]: the two-slot, MAC'd checkpoint file.
//! - [`counter`]: the checkpoint's anchor in a monotonic (TPM NV) counter.
//! - `recover`: where the chain continues when the log is opened.
//! - [`verify`](mod@verify) and [`tail`](mod@tail): the readers.
//! - `line`: the line formats (1, 2 and 3): the fields the readers need, the tags.
//! - `expand`: format-3 lines with full field names, as `coffer audit tail` prints them.
//! - `chain`: links, file names and reading lines backwards, shared by all of them.
//!
//! The log fails closed: when a record cannot be written the request is refused
//! ([`AuditError::Unavailable`], wire code `audit_unavailable`).
#![forbid(unsafe_code)]

mod chain;
pub mod checkpoint;
mod config;
pub mod counter;
mod error;
mod expand;
mod gap;
mod line;
pub mod log;
mod message;
pub mod record;
mod recover;
mod retain;
mod space;
pub mod tail;
pub mod verify;
mod writer;

pub use checkpoint::{ANCHOR_FILE, CHECKPOINT_FILE};
pub use config::{AuditConfig, DEFAULT_COUNTER_INTERVAL, DEFAULT_RESERVE};
pub use counter::{AuditCounter, CounterState};
pub use error::AuditError;
pub use log::AuditLog;
pub use record::{Actor, Outcome, Record};
pub use tail::tail;
pub use verify::{Problem, VerifyReport, verify, verify_anchored};
