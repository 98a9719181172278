//! A hub's fan-out: one task that reads the event feed once and pushes each change to the
//! streams of the nodes it concerns, from memory. It holds the registry (nodes, rules), a
//! catalog of every live secret (name, version, tags) and, per open stream, what that node
//! holds; the database is read once per change, however many nodes are connected, and the
//! per-node sealing runs on the blocking pool, spread over the cores.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use coffer_core::Service;
use coffer_core::fleet::{Assignment, FleetNote, NodeRecord, Rule};
use coffer_core::service::CatalogEntry;
use coffer_crypto::SecretBytes;
use coffer_fleet::wire::{Held, ToNode};
use coffer_fleet::{Binding, NodePublic};
use coffer_types::{Action, Kind};
use tokio::sync::{mpsc, oneshot, watch};

/// How often an idle stream hears from its hub.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(15);

/// Messages queued for one node before it counts as too slow and its stream is closed (it
/// catches up when it connects again).
pub(crate) const QUEUE: usize = 4096;

/// How long a value read for sealing is kept for other nodes asking for the same version.
const VALUE_TTL: Duration = Duration::from_secs(30);

type Key = (String, String);

/// A node's open stream, as the fan-out holds it.
pub(crate) struct Stream {
    /// Which connection (a node that reconnects replaces its older stream).
    pub conn: u64,
    /// Where its messages go.
    pub tx: mpsc::Sender<ToNode>,
    /// Closes it (the node was removed or disabled).
    pub close: watch::Sender<bool>,
    /// What it holds: name to version.
    pub held: HashMap<Key, u32>,
}

/// What a connection asks of the fan-out.
pub(crate) enum Command {
    /// A node's stream opened.
    Open {
        node: String,
        stream: Stream,
        done: oneshot::Sender<()>,
    },
    /// A node's stream closed.
    Closed { node: String, conn: u64 },
}

/// The registry as connections read it (the fan-out writes it).
#[derive(Default)]
pub(crate) struct Registry {
    /// Nodes by id.
    pub nodes: HashMap<String, NodeRecord>,
    /// Node ids by certificate fingerprint.
    pub by_fingerprint: HashMap<String, String>,
    /// Set once the registry and the catalog are loaded.
    pub ready: bool,
}

impl Registry {
    fn put(&mut self, node: NodeRecord) {
        self.nodes.retain(|_, n| n.id != node.id);
        self.by_fingerprint.retain(|_, id| id != &node.id);
        if let Some(fp) = &node.fingerprint {
            self.by_fingerprint.insert(fp.clone(), node.id.clone());
        }
        self.nodes.insert(node.id.clone(), node);
    }

    fn drop_node(&mut self, id: &str) {
        self.nodes.remove(id);
        self.by_fingerprint.retain(|_, n| n != id);
    }

    /// The enabled node whose certificate has this fingerprint.
    pub(crate) fn node_for(&self, fingerprint: &str) -> Option<&NodeRecord> {
        let id = self.by_fingerprint.get(fingerprint)?;
        self.nodes.get(id).filter(|n| n.enabled)
    }
}

/// One change to send: a put (sealed per node) or a removal.
enum Send1 {
    Put(Key),
    Remove(Key),
}

pub(crate) struct Fanout {
    service: Arc<Service>,
    pub registry: Arc<Mutex<Registry>>,
    rules: Vec<Rule>,
    catalog: HashMap<Key, CatalogEntry>,
    streams: HashMap<String, Stream>,
    revision: u64,
    values: HashMap<Key, (u32, Kind, Arc<SecretBytes>, Instant)>,
}

