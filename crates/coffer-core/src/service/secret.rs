//! Gate 7 for operations on one secret: reads (through the cache), writes, the operator's
//! lifecycle verbs (generate, rotate, describe, revoke, destroy), merge patches and the
//! computed values. The input was checked at gate 6; what is left are the store's answers.

use std::sync::Arc;

use coffer_crypto::pwhash::{self, Setting};
use coffer_crypto::{SecretBytes, compute, mint};
use coffer_store::{
    Change, Describe, RotationStep, SecretStore, StoreError, Write, WriteMode, Written,
};
use coffer_types::{ErrorCode, EventAction, GeneratorSpec, Kind, Version};

use super::gates::{Admitted, SecretWork};
use super::state::{Gated, Service, blocking, stored};
use crate::access::Principal;
use crate::cache::{CacheKey, Cached, Facts};
use crate::op::secret::{Checked, CheckedOptions};
use crate::{CoreError, Gate, Refusal, Reply};

/// How a value is written, decided from the operation.
struct Writing {
    value: Value,
    options: CheckedOptions,
    mode: WriteMode,
    generated: Option<GeneratorSpec>,
    /// What the event feed calls it.
    action: EventAction,
    /// A rotation policy to set, or the scheduled rotation this is.
    rotation: Option<RotationStep>,
}

/// The value of a write: given, or derived inside the store's transaction from the newest.
enum Value {
    Given(SecretBytes),
    Patched { patch: SecretBytes, max: usize },
}

impl Service {
    /// A read answered from the cache, in place; any other work is handed back. (The work
    /// moves on the stack either way; boxing it would cost every request an allocation.)
    #[allow(clippy::result_large_err)]
    pub(super) fn inline(&self, admitted: Admitted) -> Result<Reply, Admitted> {
        match admitted {
            Admitted::Done(reply, _) => Ok(reply),
            Admitted::Secret(work) if matches!(work.op, Checked::Get { version: None }) => {
                match self.cache.get(&work.key) {
                    Some(hit) => {
                        tracing::debug!(event = "secret_materialize", "secret read");
                        self.materialized(&work.key.0);
                        Ok(value_reply(hit))
                    }
                    None => Err(Admitted::Secret(work)),
                }
            }
            other => Err(other),
        }
    }

    pub(super) async fn secret(&self, who: &Principal, work: SecretWork) -> Gated<Reply> {
        let SecretWork {
            store,
            key,
            op,
            restrict,
            actor,
        } = work;
        // A write marks its key for its whole length: once it commits, its event is out,
        // and a reader must not be answered the old value from the cache.
        let _writing = op.changes_value().then(|| self.cache.writing(&key));
        self.run_secret(who, store, &key, op, restrict, actor).await
    }

