//! Operations on one secret: their inputs as a listener gives them, the capabilities each
//! asks of the policy gate ([`SecretOp::needs`]), and their validation ([`SecretOp::check`]),
//! which turns them into the typed form the service carries out ([`Checked`]).
//!
//! Every rule about a secret operation's input is here, once: value sizes, the generator
//! spec, version limits and check-and-set numbers, the bounds of durations, custom metadata,
//! and which field needs which capability (a version limit erases versions: `destroy`;
//! `delete_version_after` soft-deletes them: `revoke`).

use coffer_crypto::SecretBytes;
use coffer_types::custom::{self, CustomMetadataChange};
use coffer_types::{
    Action, Capability, DigestEncoding, Encoding, GeneratorSpec, HmacAlgorithm, Kind, MAX_KV_DEPTH,
    RotationPolicy, Version, duration, json_depth,
};

use crate::CoreError;
use crate::access::policy::CapSet;

/// The longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
/// Most versions one request may name.
pub const MAX_VERSIONS_NAMED: usize = 1000;
/// The longest basic-auth user, in bytes.
pub const MAX_USER_BYTES: usize = 1024;

/// What to do to one secret, as the request gave it.
#[derive(Debug)]
#[non_exhaustive]
pub enum SecretOp {
    /// Read the newest value, or `version`.
    Get {
        /// A version, or the newest.
        version: Option<Version>,
    },
    /// Store a value: a new secret, or a new version.
    Set {
        /// The value.
        value: SecretBytes,
        /// Kind and metadata.
        options: WriteOptions,
    },
    /// A new version of a KV secret: its newest value (a JSON object) with a JSON merge
    /// patch (RFC 7396) applied, in one store transaction.
    Patch {
        /// The merge patch, a JSON object's text.
        patch: SecretBytes,
        /// Check-and-set: patch only when the newest version is this one.
        cas: Option<u64>,
    },
    /// Mint a value for a new secret and answer it once.
    Generate {
        /// What to mint.
        spec: SpecInput,
        /// Kind and metadata.
        options: WriteOptions,
        /// A rotation policy for it.
        rotation: Option<RotationInput>,
    },
    /// Read the version before the current one, during the grace period after a rotation.
    GetPrevious,
    /// A new version of an existing secret: the given value, or a minted one.
    Rotate {
        /// The new value; `None` mints one.
        value: Option<SecretBytes>,
        /// What to mint (with no value); `None` reuses the secret's generator, or the default.
        spec: Option<SpecInput>,
        /// Kind and metadata.
        options: WriteOptions,
    },
    /// Change metadata; no new version.
    Describe {
        /// The change (empty: only check that the secret exists and may be changed).
        change: MetadataChange,
    },
    /// Soft-delete versions: unreadable until undeleted (KV v2's `delete`).
    DeleteVersions {
        /// Which; `None`: the newest.
        versions: Option<Vec<Version>>,
    },
    /// Make soft-deleted versions readable again.
    Undelete {
        /// Which.
        versions: Vec<Version>,
    },
    /// Soft delete of the secret: unreadable, kept for audit, the name freed.
    Revoke,
    /// Erase these versions' ciphertexts.
    Destroy {
        /// Which versions.
        versions: Vec<Version>,
    },
    /// Delete the secret with every version.
    Del,
    /// Metadata, never the value.
    Meta,
    /// The version history.
    Versions,
    /// HMAC of caller data under the secret; the caller gets the digest only.
    Hmac {
        /// The hash.
        algorithm: HmacAlgorithm,
        /// The data to authenticate.
        data: Vec<u8>,
        /// How the digest is written.
        encoding: DigestEncoding,
    },
    /// The HTTP basic-auth header for `user` and the secret as password.
    BasicAuth {
        /// The user-id.
        user: String,
    },
    /// The yescrypt hash (crypt(3)'s `$y$...`) of the secret as password.
    Yescrypt {
        /// A `$y$` setting or earlier hash to reuse (its parameters and salt); `None`: a
        /// fresh salt at libxcrypt's default cost.
        setting: Option<String>,
    },
}

