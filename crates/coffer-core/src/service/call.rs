//! The request path: [`Service::call`] and [`Service::call_mounted`], and the end of a
//! daemon's life ([`Service::drain`]).

use std::sync::Arc;

use super::gates::Admitted;
use super::record::Pending;
use super::state::Service;
use crate::access::Principal;
use crate::op::{Candidate, Operation, Request};
use crate::{Caller, CoreError, Gate, Identity, Refusal, Reply};

impl Service {
    /// Carries out one operation from `caller` through every gate, and records it.
    ///
    /// The answer is the reply, or the refusal with the gate that gave it. Dropping the
    /// returned future (the client went away) does not stop a request that passed the
    /// gates: its work and its record complete in their own task.
    pub async fn call(self: &Arc<Self>, caller: Caller, op: Operation) -> Result<Reply, Refusal> {
        self.run(caller, Request::One(op)).await.1
    }

    /// Carries out the first of `candidates` whose namespace exists (an HTTP path whose
    /// mount is not known before the gates), as [`Service::call`] does one operation.
    /// Answers which candidate it was, once the namespace gate chose one.
    pub async fn call_mounted(
        self: &Arc<Self>,
        caller: Caller,
        candidates: Vec<Candidate>,
    ) -> (Option<usize>, Result<Reply, Refusal>) {
        self.run(caller, Request::FirstMounted(candidates)).await
    }

    async fn run(
        self: &Arc<Self>,
        caller: Caller,
        request: Request,
    ) -> (Option<usize>, Result<Reply, Refusal>) {
        let Some(action) = request.action() else {
            return (
                None,
                Err(Refusal::at(
                    Gate::Validation,
                    CoreError::InvalidRequest("the request names no operation".to_owned()),
                )),
            );
        };
        if let Some(audit) = &self.audit
            && let Err(e) = audit.ready()
        {
            tracing::error!(error = %e, %action, peer = %caller.identity, "request refused: the audit log cannot be written");
            return (
                None,
                Err(Refusal::at(
                    Gate::Audit,
                    CoreError::AuditUnavailable(e.to_string()),
                )),
            );
        }
        if let Some(refusal) = self.audit_gap(action, &caller.identity) {
            return (None, Err(refusal));
        }
        let (_entered, stopping) = self.inflight.enter();
        let pending = Pending::new(caller.identity, &request);
        if stopping {
            let refusal = Refusal::at(Gate::Seal, CoreError::Stopping);
            return (None, self.finish(pending, Err(refusal)).await);
        }
        let token = caller.token;
        if self.identity_waits() {
            // The first request after a seal or an unseal loads policies and tokens from the
            // store before its caller can be known: that wait could be cut short by a client
            // going away, so the whole request runs in a task of its own.
            let this = Arc::clone(self);
            let work = self
                .tasks
                .spawn(async move { this.gated(pending, token, request).await });
            return work
                .await
                .unwrap_or_else(|e| (None, Err(task_failed(action, &e))));
        }
        self.gated(pending, token, request).await
    }

    /// The refusal while the audit log's check found a gap no operator has acknowledged
    /// (every request but the acknowledgement; no record can be written until then).
    fn audit_gap(&self, action: coffer_types::Action, peer: &Identity) -> Option<Refusal> {
        let audit = self.audit.as_ref()?;
        if action == coffer_types::Action::AuditAcknowledge {
            return None;
        }
        let missing = audit.gap()?;
        tracing::error!(%action, %peer, "request refused: the audit log does not match its checkpoint; run `coffer audit acknowledge`");
        Some(Refusal::at(Gate::Audit, CoreError::AuditTampered(missing)))
    }

