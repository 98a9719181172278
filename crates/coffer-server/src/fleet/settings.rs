//! A daemon's fleet settings, as `coffer serve` hands them over.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use coffer_crypto::SecretBytes;
use tokio::sync::watch;

/// A daemon's place in a fleet.
#[derive(Debug, Clone, Default)]
pub struct FleetConfig {
    /// A hub: where it listens for nodes (`--fleet-listen`).
    pub listen: Option<SocketAddr>,
    /// A node: how it joins and syncs.
    pub node: Option<NodeSettings>,
}

/// How a node joins its fleet.
#[derive(Debug, Clone, Default)]
pub struct NodeSettings {
    /// Hub addresses (`host:port`), tried in turn (`--join`).
    pub hubs: Vec<String>,
    /// A join token (`--join-token-file`).
    pub token: Option<Arc<SecretBytes>>,
    /// The fleet CA's certificate, PEM (`--hub-ca`).
    pub ca_pem: Option<String>,
    /// A provisioning bundle to import on this start (`--provision`).
    pub provision: Option<Provision>,
}

/// A provisioning bundle and its key.
#[derive(Debug, Clone)]
pub struct Provision {
    /// The bundle file (erased once imported).
    pub bundle: PathBuf,
    /// Its one-time key.
    pub key: Arc<SecretBytes>,
}

/// Waits until the daemon stops.
pub(crate) async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}