/// How a written value is described, as the request gave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// The kind; `None` keeps the secret's kind (text, or file for a binary value, when new).
    pub kind: Option<Kind>,
    /// The value came as base64 (binary).
    pub binary: bool,
    /// A new description (empty clears it).
    pub description: Option<String>,
    /// A new version limit (0: unlimited). A limit erases old versions: it needs `destroy`.
    pub max_versions: Option<u64>,
    /// Check-and-set: write only when the newest version is this one (0: only a new secret).
    pub cas: Option<u64>,
}

/// A rotation policy, as the request gave it (durations in seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationInput {
    /// Seconds between rotations (at least 1).
    pub every: u64,
    /// The hook: an absolute path to an executable file.
    pub command: Option<String>,
    /// Seconds the previous version stays readable after a rotation (at most `every`).
    pub grace: Option<u64>,
}

impl RotationInput {
    /// The policy, checking every field.
    pub fn check(self, spec: GeneratorSpec) -> Result<RotationPolicy, CoreError> {
        if self.every == 0 {
            return Err(invalid("rotate_every must be at least 1 second"));
        }
        if self.every > duration::MAX_SECONDS {
            return Err(invalid(format!(
                "rotate_every is at most {} ({} seconds)",
                duration::go_text(duration::MAX_SECONDS),
                duration::MAX_SECONDS
            )));
        }
        let grace = self.grace.unwrap_or(0);
        if grace > self.every {
            return Err(invalid("rotate_grace must not be longer than rotate_every"));
        }
        if let Some(command) = &self.command {
            check_hook(command)?;
        }
        Ok(RotationPolicy {
            every: self.every,
            command: self.command,
            grace,
            spec,
        })
    }
}

/// A hook the daemon may run ([`super::hook_path`]); one refusal whatever is wrong, and it
/// never quotes the path (a caller may have pasted anything into it).
fn check_hook(command: &str) -> Result<(), CoreError> {
    if super::hook_path::trusted(command) {
        Ok(())
    } else {
        Err(invalid(super::hook_path::UNTRUSTED))
    }
}

/// What to mint, as the request gave it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecInput {
    /// Random bytes (1-4096; default 32).
    pub byte_len: Option<u64>,
    /// How they are written out (default base64url).
    pub encoding: Option<Encoding>,
}

/// A change of a secret's metadata, as the request gave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataChange {
    /// A new description (empty clears it).
    pub description: Option<String>,
    /// A new version limit (0: unlimited). A limit erases versions: it needs `destroy`.
    pub max_versions: Option<u64>,
    /// Whether writes must carry `cas`.
    pub cas_required: Option<bool>,
    /// Soft-delete new versions this many seconds after they are written (0: never). It
    /// makes versions unreadable: it needs `revoke`.
    pub delete_version_after: Option<u64>,
    /// New custom metadata, or a merge into it.
    pub custom_metadata: Option<CustomMetadataChange>,
}

impl MetadataChange {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// What the policy gate checks for a secret operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// A plain write: `create` for a new secret, `update` for a new version, decided inside
    /// the store's transaction.
    pub create_or_update: bool,
    /// Capabilities needed besides.
    pub capabilities: CapSet,
}

impl Needs {
    fn of(capabilities: &[Capability]) -> Self {
        Self {
            create_or_update: false,
            capabilities: capabilities
                .iter()
                .fold(CapSet::default(), |set, &c| set.with(c)),
        }
    }

    fn and(mut self, c: Capability, when: bool) -> Self {
        if when {
            self.capabilities = self.capabilities.with(c);
        }
        self
    }
}

/// Whether a version limit erases versions (any limit but 0, unlimited).
fn limits_versions(max_versions: Option<u64>) -> bool {
    max_versions.is_some_and(|m| m > 0)
}

