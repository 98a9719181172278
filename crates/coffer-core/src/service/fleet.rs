//! Gate 7 (with its validation) for the fleet's operations: join tokens, nodes, tags,
//! assignment rules, bundles and a node's enrollment. Gate 5 (`sudo` on `sys/fleet`; none
//! for an enrollment, whose join token or pre-authorized key is its credential) is in
//! `gates`. Every change is a record in the store's own namespace, written over the version
//! read (check-and-set), so two hubs changing one record never lose a change.

use std::collections::BTreeSet;
use std::sync::Arc;

use coffer_crypto::SecretBytes;
use coffer_store::{Change, Describe, SecretStore, StoreError, TagChange};
use coffer_types::{Kind, Namespace, SecretName, Timestamp};
use serde_json::json;

use super::state::{Gated, Service, blocking, invalid, stored};
use crate::access::Principal;
use crate::access::records;
use crate::fleet::{self, FleetNote, JoinToken, NodeRecord, Rule};
use crate::op::FleetOp;
use crate::{CoreError, Gate, Refusal, Reply};

/// Tries at a check-and-set change of one record before it is a `conflict`.
const TRIES: usize = 5;

fn reply(value: serde_json::Value) -> Reply {
    Reply::Fleet(Box::new(value))
}

fn not_found(what: &'static str) -> Refusal {
    Refusal::at(Gate::Store, CoreError::Store(StoreError::NotFound(what)))
}

/// Checks tags (each valid, at most [`fleet::MAX_TAGS`]).
pub(super) fn check_tags(field: &str, tags: &[String]) -> Gated<BTreeSet<String>> {
    if tags.len() > fleet::MAX_TAGS {
        return Err(invalid(format!(
            "`{field}` holds at most {} tags",
            fleet::MAX_TAGS
        )));
    }
    if tags.iter().any(|t| !fleet::valid_tag(t)) {
        return Err(invalid(format!(
            "a tag in `{field}` is 1 to 64 of a-z 0-9 . _ - (starting with a letter or digit)"
        )));
    }
    Ok(tags.iter().cloned().collect())
}

fn check_id(id: &str) -> Gated<()> {
    if !fleet::valid_id(id) {
        return Err(invalid("a node or token id is 1 to 32 of a-z 0-9"));
    }
    Ok(())
}

/// Changes the JSON record at `at` with `change` over the version read; `Ok(None)` when
/// there is none.
fn update<T, F>(
    store: &Arc<dyn SecretStore>,
    at: &str,
    what: &'static str,
    mut change: F,
) -> Result<Option<T>, CoreError>
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de>,
    F: FnMut(&mut T) -> Result<(), CoreError>,
{
    for _ in 0..TRIES {
        let Some((bytes, version)) = records::get_versioned(store, at)? else {
            return Ok(None);
        };
        let mut value: T =
            serde_json::from_slice(bytes.expose_secret()).map_err(records::malformed(what))?;
        change(&mut value)?;
        let json = SecretBytes::from_vec(records::encode(what, &value)?);
        match records::put_bytes_over(store, at, &json, Kind::Kv, Some(version)) {
            Ok(()) => return Ok(Some(value)),
            Err(CoreError::Store(StoreError::Conflict(_))) => continue,
            Err(e) => return Err(e),
        }
    }
    tracing::warn!("the {what} kept changing under the fleet's change");
    Err(CoreError::Store(StoreError::Conflict(
        "the record kept changing; try again",
    )))
}

fn node_view(n: &NodeRecord) -> serde_json::Value {
    json!({
        "id": n.id,
        "key": n.key,
        "tags": n.tags,
        "enabled": n.enabled,
        "enrolled": n.enrolled,
        "created": n.created,
        "hostname": n.hostname,
        "by": n.by,
    })
}

