//! A node's side of the fleet (`coffer serve --join ADDR`): it keeps its X25519 key pair,
//! its TLS key and its certificate in its own store (under its own slots: its TPM where it
//! has one), enrolls once with its join token, then keeps one stream to a hub and applies
//! what the hub pushes: each value opened with its key, checked against its binding, and
//! written into its store. With no hub in reach it serves what it holds, and tries the hubs
//! again with a growing, jittered delay.

use std::sync::Arc;
use std::time::Duration;

use coffer_core::Service;
use coffer_core::fleet::NodeSelf;
use coffer_crypto::SecretBytes;
use coffer_fleet::pki::TlsKey;
use coffer_fleet::wire::{self, Held, ToHub, ToNode};
use coffer_fleet::{Binding, NodeKey};
use coffer_types::{Kind, Timestamp};
use tokio::sync::watch;

use super::link::{MAX_BACKOFF, backoff, connect};
use super::settings::NodeSettings;

/// A stream that hears nothing (not even a heartbeat) for this long is given up.
const SILENCE: Duration = Duration::from_secs(45);

/// Why a round with a hub ended.
enum Ended {
    /// The connection failed or closed: try again soon.
    Lost(String),
    /// The hub refused this node: try again much later.
    Refused(String),
}

/// Runs the node's side until the daemon stops.
pub(crate) async fn run(
    service: Arc<Service>,
    settings: NodeSettings,
    data_dir: std::path::PathBuf,
    mut stopped: watch::Receiver<bool>,
) {
    let mut me = loop {
        match super::provision::prepare(&service, &settings).await {
            Ok(me) => break me,
            Err(e) => {
                tracing::warn!(error = %e, "the fleet node waits for its store");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = super::settings::until_stopped(&mut stopped) => return,
                }
            }
        }
    };
    let mut held = match service.fleet_held().await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "the fleet node cannot read what it holds");
            Vec::new()
        }
    };
    service.fleet_facts(|f| {
        f.role = "node".to_owned();
        f.node = me.node.clone();
        f.last_sync = me.last_sync;
        f.revision = Some(me.since);
    });
    let Ok(seed) = SecretBytes::from_base64(&me.seed) else {
        tracing::error!("the fleet node's stored key does not parse");
        return;
    };
    let Ok(key) = NodeKey::from_secret(&seed) else {
        tracing::error!("the fleet node's stored key does not parse");
        return;
    };
    // The public key, for an operator pre-authorizing this node (`fleet nodes add`).
    let public = data_dir.join("fleet").join("node.pub");
    let written = std::fs::create_dir_all(data_dir.join("fleet"))
        .and_then(|()| std::fs::write(&public, format!("{}\n", key.public().to_text())));
    if let Err(e) = written {
        tracing::warn!(error = %e, path = %public.display(), "the node's public key cannot be written");
    }
    let Ok(tls_key) = TlsKey::from_pem(&me.tls_key) else {
        tracing::error!("the fleet node's stored TLS key does not parse");
        return;
    };
    let mut attempt: u32 = 0;
    let mut which = 0usize;
    loop {
        if me.hubs.is_empty() {
            tracing::warn!("the fleet node knows no hub (give one with --join ADDR)");
            super::settings::until_stopped(&mut stopped).await;
            return;
        }
        let hub = me.hubs[which % me.hubs.len()].clone();
        which = which.wrapping_add(1);
        let ended = tokio::select! {
            ended = round(&service, &mut me, &key, &tls_key, &hub, &mut held, &mut attempt) => ended,
            () = super::settings::until_stopped(&mut stopped) => return,
        };
        service.fleet_facts(|f| f.hub = None);
        let wait = match ended {
            Ended::Lost(why) => {
                tracing::info!(hub = %hub, reason = %why, "the fleet node lost its hub; serving what it holds");
                backoff(attempt)
            }
            Ended::Refused(why) => {
                tracing::error!(hub = %hub, reason = %why, "the hub refused this node");
                MAX_BACKOFF * 2
            }
        };
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = super::settings::until_stopped(&mut stopped) => return,
        }
    }
}

