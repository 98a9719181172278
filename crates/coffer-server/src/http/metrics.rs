//! Prometheus metrics (`/v1/sys/metrics?format=prometheus`): HTTP requests by route, method
//! class and status, their latency by route, values read per namespace, the seal state, and
//! scheduled rotations (by outcome, and the time until the next one is due).
//!
//! Labels are route names (`kv.data`, `sys.health`), never paths: a secret's name never
//! becomes a label. Namespaces are labels (they are the mounts, not secrets).

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use coffer_core::Service;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: String,
}

fn latency_histogram() -> Histogram {
    // 50 us to about 3.3 s.
    Histogram::new(exponential_buckets(0.000_05, 3.0, 11))
}

/// The HTTP API's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    materializations: Family<NamespaceLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    sealed: Gauge,
    uptime: Gauge,
    audit_free: Gauge,
    audit_records: Counter,
    audit_batches: Counter,
    event_revision: Gauge,
    watchers: Gauge,
    rotations: Family<OutcomeLabels, Counter>,
    rotation_next_due: Gauge,
    webhook_deliveries: Family<OutcomeLabels, Counter>,
    webhook_pending: Gauge,
    key_rotation_done: Family<NamespaceLabels, Gauge>,
    key_rotation_total: Family<NamespaceLabels, Gauge>,
    backups: Family<OutcomeLabels, Counter>,
    backup_last: Gauge,
    backup_last_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty counters, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("coffer");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let materializations = Family::<NamespaceLabels, Counter>::default();
        let actions = Family::<ActionLabels, Counter>::default();
        let sealed = Gauge::default();
        let uptime = Gauge::default();
        let audit_free = Gauge::default();
        let audit_records = Counter::default();
        let audit_batches = Counter::default();
        let (event_revision, watchers) = (Gauge::default(), Gauge::default());
        registry.register(
            "event_revision",
            "The store's newest change event revision (events emitted since the store was made; -1 while sealed)",
            event_revision.clone(),
        );
        registry.register(
            "watchers",
            "Watchers connected (socket watch, SSE, WebSocket subscriptions)",
            watchers.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            latency.clone(),
        );
        registry.register(
            "materializations",
            "Secret values read (materialized) through any interface, by namespace",
            materializations.clone(),
        );
        registry.register(
            "requests",
            "Requests answered through any interface, by action and outcome (ok, denied, error)",
            actions.clone(),
        );
        registry.register(
            "sealed",
            "1 while the store is sealed or unavailable",
            sealed.clone(),
        );
        registry.register(
            "uptime_seconds",
            "Seconds since the HTTP API started",
            uptime.clone(),
        );
        registry.register(
            "audit_free_bytes",
            "Bytes free in the audit directory's file system (-1: unknown or no audit log)",
            audit_free.clone(),
        );
        registry.register(
            "audit_records",
            "Audit records written since the daemon started",
            audit_records.clone(),
        );
        registry.register(
            "audit_writes",
            "write(2) calls that appended audit records (records / writes is the mean batch)",
            audit_batches.clone(),
        );
        let rotations = Family::<OutcomeLabels, Counter>::default();
        let rotation_next_due = Gauge::default();
        registry.register(
            "rotations",
            "Scheduled rotations since the daemon started, by outcome (rotated, failed)",
            rotations.clone(),
        );
        registry.register(
            "rotation_next_due_seconds",
            "Seconds until the next scheduled rotation is due (0: due now; -1: none scheduled)",
            rotation_next_due.clone(),
        );
        let webhook_deliveries = Family::<OutcomeLabels, Counter>::default();
        let webhook_pending = Gauge::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts since the daemon started, by outcome (delivered, \
             retried: failed with a retry queued, failed: the last attempt failed)",
            webhook_deliveries.clone(),
        );
        registry.register(
            "webhook_pending",
            "Webhook deliveries waiting for a retry",
            webhook_pending.clone(),
        );
        let key_rotation_done = Family::<NamespaceLabels, Gauge>::default();
        let key_rotation_total = Family::<NamespaceLabels, Gauge>::default();
        registry.register(
            "key_rotation_done_versions",
            "Versions re-encrypted under the new key generation by a namespace key rotation in \
             progress (absent when none runs)",
            key_rotation_done.clone(),
        );
        registry.register(
            "key_rotation_total_versions",
            "Versions with a ciphertext in a namespace whose key rotation is in progress",
            key_rotation_total.clone(),
        );
        let (backups, backup_last, backup_last_bytes) = backup_metrics(&mut registry);
        Self {
            key_rotation_done,
            key_rotation_total,
            backups,
            backup_last,
            backup_last_bytes,
            rotations,
            rotation_next_due,
            registry,
            requests,
            latency,
            materializations,
            actions,
            sealed,
            uptime,
            audit_free,
            audit_records,
            audit_batches,
            event_revision,
            watchers,
            webhook_deliveries,
            webhook_pending,
        }
    }

    /// Counts one answered request.
    pub(crate) fn observe(&self, route: &'static str, code: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, code })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    /// The text exposition, with the service's counters brought up to date.
    pub fn render(&self, service: &Service, started: Instant) -> String {
        for (namespace, n) in service.materializations() {
            let counter = self.materializations.get_or_create(&NamespaceLabels {
                namespace: namespace.as_str().to_owned(),
            });
            counter
                .inner()
                .store(n, std::sync::atomic::Ordering::Relaxed);
        }
        for count in service.request_counts() {
            self.actions
                .get_or_create(&ActionLabels {
                    action: count.action.as_str(),
                    outcome: count.outcome,
                })
                .inner()
                .store(count.count, std::sync::atomic::Ordering::Relaxed);
        }
        self.sealed.set(i64::from(service.sealed()));
        self.uptime
            .set(i64::try_from(started.elapsed().as_secs()).unwrap_or(i64::MAX));
        self.audit_free.set(
            service
                .audit_free_bytes()
                .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        );
        self.event_revision.set(
            service
                .event_head()
                .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        );
        self.watchers
            .set(i64::try_from(service.watchers()).unwrap_or(i64::MAX));
        if let Some((records, batches)) = service.audit_written() {
            use std::sync::atomic::Ordering::Relaxed;
            self.audit_records.inner().store(records, Relaxed);
            self.audit_batches.inner().store(batches, Relaxed);
        }
        let rotation = service.rotation_stats();
        for (outcome, n) in [("rotated", rotation.rotated), ("failed", rotation.failed)] {
            self.rotations
                .get_or_create(&OutcomeLabels { outcome })
                .inner()
                .store(n, std::sync::atomic::Ordering::Relaxed);
        }
        self.rotation_next_due
            .set(rotation.next_due.map_or(-1, |due| {
                let ms = due
                    .as_millis()
                    .saturating_sub(coffer_types::Timestamp::now().as_millis());
                ms.max(0).div_euclid(1000)
            }));
        let (outcomes, pending) = service.webhooks().counts();
        for (outcome, n) in outcomes {
            self.webhook_deliveries
                .get_or_create(&OutcomeLabels { outcome })
                .inner()
                .store(n, std::sync::atomic::Ordering::Relaxed);
        }
        self.webhook_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.key_rotation_done.clear();
        self.key_rotation_total.clear();
        for p in service.key_rotations() {
            let labels = NamespaceLabels {
                namespace: p.namespace.as_str().to_owned(),
            };
            self.key_rotation_done
                .get_or_create(&labels)
                .set(i64::try_from(p.done).unwrap_or(i64::MAX));
            self.key_rotation_total
                .get_or_create(&labels)
                .set(i64::try_from(p.total).unwrap_or(i64::MAX));
        }
        let backups = service.backup_stats();
        for (outcome, n) in [("made", backups.made), ("failed", backups.failed)] {
            self.backups
                .get_or_create(&OutcomeLabels { outcome })
                .inner()
                .store(n, std::sync::atomic::Ordering::Relaxed);
        }
        self.backup_last.set(
            backups
                .last_made
                .map_or(-1, |t| t.as_millis().div_euclid(1000)),
        );
        self.backup_last_bytes
            .set(i64::try_from(backups.last_bytes).unwrap_or(i64::MAX));
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            tracing::error!("the metrics could not be encoded");
        }
        text
    }
}