impl SecretOp {
    /// What it does, as the audit log and the metrics name it.
    pub fn action(&self) -> Action {
        match self {
            Self::Get { .. } | Self::GetPrevious => Action::Get,
            Self::Set { .. } => Action::Set,
            Self::Patch { .. } => Action::Patch,
            Self::Generate { .. } => Action::Generate,
            Self::Rotate { .. } => Action::Rotate,
            Self::Describe { .. } => Action::Describe,
            Self::DeleteVersions { .. } => Action::Delete,
            Self::Undelete { .. } => Action::Undelete,
            Self::Revoke => Action::Revoke,
            Self::Destroy { .. } => Action::Destroy,
            Self::Del => Action::Del,
            Self::Meta => Action::Meta,
            Self::Versions => Action::Versions,
            Self::Hmac { .. } => Action::Hmac,
            Self::BasicAuth { .. } => Action::BasicAuth,
            Self::Yescrypt { .. } => Action::Yescrypt,
        }
    }

    /// The capabilities the policy gate asks for, from the operation and its fields.
    pub fn needs(&self) -> Needs {
        use Capability::*;
        match self {
            Self::Get { .. }
            | Self::GetPrevious
            | Self::Hmac { .. }
            | Self::BasicAuth { .. }
            | Self::Yescrypt { .. } => Needs::of(&[Read]),
            Self::Set { options, .. } => Needs {
                create_or_update: true,
                ..Needs::of(&[])
            }
            .and(Destroy, limits_versions(options.max_versions)),
            Self::Patch { .. } => Needs::of(&[Update]),
            // A policy lets the daemon rotate the secret: that needs `rotate` too.
            Self::Generate {
                options, rotation, ..
            } => Needs::of(&[Generate])
                .and(Destroy, limits_versions(options.max_versions))
                .and(Rotate, rotation.is_some())
                // A hook runs as the daemon's user: naming one is an operator's act.
                .and(Sudo, rotation.as_ref().is_some_and(|r| r.command.is_some())),
            Self::Rotate { options, .. } => {
                Needs::of(&[Rotate]).and(Destroy, limits_versions(options.max_versions))
            }
            Self::Describe { change } => Needs::of(&[Update])
                .and(Destroy, limits_versions(change.max_versions))
                .and(Revoke, change.delete_version_after.is_some_and(|s| s > 0)),
            // Soft deletion and its undoing make values unreadable (or readable again)
            // without erasing them: coffer's `revoke`.
            Self::DeleteVersions { .. } | Self::Undelete { .. } | Self::Revoke => {
                Needs::of(&[Revoke])
            }
            Self::Destroy { .. } | Self::Del => Needs::of(&[Destroy]),
            Self::Meta | Self::Versions => Needs::of(&[Meta]),
        }
    }

