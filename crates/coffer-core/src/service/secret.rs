//! Operations on one secret: reads (through the cache), writes, the lifecycle verbs of the
//! operator (generate, rotate, describe, revoke, destroy) and the computed values.

use std::sync::Arc;

use coffer_crypto::{SecretBytes, compute, mint};
use coffer_store::{SecretStore, StoreError, Write, WriteMode};
use coffer_types::{Capability, ErrorCode, GeneratorSpec, Kind, Namespace, SecretName, Version};

use super::{Gated, Resolved, Service, at, blocking};
use crate::access::Principal;
use crate::cache::{CacheKey, Cached, Facts};
use crate::request::{SecretOp, WriteOptions};
use crate::{CoreError, Gate, Refusal, Reply};

/// How a value is written, decided from the operation.
struct Writing {
    value: SecretBytes,
    options: WriteOptions,
    mode: WriteMode,
    generated: Option<GeneratorSpec>,
}

impl Service {
    /// `get`: gates, then the cache or the store.
    pub(super) async fn get(
        &self,
        principal: &Resolved,
        namespace: Option<String>,
        name: String,
        version: Option<Version>,
    ) -> Gated<Reply> {
        let (store, namespace, _) =
            self.admit(principal, namespace, Some(&name), &[Capability::Read])?;
        let name = SecretName::parse_owned(name).map_err(|e| Refusal::at(Gate::Validation, e))?;
        let key: CacheKey = (namespace, name);
        let read = self.read(store, &key, version).await?;
        tracing::debug!(event = "secret_materialize", "secret read");
        self.materialized(&key.0);
        Ok(value_reply(read))
    }

    pub(super) async fn secret(
        &self,
        principal: &Resolved,
        namespace: Option<String>,
        name: String,
        op: SecretOp,
    ) -> Gated<Reply> {
        let needs: &[Capability] = match &op {
            // Create or update: decided below, once the caller is known.
            SecretOp::Set { .. } => &[],
            // Soft deletion with a metadata change needs both grants.
            SecretOp::Describe { change } if change.mark.is_some() && change.changes_metadata() => {
                &[Capability::Revoke, Capability::Update]
            }
            op => &[op.capability()],
        };
        let (store, namespace, who) = self.admit(principal, namespace, Some(&name), needs)?;
        let mut op = op;
        let restrict = match &mut op {
            SecretOp::Set { .. } => self.create_or_update(who, &namespace, &name)?,
            _ => None,
        };
        let name = SecretName::parse_owned(name).map_err(|e| Refusal::at(Gate::Validation, e))?;
        self.validate(&op)?;
        let key: CacheKey = (namespace, name);
        let changes_value = op.changes_value();
        let action = action_name(&op);
        let result = self.run(who, store, &key, op, restrict).await;
        if changes_value {
            // Whatever the outcome: a failed commit may still have reached the disk.
            self.cache.invalidate(&key);
        }
        match (&result, action) {
            (Ok(_), Some(action)) => tracing::info!(
                event = "secret_action",
                action,
                actor = %who.actor(),
                namespace = %key.0,
                outcome = "ok",
                "secret changed"
            ),
            (Err(r), Some(action)) => tracing::info!(
                event = "secret_action",
                action,
                actor = %who.actor(),
                namespace = %key.0,
                outcome = "refused",
                code = %r.error.code(),
                "secret change refused"
            ),
            _ => {}
        }
        result
    }

    /// Gate 6 beyond the name.
    fn validate(&self, op: &SecretOp) -> Gated<()> {
        let max = self.config.max_value_bytes;
        let refuse = |e: CoreError| Err(Refusal::at(Gate::Validation, e));
        match op {
            SecretOp::Set { value, .. }
            | SecretOp::Patch { patch: value, .. }
            | SecretOp::Rotate {
                value: Some(value), ..
            } if value.len() > max => refuse(CoreError::TooLarge {
                len: value.len(),
                max,
            }),
            SecretOp::Destroy { versions } if versions.is_empty() => refuse(
                CoreError::InvalidRequest("destroy needs the versions to erase".to_owned()),
            ),
            _ => Ok(()),
        }
    }