/// The scheduled backups' metrics, registered.
fn backup_metrics(registry: &mut Registry) -> (Family<OutcomeLabels, Counter>, Gauge, Gauge) {
    let (backups, last, bytes) = (Family::default(), Gauge::default(), Gauge::default());
    registry.register(
        "backups",
        "Scheduled backups since the daemon started, by outcome (made, failed)",
        backups.clone(),
    );
    registry.register(
        "backup_last_made_timestamp_seconds",
        "When the last scheduled backup was made, in Unix seconds (-1: none since the start)",
        last.clone(),
    );
    registry.register(
        "backup_last_size_bytes",
        "The size of the last scheduled backup",
        bytes.clone(),
    );
    (backups, last, bytes)
}

/// The route a response answered, set by handlers whose route the router cannot name (the
/// KV mounts): `kv.data`, `kv.metadata`, ...
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteLabel(pub &'static str);

/// The label of a route the router matched: its path without `/v1/` and parameters, never a
/// name from the request.
fn label_of(matched: &str) -> &'static str {
    let path = matched.trim_start_matches("/v1/");
    match path {
        "sys/health" => "sys.health",
        "sys/seal-status" => "sys.seal-status",
        "sys/leader" => "sys.leader",
        "sys/ha-status" => "sys.ha-status",
        "sys/seal" => "sys.seal",
        "sys/unseal" => "sys.unseal",
        "sys/metrics" => "sys.metrics",
        "sys/coffer/status" => "coffer.status",
        "sys/coffer/namespaces/rotate-key" => "coffer.rotate-key",
        "sys/coffer/rotate-master" => "coffer.rotate-master",
        _ if path.starts_with("sys/mounts") || path.starts_with("sys/internal/ui/mounts") => {
            "sys.mounts"
        }
        _ if path.starts_with("sys/policies") || path.starts_with("sys/policy") => "sys.policies",
        _ if path.starts_with("sys/coffer/audit") => "coffer.audit",
        _ if path.starts_with("sys/coffer/webhooks") => "coffer.webhooks",
        _ if path.starts_with("auth/token") => "auth.token",
        _ => "other",
    }
}

/// Middleware: counts each answered request by route and status, with its latency.
pub(crate) async fn track(
    State(state): State<crate::http::state::Shared>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| label_of(m.as_str()));
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map(|l| l.0)
        .or(matched)
        .unwrap_or("other");
    state
        .metrics
        .observe(route, response.status().as_u16(), started.elapsed());
    response
}