impl Service {
    pub(super) async fn fleet(&self, who: &Principal, op: FleetOp) -> Gated<Reply> {
        let store = self.store()?;
        let actor = who.actor();
        match op {
            FleetOp::Enroll {
                token,
                key,
                tls_key,
                hostname,
            } => self.enroll(store, token, key, tls_key, hostname).await,
            FleetOp::TokenCreate {
                tags,
                uses,
                ttl_secs,
            } => {
                let tags = check_tags("tags", &tags)?;
                if uses == 0 {
                    return Err(invalid("`uses` is at least 1"));
                }
                if ttl_secs == 0 || ttl_secs > fleet::MAX_TOKEN_TTL_SECS {
                    return Err(invalid("`ttl` is 1 second to 365 days"));
                }
                let (id, token) = fleet::mint_token().map_err(stored)?;
                let now = Timestamp::now();
                let record = JoinToken {
                    id: id.clone(),
                    hash: fleet::token_hash(token.as_bytes()),
                    tags,
                    uses,
                    expires: now.saturating_add_secs(ttl_secs),
                    created: now,
                    by: actor,
                };
                let json = records::encode("join token", &record).map_err(stored)?;
                let at = fleet::token_at(&id);
                blocking(move || records::put(&store, &at, json))
                    .await
                    .map_err(stored)?;
                Ok(reply(json!({
                    "id": id,
                    "token": token,
                    "tags": record.tags,
                    "uses": uses,
                    "expires": record.expires,
                })))
            }
            FleetOp::TokenList => {
                let tokens = blocking(move || {
                    let mut out = Vec::new();
                    for id in records::names(&store, fleet::TOKENS)? {
                        if let Some(t) =
                            records::get::<JoinToken>(&store, &fleet::token_at(&id), "join token")?
                        {
                            out.push(json!({
                                "id": t.id, "tags": t.tags, "uses": t.uses,
                                "expires": t.expires, "by": t.by,
                            }));
                        }
                    }
                    Ok(out)
                })
                .await
                .map_err(stored)?;
                Ok(reply(json!({ "tokens": tokens })))
            }
            FleetOp::TokenRevoke { id } => {
                check_id(&id)?;
                let at = fleet::token_at(&id);
                let existed = blocking(move || records::remove(&store, &at))
                    .await
                    .map_err(stored)?;
                if !existed {
                    return Err(not_found("join token"));
                }
                Ok(Reply::Done)
            }
            FleetOp::NodeAdd { key, tags } => {
                let tags = check_tags("tags", &tags)?;
                let key = coffer_fleet::NodePublic::from_text(&key)
                    .map_err(|e| invalid(e.to_string()))?
                    .to_text();
                let id = fleet::random_id(6).map_err(stored)?;
                let record = NodeRecord {
                    id: id.clone(),
                    key,
                    tags,
                    enabled: true,
                    fingerprint: None,
                    hostname: None,
                    created: Timestamp::now(),
                    enrolled: None,
                    by: actor,
                };
                let view = node_view(&record);
                blocking(move || {
                    let index = fleet::key_at(&record.key);
                    let taken = SecretBytes::from_vec(id.clone().into_bytes());
                    records::put_bytes_over(&store, &index, &taken, Kind::File, Some(0)).map_err(
                        |e| match e {
                            CoreError::Store(StoreError::Conflict(_)) => CoreError::Store(
                                StoreError::Conflict("a node with this key exists"),
                            ),
                            e => e,
                        },
                    )?;
                    let json = records::encode("node", &record)?;
                    records::put(&store, &fleet::node_at(&id), json)
                })
                .await
                .map_err(stored)?;
                Ok(reply(view))
            }
            FleetOp::NodeList => {
                let nodes = blocking(move || {
                    let mut out = Vec::new();
                    for id in records::names(&store, fleet::NODES)? {
                        if let Some(n) =
                            records::get::<NodeRecord>(&store, &fleet::node_at(&id), "node")?
                        {
                            out.push(n);
                        }
                    }
                    Ok(out)
                })
                .await
                .map_err(stored)?;
                let connected = self.fleet.connected();
                let views: Vec<_> = nodes
                    .iter()
                    .map(|n| {
                        let mut v = node_view(n);
                        v["connected"] = json!(connected.contains(&n.id));
                        v
                    })
                    .collect();
                Ok(reply(json!({ "nodes": views })))
            }
            FleetOp::NodeTag { node, add, remove } => {
                check_id(&node)?;
                let add = check_tags("add", &add)?;
                let remove = check_tags("remove", &remove)?;
                let at = fleet::node_at(&node);
                let changed = blocking(move || {
                    update::<NodeRecord, _>(&store, &at, "node", |n| {
                        n.tags.retain(|t| !remove.contains(t));
                        n.tags.extend(add.iter().cloned());
                        if n.tags.len() > fleet::MAX_TAGS {
                            return Err(CoreError::InvalidRequest(format!(
                                "a node carries at most {} tags",
                                fleet::MAX_TAGS
                            )));
                        }
                        Ok(())
                    })
                })
                .await
                .map_err(stored)?
                .ok_or_else(|| not_found("node"))?;
                self.fleet.note(FleetNote::Node(node));
                Ok(reply(node_view(&changed)))
            }
            FleetOp::NodeEnable { node, enabled } => {
                check_id(&node)?;
                let at = fleet::node_at(&node);
                let changed = blocking(move || {
                    update::<NodeRecord, _>(&store, &at, "node", |n| {
                        n.enabled = enabled;
                        Ok(())
                    })
                })
                .await
                .map_err(stored)?
                .ok_or_else(|| not_found("node"))?;
                self.fleet.note(FleetNote::Node(node));
                Ok(reply(node_view(&changed)))
            }
            FleetOp::NodeRemove { node } => {
                check_id(&node)?;
                let at = fleet::node_at(&node);
                let existed = blocking(move || {
                    let record = records::get::<NodeRecord>(&store, &at, "node")?;
                    if let Some(r) = &record {
                        records::remove(&store, &fleet::key_at(&r.key))?;
                    }
                    records::remove(&store, &at)
                })
                .await
                .map_err(stored)?;
                if !existed {
                    return Err(not_found("node"));
                }
                self.fleet.note(FleetNote::Node(node));
                Ok(Reply::Done)
            }
            FleetOp::SecretTag {
                namespace,
                name,
                add,
                remove,
            } => {
                let add: Vec<String> = check_tags("add", &add)?.into_iter().collect();
                let remove: Vec<String> = check_tags("remove", &remove)?.into_iter().collect();
                let ns = Namespace::parse(&namespace)
                    .map_err(|e| Refusal::at(Gate::Validation, CoreError::InvalidName(e)))?;
                let name = SecretName::parse(&name)
                    .map_err(|e| Refusal::at(Gate::Validation, CoreError::InvalidName(e)))?;
                if ns == Namespace::system() {
                    return Err(invalid("the store's own namespace is never sent to nodes"));
                }
                let change = Describe {
                    tags: Some(TagChange { add, remove }),
                    ..Describe::default()
                };
                let meta = blocking(move || {
                    store.describe(&ns, &name, change, Change::by(&actor))?;
                    Ok(store.metadata(&ns, &name)?)
                })
                .await
                .map_err(stored)?;
                Ok(reply(json!({
                    "namespace": meta.namespace.as_str(),
                    "name": meta.name.as_str(),
                    "tags": meta.tags,
                })))
            }
            FleetOp::Assign {
                tag,
                namespace,
                prefix,
            }
            | FleetOp::Unassign {
                tag,
                namespace,
                prefix,
            } if !fleet::valid_tag(&tag) => {
                let _ = (namespace, prefix);
                Err(invalid(
                    "a tag is 1 to 64 of a-z 0-9 . _ - (starting with a letter or digit)",
                ))
            }
            FleetOp::Assign {
                tag,
                namespace,
                prefix,
            } => {
                let rule = self.check_rule(tag, namespace, prefix)?;
                let rules = self
                    .change_rules(store, move |rules| {
                        if !rules.contains(&rule) {
                            if rules.len() >= fleet::MAX_RULES {
                                return Err(CoreError::InvalidRequest(format!(
                                    "at most {} assignment rules",
                                    fleet::MAX_RULES
                                )));
                            }
                            rules.push(rule.clone());
                            rules.sort();
                        }
                        Ok(())
                    })
                    .await?;
                Ok(reply(json!({ "rules": rules })))
            }
            FleetOp::Unassign {
                tag,
                namespace,
                prefix,
            } => {
                let rule = self.check_rule(tag, namespace, prefix)?;
                let rules = self
                    .change_rules(store, move |rules| {
                        rules.retain(|r| r != &rule);
                        Ok(())
                    })
                    .await?;
                Ok(reply(json!({ "rules": rules })))
            }
            FleetOp::Rules => {
                let rules = blocking(move || fleet_rules(&store))
                    .await
                    .map_err(stored)?;
                Ok(reply(json!({ "rules": rules })))
            }
            FleetOp::BundleCreate { tags, hubs } => self.bundle(store, &actor, tags, hubs).await,
        }
    }

