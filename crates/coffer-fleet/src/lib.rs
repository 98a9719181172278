//! The fleet's formats, shared by hubs and nodes: per-node sealing ([`seal`]), the fleet's
//! CA and mutual TLS ([`pki`]), the sync wire ([`wire`]) and provisioning bundles
//! ([`bundle`]). No I/O but the wire's reads and writes; the hub and node runtimes are in
//! `coffer-server`, the registry and its operations in `coffer-core`.

pub mod bundle;
mod error;
pub mod pki;
pub mod seal;
pub mod wire;

pub use seal::{Binding, NodeKey, NodePublic};

pub use error::FleetError;
