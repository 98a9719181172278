//! The end of every request: its audit record, its line in the daemon's log when an operator
//! did something, and the counters the metrics show.
//!
//! A [`Pending`] record is started when the request arrives and filled in as the gates learn
//! who asks and where; [`Service::finish`] writes it. It owns what it needs, so it can travel
//! with the request's detached task.

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use coffer_audit::{Actor, Outcome, Record};
use coffer_types::{Action, ErrorCode, Timestamp};

use super::state::Service;
use crate::access::Principal;
use crate::op::{Candidate, Operation, Request};
use crate::{CoreError, Gate, Identity, Refusal, Reply};

/// A request's record, filled in as it passes the gates.
pub(super) struct Pending {
    identity: std::sync::Arc<Identity>,
    action: Action,
    namespace: Option<String>,
    name: Option<String>,
    accessor: Option<String>,
    actor: Option<String>,
}

/// What an operation is recorded as: its action, namespace and name (when valid).
fn label(op: &Operation) -> (Action, Option<String>, Option<String>) {
    let (namespace, name) = match op {
        Operation::Secret { target, .. } => (
            target.namespace.ok().map(|n| n.as_str().to_owned()),
            target.name.ok().map(|n| n.as_str().to_owned()),
        ),
        Operation::List { namespace, .. } | Operation::NamespaceCreate { namespace } => {
            (namespace.ok().map(|n| n.as_str().to_owned()), None)
        }
        Operation::TokenCreate(input) => (
            input
                .namespace
                .as_deref()
                .and_then(|n| coffer_types::Namespace::parse(n).ok())
                .map(|n| n.as_str().to_owned()),
            None,
        ),
        _ => (None, None),
    };
    (op.action(), namespace, name)
}

impl Pending {
    pub(super) fn new(identity: std::sync::Arc<Identity>, request: &Request) -> Self {
        let (action, namespace, name) = match request {
            Request::One(op) => label(op),
            Request::FirstMounted(readings) => match readings.first() {
                Some(c) => (c.action, Some(c.namespace.as_str().to_owned()), None),
                None => (Action::Status, None, None),
            },
        };
        Self {
            identity,
            action,
            namespace,
            name,
            accessor: None,
            actor: None,
        }
    }

    /// The namespace gate chose this reading of a mounted path.
    pub(super) fn chose(&mut self, reading: &Candidate) {
        self.action = reading.action;
        self.namespace = Some(reading.namespace.as_str().to_owned());
        self.name = coffer_types::SecretName::parse(reading.name())
            .ok()
            .map(|n| n.as_str().to_owned());
    }

    /// The chosen reading became this operation.
    pub(super) fn built(&mut self, op: &Operation) {
        (self.action, self.namespace, self.name) = label(op);
    }

    /// Who asks.
    pub(super) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The caller passed gate 2 as `principal`.
    pub(super) fn principal(&mut self, principal: &Principal) {
        self.accessor = principal.token.as_ref().map(|t| t.accessor.clone());
        self.actor = Some(principal.actor());
    }

    /// The request passed gates 3 to 6 acting in `namespace`.
    pub(super) fn admitted(&mut self, namespace: Option<&coffer_types::Namespace>) {
        if let Some(ns) = namespace {
            self.namespace = Some(ns.as_str().to_owned());
        }
    }
}

fn outcome_of(result: &Result<Reply, Refusal>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(r) if r.gate == Gate::Store => Outcome::Error,
        Err(_) => Outcome::Denied,
    }
}

impl Service {
    /// Ends a request: counts it, logs an operator's action, and writes its record. The
    /// reply is withheld (`audit_unavailable`) when the record cannot be written.
    pub(super) async fn finish(
        &self,
        pending: Pending,
        result: Result<Reply, Refusal>,
    ) -> Result<Reply, Refusal> {
        let outcome = outcome_of(&result);
        let action = pending.action;
        self.counts.add(action, outcome);
        if action.is_operator_action() {
            let actor = pending.actor.as_deref().unwrap_or("unknown");
            let namespace = pending.namespace.as_deref().unwrap_or("");
            match &result {
                Ok(_) => {
                    tracing::info!(event = "secret_action", %action, actor, namespace, outcome = "ok", "done")
                }
                Err(r) => {
                    tracing::info!(event = "secret_action", %action, actor, namespace, outcome = "refused", code = %r.error.code(), gate = %r.gate, "refused")
                }
            }
        }
        if let Err(r) = &result
            && matches!(r.error.code(), ErrorCode::Internal | ErrorCode::Integrity)
        {
            tracing::error!(%action, gate = %r.gate, error = %r.error, "request failed");
        }
        let Some(audit) = &self.audit else {
            return result;
        };
        let request_id = self.request_id();
        let who = &pending.identity;
        let record = Record {
            time: Timestamp::now(),
            request_id: Cow::Borrowed(&request_id),
            actor: Actor {
                uid: who.remote.is_none().then_some(who.uid),
                gid: who.remote.is_none().then_some(who.gid),
                pid: who.pid,
                exe: who.exe().map(Cow::Borrowed),
                addr: who.remote.map(|a| Cow::Owned(a.to_string())),
                token: pending.accessor.as_deref().map(Cow::Borrowed),
            },
            action,
            namespace: pending.namespace.as_deref().map(Cow::Borrowed),
            name: pending.name.as_deref().map(Cow::Borrowed),
            outcome,
            code: result.as_ref().err().map(|r| r.error.code()),
            gate: result.as_ref().err().map(|r| r.gate.as_str()),
        };
        // Queued now: the line is written even if this future is dropped while waiting.
        let appending = audit.append(&record);
        drop(record);
        match appending.await {
            Ok(_) => result,
            Err(e) => {
                tracing::error!(error = %e, %action, peer = %who, "a record could not be written; the reply is withheld");
                Err(Refusal::at(
                    Gate::Audit,
                    CoreError::AuditUnavailable(format!(
                        "{e}; {}",
                        if result.is_ok() && action.changes_state() {
                            "the change was carried out, but its record could not be written"
                        } else {
                            "the reply is withheld"
                        }
                    )),
                ))
            }
        }
    }

    fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.request_prefix)
    }
}