    /// Gate 6: checks every field against its rule and answers the typed operation.
    pub fn check(self, max_value: usize) -> Result<Checked, CoreError> {
        Ok(match self {
            Self::Get { version } => Checked::Get { version },
            Self::Set { value, options } => {
                size(&value, max_value)?;
                let options = options.check(Some(&value))?;
                Checked::Write { value, options }
            }
            Self::Patch { patch, cas } => {
                size(&patch, max_value)?;
                let text = patch.expose_secret();
                if json_depth(text) > MAX_KV_DEPTH {
                    return Err(invalid(format!(
                        "the patch nests objects and arrays more than {MAX_KV_DEPTH} deep"
                    )));
                }
                if text
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_none_or(|&b| b != b'{')
                {
                    return Err(invalid("the patch's data must be a JSON object"));
                }
                Checked::Patch {
                    patch,
                    cas: cas.map(|c| number(c, "cas")).transpose()?,
                    max_value,
                }
            }
            Self::Generate {
                spec,
                options,
                rotation,
            } => {
                let spec = spec.check()?;
                Checked::Mint {
                    rotation: rotation.map(|r| r.check(spec)).transpose()?,
                    spec: Some(spec),
                    options: options.check(None)?,
                    rotate: false,
                }
            }
            Self::GetPrevious => Checked::GetPrevious,
            Self::Rotate {
                value: Some(value),
                spec: None,
                options,
            } => {
                size(&value, max_value)?;
                let options = options.check(Some(&value))?;
                Checked::Rotate { value, options }
            }
            Self::Rotate {
                value: Some(_),
                spec: Some(_),
                ..
            } => {
                return Err(invalid(
                    "rotate takes a value or what to mint (byte_len, encoding), not both",
                ));
            }
            Self::Rotate {
                value: None,
                spec,
                options,
            } => Checked::Mint {
                spec: spec.map(SpecInput::check).transpose()?,
                options: options.check(None)?,
                rotate: true,
                rotation: None,
            },
            Self::Describe { change } => Checked::Describe(change.check()?),
            Self::DeleteVersions { versions } => {
                if let Some(v) = &versions {
                    named(v, "delete")?;
                }
                Checked::Mark(match versions {
                    None => coffer_store::Mark::DeleteLatest,
                    Some(v) => coffer_store::Mark::Delete(v),
                })
            }
            Self::Undelete { versions } => {
                named(&versions, "undelete")?;
                Checked::Mark(coffer_store::Mark::Undelete(versions))
            }
            Self::Revoke => Checked::Revoke,
            Self::Destroy { versions } => {
                named(&versions, "destroy")?;
                Checked::Destroy { versions }
            }
            Self::Del => Checked::Del,
            Self::Meta => Checked::Meta,
            Self::Versions => Checked::Versions,
            Self::Hmac {
                algorithm,
                data,
                encoding,
            } => {
                if data.len() > max_value {
                    return Err(CoreError::TooLarge {
                        len: data.len(),
                        max: max_value,
                    });
                }
                Checked::Hmac {
                    algorithm,
                    data,
                    encoding,
                }
            }
            Self::BasicAuth { user } => {
                if user.len() > MAX_USER_BYTES {
                    return Err(invalid(format!(
                        "the user is at most {MAX_USER_BYTES} bytes"
                    )));
                }
                Checked::BasicAuth { user }
            }
            // A caller's setting is read strictly here, so a heavy or odd one never reaches
            // the hash; the message does not quote it.
            Self::Yescrypt { setting } => Checked::Yescrypt {
                setting: match setting {
                    Some(s) => Some(
                        coffer_crypto::pwhash::Setting::parse(&s)
                            .map_err(|e| invalid(format!("yescrypt: {e}")))?,
                    ),
                    None => None,
                },
            },
        })
    }
}

fn invalid(message: impl Into<String>) -> CoreError {
    CoreError::InvalidRequest(message.into())
}

