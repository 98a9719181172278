//! What a backend's writer thread works with, shared by the SQLite and PostgreSQL writers:
//! the jobs callers queue ([`Job`]), the answer channel of each ([`Reply`]), and a job's
//! outcome held until its batch commits ([`Done`]). A writer takes the jobs that queued up,
//! applies each in its own savepoint of one transaction, commits once, and only then answers
//! them: an acknowledged write is durable.

use std::sync::mpsc::SyncSender;

use coffer_types::Timestamp;

use crate::StoreError;
use crate::backend::{
    KeyWraps, Modified, ModifyPlan, NameHash, NamespaceId, NamespaceRow, SecretId, WritePlan,
    Written,
};
use crate::events::{EventPlan, Retention};

/// The answer channel of one job.
pub type Reply<T> = SyncSender<Result<T, StoreError>>;

/// A write for a writer thread; `R` is the backend's own kind of change (run against its
/// connection: key generations, the master key's rewrap).
pub enum Job<R> {
    /// Replaces the store header.
    Header(Vec<u8>, Reply<()>),
    /// Adds a namespace, with its event.
    Namespace(NamespaceRow, Option<EventPlan>, Reply<()>),
    /// The wraps of a namespace's key (lock, unlock, a new passphrase).
    Wraps {
        /// The namespace.
        id: NamespaceId,
        /// The wraps the row must still hold.
        from: KeyWraps,
        /// The new wraps.
        to: KeyWraps,
        /// The change's event.
        event: Option<EventPlan>,
        /// The answer.
        reply: Reply<()>,
    },
    /// An event that goes with no row change.
    Event(EventPlan, Reply<()>),
    /// [`crate::Backend::write`].
    Write {
        /// The namespace.
        namespace: NamespaceId,
        /// The secret's lookup hash.
        name: NameHash,
        /// Plans the version inside the transaction.
        plan: WritePlan,
        /// The change's event.
        event: Option<EventPlan>,
        /// The answer.
        reply: Reply<Written>,
    },
    /// [`crate::Backend::modify`].
    Modify {
        /// The namespace.
        namespace: NamespaceId,
        /// The secret's lookup hash.
        name: NameHash,
        /// Plans the change inside the transaction.
        plan: ModifyPlan,
        /// The change's event.
        event: Option<EventPlan>,
        /// The answer.
        reply: Reply<Option<Modified>>,
    },
    /// [`crate::Backend::delete`].
    Delete {
        /// The namespace.
        namespace: NamespaceId,
        /// The secret's lookup hash.
        name: NameHash,
        /// The change's event.
        event: Option<EventPlan>,
        /// The answer.
        reply: Reply<Option<SecretId>>,
    },
    /// [`crate::Backend::prune_events`].
    Prune {
        /// What is kept.
        retention: Retention,
        /// The time it is judged at.
        now: Timestamp,
        /// The answer: how many were dropped.
        reply: Reply<u64>,
    },
    /// The backend's own change, in its own savepoint: answers a count.
    Run {
        /// The change.
        run: R,
        /// The answer.
        reply: Reply<u64>,
    },
}

impl<R> Job<R> {
    /// Answers the job with `err`, unapplied. A caller that gave up waiting has dropped its
    /// receiver: there is nothing to tell it.
    pub fn reject(self, err: StoreError) {
        match self {
            Self::Header(_, r) | Self::Namespace(_, _, r) | Self::Event(_, r) => {
                drop(r.send(Err(err)));
            }
            Self::Wraps { reply, .. } => drop(reply.send(Err(err))),
            Self::Prune { reply, .. } | Self::Run { reply, .. } => drop(reply.send(Err(err))),
            Self::Write { reply, .. } => drop(reply.send(Err(err))),
            Self::Modify { reply, .. } => drop(reply.send(Err(err))),
            Self::Delete { reply, .. } => drop(reply.send(Err(err))),
        }
    }
}

/// A job's outcome, held until the batch commits.
pub enum Done {
    /// A header, namespace, wraps or event job.
    Unit(Reply<()>, Result<(), StoreError>),
    /// A prune or the backend's own change.
    Count(Reply<u64>, Result<u64, StoreError>),
    /// A write.
    Written(Reply<Written>, Result<Written, StoreError>),
    /// A modification.
    Modified(
        Reply<Option<Modified>>,
        Result<Option<Modified>, StoreError>,
    ),
    /// A deletion.
    Deleted(
        Reply<Option<SecretId>>,
        Result<Option<SecretId>, StoreError>,
    ),
}

impl Done {
    /// Whether the job failed (its savepoint was rolled back, its event not kept).
    pub fn failed(&self) -> bool {
        matches!(
            self,
            Self::Unit(_, Err(_))
                | Self::Count(_, Err(_))
                | Self::Written(_, Err(_))
                | Self::Modified(_, Err(_))
                | Self::Deleted(_, Err(_))
        )
    }

    /// The same outcome, turned into `err` if it had succeeded (its batch did not commit).
    pub fn fail_if_ok(self, err: impl Fn() -> StoreError) -> Self {
        match self {
            Self::Unit(r, Ok(())) => Self::Unit(r, Err(err())),
            Self::Count(r, Ok(_)) => Self::Count(r, Err(err())),
            Self::Written(r, Ok(_)) => Self::Written(r, Err(err())),
            Self::Modified(r, Ok(_)) => Self::Modified(r, Err(err())),
            Self::Deleted(r, Ok(_)) => Self::Deleted(r, Err(err())),
            other => other,
        }
    }

    /// Answers the caller.
    pub fn send(self) {
        match self {
            Self::Unit(r, v) => drop(r.send(v)),
            Self::Count(r, v) => drop(r.send(v)),
            Self::Written(r, v) => drop(r.send(v)),
            Self::Modified(r, v) => drop(r.send(v)),
            Self::Deleted(r, v) => drop(r.send(v)),
        }
    }
}
