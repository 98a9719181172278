//! A node's enrollment, provisioning bundles, the fleet's CA, and what the service keeps in
//! memory for the fleet (`crate::fleet::FleetState`).

use std::sync::{Arc, PoisonError};

use coffer_crypto::SecretBytes;
use coffer_fleet::bundle::{Bundle, BundleSecret, Join};
use coffer_fleet::pki::{self, FleetCa};
use coffer_store::{SecretStore, StoreError};
use coffer_types::{Kind, Timestamp};
use serde_json::json;

use super::fleet::{check_tags, fleet_rules};
use super::state::{Gated, Service, blocking, invalid, stored};
use crate::access::records;
use crate::fleet::{self, Assignment, CaRecord, FleetNote, JoinToken, NodeRecord};
use crate::{CoreError, Gate, Refusal, Reply};

/// What every failed enrollment answers, whatever was wrong.
const INVALID_JOIN: &str = "invalid join token or key";

/// The most hub addresses a bundle names.
const MAX_BUNDLE_HUBS: usize = 16;

fn refused_join() -> Refusal {
    Refusal::at(
        Gate::Identity,
        CoreError::InvalidRequest(INVALID_JOIN.to_owned()),
    )
}

impl Service {
    /// The fleet's CA: read from the store, or minted by the first hub that needs it (two
    /// hubs minting at once: the first write wins and the other reads it).
    pub(crate) async fn fleet_ca(&self) -> Result<Arc<FleetCa>, CoreError> {
        if let Some(ca) = self
            .fleet
            .ca
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(ca);
        }
        let store = self.vault.store()?;
        let ca = blocking(move || {
            for _ in 0..2 {
                if let Some(r) = records::get::<CaRecord>(&store, fleet::CA_AT, "fleet CA")? {
                    return FleetCa::from_parts(&r.cert, &r.key)
                        .map_err(|e| CoreError::Integrity(e.to_string()));
                }
                let ca = FleetCa::mint().map_err(|e| CoreError::Unavailable(e.to_string()))?;
                let record = CaRecord {
                    cert: ca.cert_pem().to_owned(),
                    key: ca.key_pem(),
                };
                let json = SecretBytes::from_vec(records::encode("fleet CA", &record)?);
                match records::put_bytes_over(&store, fleet::CA_AT, &json, Kind::Kv, Some(0)) {
                    Ok(()) => return Ok(ca),
                    Err(CoreError::Store(StoreError::Conflict(_))) => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(CoreError::Unavailable(
                "the fleet CA cannot be read".to_owned(),
            ))
        })
        .await?;
        let ca = Arc::new(ca);
        *self.fleet.ca.lock().unwrap_or_else(PoisonError::into_inner) = Some(ca.clone());
        Ok(ca)
    }

    pub(super) async fn enroll(
        &self,
        store: Arc<dyn SecretStore>,
        token: Option<SecretBytes>,
        key: String,
        tls_key: Vec<u8>,
        hostname: Option<String>,
    ) -> Gated<Reply> {
        let key = coffer_fleet::NodePublic::from_text(&key)
            .map_err(|e| invalid(e.to_string()))?
            .to_text();
        if let Some(h) = &hostname
            && (h.is_empty() || h.len() > 253 || !h.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(invalid("a host name is 1 to 253 printable characters"));
        }
        // Checked before a token's use is spent on it.
        coffer_fleet::pki::check_tls_public(&tls_key).map_err(|e| invalid(e.to_string()))?;
        let ca = self.fleet_ca().await.map_err(stored)?;
        let now = Timestamp::now();
        let _turn = match token {
            Some(_) => Some(self.fleet.spending.lock().await),
            None => None,
        };
        let outcome = blocking(move || {
            let record = match token {
                Some(token) => {
                    let Some(tags) = spend_token(&store, &token)? else {
                        return Ok(None);
                    };
                    let id = fleet::random_id(6)?;
                    let taken = SecretBytes::from_vec(id.clone().into_bytes());
                    match records::put_bytes_over(
                        &store,
                        &fleet::key_at(&key),
                        &taken,
                        Kind::File,
                        Some(0),
                    ) {
                        Ok(()) => {}
                        // A key already enrolled (or pre-authorized) cannot join again.
                        Err(CoreError::Store(StoreError::Conflict(_))) => return Ok(None),
                        Err(e) => return Err(e),
                    }
                    let by = fleet::token_id(token.expose_str().unwrap_or_default())
                        .map(|id| format!("join:{id}"))
                        .unwrap_or_default();
                    NodeRecord {
                        id,
                        key: key.clone(),
                        tags,
                        enabled: true,
                        fingerprint: None,
                        hostname: None,
                        created: now,
                        enrolled: None,
                        by,
                    }
                }
                None => {
                    let Some(id) = records::get_bytes(&store, &fleet::key_at(&key))? else {
                        return Ok(None);
                    };
                    let id = String::from_utf8_lossy(id.expose_secret()).into_owned();
                    let Some(node) =
                        records::get::<NodeRecord>(&store, &fleet::node_at(&id), "node")?
                    else {
                        return Ok(None);
                    };
                    if node.fingerprint.is_some() || node.key != key {
                        return Ok(None);
                    }
                    node
                }
            };
            let cert = ca
                .issue_node(&record.id, &tls_key)
                .map_err(|e| CoreError::InvalidRequest(e.to_string()))?;
            let record = NodeRecord {
                fingerprint: Some(pki::fingerprint(&cert)),
                hostname,
                enrolled: Some(now),
                ..record
            };
            let json = SecretBytes::from_vec(records::encode("node", &record)?);
            let at = fleet::node_at(&record.id);
            let over = if record.by.starts_with("join:") {
                Some(0)
            } else {
                records::get_versioned(&store, &at)?.map(|(_, v)| v)
            };
            records::put_bytes_over(&store, &at, &json, Kind::Kv, over)?;
            Ok(Some((record, cert)))
        })
        .await
        .map_err(stored)?;
        let Some((record, cert)) = outcome else {
            return Err(refused_join());
        };
        self.fleet.note(FleetNote::Node(record.id.clone()));
        Ok(Reply::Fleet(Box::new(json!({
            "node": record.id,
            "cert": data_encoding::BASE64.encode(&cert),
            "tags": record.tags,
        }))))
    }

    pub(super) async fn bundle(
        &self,
        store: Arc<dyn SecretStore>,
        actor: &str,
        tags: Vec<String>,
        hubs: Vec<String>,
    ) -> Gated<Reply> {
        let tags = check_tags("tags", &tags)?;
        if tags.is_empty() {
            return Err(invalid("a bundle is made for at least one tag"));
        }
        if hubs.len() > MAX_BUNDLE_HUBS
            || hubs.iter().any(|h| {
                h.len() > 255 || !h.contains(':') || h.bytes().any(|b| !b.is_ascii_graphic())
            })
        {
            return Err(invalid(format!(
                "a bundle names at most {MAX_BUNDLE_HUBS} hubs, each as host:port"
            )));
        }
        let ca = self.fleet_ca().await.map_err(stored)?;
        let (id, token) = fleet::mint_token().map_err(stored)?;
        let now = Timestamp::now();
        let record = JoinToken {
            id: id.clone(),
            hash: fleet::token_hash(token.as_bytes()),
            tags: tags.clone(),
            uses: 1,
            expires: now.saturating_add_secs(fleet::MAX_TOKEN_TTL_SECS),
            created: now,
            by: actor.to_owned(),
        };
        let ca_pem = ca.cert_pem().to_owned();
        let sealed = blocking(move || {
            records::put(
                &store,
                &fleet::token_at(&id),
                records::encode("join token", &record)?,
            )?;
            let rules = fleet_rules(&store)?;
            let assignment = Assignment {
                node_tags: &tags,
                rules: &rules,
            };
            let mut secrets = Vec::new();
            for (ns, name, meta) in super::fleet_sync::live_secrets(&store)? {
                if !assignment.covers(ns.as_str(), name.as_str(), &meta.tags) {
                    continue;
                }
                let secret = match store.get(&ns, &name, None) {
                    Ok(s) => s,
                    Err(StoreError::NotFound(_) | StoreError::Gone(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                secrets.push(BundleSecret {
                    namespace: ns.as_str().to_owned(),
                    name: name.as_str().to_owned(),
                    version: secret.version.get(),
                    kind: secret.kind.as_str().to_owned(),
                    value: data_encoding::BASE64.encode(secret.value.expose_secret()),
                });
            }
            let count = secrets.len();
            let bundle = Bundle {
                tags: tags.into_iter().collect(),
                revision: store.head(),
                join: Some(Join {
                    token,
                    ca_pem,
                    hubs,
                }),
                secrets,
            };
            let (bytes, key) = bundle
                .seal()
                .map_err(|e| CoreError::Unavailable(e.to_string()))?;
            Ok((bytes, key, count))
        })
        .await
        .map_err(stored)?;
        let (bytes, key, count) = sealed;
        Ok(Reply::Fleet(Box::new(json!({
            "bundle": data_encoding::BASE64.encode(&bytes),
            "key": coffer_fleet::bundle::key_to_text(&key).trim_end(),
            "secrets": count,
        }))))
    }
}

/// Spends one use of a join token: its tags, or `None` when it is not a live token.
fn spend_token(
    store: &Arc<dyn SecretStore>,
    token: &SecretBytes,
) -> Result<Option<std::collections::BTreeSet<String>>, CoreError> {
    let Some(text) = token.expose_str() else {
        return Ok(None);
    };
    let Some(id) = fleet::token_id(text) else {
        return Ok(None);
    };
    let at = fleet::token_at(id);
    // Races are with other hubs only (this one spends in turn): a few tries settle them.
    for _ in 0..16 {
        let Some((bytes, version)) = records::get_versioned(store, &at)? else {
            return Ok(None);
        };
        let mut record: JoinToken = serde_json::from_slice(bytes.expose_secret())
            .map_err(records::malformed("join token"))?;
        let hash = SecretBytes::from_vec(fleet::token_hash(token.expose_secret()).into_bytes());
        let stored_hash = SecretBytes::from_vec(record.hash.clone().into_bytes());
        if !hash.ct_eq(&stored_hash) || record.expires <= Timestamp::now() || record.uses == 0 {
            return Ok(None);
        }
        record.uses -= 1;
        let json = SecretBytes::from_vec(records::encode("join token", &record)?);
        match records::put_bytes_over(store, &at, &json, Kind::Kv, Some(version)) {
            Ok(()) => {
                if record.uses == 0 {
                    records::remove(store, &at)?;
                }
                return Ok(Some(record.tags));
            }
            Err(CoreError::Store(StoreError::Conflict(_))) => continue,
            Err(e) => return Err(e),
        }
    }
    // Still racing: not a bad token, so not counted against the node; it tries again.
    Err(CoreError::Unavailable(
        "the join token is being spent by other enrollments; try again".to_owned(),
    ))
}
