//! A secret's metadata as kept encrypted in its row, and how writes and metadata changes
//! update it. Nothing here panics, whatever numbers a request carries: times saturate at
//! [`Timestamp::MAX`], version arithmetic is checked.

use std::collections::{BTreeMap, BTreeSet};

use coffer_types::{GeneratorSpec, RotationInfo, RotationOutcome, Timestamp, Version, VersionInfo};

use crate::StoreError;
use crate::backend::VersionRow;
use crate::store::{Describe, Mark, Resolve, RotationStep};

/// Metadata kept encrypted with each secret.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct MetaBlob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<GeneratorSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_versions: Option<u32>,
    /// KV v2's `custom_metadata`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, String>,
    /// KV v2's `cas_required`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cas_required: bool,
    /// KV v2's `delete_version_after`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after: Option<u64>,
    /// Soft-deleted versions (KV v2's `deletion_time`): version number to the time it was,
    /// or will be, deleted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deleted: BTreeMap<u32, Timestamp>,
    /// Versions whose ciphertexts were erased (`destroy`): a ciphertext that reappears in
    /// one of them was put back from a copy and is not served.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub destroyed: BTreeSet<u32>,
    /// Versions below this one were pruned (`max_versions`): one that reappears was put back
    /// from a copy and is not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<u32>,
    /// The rotation policy and state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationInfo>,
    /// The fleet tags.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub tags: BTreeSet<String>,
}

impl MetaBlob {
    /// When `version` was (or will be) soft-deleted.
    pub fn deletion(&self, version: Version) -> Option<Timestamp> {
        self.deleted.get(&version.get()).copied()
    }

    /// Schedules the soft deletion of a version written at `now`, when the secret asks for it
    /// (`delete_version_after`).
    pub fn schedule_deletion(&mut self, version: Version, now: Timestamp) {
        if let Some(after) = self.delete_after {
            self.deleted
                .insert(version.get(), now.saturating_add_secs(after));
        }
    }

    /// Applies a [`Describe`]'s changes but the description and the version limit. Custom
    /// metadata outside the limits is [`StoreError::Invalid`].
    pub fn apply_kv(
        &mut self,
        change: &Describe,
        current: Version,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if let Some(custom) = &change.custom_metadata {
            self.custom = custom
                .apply(&self.custom)
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
        }
        if let Some(tags) = &change.tags {
            for t in &tags.remove {
                self.tags.remove(t);
            }
            self.tags.extend(tags.add.iter().cloned());
            if self.tags.len() > crate::store::MAX_TAGS {
                return Err(StoreError::Invalid(format!(
                    "a secret carries at most {} tags",
                    crate::store::MAX_TAGS
                )));
            }
        }
        if let Some(required) = change.cas_required {
            self.cas_required = required;
        }
        if let Some(after) = change.delete_version_after {
            self.delete_after = (after > 0).then_some(after);
        }
        let delete = |deleted: &mut BTreeMap<u32, Timestamp>, v: u32| {
            if v >= 1 && v <= current.get() {
                let at = deleted.entry(v).or_insert(now);
                // A deletion scheduled for later happens now.
                *at = (*at).min(now);
            }
        };
        match &change.mark {
            None => {}
            Some(Mark::DeleteLatest) => delete(&mut self.deleted, current.get()),
            Some(Mark::Delete(versions)) => {
                for v in versions {
                    delete(&mut self.deleted, v.get());
                }
            }
            Some(Mark::Undelete(versions)) => {
                for v in versions {
                    self.deleted.remove(&v.get());
                }
            }
        }
        Ok(())
    }

    /// Applies a write's rotation step to the state as the new `version` is written at
    /// `now` over `before` (the newest version until now, if any). A write without a step
    /// makes its version the one served.
    pub fn rotate(
        &mut self,
        step: Option<&RotationStep>,
        before: Option<Version>,
        version: Version,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        match step {
            None => {
                if let Some(r) = self.rotation.as_mut() {
                    r.serving = None;
                }
            }
            Some(RotationStep::Policy(policy)) => {
                self.rotation = Some(RotationInfo::new(policy.clone(), now));
            }
            Some(RotationStep::Scheduled { due, pending }) => {
                let r = self
                    .rotation
                    .as_mut()
                    .ok_or(StoreError::Conflict("the secret has no rotation policy"))?;
                if r.next_due != *due || r.pending.is_some() {
                    return Err(StoreError::Conflict(
                        "this period's rotation was already made",
                    ));
                }
                r.next_due = r.advance(*due, now);
                let served = r.serving.or(before);
                if *pending {
                    r.pending = Some(version);
                    r.serving = served;
                } else {
                    r.serving = None;
                    r.previous = served;
                    r.previous_until = Some(now.saturating_add_secs(r.policy.grace));
                    r.last = Some(RotationOutcome {
                        time: now,
                        outcome: RotationOutcome::ROTATED.to_owned(),
                        version: Some(version),
                        reason: None,
                    });
                }
            }
        }
        Ok(())
    }