    async fn run_secret(
        &self,
        who: &Principal,
        store: Arc<dyn SecretStore>,
        key: &CacheKey,
        op: Checked,
        restrict: Option<WriteMode>,
        actor: String,
    ) -> Gated<Reply> {
        let (ns, name) = key.clone();
        match op {
            Checked::GetPrevious => {
                let (ns, name) = key.clone();
                let meta = blocking(move || Ok(store.metadata(&ns, &name).map(|m| (m, store))?))
                    .await
                    .map_err(stored)?;
                let (meta, store) = meta;
                let version = previous_version(meta.rotation.as_ref())?;
                let read = self.read(store, key, Some(version)).await?;
                tracing::debug!(event = "secret_materialize", "secret read");
                self.materialized(&key.0);
                Ok(value_reply(read))
            }
            Checked::Get { version } => {
                let read = self.read(store, key, version).await?;
                tracing::debug!(event = "secret_materialize", "secret read");
                self.materialized(&key.0);
                Ok(value_reply(read))
            }
            Checked::Hmac {
                algorithm,
                data,
                encoding,
            } => {
                let read = self.read(store, key, None).await?;
                let digest = compute::hmac(algorithm, &read.value, &data, encoding)
                    .map_err(|e| Refusal::at(Gate::Store, StoreError::Crypto(e)))?;
                tracing::debug!(
                    event = "secret_materialize",
                    computed = "hmac",
                    "secret used"
                );
                Ok(Reply::Digest(digest))
            }
            Checked::BasicAuth { user } => {
                let read = self.read(store, key, None).await?;
                let header = compute::basic_auth(&user, &read.value).map_err(|e| {
                    Refusal::at(Gate::Validation, CoreError::InvalidRequest(e.to_string()))
                })?;
                tracing::debug!(
                    event = "secret_materialize",
                    computed = "basic_auth",
                    "secret used"
                );
                Ok(Reply::Header(header))
            }
            Checked::Yescrypt { setting } => {
                // A place in the bounded queue first: the work of a caller who leaves runs
                // on, so an unbounded wait would let a flood pile up without end.
                let queued = Arc::clone(&self.yescrypt_queue)
                    .try_acquire_owned()
                    .map_err(|_| Refusal::at(Gate::RateLimit, CoreError::RateLimited))?;
                let read = self.read(store, key, None).await?;
                let setting = match setting {
                    Some(s) => s,
                    None => Setting::fresh()
                        .map_err(|e| Refusal::at(Gate::Store, StoreError::Crypto(e)))?,
                };
                // The permit moves into the blocking task: a caller who leaves does not free
                // it before the hash (and its memory) is done.
                let permit = Arc::clone(&self.yescrypt)
                    .acquire_owned()
                    .await
                    .map_err(|_| {
                        Refusal::at(Gate::Store, CoreError::Unavailable("stopping".to_owned()))
                    })?;
                let value = read.value;
                let hash = blocking(move || {
                    let _permit = (permit, queued);
                    Ok(pwhash::yescrypt(&value, &setting))
                })
                .await
                .map_err(|e| Refusal::at(Gate::Store, e))?
                .map_err(|e| Refusal::at(Gate::Store, StoreError::Crypto(e)))?;
                tracing::debug!(
                    event = "secret_materialize",
                    computed = "yescrypt",
                    "secret used"
                );
                Ok(Reply::PasswordHash(hash))
            }
            Checked::Write { value, options } => {
                let writing = Writing {
                    value: Value::Given(value),
                    options,
                    mode: restrict.unwrap_or(WriteMode::Upsert),
                    generated: None,
                    action: EventAction::Written,
                    rotation: None,
                };
                let written = self.write(store, key, writing, actor).await;
                // The store found the other case than the one the caller may do.
                let refused = match (&written, restrict) {
                    (Err(r), Some(WriteMode::Create)) if r.error.code() == ErrorCode::Conflict => {
                        Some("create secrets here but not update")
                    }
                    (Err(r), Some(WriteMode::Update)) if r.error.code() == ErrorCode::NotFound => {
                        Some("update secrets here but not create")
                    }
                    _ => None,
                };
                if let Some(may) = refused {
                    return Err(Refusal::at(
                        Gate::Policy,
                        CoreError::Denied(format!("{} may {may} them", who.describe())),
                    ));
                }
                written.map(self::written)
            }
            Checked::Rotate { value, options } => {
                let writing = Writing {
                    value: Value::Given(value),
                    options,
                    mode: WriteMode::Update,
                    generated: None,
                    action: EventAction::Rotated,
                    rotation: None,
                };
                self.write(store, key, writing, actor).await.map(written)
            }
            Checked::Patch {
                patch,
                cas,
                max_value,
            } => {
                let writing = Writing {
                    value: Value::Patched {
                        patch,
                        max: max_value,
                    },
                    options: CheckedOptions {
                        kind: Some(Kind::Kv),
                        new_kind: Kind::Kv,
                        description: None,
                        max_versions: None,
                        cas,
                    },
                    mode: WriteMode::Update,
                    generated: None,
                    action: EventAction::Patched,
                    rotation: None,
                };
                self.write(store, key, writing, actor).await.map(written)
            }
            Checked::Mint {
                spec,
                mut options,
                rotate,
                rotation,
            } => {
                let spec = match spec {
                    Some(spec) => spec,
                    None => {
                        let store = store.clone();
                        blocking(move || Ok(store.metadata(&ns, &name)?.generated))
                            .await
                            .map_err(stored)?
                            .unwrap_or_default()
                    }
                };
                let value = mint::mint(spec)
                    .map_err(|e| Refusal::at(Gate::Store, StoreError::Crypto(e)))?;
                // Minted values are one line of text; an explicit kind still applies.
                options.kind = options.kind.or(Some(Kind::Line));
                let writing = Writing {
                    value: Value::Given(value.clone()),
                    options,
                    mode: if rotate {
                        WriteMode::Update
                    } else {
                        WriteMode::Create
                    },
                    generated: Some(spec),
                    action: if rotate {
                        EventAction::Rotated
                    } else {
                        EventAction::Generated
                    },
                    rotation: rotation.clone().map(RotationStep::Policy),
                };
                if rotation.is_some() {
                    // Filed before the secret is written: a crash in between leaves a
                    // schedule entry the scheduler drops, never a policy it does not know.
                    self.file_rotation(store.clone(), key.clone()).await?;
                }
                let w = self.write(store, key, writing, actor).await?;
                if let Some(policy) = &rotation {
                    self.rotation.schedule(
                        key.clone(),
                        coffer_types::Timestamp::now().saturating_add_secs(policy.every),
                    );
                }
                Ok(Reply::Minted {
                    index: w.index,
                    version: w.version,
                    value,
                })
            }
            Checked::Describe(change) => {
                self.describe(store, key, change, actor).await?;
                Ok(Reply::Done)
            }
            Checked::Mark(mark) => {
                let change = Describe {
                    mark: Some(mark),
                    ..Describe::default()
                };
                self.describe(store, key, change, actor).await?;
                Ok(Reply::Done)
            }
            Checked::Revoke => {
                blocking(move || Ok(store.revoke(&ns, &name, Change::by(&actor))?))
                    .await
                    .map_err(stored)?;
                Ok(Reply::Done)
            }
            Checked::Destroy { versions } => {
                let destroyed = blocking(move || {
                    Ok(store.destroy(&ns, &name, &versions, Change::by(&actor))?)
                })
                .await
                .map_err(stored)?;
                Ok(Reply::Destroyed(destroyed))
            }
            Checked::Del => {
                blocking(move || Ok(store.delete(&ns, &name, Change::by(&actor))?))
                    .await
                    .map_err(stored)?;
                Ok(Reply::Done)
            }
            Checked::Meta => {
                let meta = blocking(move || Ok(store.metadata(&ns, &name)?))
                    .await
                    .map_err(stored)?;
                Ok(Reply::Meta(Box::new(meta)))
            }
            Checked::Versions => {
                let versions = blocking(move || Ok(store.versions(&ns, &name)?))
                    .await
                    .map_err(stored)?;
                Ok(Reply::Versions(versions))
            }
        }
    }

