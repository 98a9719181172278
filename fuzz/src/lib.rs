//! What the fuzz targets share: a real coffer service over an in-memory store, opened by a
//! key file in a temporary directory, with a root token for the HTTP target.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use coffer_core::{
    Caller, FirstBoot, Identity, Operation, Reply, Service, ServiceConfig, TokenInput, Vault,
    VaultOptions,
};
use coffer_store::MemoryBackend;

/// Inputs a fixture serves before it is rebuilt: bounds what the fuzzer's secrets, tokens and
/// policies accumulate, and undoes a `seal`.
pub const REBUILD_EVERY: u32 = 2000;

/// A service, the runtime it runs on, and what it was built with.
pub struct Fixture {
    /// Current-thread runtime the requests run on.
    pub runtime: tokio::runtime::Runtime,
    /// The service (both protocols' operation layer).
    pub service: Arc<Service>,
    /// A root token, for HTTP requests that carry `@ROOT@`.
    pub root_token: String,
    /// Inputs served so far.
    pub served: u32,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A fresh service: a new store opened by a minted key file.
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let vault = Vault::start(
            Arc::new(MemoryBackend::new()),
            VaultOptions {
                first_boot: Some(FirstBoot::KeyFile(dir.path().join("coffer.key"))),
                ..VaultOptions::default()
            },
        );
        let service = Arc::new(Service::new(vault, ServiceConfig::default()));
        let me = Identity::peer(nix::unistd::geteuid().as_raw(), 0, None);
        let made = runtime
            .block_on(service.call(
                Caller::peer(me),
                Operation::TokenCreate(TokenInput {
                    policies: vec!["root".to_owned()],
                    ttl: Some(3600),
                    ..TokenInput::default()
                }),
            ))
            .expect("a root token");
        let Reply::TokenCreated { token, .. } = made else {
            panic!("no token in the reply to token create")
        };
        Self {
            runtime,
            service,
            root_token: token.expose_str().expect("a token is text").to_owned(),
            served: 0,
            _dir: dir,
        }
    }

    /// Counts one input; true when the fixture has served its share and should be rebuilt.
    pub fn tick(&mut self) -> bool {
        self.served += 1;
        self.served >= REBUILD_EVERY
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}