    /// Ends a pending version (the newest is `current`); answers the versions to destroy.
    pub fn resolve(
        &mut self,
        resolve: &Resolve,
        current: Version,
        now: Timestamp,
    ) -> Result<Vec<Version>, StoreError> {
        let r = self
            .rotation
            .as_mut()
            .ok_or(StoreError::Conflict("the secret has no rotation policy"))?;
        match resolve {
            Resolve::Promote { version } => {
                if r.pending != Some(*version) || current != *version {
                    return Err(StoreError::Conflict(
                        "the rotated version is no longer pending",
                    ));
                }
                r.pending = None;
                r.previous = r.serving.take();
                r.previous_until = Some(now.saturating_add_secs(r.policy.grace));
                r.last = Some(RotationOutcome {
                    time: now,
                    outcome: RotationOutcome::ROTATED.to_owned(),
                    version: Some(*version),
                    reason: None,
                });
                Ok(vec![])
            }
            Resolve::Drop { version, reason } => {
                if r.pending != Some(*version) {
                    return Err(StoreError::Conflict(
                        "the rotated version is no longer pending",
                    ));
                }
                r.pending = None;
                if current != *version {
                    // A write came after it and is served.
                    r.serving = None;
                }
                r.last = Some(RotationOutcome {
                    time: now,
                    outcome: RotationOutcome::FAILED.to_owned(),
                    version: Some(*version),
                    reason: Some(reason.clone()),
                });
                self.destroyed.insert(version.get());
                Ok(vec![*version])
            }
        }
    }

    /// The version a read without a version serves, when it is not the newest.
    pub fn serving(&self) -> Option<Version> {
        self.rotation.as_ref().and_then(|r| r.serving)
    }

    /// Forgets the deletion times of versions pruned below `before`, and remembers that
    /// they were pruned.
    pub fn forget_before(&mut self, before: Option<Version>) {
        if let Some(before) = before {
            self.deleted = self.deleted.split_off(&before.get());
            self.destroyed = self.destroyed.split_off(&before.get());
            self.floor = Some(self.floor.map_or(before.get(), |f| f.max(before.get())));
        }
    }

    /// Checks a stored version against what the metadata says of it: a version pruned or
    /// destroyed that has a ciphertext again is [`StoreError::Integrity`].
    pub fn check_version(&self, v: &VersionRow) -> Result<(), StoreError> {
        if self.floor.is_some_and(|f| v.version.get() < f) {
            return Err(StoreError::Integrity(
                "a pruned version is back in the store",
            ));
        }
        if v.ciphertext.is_some() && self.destroyed.contains(&v.version.get()) {
            return Err(StoreError::Integrity(
                "a destroyed version has a ciphertext again",
            ));
        }
        Ok(())
    }

    /// Applies a new description and version limit.
    pub fn apply(&mut self, description: Option<String>, max_versions: Option<u32>) {
        if let Some(d) = description {
            self.description = (!d.is_empty()).then_some(d);
        }
        if let Some(m) = max_versions {
            self.max_versions = (m > 0).then_some(m);
        }
    }

    /// The oldest version to keep once `current` is the newest. The version a read serves
    /// while a rotated one is pending, and `previous` during its grace period, are kept
    /// whatever the limit.
    pub fn prune_before(&self, current: Version) -> Option<Version> {
        let before = self.limit_before(current)?;
        let now = Timestamp::now();
        let keep = self
            .rotation
            .as_ref()
            .and_then(|r| [r.serving, r.previous_at(now)].into_iter().flatten().min());
        Some(keep.map_or(before, |k| before.min(k))).filter(|v| *v > Version::FIRST)
    }

    /// The oldest version `max_versions` keeps once `current` is the newest.
    fn limit_before(&self, current: Version) -> Option<Version> {
        let keep = self.max_versions?;
        // `keep >= 1`, so `n < current <= u32::MAX` and `n + 1` cannot overflow; checked all
        // the same.
        current
            .get()
            .checked_sub(keep)
            .and_then(|n| n.checked_add(1))
            .and_then(Version::new)
            .filter(|v| *v > Version::FIRST)
    }
}