    /// Gate 5 for `set`: creating needs `create`, writing a new version needs `update`. A
    /// caller holding one of the two writes in that mode only, and the store's answer
    /// (the name exists; it does not) becomes a denial: answered inside the store's
    /// transaction, so no race decides it.
    fn create_or_update(
        &self,
        who: &Principal,
        namespace: &Namespace,
        name: &str,
    ) -> Gated<Option<WriteMode>> {
        if self.access.unconditional(who) {
            return Ok(None);
        }
        let path = super::secret_path(namespace, name);
        let ns = Some(namespace.as_str());
        let create = self.access.grants(who, Capability::Create, &path, ns);
        let update = self.access.grants(who, Capability::Update, &path, ns);
        match (create, update) {
            (true, true) => Ok(None),
            (true, false) => Ok(Some(WriteMode::Create)),
            (false, true) => Ok(Some(WriteMode::Update)),
            // Report the more telling refusal (a deny rule, or the missing grant).
            (false, false) => self
                .allow(who, Capability::Update, &path, ns)
                .and_then(|()| self.allow(who, Capability::Create, &path, ns))
                .map(|()| None),
        }
    }

    async fn run(
        &self,
        who: &Principal,
        store: Arc<dyn SecretStore>,
        key: &CacheKey,
        op: SecretOp,
        restrict: Option<WriteMode>,
    ) -> Gated<Reply> {
        let (ns, name) = key.clone();
        match op {
            SecretOp::Get { version } => {
                let read = self.read(store, key, version).await?;
                tracing::debug!(event = "secret_materialize", "secret read");
                self.materialized(&key.0);
                Ok(value_reply(read))
            }
            SecretOp::Patch { patch, cas } => {
                let current = self.read(store.clone(), key, None).await?;
                if cas.is_some_and(|c| c != current.version.get()) {
                    return Err(Refusal::at(
                        Gate::Store,
                        StoreError::Conflict(coffer_store::CAS_MISMATCH),
                    ));
                }
                let merged = crate::kv::merge(&current.value, current.kind, &patch)
                    .map_err(|e| Refusal::at(Gate::Validation, e))?;
                drop(current.value);
                let (index, version) = self
                    .write(
                        who,
                        store,
                        key,
                        Writing {
                            value: merged,
                            options: WriteOptions {
                                kind: Some(Kind::Kv),
                                // The version read is the one patched: a write in between
                                // is a conflict, not a lost update.
                                cas: Some(current.version.get()),
                                ..WriteOptions::default()
                            },
                            mode: WriteMode::Update,
                            generated: None,
                        },
                    )
                    .await?;
                Ok(Reply::Written { index, version })
            }
            SecretOp::Hmac {
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
            SecretOp::BasicAuth { user } => {
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
            SecretOp::Set { value, options } => {
                let written = self
                    .write(
                        who,
                        store,
                        key,
                        Writing {
                            value,
                            options,
                            mode: restrict.unwrap_or(WriteMode::Upsert),
                            generated: None,
                        },
                    )
                    .await;
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
                let (index, version) = written?;
                Ok(Reply::Written { index, version })
            }
            SecretOp::Generate { spec, options } => {
                self.minted(who, store, key, spec, options, WriteMode::Create)
                    .await
            }
            SecretOp::Rotate {
                value: Some(value),
                options,
                ..
            } => {
                let (index, version) = self
                    .write(
                        who,
                        store,
                        key,
                        Writing {
                            value,
                            options,
                            mode: WriteMode::Update,
                            generated: None,
                        },
                    )
                    .await?;
                Ok(Reply::Written { index, version })
            }
            SecretOp::Rotate {
                value: None,
                spec,
                options,
            } => {
                let spec = match spec {
                    Some(spec) => spec,
                    None => {
                        let store = store.clone();
                        blocking(move || Ok(store.metadata(&ns, &name)?.generated))
                            .await
                            .map_err(at(Gate::Store))?
                            .unwrap_or_default()
                    }
                };
                self.minted(who, store, key, spec, options, WriteMode::Update)
                    .await
            }
            SecretOp::Describe { change } => {
                blocking(move || Ok(store.describe(&ns, &name, change)?))
                    .await
                    .map_err(at(Gate::Store))?;
                Ok(Reply::Done)
            }
            SecretOp::Revoke => {
                blocking(move || Ok(store.revoke(&ns, &name)?))
                    .await
                    .map_err(at(Gate::Store))?;
                Ok(Reply::Done)
            }
            SecretOp::Destroy { versions } => {
                let destroyed = blocking(move || Ok(store.destroy(&ns, &name, &versions)?))
                    .await
                    .map_err(at(Gate::Store))?;
                Ok(Reply::Destroyed(destroyed))
            }
            SecretOp::Del => {
                blocking(move || Ok(store.delete(&ns, &name)?))
                    .await
                    .map_err(at(Gate::Store))?;
                Ok(Reply::Done)
            }
            SecretOp::Meta => {
                let meta = blocking(move || Ok(store.metadata(&ns, &name)?))
                    .await
                    .map_err(at(Gate::Store))?;
                Ok(Reply::Meta(Box::new(meta)))
            }
            SecretOp::Versions => {
                let versions = blocking(move || Ok(store.versions(&ns, &name)?))
                    .await
                    .map_err(at(Gate::Store))?;
                Ok(Reply::Versions(versions))
            }
        }
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
            .map_err(at(Gate::Store))?;
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
        who: &Principal,
        store: Arc<dyn SecretStore>,
        key: &CacheKey,
        w: Writing,
    ) -> Gated<(coffer_types::NvIndex, Version)> {
        let (ns, name) = key.clone();
        let actor = who.actor();
        let new_max_versions = self.config.default_max_versions;
        let written = blocking(move || {
            let options = w.options;
            let mut write = Write::new(&w.value, &actor);
            write.kind = options.kind;
            write.new_kind = if options.binary {
                Kind::File
            } else {
                Kind::Text
            };
            write.mode = w.mode;
            write.description = options.description;
            write.max_versions = options.max_versions;
            write.new_max_versions = new_max_versions;
            write.generated = w.generated;
            write.cas = options.cas;
            Ok(store.set(&ns, &name, write)?)
        })
        .await
        .map_err(at(Gate::Store))?;
        Ok((written.index, written.version))
    }

    async fn minted(
        &self,
        who: &Principal,
        store: Arc<dyn SecretStore>,
        key: &CacheKey,
        spec: GeneratorSpec,
        mut options: WriteOptions,
        mode: WriteMode,
    ) -> Gated<Reply> {
        let value =
            mint::mint(spec).map_err(|e| Refusal::at(Gate::Store, StoreError::Crypto(e)))?;
        // Minted values are one line of text; an explicit kind still applies.
        options.kind = options.kind.or(Some(Kind::Line));
        let (index, version) = self
            .write(
                who,
                store,
                key,
                Writing {
                    value: value.clone(),
                    options,
                    mode,
                    generated: Some(spec),
                },
            )
            .await?;
        Ok(Reply::Minted {
            index,
            version,
            value,
        })
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

/// The operator action to log at info, if this is one (data-plane reads and sets log at
/// debug: their frequency would drown the operator's actions).
fn action_name(op: &SecretOp) -> Option<&'static str> {
    Some(match op {
        SecretOp::Generate { .. } => "generate",
        SecretOp::Rotate { .. } => "rotate",
        SecretOp::Describe { change } if change.mark.is_some() => "delete_versions",
        SecretOp::Describe { .. } => "describe",
        SecretOp::Revoke => "revoke",
        SecretOp::Destroy { .. } => "destroy",
        SecretOp::Del => "delete",
        _ => return None,
    })
}