    async fn describe(
        &self,
        store: Arc<dyn SecretStore>,
        key: &CacheKey,
        change: Describe,
        actor: String,
    ) -> Gated<()> {
        let (ns, name) = key.clone();
        blocking(move || Ok(store.describe(&ns, &name, change, Change::by(&actor))?))
            .await
            .map_err(stored)
    }

    /// A value, from the cache when fresh (newest version only), else from the store.
    async fn read(
        &self,
        store: Arc<dyn SecretStore>,
        key: &CacheKey,
        version: Option<Version>,
    ) -> Gated<Cached> {
        if version.is_none()
            && let Some(hit) = self.cache.get(key)
        {
            return Ok(hit);
        }
        let epoch = self.cache.epoch();
        let (ns, name) = key.clone();
        let secret = blocking(move || Ok(store.get(&ns, &name, version)?))
            .await
            .map_err(stored)?;
        let read = Cached {
            value: Arc::new(secret.value),
            version: secret.version,
            kind: secret.kind,
            facts: Arc::new(Facts {
                created: secret.created,
                deletion: secret.deletion,
                custom_metadata: secret.custom_metadata,
            }),
        };
        if version.is_none() {
            self.cache.insert(key.clone(), &read, epoch);
        }
        Ok(read)
    }

    async fn write(
        &self,
        store: Arc<dyn SecretStore>,
        key: &CacheKey,
        w: Writing,
        actor: String,
    ) -> Gated<Written> {
        let (ns, name) = key.clone();
        let new_max_versions = self.config.default_max_versions;
        blocking(move || {
            let options = w.options;
            let mut write = match &w.value {
                Value::Given(v) => Write::new(v, &actor),
                Value::Patched { patch, max } => {
                    let (patch, max) = (patch.clone(), *max);
                    Write::derived(
                        Box::new(move |current: &SecretBytes, kind: Kind| {
                            merged(current, kind, &patch, max)
                        }),
                        &actor,
                    )
                }
            };
            write.kind = options.kind;
            write.new_kind = options.new_kind;
            write.mode = w.mode;
            write.description = options.description;
            write.max_versions = options.max_versions;
            write.new_max_versions = new_max_versions;
            write.generated = w.generated;
            write.change = write.change.named(w.action);
            write.cas = options.cas;
            write.rotation = w.rotation;
            Ok(store.set(&ns, &name, write)?)
        })
        .await
        .map_err(stored)
    }
}

/// The newest value with a merge patch applied, within the size limit: run inside the
/// store's transaction, so a merge and its write are one change.
fn merged(
    current: &SecretBytes,
    kind: Kind,
    patch: &SecretBytes,
    max: usize,
) -> Result<SecretBytes, StoreError> {
    let merged = crate::kv::merge(current, kind, patch).map_err(|e| match e {
        CoreError::InvalidRequest(m) => StoreError::Invalid(m),
        other => StoreError::Invalid(other.to_string()),
    })?;
    if merged.len() > max {
        return Err(StoreError::TooLarge {
            len: merged.len(),
            max,
        });
    }
    Ok(merged)
}

/// The version `previous` names: the one before the last rotation, during its grace period.
fn previous_version(rotation: Option<&coffer_types::RotationInfo>) -> Gated<Version> {
    let refuse = |m: &str| {
        Refusal::at(
            Gate::Store,
            CoreError::Rejected {
                code: ErrorCode::NotFound,
                message: m.to_owned(),
            },
        )
    };
    let rotation = rotation.ok_or_else(|| {
        refuse("the secret has no rotation policy, so it has no previous version")
    })?;
    rotation
        .previous_at(coffer_types::Timestamp::now())
        .ok_or_else(|| {
            refuse("no previous version is readable: the grace period after the last rotation is over (or there was no rotation yet)")
        })
}

/// The answer to a write.
fn written(w: Written) -> Reply {
    Reply::Written {
        index: w.index,
        version: w.version,
    }
}

fn value_reply(read: Cached) -> Reply {
    Reply::Value {
        value: read.value,
        version: read.version,
        kind: read.kind,
        facts: read.facts,
    }
}

#[cfg(test)]
#[path = "yescrypt_tests.rs"]
mod yescrypt_tests;