/// One round with one hub: enroll when not yet enrolled, then the stream until it ends.
async fn round(
    service: &Service,
    me: &mut NodeSelf,
    key: &NodeKey,
    tls_key: &TlsKey,
    hub: &str,
    held: &mut Vec<Held>,
    attempt: &mut u32,
) -> Ended {
    if me.cert.is_none()
        && let Err(e) = enroll(service, me, key, tls_key, hub).await
    {
        return e;
    }
    let (Some(node), Some(cert)) = (me.node.clone(), me.cert.clone()) else {
        return Ended::Refused("not enrolled".to_owned());
    };
    let Ok(cert) = data_encoding::BASE64.decode(cert.as_bytes()) else {
        return Ended::Refused("the stored certificate does not parse".to_owned());
    };
    let mut tls = match connect(hub, &me.ca_pem, Some((&cert, tls_key))).await {
        Ok(t) => t,
        Err(e) => return Ended::Lost(e),
    };
    let hello = ToHub::Sync {
        since: me.since,
        held: held.clone(),
    };
    if let Err(e) = wire::write(&mut tls, &hello).await {
        return Ended::Lost(e.to_string());
    }
    service.fleet_facts(|f| f.hub = Some(hub.to_owned()));
    loop {
        let message = match tokio::time::timeout(SILENCE, wire::read::<_, ToNode>(&mut tls)).await {
            Err(_) => return Ended::Lost("the hub fell silent".to_owned()),
            Ok(Err(e)) => return Ended::Lost(e.to_string()),
            Ok(Ok(None)) => return Ended::Lost("the hub closed the stream".to_owned()),
            Ok(Ok(Some(m))) => m,
        };
        // A working stream starts the backoff over; a refusal (a hub still loading) does not.
        if !matches!(message, ToNode::Refused { .. }) {
            *attempt = 0;
        }
        match message {
            ToNode::Put {
                namespace,
                name,
                version,
                kind,
                sealed,
            } => {
                let binding = Binding {
                    node: &node,
                    namespace: &namespace,
                    name: &name,
                    version,
                };
                let opened = key.open_base64(&binding, &sealed).ok();
                let (Some(value), Ok(kind)) = (opened, kind.parse::<Kind>()) else {
                    tracing::error!(
                        "a secret from the hub does not open with this node's key; skipped"
                    );
                    continue;
                };
                let entry = Held {
                    namespace,
                    name,
                    version,
                };
                match service.fleet_put(entry.clone(), kind, value).await {
                    Ok(()) => {
                        held.retain(|h| !(h.namespace == entry.namespace && h.name == entry.name));
                        held.push(entry);
                    }
                    // A local secret of that name: kept, and the hub's skipped.
                    Err(e) if e.code() == coffer_types::ErrorCode::Conflict => {
                        tracing::error!(error = %e, "a secret from the hub is not written over a local one");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a secret from the hub could not be written");
                        return Ended::Lost("a write failed".to_owned());
                    }
                }
            }
            ToNode::Remove { namespace, name } => {
                if let Err(e) = service.fleet_remove(&namespace, &name).await {
                    tracing::error!(error = %e, "a secret the hub withdrew could not be removed");
                    return Ended::Lost("a removal failed".to_owned());
                }
                held.retain(|h| !(h.namespace == namespace && h.name == name));
            }
            ToNode::Synced { revision } => {
                let now = Timestamp::now();
                me.since = revision;
                me.last_sync = Some(now);
                if let Err(e) = service.fleet_save_self(me).await {
                    tracing::warn!(error = %e, "the fleet node cannot note where it stands");
                }
                service.fleet_facts(|f| {
                    f.last_sync = Some(now);
                    f.revision = Some(revision);
                });
            }
            ToNode::Heartbeat { revision } => {
                if revision == me.since {
                    // Nothing changed since it last caught up: it is in sync now.
                    service.fleet_facts(|f| f.last_sync = Some(Timestamp::now()));
                }
            }
            ToNode::Refused { code, message } if code == super::hub::UNAVAILABLE => {
                return Ended::Lost(message);
            }
            ToNode::Refused { code, message } => {
                return Ended::Refused(format!("{code}: {message}"));
            }
            ToNode::Enrolled { .. } | ToNode::Challenge { .. } => {
                return Ended::Lost("an unexpected message".to_owned());
            }
        }
    }
}

async fn enroll(
    service: &Service,
    me: &mut NodeSelf,
    key: &NodeKey,
    tls_key: &TlsKey,
    hub: &str,
) -> Result<(), Ended> {
    let mut tls = connect(hub, &me.ca_pem, None).await.map_err(Ended::Lost)?;
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty() && h.len() <= 253 && h.bytes().all(|b| b.is_ascii_graphic()));
    let request = ToHub::Enroll {
        token: me.token.clone(),
        key: key.public().to_text(),
        tls_key: data_encoding::BASE64URL_NOPAD.encode(&tls_key.public_raw()),
        hostname,
    };
    let answer = super::link::enroll(&mut tls, &request, key)
        .await
        .map_err(Ended::Lost)?;
    match answer {
        ToNode::Enrolled { node, cert, tags } => {
            tracing::info!(node = %node, tags = ?tags, "this node enrolled in the fleet");
            me.node = Some(node.clone());
            me.cert = Some(cert);
            me.tags = tags;
            me.token = None;
            service
                .fleet_save_self(me)
                .await
                .map_err(|e| Ended::Lost(format!("keeping the enrollment: {e}")))?;
            service.fleet_facts(|f| f.node = Some(node));
            Ok(())
        }
        ToNode::Refused { code, message } => Err(Ended::Refused(format!("{code}: {message}"))),
        _ => Err(Ended::Lost(
            "the hub did not answer the enrollment".to_owned(),
        )),
    }
}
