//! The fleet's runtimes: a hub's listener and fan-out (`hub`, `fanout`) and a node's
//! enrollment and sync (`node`, `provision`). The rules (who may enroll, who receives
//! what) are the core's; the formats are `coffer-fleet`'s.

mod fanout;
mod hub;
pub mod link;
mod node;
mod provision;
mod settings;

pub use settings::{FleetConfig, NodeSettings, Provision};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use coffer_core::Service;
use tokio::sync::watch;

/// Binds the hub's fleet listener now (so a taken address fails the start) and serves it
/// in a task until `stopped`.
pub async fn spawn_hub(
    service: Arc<Service>,
    addr: SocketAddr,
    hub: String,
    data_dir: PathBuf,
    stopped: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let files = link::raise_open_files();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let ca_out = data_dir.join("fleet").join("ca.pem");
    tracing::info!(addr = %bound, open_files = files, "the fleet listener is bound");
    let task = tokio::spawn(hub::serve(service, listener, hub, ca_out, stopped));
    Ok((bound, task))
}

/// Runs the node's side of the fleet in a task until `stopped`.
pub fn spawn_node(
    service: Arc<Service>,
    settings: NodeSettings,
    data_dir: PathBuf,
    stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(node::run(service, settings, data_dir, stopped))
}
