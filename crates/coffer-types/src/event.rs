//! Change events: what the event feed, `watch`, the HTTP event streams and webhooks carry.
//!
//! An event says what changed, where, when and by whom; never a value. Its `revision` is one
//! increasing number per store, written in the same transaction as the change, so a consumer
//! that stopped at revision `r` resumes with `since = r` and misses nothing.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

string_enum! {
    /// What a change did. The string is the event's `action` and a webhook's event type.
    pub enum EventAction {
        /// A value was written (`set`, a KV write).
        Written = "secret.written",
        /// A KV value was merge-patched.
        Patched = "secret.patched",
        /// A value was minted for a new secret.
        Generated = "secret.generated",
        /// A new version replaced the current one (`rotate`, or the rotation scheduler).
        Rotated = "secret.rotated",
        /// A scheduled rotation's hook failed: its pending version was dropped.
        RotationFailed = "secret.rotation_failed",
        /// Metadata changed (description, version limit, custom metadata, rotation policy).
        Described = "secret.described",
        /// Versions were soft-deleted (KV v2 `delete`).
        Deleted = "secret.deleted",
        /// Soft-deleted versions were made readable again.
        Undeleted = "secret.undeleted",
        /// Versions' ciphertexts were erased for good.
        Destroyed = "secret.destroyed",
        /// The secret was revoked (kept for audit, unreadable).
        Revoked = "secret.revoked",
        /// The secret and all its versions were removed (`del`, KV metadata delete).
        Removed = "secret.removed",
        /// A namespace was created.
        NamespaceCreated = "namespace.created",
        /// A namespace key rotation started: new writes use a new key generation.
        NamespaceKeyRotating = "namespace.key_rotating",
        /// A namespace key rotation completed: every version is under the new generation
        /// and the older one is forgotten.
        NamespaceKeyRotated = "namespace.key_rotated",
        /// The store's master key was replaced (`coffer rotate-master`).
        MasterKeyRotated = "store.master_rotated",
        /// A namespace was locked: its key forgotten until it is unlocked.
        NamespaceLocked = "namespace.locked",
        /// A namespace was unlocked with its passphrase.
        NamespaceUnlocked = "namespace.unlocked",
        /// A namespace's passphrase was set or changed.
        NamespacePassphrase = "namespace.passphrase",
        /// The run-time policies or bindings changed.
        PolicyChanged = "policy.changed",
        /// A token was made.
        TokenCreated = "token.created",
        /// A token was revoked.
        TokenRevoked = "token.revoked",
        /// A backup of the store was made (on request or on schedule).
        BackupMade = "backup.made",
        /// A scheduled backup failed.
        BackupFailed = "backup.failed",
    }
    /// An event action word that is not one of coffer's.
    error UnknownEventAction = "unknown event action";
}

impl EventAction {
    /// Whether the event is about one secret (it carries its name).
    pub fn is_secret(self) -> bool {
        self.as_str().starts_with("secret.")
    }
}

/// One change. Holds no value, and no token: `actor` is `uid:N` or `token:<accessor>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// The store's revision after this change: one more than the change before it.
    pub revision: u64,
    /// When the change was made.
    pub time: Timestamp,
    /// The namespace changed (the store's own for policies and tokens).
    pub namespace: String,
    /// The secret's name; a policy's or a token accessor's for those; none for a namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The secret's version after the change (the one written, or its current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The versions a delete, undelete or destroy touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<u32>,
    /// What happened.
    pub action: EventAction,
    /// Who did it: `uid:N`, `token:<accessor>`, or `coffer` for the daemon's own work.
    pub actor: String,
}

/// A line of a socket `watch` stream: where it starts, an event, or a heartbeat. Each
/// carries `"ok": true`, as every successful reply on the socket does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WatchLine {
    /// A change: the event's fields beside `ok`.
    Event {
        /// Always true.
        ok: bool,
        /// The event.
        #[serde(flatten)]
        event: ChangeEvent,
    },
    /// Nothing happened for a while.
    Heartbeat {
        /// Always true.
        ok: bool,
        /// Always true.
        heartbeat: bool,
        /// The last revision the watcher has read.
        revision: u64,
    },
    /// The first line: the watch began after `revision` (resume from here).
    Started {
        /// Always true.
        ok: bool,
        /// The revision the watch starts after.
        revision: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_back_and_names_its_action() {
        let e = ChangeEvent {
            revision: 7,
            time: Timestamp::from_millis(1_700_000_000_000),
            namespace: "default".into(),
            name: Some("app/db".into()),
            version: Some(3),
            versions: vec![],
            action: EventAction::Rotated,
            actor: "uid:0".into(),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains(r#""action":"secret.rotated""#), "{text}");
        assert!(!text.contains("versions"), "{text}");
        let back: ChangeEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back, e);
        assert!(EventAction::Rotated.is_secret());
        assert!(!EventAction::NamespaceCreated.is_secret());
    }
}
