//! Join tokens under load, over a real SQLite store: the nodes of one production run
//! enrolling at once with one token each get a use while uses are left, and exactly as many
//! as it has; the rest are refused as a bad token is (`invalid_request`, one answer for every bad join). A revoked token enrolls nobody.
#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use coffer_core::op::FleetOp;
use coffer_core::{
    FirstBoot, Identity, Operation, Reply, Service, ServiceConfig, Vault, VaultOptions,
};
use coffer_crypto::SecretBytes;
use coffer_fleet::NodeKey;
use coffer_fleet::pki::TlsKey;
use coffer_store::SqliteBackend;
use coffer_types::ErrorCode;
use common::Handle;

fn hub(dir: &std::path::Path) -> Arc<Service> {
    let vault = Vault::start(
        Arc::new(SqliteBackend::open(&dir.join("coffer.db")).unwrap()),
        VaultOptions {
            first_boot: Some(FirstBoot::KeyFile(dir.join("coffer.key"))),
            ..VaultOptions::default()
        },
    );
    Arc::new(Service::new(vault, ServiceConfig::default()))
}

fn fleet(reply: Reply) -> serde_json::Value {
    match reply {
        Reply::Fleet(v) => *v,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// A join token for `uses` nodes.
async fn token(service: &Arc<Service>, uses: u32) -> (String, String) {
    let op = FleetOp::TokenCreate {
        tags: vec!["kiosk".to_owned()],
        uses,
        ttl_secs: 3600,
    };
    let v = fleet(
        service
            .handle(&Identity::peer(0, 0, None), Operation::Fleet(op))
            .await
            .unwrap(),
    );
    (
        v["token"].as_str().unwrap().to_owned(),
        v["id"].as_str().unwrap().to_owned(),
    )
}

/// Node `i` enrolling with `token` from an address of its own: its node id, or the code.
async fn enroll(service: Arc<Service>, i: u8, token: String) -> Result<String, ErrorCode> {
    let key = NodeKey::generate().unwrap().public().to_text();
    let tls_key = TlsKey::generate().unwrap().public_raw();
    let op = FleetOp::Enroll {
        token: Some(SecretBytes::from_string(token)),
        key,
        tls_key,
        hostname: None,
    };
    let from = Identity::remote(SocketAddr::new(IpAddr::from([10, 0, 0, i]), 40_000));
    match service.handle(&from, Operation::Fleet(op)).await {
        Ok(reply) => Ok(fleet(reply)["node"].as_str().unwrap().to_owned()),
        Err(r) => Err(r.error.code()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_24_nodes_enrolls_exactly_24_of_32_racing() {
    let dir = tempfile::tempdir().unwrap();
    let service = hub(dir.path());
    let (token, _) = token(&service, 24).await;
    let racers: Vec<_> = (1..=32u8)
        .map(|i| tokio::spawn(enroll(service.clone(), i, token.clone())))
        .collect();
    let mut ids = Vec::new();
    let mut refused = Vec::new();
    for r in racers {
        match r.await.unwrap() {
            Ok(id) => ids.push(id),
            Err(code) => refused.push(code),
        }
    }
    assert_eq!(ids.len(), 24, "refused: {refused:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 24, "node ids repeat");
    assert!(
        refused.iter().all(|c| *c == ErrorCode::InvalidRequest),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_enrolls_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let service = hub(dir.path());
    let (token, id) = token(&service, 5).await;
    let revoke = FleetOp::TokenRevoke { id };
    service
        .handle(&Identity::peer(0, 0, None), Operation::Fleet(revoke))
        .await
        .unwrap();
    assert_eq!(
        enroll(service.clone(), 1, token).await,
        Err(ErrorCode::InvalidRequest)
    );
}
