//! coffer's service, independent of any listener.
//!
//! A listener turns its wire shape into an [`Operation`] (names parsed into a
//! [`coffer_types::Target`] at the edge) and its peer into a [`Caller`], then calls
//! [`Service::call`]: the one path every request takes, through the gates in DESIGN.md's
//! order (see [`service`]), answering a [`Reply`] or a [`Refusal`] naming the gate that
//! stopped it, and leaving one audit record. [`op`] holds the operations and every rule
//! about their input; the [`Vault`] holds the seal state and the keys; [`bootstrap`] makes
//! new stores; [`cache`] is the JIT cache.
#![forbid(unsafe_code)]

pub mod access;
pub mod backup;
pub mod bootstrap;
pub mod bounds;
pub mod cache;
pub mod cluster;
pub mod datadir;
mod error;
pub mod fleet;
mod harden;
mod identity;
pub mod keyfile;
pub mod kv;
pub mod op;
mod reply;
pub mod schedule;
pub mod service;
mod status;
mod vault;
pub mod watch;
pub mod webhook;

pub use coffer_types::reply::{AuditReport, BindingView, PolicyListing, PolicySource, PolicyView};
pub use error::{CoreError, Gate, Refusal};
pub use harden::{CoreLimit, harden_process};
pub use identity::{Caller, Identity};
pub use op::{
    AppRoleOp, Candidate, CapabilitiesOf, ListInput, MetadataChange, Operation, Rejection, Request,
    RoleInput, SecretIdInput, SecretOp, SpecInput, TokenInput, TokenRoleInput, TokenRoleOp, WrapOp,
    WriteOptions, least_capabilities,
};
pub use reply::{AppRoleReply, Reply, WrapReply};
pub use service::{BackupStats, Service, ServiceConfig};
pub use status::{CacheStatus, MemoryStatus, SealState, SlotSummary, StatusReport, TpmStatus};
pub use vault::{FirstBoot, MasterRotated, NewSlot, SlotAdded, Vault, VaultOptions};