/// A version's facts for callers.
pub(super) fn info(v: VersionRow, meta: &MetaBlob) -> VersionInfo {
    VersionInfo {
        deleted: meta.deletion(v.version),
        version: v.version,
        kind: v.kind,
        created: v.created,
        actor: v.actor,
        destroyed: v.ciphertext.is_none() || meta.destroyed.contains(&v.version.get()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u32) -> Version {
        Version::new(n).expect("nonzero")
    }

    #[test]
    fn pruning_keeps_the_newest_max_versions() {
        let meta = |m| MetaBlob {
            max_versions: Some(m),
            ..MetaBlob::default()
        };
        assert_eq!(meta(3).prune_before(v(3)), None);
        assert_eq!(meta(3).prune_before(v(4)), Some(v(2)));
        assert_eq!(meta(1).prune_before(v(10)), Some(v(10)));
        assert_eq!(MetaBlob::default().prune_before(v(100)), None);
        assert_eq!(meta(u32::MAX).prune_before(v(u32::MAX)), None);
        assert_eq!(meta(1).prune_before(v(u32::MAX)), Some(v(u32::MAX)));
    }

    #[test]
    fn a_rotation_keeps_the_served_version_and_drops_a_pending_one() {
        let policy = coffer_types::RotationPolicy {
            every: 60,
            command: Some("/bin/true".to_owned()),
            grace: 0,
            spec: GeneratorSpec::default(),
        };
        let now = Timestamp::now();
        let mut meta = MetaBlob {
            max_versions: Some(1),
            ..MetaBlob::default()
        };
        meta.rotate(Some(&RotationStep::Policy(policy)), None, v(1), now)
            .expect("policy");
        let due = meta.rotation.as_ref().expect("policy").next_due;
        // The wrong due time is a conflict: the period was rotated already.
        let stale = RotationStep::Scheduled {
            due: now,
            pending: true,
        };
        assert!(matches!(
            meta.rotate(Some(&stale), Some(v(1)), v(2), now),
            Err(StoreError::Conflict(_))
        ));
        let step = RotationStep::Scheduled { due, pending: true };
        meta.rotate(Some(&step), Some(v(1)), v(2), due)
            .expect("rotate");
        assert_eq!(meta.serving(), Some(v(1)));
        // The limit of one version does not prune the served one.
        assert_eq!(meta.prune_before(v(2)), None);
        // Once pending, the same period cannot be rotated again.
        assert!(meta.rotate(Some(&step), Some(v(2)), v(3), due).is_err());
        let drop = Resolve::Drop {
            version: v(2),
            reason: "the hook exited with status 1".to_owned(),
        };
        assert_eq!(meta.resolve(&drop, v(2), due).expect("drop"), vec![v(2)]);
        assert_eq!(meta.serving(), Some(v(1)), "still served");
        assert!(meta.destroyed.contains(&2));
        let r = meta.rotation.as_ref().expect("policy");
        assert_eq!(r.pending, None);
        assert_eq!(r.last.as_ref().expect("outcome").outcome, "failed");
        // A write makes its version the one served.
        meta.rotate(None, Some(v(2)), v(3), due).expect("write");
        assert_eq!(meta.serving(), None);
    }

    #[test]
    fn extreme_numbers_saturate() {
        let mut meta = MetaBlob::default();
        let change = Describe {
            delete_version_after: Some(u64::MAX),
            mark: Some(Mark::Delete(vec![v(u32::MAX), v(1)])),
            ..Describe::default()
        };
        let now = Timestamp::now();
        meta.apply_kv(&change, v(1), now).expect("apply");
        meta.schedule_deletion(v(2), now);
        assert_eq!(meta.deletion(v(2)), Some(Timestamp::MAX));
        assert_eq!(meta.deletion(v(1)), Some(now));
        assert_eq!(
            meta.deletion(v(u32::MAX)),
            None,
            "past the newest: passed over"
        );
        // The far-future time survives the round trip through the stored form.
        let json = serde_json::to_vec(&meta).expect("encode");
        let back: MetaBlob = serde_json::from_slice(&json).expect("decode");
        assert_eq!(back.deletion(v(2)), Some(Timestamp::MAX));
    }

    #[test]
    fn custom_metadata_merges_and_limits_are_invalid() {
        use coffer_types::custom::CustomMetadataChange;
        let mut meta = MetaBlob::default();
        let set = |k: &str, val: Option<&str>| {
            CustomMetadataChange::Merge(BTreeMap::from([(k.to_owned(), val.map(str::to_owned))]))
        };
        let describe = |c| Describe {
            custom_metadata: Some(c),
            ..Describe::default()
        };
        meta.apply_kv(&describe(set("a", Some("1"))), v(1), Timestamp::now())
            .expect("merge");
        meta.apply_kv(&describe(set("b", Some("2"))), v(1), Timestamp::now())
            .expect("merge");
        meta.apply_kv(&describe(set("a", None)), v(1), Timestamp::now())
            .expect("merge");
        assert_eq!(meta.custom.keys().collect::<Vec<_>>(), ["b"]);
        let err = meta
            .apply_kv(
                &describe(set("k", Some(&"v".repeat(4096)))),
                v(1),
                Timestamp::now(),
            )
            .expect_err("too long");
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert_eq!(meta.custom.keys().collect::<Vec<_>>(), ["b"], "unchanged");
    }
}