fn lock(r: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Fanout {
    pub(crate) fn new(service: Arc<Service>, registry: Arc<Mutex<Registry>>) -> Self {
        Self {
            service,
            registry,
            rules: Vec::new(),
            catalog: HashMap::new(),
            streams: HashMap::new(),
            revision: 0,
            values: HashMap::new(),
        }
    }

    /// Runs until the daemon stops.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let mut notes = self.service.fleet_notes();
        // Wait for an open store, then load everything.
        let mut wake = loop {
            match self.load().await {
                Ok(wake) => break wake,
                Err(e) => {
                    tracing::warn!(error = %e, "the fleet hub waits for the store");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = super::settings::until_stopped(&mut stopped) => return,
                    }
                }
            }
        };
        let mut beat = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                () = super::settings::until_stopped(&mut stopped) => break,
                changed = wake.changed() => {
                    if changed.is_err() {
                        // The store was sealed or reopened: load again.
                        match self.load().await {
                            Ok(w) => wake = w,
                            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                        }
                        continue;
                    }
                    self.follow_feed().await;
                }
                note = notes.recv() => match note {
                    Ok(note) => self.on_note(note).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        self.on_note(FleetNote::Everything).await;
                    }
                    Err(_) => {}
                },
                command = commands.recv() => match command {
                    Some(Command::Open { node, stream, done }) => {
                        self.open(node, stream).await;
                        let _ = done.send(());
                    }
                    Some(Command::Closed { node, conn }) => {
                        if self.streams.get(&node).is_some_and(|s| s.conn == conn) {
                            self.streams.remove(&node);
                            self.service.fleet_connected(&node, false);
                        }
                    }
                    None => break,
                },
                _ = beat.tick() => {
                    let revision = self.revision;
                    self.values.retain(|_, v| v.3.elapsed() < VALUE_TTL);
                    self.broadcast(&ToNode::Heartbeat { revision });
                }
            }
        }
        for (node, s) in self.streams.drain() {
            let _ = s.close.send(true);
            self.service.fleet_connected(&node, false);
        }
    }

    /// Loads the registry and the catalog; answers the feed's wake-ups.
    async fn load(&mut self) -> Result<watch::Receiver<u64>, coffer_core::CoreError> {
        let (wake, head) = self.service.fleet_feed()?;
        let (nodes, rules) = self.service.fleet_registry().await?;
        let catalog = self.service.fleet_catalog().await?;
        {
            let mut reg = lock(&self.registry);
            *reg = Registry::default();
            for n in nodes {
                reg.put(n);
            }
            reg.ready = true;
        }
        self.rules = rules;
        self.catalog = catalog
            .into_iter()
            .map(|e| ((e.namespace.clone(), e.name.clone()), e))
            .collect();
        self.revision = head;
        tracing::info!(
            nodes = lock(&self.registry).nodes.len(),
            secrets = self.catalog.len(),
            revision = head,
            "the fleet hub loaded its registry"
        );
        // Anything may have changed meanwhile: the streams of nodes removed or disabled are
        // closed, every other one is brought up to date.
        let gone: Vec<String> = {
            let reg = lock(&self.registry);
            self.streams
                .keys()
                .filter(|id| !reg.nodes.get(*id).is_some_and(|n| n.enabled))
                .cloned()
                .collect()
        };
        for id in gone {
            self.close(&id);
        }
        self.reconcile_all().await;
        Ok(wake)
    }

    /// Reads the events after the last one seen; each secret changed is read once and
    /// pushed to the streams it concerns.
    async fn follow_feed(&mut self) {
        let mut changed: BTreeSet<Key> = BTreeSet::new();
        loop {
            let events = match self.service.fleet_events(self.revision, 1000).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "the fleet hub cannot read the event feed");
                    return;
                }
            };
            let Some(last) = events.last() else { break };
            self.revision = last.revision;
            for e in &events {
                if e.action.is_secret()
                    && let Some(name) = &e.name
                {
                    changed.insert((e.namespace.clone(), name.clone()));
                }
            }
            if events.len() < 1000 {
                break;
            }
        }
        let mut sends = Vec::new();
        for key in changed {
            match self.service.fleet_entry(&key.0, &key.1).await {
                Ok(Some(entry)) => {
                    self.catalog.insert(key.clone(), entry);
                }
                Ok(None) => {
                    self.catalog.remove(&key);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the fleet hub cannot read a changed secret");
                    continue;
                }
            }
            self.values.remove(&key);
            sends.push(key);
        }
        if sends.is_empty() {
            return;
        }
        let nodes: Vec<String> = self.streams.keys().cloned().collect();
        self.push(&nodes, &sends).await;
    }

    async fn on_note(&mut self, note: FleetNote) {
        match note {
            FleetNote::Node(id) => {
                let record = match self.service.fleet_node(&id).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, node = %id, "the fleet hub cannot read a node");
                        return;
                    }
                };
                match record {
                    Some(r) if r.enabled => {
                        lock(&self.registry).put(r);
                        if self.streams.contains_key(&id) {
                            self.push(std::slice::from_ref(&id), &[]).await;
                        }
                    }
                    other => {
                        {
                            let mut reg = lock(&self.registry);
                            match other {
                                Some(r) => reg.put(r),
                                None => reg.drop_node(&id),
                            }
                        }
                        self.close(&id);
                    }
                }
            }
            FleetNote::Rules => match self.service.fleet_rules().await {
                Ok(rules) => {
                    self.rules = rules;
                    self.reconcile_all().await;
                }
                Err(e) => tracing::warn!(error = %e, "the fleet hub cannot read the rules"),
            },
            FleetNote::Everything => {
                if let Err(e) = self.load().await {
                    tracing::warn!(error = %e, "the fleet hub cannot reload its registry");
                }
            }
        }
    }

    async fn open(&mut self, node: String, stream: Stream) {
        // Checked again here: the node may have been disabled or removed since its
        // connection was admitted.
        let enabled = lock(&self.registry)
            .nodes
            .get(&node)
            .is_some_and(|n| n.enabled);
        if !enabled {
            refuse(&node, &stream);
            return;
        }
        if let Some(old) = self.streams.insert(node.clone(), stream) {
            let _ = old.close.send(true);
        }
        self.service.fleet_connected(&node, true);
        self.push(std::slice::from_ref(&node), &[]).await;
    }

    async fn reconcile_all(&mut self) {
        let nodes: Vec<String> = self.streams.keys().cloned().collect();
        self.push(&nodes, &[]).await;
    }

    /// Brings `nodes` up to date: for `keys` only, or (none given) for everything they
    /// should hold. Each value is read once for all of them.
    async fn push(&mut self, nodes: &[String], keys: &[Key]) {
        let plan = self.plan(nodes, keys);
        self.send(plan).await;
    }

    /// Per node: what to send it.
    fn plan(&self, nodes: &[String], keys: &[Key]) -> Vec<(String, Vec<Send1>)> {
        let reg = lock(&self.registry);
        let mut plan: Vec<(String, Vec<Send1>)> = Vec::new();
        for id in nodes {
            let (Some(stream), Some(record)) = (
                self.streams.get(id),
                reg.nodes.get(id).filter(|n| n.enabled),
            ) else {
                continue;
            };
            let assignment = Assignment {
                node_tags: &record.tags,
                rules: &self.rules,
            };
            let mut sends = Vec::new();
            let mut decide = |key: &Key| {
                let want = self
                    .catalog
                    .get(key)
                    .filter(|e| assignment.covers(&e.namespace, &e.name, &e.tags));
                match (want, stream.held.get(key)) {
                    (Some(e), Some(&v)) if v == e.version => {}
                    (Some(_), _) => sends.push(Send1::Put(key.clone())),
                    (None, Some(_)) => sends.push(Send1::Remove(key.clone())),
                    (None, None) => {}
                }
            };
            if keys.is_empty() {
                let mut all: BTreeSet<&Key> = self.catalog.keys().collect();
                all.extend(stream.held.keys());
                all.into_iter().for_each(&mut decide);
            } else {
                keys.iter().for_each(&mut decide);
            }
            plan.push((id.clone(), sends));
        }
        plan
    }

    /// Reads each value once, then seals and queues the messages.
    async fn send(&mut self, plan: Vec<(String, Vec<Send1>)>) {
        let wanted: BTreeSet<Key> = plan
            .iter()
            .flat_map(|(_, s)| s.iter())
            .filter_map(|s| match s {
                Send1::Put(k) => Some(k.clone()),
                Send1::Remove(_) => None,
            })
            .collect();
        for key in wanted {
            let fresh = self.values.get(&key).is_some_and(|v| {
                v.3.elapsed() < VALUE_TTL
                    && self.catalog.get(&key).is_some_and(|e| e.version == v.0)
            });
            if fresh {
                continue;
            }
            match self.service.fleet_value(&key.0, &key.1).await {
                Ok(Some((version, kind, value))) => {
                    self.values
                        .insert(key, (version, kind, Arc::new(value), Instant::now()));
                }
                Ok(None) => {
                    self.values.remove(&key);
                }
                Err(e) => tracing::warn!(error = %e, "the fleet hub cannot read a value to send"),
            }
        }
        // Seal on the blocking pool, one job per core.
        let revision = self.revision;
        let jobs: Vec<Job> = plan
            .into_iter()
            .filter_map(|(id, sends)| {
                let stream = self.streams.get_mut(&id)?;
                let key = lock(&self.registry).nodes.get(&id).map(|n| n.key.clone())?;
                let mut out = Vec::new();
                for s in sends {
                    match s {
                        Send1::Remove(k) => {
                            stream.held.remove(&k);
                            out.push(Item::Remove(k));
                        }
                        Send1::Put(k) => match self.values.get(&k) {
                            Some((version, kind, value, _)) => {
                                stream.held.insert(k.clone(), *version);
                                out.push(Item::Put(k, *version, *kind, value.clone()));
                            }
                            // Unreadable now (soft-deleted, destroyed): the node drops it.
                            None => {
                                if stream.held.remove(&k).is_some() {
                                    out.push(Item::Remove(k));
                                }
                            }
                        },
                    }
                }
                Some(Job {
                    node: id,
                    key,
                    tx: stream.tx.clone(),
                    close: stream.close.clone(),
                    items: out,
                })
            })
            .collect();
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let chunk = jobs.len().div_ceil(cores).max(1);
        let mut jobs = jobs;
        let mut handles = Vec::new();
        let mut records: Vec<(String, Key)> = Vec::new();
        for job in &jobs {
            for item in &job.items {
                if let Item::Put(k, ..) = item {
                    records.push((job.node.clone(), k.clone()));
                }
            }
        }
        while !jobs.is_empty() {
            let part: Vec<Job> = jobs.drain(..chunk.min(jobs.len())).collect();
            handles.push(tokio::task::spawn_blocking(move || {
                for job in part {
                    job.send(revision);
                }
            }));
        }
        for h in handles {
            let _ = h.await;
        }
        // The records follow the sends, off this task.
        if !records.is_empty() {
            let service = self.service.clone();
            tokio::spawn(async move {
                for (node, (ns, name)) in records {
                    service
                        .record_fleet(Action::FleetSync, &node, Some(&ns), Some(&name), true)
                        .await;
                }
            });
        }
    }

    /// Closes a removed or disabled node's stream, telling it why.
    fn close(&mut self, id: &str) {
        if let Some(s) = self.streams.remove(id) {
            refuse(id, &s);
            self.service.fleet_connected(id, false);
        }
    }

    fn broadcast(&mut self, message: &ToNode) {
        self.streams
            .retain(|node, s| match s.tx.try_send(message.clone()) {
                Ok(()) => true,
                Err(_) => {
                    tracing::warn!(node = %node, "a node is too slow; its stream is closed");
                    let _ = s.close.send(true);
                    false
                }
            });
    }
}

