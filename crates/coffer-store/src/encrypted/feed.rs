//! Sealing and opening the event feed's rows.
//!
//! An event is kept as JSON sealed under the master key with its revision as associated
//! data (`coffer event v1`), so a stolen database shows when changes were made and nothing
//! of where or by whom, and a row moved to another revision does not open.

use std::sync::Arc;

use coffer_crypto::MasterKey;
use coffer_crypto::aead::Aad;
use coffer_types::{ChangeEvent, EventAction, Namespace, Timestamp, Version};

use crate::StoreError;
use crate::events::{EventPlan, SealedEvent};
use crate::store::Change;

fn aad(revision: u64) -> Aad {
    Aad::new("coffer event v1").with(revision.to_be_bytes())
}

/// The master key's copy the feed seals with (one copy, shared by every plan).
#[derive(Clone)]
pub(super) struct Sealer(Arc<MasterKey>);

impl Sealer {
    pub(super) fn new(master: &MasterKey) -> Self {
        Self(Arc::new(master.duplicate()))
    }

    /// The plan that numbers and seals a change's event, or `None` for a quiet change.
    pub(super) fn plan(
        &self,
        namespace: &Namespace,
        name: Option<&str>,
        by: Change<'_>,
        action: EventAction,
        versions: Vec<u32>,
    ) -> Option<EventPlan> {
        if by.quiet {
            return None;
        }
        let key = self.0.clone();
        let namespace = namespace.as_str().to_owned();
        let name = by.subject.or(name).map(str::to_owned);
        let actor = by.actor.to_owned();
        let action = by.action.unwrap_or(action);
        let time = Timestamp::now();
        Some(Box::new(move |revision: u64, version: Option<Version>| {
            let event = ChangeEvent {
                revision,
                time,
                namespace,
                name,
                version: version.map(Version::get),
                versions,
                action,
                actor,
            };
            let json = serde_json::to_vec(&event)
                .map_err(|_| StoreError::Malformed("an event could not be encoded"))?;
            let sealed = key
                .seal(&json, &aad(revision))
                .map_err(StoreError::Crypto)?;
            Ok((event, sealed))
        }))
    }

    /// Opens a kept event; a row that does not open, or opens to another revision, is an
    /// integrity error.
    pub(super) fn open(&self, row: &SealedEvent) -> Result<ChangeEvent, StoreError> {
        let json = self
            .0
            .open(&row.sealed, &aad(row.revision))
            .map_err(|source| StoreError::Corrupt {
                what: "event",
                source,
            })?;
        let event: ChangeEvent = serde_json::from_slice(json.expose_secret())
            .map_err(|_| StoreError::Malformed("a kept event"))?;
        if event.revision != row.revision {
            return Err(StoreError::Integrity(
                "an event was moved to another revision",
            ));
        }
        Ok(event)
    }
}
