//! What the fleet's runtimes (in `coffer-server`) ask of the service, outside any request:
//! a hub reads the registry, the secrets' catalog and the values it seals to its nodes; a
//! node reads and keeps its own record and writes what the hub sent into its own store.
//! Each secret sent or applied has its audit record (the daemon's own work).

use std::sync::Arc;

use coffer_crypto::SecretBytes;
use coffer_fleet::wire::Held;
use coffer_store::{Change, ListQuery, SecretMeta, SecretStore, StoreError, Write, WriteMode};
use coffer_types::{Action, Kind, Namespace, SecretName};

use super::state::{Service, blocking};
use crate::CoreError;
use crate::access::records;
use crate::fleet::{self, FleetNote, NodeRecord, NodeSelf, Rule};

/// The actor the fleet's writes on a node carry.
pub const FLEET_ACTOR: &str = "fleet";

/// One live secret as the hub's fan-out knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its newest version.
    pub version: u32,
    /// Its fleet tags.
    pub tags: std::collections::BTreeSet<String>,
}

/// Every live secret outside the store's own namespace, with its metadata. One read per
/// secret: the cost grows with the store.
pub(crate) fn live_secrets(
    store: &Arc<dyn SecretStore>,
) -> Result<Vec<(Namespace, SecretName, SecretMeta)>, CoreError> {
    let mut out = Vec::new();
    for ns in store.namespaces() {
        if ns == Namespace::system() || store.is_locked(&ns) {
            continue;
        }
        let mut query = ListQuery {
            limit: 1000,
            ..ListQuery::default()
        };
        loop {
            let page = store.list(&ns, &query)?;
            for name in &page.items {
                match store.metadata(&ns, name) {
                    Ok(meta) => out.push((ns.clone(), name.clone(), meta)),
                    Err(StoreError::NotFound(_) | StoreError::Gone(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
    }
    Ok(out)
}

fn entry(ns: &Namespace, name: &SecretName, meta: &SecretMeta) -> CatalogEntry {
    CatalogEntry {
        namespace: ns.as_str().to_owned(),
        name: name.as_str().to_owned(),
        version: meta.current.get(),
        tags: meta.tags.clone(),
    }
}

impl Service {
    /// Changes to the fleet's registry, for the hub's streams.
    pub fn fleet_notes(&self) -> tokio::sync::broadcast::Receiver<FleetNote> {
        self.fleet.subscribe()
    }

    /// Changes what `status` says of this daemon's place in the fleet.
    pub fn fleet_facts(&self, change: impl FnOnce(&mut coffer_types::reply::FleetFacts)) {
        self.fleet.set_facts(change);
    }

    /// The event feed's wake-ups and its newest revision, for a hub's fan-out.
    pub fn fleet_feed(&self) -> Result<(tokio::sync::watch::Receiver<u64>, u64), CoreError> {
        let store = self.vault.store()?;
        Ok((store.subscribe(), store.head()))
    }

    /// Events after `after` (at most `limit`).
    pub async fn fleet_events(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<coffer_types::ChangeEvent>>, CoreError> {
        let store = self.vault.store()?;
        if let Some(events) = store.recent_events(after, limit) {
            return Ok(events);
        }
        self.fleet.count_reads(1);
        blocking(move || Ok(store.events(after, limit)?)).await
    }

    /// Marks a node's stream open or closed here (for `fleet nodes list`).
    pub fn fleet_connected(&self, node: &str, on: bool) {
        self.fleet.set_connected(node, on);
    }

    /// A hub's TLS material: (the CA's certificate, this hub's certificate, its key), the
    /// CA minted when the fleet has none yet.
    pub async fn fleet_hub_tls(
        &self,
        hub: &str,
    ) -> Result<(String, String, SecretBytes), CoreError> {
        let ca = self.fleet_ca().await?;
        let (cert, key) = ca
            .issue_hub(hub)
            .map_err(|e| CoreError::Unavailable(e.to_string()))?;
        Ok((
            ca.cert_pem().to_owned(),
            cert,
            SecretBytes::from_string(key),
        ))
    }

    /// Every node and the assignment rules.
    pub async fn fleet_registry(&self) -> Result<(Vec<NodeRecord>, Vec<Rule>), CoreError> {
        let store = self.vault.store()?;
        let (nodes, rules) = blocking(move || {
            let mut nodes = Vec::new();
            for id in records::names(&store, fleet::NODES)? {
                if let Some(n) = records::get::<NodeRecord>(&store, &fleet::node_at(&id), "node")? {
                    nodes.push(n);
                }
            }
            Ok((nodes, super::fleet::fleet_rules(&store)?))
        })
        .await?;
        // The list, each node, the rules.
        self.fleet.count_reads(nodes.len() as u64 + 2);
        Ok((nodes, rules))
    }

    /// One node's record.
    pub async fn fleet_node(&self, id: &str) -> Result<Option<NodeRecord>, CoreError> {
        if !fleet::valid_id(id) {
            return Ok(None);
        }
        let store = self.vault.store()?;
        let at = fleet::node_at(id);
        self.fleet.count_reads(1);
        blocking(move || records::get(&store, &at, "node")).await
    }

    /// The assignment rules.
    pub async fn fleet_rules(&self) -> Result<Vec<Rule>, CoreError> {
        let store = self.vault.store()?;
        self.fleet.count_reads(1);
        blocking(move || super::fleet::fleet_rules(&store)).await
    }

    /// Every live secret's namespace, name, version and tags (one metadata read each).
    pub async fn fleet_catalog(&self) -> Result<Vec<CatalogEntry>, CoreError> {
        let store = self.vault.store()?;
        let catalog: Vec<CatalogEntry> = blocking(move || {
            Ok(live_secrets(&store)?
                .iter()
                .map(|(ns, name, meta)| entry(ns, name, meta))
                .collect())
        })
        .await?;
        // The lists, and a metadata read per secret.
        self.fleet.count_reads(catalog.len() as u64 + 1);
        Ok(catalog)
    }

    /// One secret's entry now (`None`: gone, revoked, or not a secret nodes can hold).
    pub async fn fleet_entry(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<CatalogEntry>, CoreError> {
        let (Ok(ns), Ok(name)) = (Namespace::parse(namespace), SecretName::parse(name)) else {
            return Ok(None);
        };
        if ns == Namespace::system() {
            return Ok(None);
        }
        let store = self.vault.store()?;
        self.fleet.count_reads(1);
        blocking(move || match store.metadata(&ns, &name) {
            Ok(meta) if meta.revoked.is_none() => Ok(Some(entry(&ns, &name, &meta))),
            Ok(_) | Err(StoreError::NotFound(_) | StoreError::Gone(_)) => Ok(None),
            Err(StoreError::Locked(_)) => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
    }

    /// A secret's newest readable value, to seal to nodes: (version, kind, value); `None`
    /// when it cannot be read (gone, soft-deleted, destroyed).
    pub async fn fleet_value(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<(u32, Kind, SecretBytes)>, CoreError> {
        let (Ok(ns), Ok(name)) = (Namespace::parse(namespace), SecretName::parse(name)) else {
            return Ok(None);
        };
        let store = self.vault.store()?;
        self.fleet.count_reads(1);
        blocking(move || match store.get(&ns, &name, None) {
            Ok(s) => Ok(Some((s.version.get(), s.kind, s.value))),
            Err(StoreError::NotFound(_) | StoreError::Gone(_) | StoreError::Locked(_)) => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
    }

    /// Records the daemon's own fleet work: `fleet_sync` (a hub sent a secret to a node) or
    /// `fleet_apply` (a node wrote or removed a secret the hub sent). The node's id is the
    /// record's address (`node:<id>`); the name is hashed as every name is.
    pub async fn record_fleet(
        &self,
        action: Action,
        node: &str,
        namespace: Option<&str>,
        name: Option<&str>,
        ok: bool,
    ) {
        let addr = format!("node:{node}");
        self.record_own_work(action, Some(&addr), (namespace, name), ok)
            .await;
    }

    /// Records the daemon's own work (no request asked for it), as the daemon's user and
    /// process; `addr` names whom it was for, `at` the namespace and name (hashed by the
    /// log as every name is). Its outcome is `ok` or `error`.
    pub(super) async fn record_own_work(
        &self,
        action: Action,
        addr: Option<&str>,
        at: (Option<&str>, Option<&str>),
        ok: bool,
    ) {
        use coffer_audit::{Actor, Outcome, Record};
        let outcome = if ok { Outcome::Ok } else { Outcome::Error };
        self.counts.add(action, outcome);
        let Some(audit) = &self.audit else {
            return;
        };
        let mut id = super::record::RequestId::default();
        let request_id = self.request_id(&mut id);
        let record = Record {
            time: coffer_types::Timestamp::now(),
            request_id: std::borrow::Cow::Borrowed(request_id),
            actor: Actor {
                uid: Some(nix::unistd::geteuid().as_raw()),
                gid: Some(nix::unistd::getegid().as_raw()),
                pid: i32::try_from(std::process::id()).ok(),
                exe: None,
                addr: addr.map(std::borrow::Cow::Borrowed),
                token: None,
                unit: None,
            },
            action,
            namespace: at.0.map(std::borrow::Cow::Borrowed),
            name: at.1.map(std::borrow::Cow::Borrowed),
            outcome,
            code: None,
            gate: None,
            repeated: None,
            namespace_invalid: None,
            name_invalid: None,
        };
        if let Err(e) = audit.append(&record).await {
            tracing::error!(error = %e, %action, "the record of the daemon's own work could not be written");
        }
    }

    /// A node's own record, when it has one.
    pub async fn fleet_self(&self) -> Result<Option<NodeSelf>, CoreError> {
        let store = self.vault.store()?;
        blocking(move || records::get(&store, fleet::SELF_AT, "fleet node record")).await
    }

    /// Keeps a node's own record.
    pub async fn fleet_save_self(&self, record: &NodeSelf) -> Result<(), CoreError> {
        let store = self.vault.store()?;
        let json = records::encode("fleet node record", record)?;
        blocking(move || records::put(&store, fleet::SELF_AT, json)).await
    }

    /// What a node holds from the fleet; the fleet's secrets become read-only to its
    /// local clients.
    pub async fn fleet_held(&self) -> Result<Vec<Held>, CoreError> {
        let store = self.vault.store()?;
        let held: Vec<Held> = blocking(move || {
            let held = HeldRecord::read(&store)?.held;
            // An entry whose secret is not there (a crash between the inventory's write and
            // the value's) is not claimed, so the hub sends the value again.
            Ok(held
                .into_iter()
                .filter(
                    |h| match (Namespace::parse(&h.namespace), SecretName::parse(&h.name)) {
                        (Ok(ns), Ok(name)) => store.metadata(&ns, &name).is_ok(),
                        _ => false,
                    },
                )
                .collect())
        })
        .await?;
        for h in &held {
            if let (Ok(ns), Ok(name)) = (Namespace::parse(&h.namespace), SecretName::parse(&h.name))
            {
                self.fleet.set_managed((ns, name), true);
            }
        }
        Ok(held)
    }

    /// Writes a secret the hub sent into the node's store (its namespace made when
    /// missing), and notes it held.
    pub async fn fleet_put(
        &self,
        held: Held,
        kind: Kind,
        value: SecretBytes,
    ) -> Result<(), CoreError> {
        let ns = Namespace::parse(&held.namespace).map_err(CoreError::InvalidName)?;
        let name = SecretName::parse(&held.name).map_err(CoreError::InvalidName)?;
        if ns == Namespace::system() {
            return Err(CoreError::InvalidRequest(
                "the hub sent a record of the store's own namespace".to_owned(),
            ));
        }
        let store = self.vault.store()?;
        let (n2, name2) = (ns.clone(), name.clone());
        let result = blocking(move || {
            if !store.has_namespace(&n2) {
                match store.create_namespace(&n2, Change::by(FLEET_ACTOR)) {
                    Ok(()) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            // A local secret of the same name (not one the fleet put here) is never
            // overwritten: a hub, honest or not, writes only its own. A name the fleet does
            // not hold yet is only created (the store refuses a taken one, `conflict`, even
            // one a local client made a moment ago).
            let mut inventory = HeldRecord::read(&store)?;
            let ours = inventory.has(&held.namespace, &held.name);
            if !ours {
                match store.metadata(&n2, &name2) {
                    Err(StoreError::NotFound(_) | StoreError::Gone(_)) => {}
                    Ok(_) => {
                        return Err(CoreError::Store(StoreError::Conflict(
                            "a local secret of that name exists; the fleet does not overwrite it",
                        )));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            // The inventory first: a crash between the two leaves a name held but absent,
            // which the next put repairs, never a fleet secret taken for a local one.
            inventory.forget(&held.namespace, &held.name);
            inventory.held.push(held.clone());
            inventory.write(&store)?;
            let mut write = Write::new(&value, FLEET_ACTOR);
            write.kind = Some(kind);
            write.new_kind = kind;
            if !ours {
                write.mode = WriteMode::Create;
            }
            match store.set(&n2, &name2, write) {
                Ok(_) => Ok(()),
                Err(e) => {
                    if !ours {
                        // Not ours after all (a local client won the race): not held.
                        inventory.forget(&held.namespace, &held.name);
                        inventory.write(&store)?;
                    }
                    Err(e.into())
                }
            }
        })
        .await;
        self.cache.invalidate(&(ns.clone(), name.clone()));
        if result.is_ok() {
            self.fleet.set_managed((ns.clone(), name.clone()), true);
        }
        self.record_fleet(
            Action::FleetApply,
            "self",
            Some(ns.as_str()),
            Some(name.as_str()),
            result.is_ok(),
        )
        .await;
        result
    }

    /// Removes a secret the hub no longer sends this node.
    pub async fn fleet_remove(&self, namespace: &str, name: &str) -> Result<(), CoreError> {
        let (held_ns, held_name) = (namespace.to_owned(), name.to_owned());
        let parsed = (Namespace::parse(namespace), SecretName::parse(name));
        let store = self.vault.store()?;
        let key = match &parsed {
            (Ok(ns), Ok(name)) => Some((ns.clone(), name.clone())),
            _ => None,
        };
        let k2 = key.clone();
        let result = blocking(move || {
            // Only what the fleet put here: a local secret of that name stays.
            let mut inventory = HeldRecord::read(&store)?;
            if let Some((ns, name)) = k2.as_ref().filter(|_| inventory.has(&held_ns, &held_name)) {
                match store.delete(ns, name, Change::by(FLEET_ACTOR)) {
                    Ok(()) | Err(StoreError::NotFound(_) | StoreError::Gone(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            inventory.forget(&held_ns, &held_name);
            inventory.write(&store)
        })
        .await;
        if let Some(key) = key {
            self.cache.invalidate(&key);
            self.fleet.set_managed(key, false);
        }
        self.record_fleet(
            Action::FleetApply,
            "self",
            Some(namespace),
            Some(name),
            result.is_ok(),
        )
        .await;
        result
    }
}

/// What a node holds, as stored (a `kv` record is a JSON object).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct HeldRecord {
    held: Vec<Held>,
}

impl HeldRecord {
    /// The node's inventory as stored (empty before the fleet put anything here).
    fn read(store: &Arc<dyn SecretStore>) -> Result<Self, CoreError> {
        Ok(records::get(store, fleet::HELD_AT, "fleet inventory")?.unwrap_or_default())
    }

    /// Whether the fleet put `namespace/name` here.
    fn has(&self, namespace: &str, name: &str) -> bool {
        self.held
            .iter()
            .any(|h| h.namespace == namespace && h.name == name)
    }

    /// Drops `namespace/name` from the inventory.
    fn forget(&mut self, namespace: &str, name: &str) {
        self.held
            .retain(|h| !(h.namespace == namespace && h.name == name));
    }

    fn write(&self, store: &Arc<dyn SecretStore>) -> Result<(), CoreError> {
        records::put(
            store,
            fleet::HELD_AT,
            records::encode("fleet inventory", self)?,
        )
    }
}