    /// Gates 1 to 7 and the record. Up to gate 7 nothing waits (the caller's policies and
    /// tokens are loaded, see `run`), so a request cannot be cut between arriving and its
    /// record being queued; a cached read is answered in place, and anything else runs in a
    /// task of its own.
    async fn gated(
        self: &Arc<Self>,
        mut pending: Pending,
        token: Option<coffer_crypto::SecretBytes>,
        request: Request,
    ) -> (Option<usize>, Result<Reply, Refusal>) {
        let action = request.action().unwrap_or(coffer_types::Action::Status);
        // Gate 0: the peer, before anything about the request is looked at.
        if let Err(refusal) = self.peer_gate(pending.identity(), &request) {
            return (None, self.finish(pending, Err(refusal)).await);
        }
        // Gates 1 and 2. (Only flags of the request are passed across the wait below: its
        // readings need not be `Sync`.)
        // An unseal by key, an AppRole login and an unwrap carry their own credential, not
        // a token.
        let logs_in = request.logs_in();
        let how = (request.runs_sealed(), request.unseals_by_key() || logs_in);
        let identified = self.identify(pending.identity(), how, token.as_ref()).await;
        drop(token);
        let (principal, store) = match identified {
            Ok(p) => p,
            Err(refusal) => {
                if refusal.gate == Gate::Identity {
                    self.peers.failed(pending.identity());
                }
                return (None, self.finish(pending, Err(refusal)).await);
            }
        };
        // The first request after an unseal gave the audit log its keys just now (gate 1),
        // and so ran its check against the checkpoint: a gap it found refuses this request
        // too, before anything reaches the store (a change must never be committed while
        // its record cannot be written).
        if let Some(refusal) = self.audit_gap(action, pending.identity()) {
            return (None, Err(refusal));
        }
        pending.principal(&principal);
        // Gates 3 to 6: no waiting, no store work.
        let (admitted, chosen) = match self.admit(&principal, store, request, &mut pending) {
            Ok(a) => a,
            Err((refusal, chosen)) => return (chosen, self.finish(pending, Err(refusal)).await),
        };
        pending.admitted(admitted.namespace());
        // Gate 7. A cached value is answered in place; anything else runs in its own task.
        let admitted = match self.inline(admitted) {
            Ok(reply) => return (chosen, self.finish(pending, Ok(reply)).await),
            Err(admitted) => admitted,
        };
        let this = Arc::clone(self);
        let work = self.tasks.spawn(async move {
            let result = this.execute(principal, admitted).await;
            if logs_in && matches!(&result, Err(r) if r.gate == Gate::Identity) {
                // A wrong role-id, secret-id or wrapping token counts as a bad token does:
                // enough of them back the peer off.
                this.peers.failed(pending.identity());
            }
            this.finish(pending, result).await
        });
        let result = work.await.unwrap_or_else(|e| Err(task_failed(action, &e)));
        (chosen, result)
    }

    async fn execute(&self, principal: Principal, admitted: Admitted) -> Result<Reply, Refusal> {
        match admitted {
            Admitted::Secret(secret) => self.secret(&principal, secret).await,
            Admitted::List(list) => self.list(list).await,
            Admitted::Daemon(op) => Box::pin(self.admin(&principal, op)).await,
            Admitted::Done(reply, _) => Ok(reply),
            Admitted::Watch(work) => self.watch(&principal, work).await,
        }
    }

    /// At shutdown, after the listeners stopped taking connections: refuses requests that
    /// still arrive (`store_unavailable`, recorded), and waits for every request already in
    /// the service, the ones running detached from their vanished clients included, to end
    /// with its record. Then the store can be sealed and the audit log closed.
    pub async fn drain(&self) {
        self.inflight.close().await;
        self.tasks.close();
        self.tasks.wait().await;
        self.summarize(true).await;
    }

    /// Gate 0: the peer is within its rate and not backed off; an unseal attempt while
    /// sealed is within the peer's and the daemon's budgets.
    fn peer_gate(&self, who: &Identity, request: &Request) -> Result<(), Refusal> {
        let limited = || Err(Refusal::at(Gate::Peer, CoreError::RateLimited));
        if !self.peers.admit(who) {
            return limited();
        }
        if request.logs_in() && !self.peers.may_identify(who) {
            return limited();
        }
        if matches!(request, Request::One(Operation::Unseal { .. }))
            && self.sealed()
            && !self.peers.unseal(who)
        {
            return limited();
        }
        Ok(())
    }

    /// Gates 0 and 2 alone, for a listener that must know whether to read a request's
    /// body at all (HTTP: a body is read only for a caller whose token is good). A refusal
    /// is recorded (as `action`, the most the request could be) and counted against the
    /// peer like any other; `Ok` records nothing, the request itself will be.
    pub async fn vouch(
        self: &Arc<Self>,
        caller: &Caller,
        action: coffer_types::Action,
    ) -> Result<(), Refusal> {
        let who = &caller.identity;
        if matches!(
            action,
            coffer_types::Action::Unseal
                | coffer_types::Action::ApproleLogin
                | coffer_types::Action::Unwrap
                | coffer_types::Action::WrapLookup
                | coffer_types::Action::Rewrap
        ) {
            // Its body is the credential, not a token; its attempts have their own budget
            // at gate 0 of the request itself.
            return Ok(());
        }
        let refusal = if !self.peers.may_identify(who) {
            Refusal::at(Gate::Peer, CoreError::RateLimited)
        } else if self.sealed() || self.identity_waits() {
            // Sealed (gate 1 refuses first), or policies and tokens not loaded yet (just
            // unsealed): the request's own gates decide.
            return Ok(());
        } else {
            match self.recognize(who, caller.token.as_ref()) {
                Ok(_) => return Ok(()),
                Err(refusal) => {
                    self.peers.failed(who);
                    refusal
                }
            }
        };
        let (_entered, _) = self.inflight.enter();
        let pending = Pending::labelled(Arc::clone(who), action);
        self.finish(pending, Err(refusal)).await.map(drop)
    }
}

fn task_failed(action: coffer_types::Action, e: &tokio::task::JoinError) -> Refusal {
    tracing::error!(error = %e, %action, "a request's task failed");
    Refusal::at(
        Gate::Store,
        CoreError::Unavailable("the request's task failed".to_owned()),
    )
}