fn size(value: &SecretBytes, max: usize) -> Result<(), CoreError> {
    if value.len() > max {
        return Err(CoreError::TooLarge {
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// A number that must fit a version number's range (`cas`, `max_versions`).
fn number(n: u64, field: &str) -> Result<u32, CoreError> {
    u32::try_from(n).map_err(|_| invalid(format!("{field} must be at most {}", u32::MAX)))
}

/// A list of versions a request names: at least one, not too many.
fn named(versions: &[Version], what: &str) -> Result<(), CoreError> {
    if versions.is_empty() {
        return Err(invalid(format!("{what} needs the versions to act on")));
    }
    if versions.len() > MAX_VERSIONS_NAMED {
        return Err(invalid(format!(
            "{what} takes at most {MAX_VERSIONS_NAMED} versions at once"
        )));
    }
    Ok(())
}

fn description(d: Option<String>) -> Result<Option<String>, CoreError> {
    if d.as_ref().is_some_and(|d| d.len() > MAX_DESCRIPTION_BYTES) {
        return Err(invalid(format!(
            "a description is at most {MAX_DESCRIPTION_BYTES} bytes"
        )));
    }
    Ok(d)
}

impl SpecInput {
    /// The generator spec, checking the length.
    pub fn check(self) -> Result<GeneratorSpec, CoreError> {
        GeneratorSpec::new(
            self.byte_len
                .unwrap_or(u64::from(GeneratorSpec::DEFAULT_BYTES)),
            self.encoding.unwrap_or_default(),
        )
        .map_err(|e| invalid(e.to_string()))
    }
}

impl WriteOptions {
    /// Checks the options of a write of `value` (none: a minted value).
    fn check(self, value: Option<&SecretBytes>) -> Result<CheckedOptions, CoreError> {
        Ok(CheckedOptions {
            kind: self.kind,
            new_kind: match (self.binary, value) {
                (true, Some(_)) => Kind::File,
                (_, None) => Kind::Line,
                _ => Kind::Text,
            },
            description: description(self.description)?,
            max_versions: self
                .max_versions
                .map(|m| number(m, "max_versions"))
                .transpose()?,
            cas: self.cas.map(|c| number(c, "cas")).transpose()?,
        })
    }
}

impl MetadataChange {
    fn check(self) -> Result<coffer_store::Describe, CoreError> {
        if let Some(after) = self.delete_version_after
            && after > duration::MAX_SECONDS
        {
            return Err(invalid(format!(
                "delete_version_after is at most {} ({} seconds)",
                duration::go_text(duration::MAX_SECONDS),
                duration::MAX_SECONDS
            )));
        }
        if let Some(CustomMetadataChange::Replace(map)) = &self.custom_metadata {
            custom::check(map).map_err(|e| invalid(e.to_string()))?;
        }
        Ok(coffer_store::Describe {
            description: description(self.description)?,
            max_versions: self
                .max_versions
                .map(|m| number(m, "max_versions"))
                .transpose()?,
            custom_metadata: self.custom_metadata,
            cas_required: self.cas_required,
            delete_version_after: self.delete_version_after,
            mark: None,
            rotation: None,
            tags: None,
        })
    }
}

/// Write options once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedOptions {
    /// The kind; `None` keeps the secret's.
    pub kind: Option<Kind>,
    /// The kind of a new secret written without one.
    pub new_kind: Kind,
    /// A new description.
    pub description: Option<String>,
    /// A new version limit (0: unlimited).
    pub max_versions: Option<u32>,
    /// Check-and-set.
    pub cas: Option<u32>,
}

/// A secret operation whose input passed validation.
#[derive(Debug)]
pub enum Checked {
    /// Read.
    Get {
        /// A version, or the newest.
        version: Option<Version>,
    },
    /// Write a given value (create or update).
    Write {
        /// The value.
        value: SecretBytes,
        /// Its options.
        options: CheckedOptions,
    },
    /// A new version of an existing secret with a given value.
    Rotate {
        /// The value.
        value: SecretBytes,
        /// Its options.
        options: CheckedOptions,
    },
    /// Mint a value: a new secret (`generate`) or a new version (`rotate`).
    Mint {
        /// What to mint; `None` (rotate only): the secret's own generator, or the default.
        spec: Option<GeneratorSpec>,
        /// Options.
        options: CheckedOptions,
        /// A new version of an existing secret rather than a new secret.
        rotate: bool,
        /// A rotation policy for the new secret.
        rotation: Option<RotationPolicy>,
    },
    /// Read the version before the current one (grace period).
    GetPrevious,
    /// Merge-patch the newest value.
    Patch {
        /// The patch (a JSON object's text).
        patch: SecretBytes,
        /// Check-and-set.
        cas: Option<u32>,
        /// The largest value the merge may produce.
        max_value: usize,
    },
    /// Change metadata.
    Describe(coffer_store::Describe),
    /// Soft-delete or undelete versions.
    Mark(coffer_store::Mark),
    /// Revoke.
    Revoke,
    /// Destroy versions.
    Destroy {
        /// Which.
        versions: Vec<Version>,
    },
    /// Delete with every version.
    Del,
    /// Metadata.
    Meta,
    /// Versions.
    Versions,
    /// An HMAC.
    Hmac {
        /// The hash.
        algorithm: HmacAlgorithm,
        /// The data.
        data: Vec<u8>,
        /// How the digest is written.
        encoding: DigestEncoding,
    },
    /// A basic-auth header.
    BasicAuth {
        /// The user-id.
        user: String,
    },
    /// A yescrypt hash.
    Yescrypt {
        /// The caller's parameters and salt, checked; `None`: fresh.
        setting: Option<coffer_crypto::pwhash::Setting>,
    },
}

impl Checked {
    /// Whether carrying it out can change the newest value (so it must leave the cache).
    pub(crate) fn changes_value(&self) -> bool {
        !matches!(
            self,
            Self::Get { .. }
                | Self::GetPrevious
                | Self::Meta
                | Self::Versions
                | Self::Hmac { .. }
                | Self::BasicAuth { .. }
                | Self::Yescrypt { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> SecretBytes {
        SecretBytes::copy_from(s.as_bytes())
    }

    #[test]
    fn fields_that_erase_or_hide_versions_need_their_capability() {
        let describe = |change| SecretOp::Describe { change }.needs().capabilities;
        let plain = describe(MetadataChange {
            description: Some("d".into()),
            ..MetadataChange::default()
        });
        assert!(plain.has(Capability::Update) && !plain.has(Capability::Destroy));
        let prune = describe(MetadataChange {
            max_versions: Some(1),
            ..MetadataChange::default()
        });
        assert!(prune.has(Capability::Update) && prune.has(Capability::Destroy));
        let unlimited = describe(MetadataChange {
            max_versions: Some(0),
            ..MetadataChange::default()
        });
        assert!(!unlimited.has(Capability::Destroy));
        let later = describe(MetadataChange {
            delete_version_after: Some(60),
            ..MetadataChange::default()
        });
        assert!(later.has(Capability::Revoke) && !later.has(Capability::Destroy));
        let set = SecretOp::Set {
            value: value("v"),
            options: WriteOptions {
                max_versions: Some(3),
                ..WriteOptions::default()
            },
        }
        .needs();
        assert!(set.create_or_update && set.capabilities.has(Capability::Destroy));
    }

    #[test]
    fn checks_refuse_what_would_overflow_or_exceed_a_limit() {
        let too_long = SecretOp::Describe {
            change: MetadataChange {
                delete_version_after: Some(99_999_999_999_999 * 3600),
                ..MetadataChange::default()
            },
        };
        assert!(matches!(
            too_long.check(1 << 20),
            Err(CoreError::InvalidRequest(_))
        ));
        let big = SecretOp::Set {
            value: value(&"x".repeat(11)),
            options: WriteOptions::default(),
        };
        assert!(matches!(big.check(10), Err(CoreError::TooLarge { .. })));
        let cas = SecretOp::Patch {
            patch: value("{}"),
            cas: Some(u64::MAX),
        };
        assert!(matches!(cas.check(10), Err(CoreError::InvalidRequest(_))));
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100), "]".repeat(100));
        let deep = SecretOp::Patch {
            patch: value(&deep),
            cas: None,
        };
        assert!(matches!(
            deep.check(1 << 20),
            Err(CoreError::InvalidRequest(_))
        ));
        let spec = SecretOp::Generate {
            spec: SpecInput {
                byte_len: Some(0),
                encoding: None,
            },
            options: WriteOptions::default(),
            rotation: None,
        };
        assert!(matches!(spec.check(10), Err(CoreError::InvalidRequest(_))));
        let none = SecretOp::Destroy { versions: vec![] };
        assert!(matches!(none.check(10), Err(CoreError::InvalidRequest(_))));
    }

    #[test]
    fn yescrypt_settings_are_checked_here_and_it_needs_read() {
        let ask = |setting: &str| {
            SecretOp::Yescrypt {
                setting: Some(setting.to_owned()),
            }
            .check(10)
        };
        assert!(matches!(
            ask("$y$j9T$5HunIKE36Q.GDh9fWbgnk/"),
            Ok(Checked::Yescrypt { setting: Some(_) })
        ));
        for bad in ["$y$jFT$5HunIKE36Q.GDh9fWbgnk/", "$2b$10$x", "$y$j9T$!"] {
            let Err(CoreError::InvalidRequest(m)) = ask(bad) else {
                panic!("{bad} accepted");
            };
            assert!(!m.contains(bad), "{m}");
        }
        let needs = SecretOp::Yescrypt { setting: None }.needs().capabilities;
        assert_eq!(needs, Needs::of(&[Capability::Read]).capabilities);
    }
}