    fn check_rule(&self, tag: String, namespace: String, prefix: String) -> Gated<Rule> {
        let ns = Namespace::parse(&namespace)
            .map_err(|e| Refusal::at(Gate::Validation, CoreError::InvalidName(e)))?;
        if ns == Namespace::system() {
            return Err(invalid("the store's own namespace is never sent to nodes"));
        }
        if prefix.len() > 256
            || prefix
                .bytes()
                .any(|b| !(b.is_ascii_alphanumeric() || b"._/-".contains(&b)))
        {
            return Err(invalid("a prefix is at most 256 of A-Z a-z 0-9 . _ / -"));
        }
        Ok(Rule {
            tag,
            namespace: ns.as_str().to_owned(),
            prefix,
        })
    }

    async fn change_rules(
        &self,
        store: Arc<dyn SecretStore>,
        change: impl FnMut(&mut Vec<Rule>) -> Result<(), CoreError> + Send + 'static,
    ) -> Gated<Vec<Rule>> {
        let rules = blocking(move || {
            let mut change = change;
            if records::get_versioned(&store, fleet::RULES_AT)?.is_none() {
                let empty = SecretBytes::from_vec(br#"{"rules":[]}"#.to_vec());
                match records::put_bytes_over(&store, fleet::RULES_AT, &empty, Kind::Kv, Some(0)) {
                    Ok(()) | Err(CoreError::Store(StoreError::Conflict(_))) => {}
                    Err(e) => return Err(e),
                }
            }
            update::<fleet::RulesRecord, _>(&store, fleet::RULES_AT, "assignment rules", |r| {
                change(&mut r.rules)
            })
            .map(|r| r.map(|r| r.rules).unwrap_or_default())
        })
        .await
        .map_err(stored)?;
        self.fleet.note(FleetNote::Rules);
        Ok(rules)
    }
}

/// The assignment rules (none when there are none).
pub(crate) fn fleet_rules(store: &Arc<dyn SecretStore>) -> Result<Vec<Rule>, CoreError> {
    Ok(
        records::get::<fleet::RulesRecord>(store, fleet::RULES_AT, "assignment rules")?
            .map(|r| r.rules)
            .unwrap_or_default(),
    )
}
