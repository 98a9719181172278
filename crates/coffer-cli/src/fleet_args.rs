//! `coffer serve`'s fleet flags: a hub's listener for nodes, a node's hubs, join token, CA
//! and provisioning bundle (docs/fleet.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use coffer_server::fleet::{FleetConfig, NodeSettings, Provision};

/// The fleet flags of `coffer serve`.
#[derive(Args, Debug, Default, Clone)]
pub struct FleetArgs {
    /// Serve nodes on ADDR (a hub): mutual TLS under the fleet's CA, written to DATA_DIR/fleet/ca.pem
    #[arg(
        long,
        env = "COFFER_FLEET_LISTEN",
        hide_env_values = true,
        value_name = "ADDR"
    )]
    pub fleet_listen: Option<SocketAddr>,
    /// Join the fleet through the hub at ADDR (host:port; repeat for several): this daemon is a node
    #[arg(long = "join", value_name = "ADDR")]
    pub join: Vec<String>,
    /// The join token, read from FILE (for the first start; kept nowhere after enrolling)
    #[arg(long, value_name = "FILE")]
    pub join_token_file: Option<PathBuf>,
    /// The fleet CA's certificate the hubs present (the hub's DATA_DIR/fleet/ca.pem)
    #[arg(long, value_name = "FILE")]
    pub hub_ca: Option<PathBuf>,
    /// Import a provisioning bundle on this start (it is erased once imported)
    #[arg(long, value_name = "FILE", requires = "bundle_key_file")]
    pub provision: Option<PathBuf>,
    /// The bundle's one-time key file
    #[arg(long, value_name = "FILE", requires = "provision")]
    pub bundle_key_file: Option<PathBuf>,
}

impl FleetArgs {
    /// The daemon's fleet settings.
    pub fn resolve(&self) -> anyhow::Result<FleetConfig> {
        let node = !self.join.is_empty()
            || self.join_token_file.is_some()
            || self.hub_ca.is_some()
            || self.provision.is_some();
        if !node {
            return Ok(FleetConfig {
                listen: self.fleet_listen,
                node: None,
            });
        }
        for hub in &self.join {
            if !hub.contains(':') || hub.len() > 255 {
                bail!("--join takes host:port (not {hub:?})");
            }
        }
        let token = match &self.join_token_file {
            Some(path) => {
                let text = std::fs::read(path)
                    .with_context(|| format!("cannot read --join-token-file {}", path.display()))?;
                let token = coffer_crypto::SecretBytes::from_vec(text);
                if token.expose_str().is_none_or(|t| t.trim().is_empty()) {
                    bail!("--join-token-file {} holds no token", path.display());
                }
                Some(Arc::new(token))
            }
            None => None,
        };
        let ca_pem = match &self.hub_ca {
            Some(path) => {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --hub-ca {}", path.display()))?;
                coffer_fleet::pki::certificates(&pem)
                    .with_context(|| format!("--hub-ca {}", path.display()))?;
                Some(pem)
            }
            None => None,
        };
        let provision = match (&self.provision, &self.bundle_key_file) {
            (Some(bundle), Some(key)) => {
                let text =
                    zeroize::Zeroizing::new(std::fs::read_to_string(key).with_context(|| {
                        format!("cannot read --bundle-key-file {}", key.display())
                    })?);
                let key = coffer_fleet::bundle::key_from_text(&text)
                    .with_context(|| format!("--bundle-key-file {}", key.display()))?;
                Some(Provision {
                    bundle: bundle.clone(),
                    key: Arc::new(key),
                })
            }
            _ => None,
        };
        Ok(FleetConfig {
            listen: self.fleet_listen,
            node: Some(NodeSettings {
                hubs: self.join.clone(),
                token,
                ca_pem,
                provision,
            }),
        })
    }
}
