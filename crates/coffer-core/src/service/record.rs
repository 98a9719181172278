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
    /// The lengths of an invalid namespace and name: all a record keeps of them.
    invalid: (Option<usize>, Option<usize>),
    /// Who passed gate 2 (shares the token's record).
    principal: Option<Principal>,
}

/// The lengths of the namespace and the name an operation gave, where they did not parse.
fn invalid_lengths(op: &Operation) -> (Option<usize>, Option<usize>) {
    match op {
        Operation::Secret { target, .. } => {
            (target.namespace.invalid_len(), target.name.invalid_len())
        }
        Operation::List { namespace, .. }
        | Operation::NamespaceCreate { namespace, .. }
        | Operation::NamespaceRotateKey { namespace }
        | Operation::NamespaceLock { namespace }
        | Operation::NamespaceUnlock { namespace, .. }
        | Operation::NamespacePassphrase { namespace, .. } => (namespace.invalid_len(), None),
        _ => (None, None),
    }
}

/// What an operation is recorded as: its action, namespace and name (when valid).
fn label(op: &Operation) -> (Action, Option<String>, Option<String>) {
    let (namespace, name) = match op {
        Operation::Secret { target, .. } => (
            target.namespace.ok().map(|n| n.as_str().to_owned()),
            target.name.ok().map(|n| n.as_str().to_owned()),
        ),
        Operation::List { namespace, .. }
        | Operation::NamespaceCreate { namespace, .. }
        | Operation::NamespaceRotateKey { namespace }
        | Operation::NamespaceLock { namespace }
        | Operation::NamespaceUnlock { namespace, .. }
        | Operation::NamespacePassphrase { namespace, .. } => {
            (namespace.ok().map(|n| n.as_str().to_owned()), None)
        }
        // The token acted on, by accessor (well-formed ones only: a record never keeps
        // arbitrary input).
        Operation::TokenRevoke { accessor }
        | Operation::TokenRevokeOrphan { accessor }
        | Operation::TokenRenew { accessor }
        | Operation::TokenLookup {
            accessor: Some(accessor),
        } => (
            None,
            crate::access::token::is_accessor(accessor).then(|| accessor.clone()),
        ),
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
        let invalid = match request {
            Request::One(op) => invalid_lengths(op),
            Request::FirstMounted(_) => (None, None),
        };
        Self {
            identity,
            action,
            namespace,
            name,
            invalid,
            principal: None,
        }
    }

    /// A record for a request known only by what it could at most do (refused before it
    /// was read whole).
    pub(super) fn labelled(identity: std::sync::Arc<Identity>, action: Action) -> Self {
        Self {
            identity,
            action,
            namespace: None,
            name: None,
            invalid: (None, None),
            principal: None,
        }
    }

    /// The namespace gate chose this reading of a mounted path.
    pub(super) fn chose(&mut self, reading: &Candidate) {
        self.action = reading.action;
        self.namespace = Some(reading.namespace.as_str().to_owned());
        (self.name, self.invalid) = match coffer_types::SecretName::parse(reading.name()) {
            Ok(n) => (Some(n.as_str().to_owned()), (None, None)),
            // A prefix (a folder list) may be empty; that is not an invalid name.
            Err(_) if reading.name().is_empty() => (None, (None, None)),
            Err(_) => (None, (None, Some(reading.name().len()))),
        };
    }

    /// The chosen reading became this operation.
    pub(super) fn built(&mut self, op: &Operation) {
        (self.action, self.namespace, self.name) = label(op);
        self.invalid = invalid_lengths(op);
    }

    /// Who asks.
    pub(super) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The caller passed gate 2 as `principal`.
    pub(super) fn principal(&mut self, principal: &Principal) {
        self.principal = Some(principal.clone());
    }

    /// The accessor of the token the caller acted through.
    fn accessor(&self) -> Option<&str> {
        let token = self.principal.as_ref()?.token.as_ref()?;
        Some(&token.accessor)
    }

    /// The request passed gates 3 to 6 acting in `namespace`.
    pub(super) fn admitted(&mut self, namespace: Option<&coffer_types::Namespace>) {
        if let Some(ns) = namespace
            && self.namespace.as_deref() != Some(ns.as_str())
        {
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
        mut pending: Pending,
        result: Result<Reply, Refusal>,
    ) -> Result<Reply, Refusal> {
        // A wrapped answer is known by its accessor only once the wrapping token was looked
        // up: the record names it then (never the token), so an unwrap can be traced to
        // its wrap.
        if pending.name.is_none()
            && let Ok(Reply::Wrapped(wrapped)) = &result
        {
            pending.name = Some(match &**wrapped {
                crate::WrapReply::Token { record, .. } | crate::WrapReply::Record(record) => {
                    record.accessor.clone()
                }
                crate::WrapReply::Response { accessor, .. } => accessor.clone(),
            });
        }
        let outcome = outcome_of(&result);
        let action = pending.action;
        self.counts.add(action, outcome);
        if action.is_operator_action() {
            let actor = pending.principal.as_ref().map(Principal::actor);
            let actor = actor.as_deref().unwrap_or("unknown");
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
        // Refusals past the first few of a kind from one peer in a window are counted into
        // the window's summary instead of being recorded one by one.
        let (alone, closed) = match &result {
            Err(r) if outcome == Outcome::Denied => {
                self.peers
                    .condense(&pending.identity, action, r.error.code(), r.gate.as_str())
            }
            _ => (true, None),
        };
        if !alone {
            if let Some(s) = closed {
                self.write_summary(audit, s).await;
            }
            self.summarize(false).await;
            return result;
        }
        let mut request_id = RequestId::default();
        let request_id = self.request_id(&mut request_id);
        let mut pending = pending;
        if let Ok(Reply::TokenCreated { record, .. }) = &result {
            // The new token, by accessor (its creator is the actor).
            pending.name = Some(record.accessor.clone());
        }
        let who = &pending.identity;
        let record = Record {
            time: Timestamp::now(),
            request_id: Cow::Borrowed(request_id),
            actor: Actor {
                uid: who.remote.is_none().then_some(who.uid),
                gid: who.remote.is_none().then_some(who.gid),
                pid: who.pid,
                exe: who.exe().map(Cow::Borrowed),
                addr: who.remote.map(|a| Cow::Owned(a.to_string())),
                token: pending.accessor().map(Cow::Borrowed),
                unit: who.unit.as_deref().map(Cow::Borrowed),
            },
            action,
            namespace: pending.namespace.as_deref().map(Cow::Borrowed),
            name: pending.name.as_deref().map(Cow::Borrowed),
            outcome,
            code: result.as_ref().err().map(|r| r.error.code()),
            gate: result.as_ref().err().map(|r| r.gate.as_str()),
            repeated: None,
            namespace_invalid: pending.invalid.0,
            name_invalid: pending.invalid.1,
        };
        // Queued now: the line is written even if this future is dropped while waiting.
        let appending = audit.append(&record);
        // Tokens revoked with the one asked for (its descendants): a record each, naming it.
        let cascade: Vec<_> = match &result {
            Ok(Reply::TokensRevoked(all)) => all
                .iter()
                .skip(1)
                .map(|accessor| {
                    let mut with = record.clone();
                    with.name = Some(Cow::Borrowed(accessor.as_str()));
                    audit.append(&with)
                })
                .collect(),
            _ => Vec::new(),
        };
        drop(record);
        let written = appending.await;
        for line in cascade {
            if let Err(e) = line.await {
                tracing::error!(error = %e, "the record of a token revoked with its parent could not be written");
            }
        }
        if let Some(s) = closed {
            self.write_summary(audit, s).await;
        }
        self.summarize(false).await;
        match written {
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

    /// Writes the summaries of refusal windows that ended (`all`: of every window, at
    /// shutdown).
    pub(super) async fn summarize(&self, all: bool) {
        let Some(audit) = &self.audit else {
            return;
        };
        for s in self.peers.ended(all) {
            self.write_summary(audit, s).await;
        }
    }

    /// One summary record: `count` more refusals of one kind from one peer.
    async fn write_summary(&self, audit: &coffer_audit::AuditLog, s: crate::bounds::Summary) {
        let mut request_id = RequestId::default();
        let request_id = self.request_id(&mut request_id);
        let who = &s.who;
        let record = Record {
            time: Timestamp::now(),
            request_id: Cow::Borrowed(request_id),
            actor: Actor {
                uid: who.remote.is_none().then_some(who.uid),
                gid: who.remote.is_none().then_some(who.gid),
                pid: None,
                exe: None,
                addr: who.remote.map(|a| Cow::Owned(a.ip().to_string())),
                token: None,
                unit: who.unit.as_deref().map(Cow::Borrowed),
            },
            action: s.action,
            namespace: None,
            name: None,
            outcome: Outcome::Denied,
            code: Some(s.code),
            gate: Some(s.gate),
            repeated: Some(s.count),
            namespace_invalid: None,
            name_invalid: None,
        };
        let appending = audit.append(&record);
        drop(record);
        if let Err(e) = appending.await {
            tracing::error!(error = %e, count = s.count, "a summary of refusals could not be recorded");
        }
    }

    /// The next request's id, `<prefix>-<n in hex>`, written into `buf` (no allocation).
    pub(super) fn request_id<'b>(&self, buf: &'b mut RequestId) -> &'b str {
        use std::io::Write as _;
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let mut at = std::io::Cursor::new(&mut buf.0[..]);
        // The prefix is 8 hex digits (see `Service::new`) and n at most 16: 25 bytes fit
        // in the 48; a longer prefix would be cut at a byte boundary of ASCII text.
        let _ = write!(at, "{}-{n:x}", self.request_prefix);
        let len = usize::try_from(at.position()).unwrap_or(0);
        std::str::from_utf8(&buf.0[..len]).unwrap_or("")
    }
}

/// Room for a request id on the stack.
pub(super) struct RequestId([u8; 48]);

impl Default for RequestId {
    fn default() -> Self {
        Self([0; 48])
    }
}

/// What the daemon did by itself (a scheduled rotation, a scheduled backup), for its record.
pub(super) struct OwnWork<'a> {
    pub action: Action,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub outcome: Outcome,
    pub code: Option<ErrorCode>,
    pub gate: Option<&'static str>,
}

impl Service {
    /// The audit record of work the daemon did by itself: the daemon is the actor (its uid,
    /// gid, pid and executable). `what` names the work in the error logged when the record
    /// cannot be written.
    pub(super) async fn record_own(&self, work: OwnWork<'_>, what: &'static str) {
        let Some(audit) = &self.audit else {
            return;
        };
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("{}-{n:x}", self.request_prefix);
        let exe = std::env::current_exe().ok();
        let record = Record {
            time: Timestamp::now(),
            request_id: Cow::Owned(request_id),
            actor: Actor {
                uid: Some(nix::unistd::geteuid().as_raw()),
                gid: Some(nix::unistd::getegid().as_raw()),
                pid: i32::try_from(std::process::id()).ok(),
                exe: exe.map(Cow::Owned),
                addr: None,
                token: None,
                unit: None,
            },
            action: work.action,
            namespace: work.namespace.map(Cow::Borrowed),
            name: work.name.map(Cow::Borrowed),
            outcome: work.outcome,
            code: work.code,
            gate: work.gate,
            repeated: None,
            namespace_invalid: None,
            name_invalid: None,
        };
        let appending = audit.append(&record);
        drop(record);
        if let Err(e) = appending.await {
            tracing::error!(error = %e, work = what, "the record of the daemon's own work could not be written");
        }
    }
}