/// Tells a removed or disabled node's stream why it closes, and closes it.
fn refuse(id: &str, stream: &Stream) {
    tracing::info!(node = %id, "a removed or disabled node's stream is closed");
    let _ = stream.tx.try_send(ToNode::Refused {
        code: "denied".to_owned(),
        message: "this node was removed or disabled".to_owned(),
    });
    let _ = stream.close.send(true);
}

enum Item {
    Put(Key, u32, Kind, Arc<SecretBytes>),
    Remove(Key),
}

struct Job {
    node: String,
    key: String,
    tx: mpsc::Sender<ToNode>,
    close: watch::Sender<bool>,
    items: Vec<Item>,
}

impl Job {
    /// Seals each value to the node's key and queues the messages, then where it stands.
    fn send(self, revision: u64) {
        let Ok(public) = NodePublic::from_text(&self.key) else {
            tracing::error!(node = %self.node, "a node's stored key does not parse");
            let _ = self.close.send(true);
            return;
        };
        for item in self.items {
            let message = match item {
                Item::Remove((namespace, name)) => ToNode::Remove { namespace, name },
                Item::Put((namespace, name), version, kind, value) => {
                    let binding = Binding {
                        node: &self.node,
                        namespace: &namespace,
                        name: &name,
                        version,
                    };
                    match public.seal(&binding, value.expose_secret()) {
                        Ok(sealed) => ToNode::Put {
                            sealed: data_encoding::BASE64.encode(&sealed),
                            namespace,
                            name,
                            version,
                            kind: kind.as_str().to_owned(),
                        },
                        Err(e) => {
                            tracing::error!(error = %e, node = %self.node, "sealing to a node failed");
                            continue;
                        }
                    }
                }
            };
            if self.tx.try_send(message).is_err() {
                tracing::warn!(node = %self.node, "a node is too slow; its stream is closed");
                let _ = self.close.send(true);
                return;
            }
        }
        let _ = self.tx.try_send(ToNode::Synced { revision });
    }
}

/// What a node said it holds, as the fan-out keeps it.
pub(crate) fn held_map(held: Vec<Held>) -> HashMap<Key, u32> {
    held.into_iter()
        .map(|h| ((h.namespace, h.name), h.version))
        .collect()
}
