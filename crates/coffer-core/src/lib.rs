//! coffer's service, independent of any listener.
//!
//! A listener turns bytes into a [`Request`] and a peer into an [`Identity`], then calls
//! [`Service::handle`], which walks the gates (see [`service`]) and answers a [`Reply`] or a
//! [`Refusal`] naming the gate that stopped it. The [`Vault`] holds the seal state and the
//! keys; [`bootstrap`] makes new stores; [`cache`] is the JIT cache.
#![forbid(unsafe_code)]

pub mod access;
pub mod bootstrap;
pub mod cache;
pub mod datadir;
mod error;
mod harden;
mod identity;
pub mod keyfile;
pub mod kv;
mod request;
pub mod service;
mod status;
mod vault;

pub use error::{CoreError, Gate, Refusal};
pub use harden::{CoreLimit, harden_process};
pub use identity::Identity;
pub use request::{
    AuditReport, BindingView, ListRequest, PolicyListing, PolicySource, PolicyView, Reply, Request,
    SecretOp, WriteOptions,
};
pub use service::{Service, ServiceConfig};
pub use status::{CacheStatus, MemoryStatus, SealState, SlotSummary, StatusReport, TpmStatus};
pub use vault::{FirstBoot, NewSlot, SlotAdded, Vault, VaultOptions};
