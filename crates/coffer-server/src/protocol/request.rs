//! Turning the fields of a request into a core [`Operation`] (DESIGN.md, Local socket
//! protocol; reference 000 for `set`/`get`/`del`).
//!
//! Each action names the fields it takes; any other field is refused, so a typo or a field
//! meant for another action is never silently ignored. This is a translation of the wire's
//! shape only: names and namespaces are parsed into a [`Target`] (an invalid one waits for
//! its gate), numbers are passed on as given, and every rule about them (ranges, limits,
//! defaults, what needs which capability) is the core's (`coffer_core::op`).

use coffer_core::Operation;
use coffer_core::op::{
    AppRoleOp, FleetOp, ListInput, MetadataChange, RoleInput, RotationInput, SecretIdInput,
    SecretOp, SpecInput, TokenInput, WatchInput, WebhookOp, WriteOptions,
};
use coffer_crypto::SecretBytes;
use coffer_types::reply::PolicyText;
use coffer_types::wire::{Action, UnsealWith};
use coffer_types::{
    DigestEncoding, Encoding, HmacAlgorithm, Kind, SlotKind, Target, Version, parse_namespace,
};

use super::fields::{self, FieldSet, Fields, ParseError, VersionField, field_set};

/// A parsed request with its envelope fields.
#[derive(Debug)]
pub struct Parsed {
    /// The action, for shaping the reply.
    pub action: Action,
    /// What to do.
    pub operation: Operation,
    /// The `id` to echo, as JSON text.
    pub id: Option<String>,
    /// Whether the client asked to keep the connection open.
    pub keep_alive: bool,
    /// The token the request runs as, if it carries one.
    pub token: Option<SecretBytes>,
}

/// Fields every request may carry.
const ENVELOPE: FieldSet = field_set!(action, id, keep_alive, token);
const WRITE: FieldSet = field_set!(kind, description, max_versions);
const METADATA: FieldSet = field_set!(
    description,
    max_versions,
    cas_required,
    delete_version_after,
    custom_metadata
);

/// The fields each action takes besides the envelope.
fn takes(action: Action) -> FieldSet {
    // Every set is a constant: no lookups by name at run time.
    const ONE: FieldSet = field_set!(namespace, name);
    const SET: FieldSet = ONE.and(field_set!(value, value_b64)).and(WRITE);
    const GET: FieldSet = ONE.and(field_set!(version));
    const GENERATE: FieldSet = ONE
        .and(field_set!(
            byte_len,
            encoding,
            rotate_every,
            rotate_command,
            rotate_grace
        ))
        .and(WRITE);
    const ROTATE: FieldSet = ONE
        .and(field_set!(value, value_b64, generate, byte_len, encoding))
        .and(WRITE);
    const DESCRIBE: FieldSet = ONE.and(METADATA);
    const PATCH: FieldSet = ONE.and(field_set!(value, cas));
    const DESTROY: FieldSet = ONE.and(field_set!(versions));
    const LIST: FieldSet = field_set!(namespace, prefix, after, limit, detail, revoked);
    const HMAC: FieldSet = ONE.and(field_set!(algorithm, data, data_b64, encoding));
    const BASIC_AUTH: FieldSet = ONE.and(field_set!(user));
    const NAMESPACE: FieldSet = field_set!(namespace);
    const UNSEAL: FieldSet = field_set!(slot, key);
    const SLOT_ADD: FieldSet = field_set!(kind, pcrs, key, path);
    const SLOT_RESEAL: FieldSet = field_set!(slot_id, key);
    const POLICY: FieldSet = field_set!(policy);
    const TOKEN_CREATE: FieldSet =
        field_set!(policies, ttl, namespace, display_name, max_ttl, orphan);
    match action {
        Action::Set => SET,
        Action::Get => GET,
        Action::Del | Action::Meta | Action::Versions | Action::Revoke => ONE,
        Action::Generate => GENERATE,
        Action::Rotate => ROTATE,
        Action::Describe => DESCRIBE,
        Action::Patch => PATCH,
        Action::Destroy => DESTROY,
        Action::List => LIST,
        Action::Hmac => HMAC,
        Action::BasicAuth => BASIC_AUTH,
        Action::Yescrypt => ONE.and(field_set!(setting)),
        Action::NamespaceRotateKey => NAMESPACE,
        Action::NamespaceCreate | Action::NamespaceUnlock | Action::NamespacePassphrase => {
            NAMESPACE.and(field_set!(key))
        }
        Action::NamespaceLock => NAMESPACE,
        Action::Unseal => UNSEAL,
        Action::SlotAdd => SLOT_ADD,
        Action::SlotRemove => field_set!(slot_id),
        Action::RotateMaster => field_set!(passphrases, drop_passphrase_slots),
        Action::SlotReseal => SLOT_RESEAL,
        Action::PolicyPut => POLICY.and(field_set!(rules, hcl)),
        Action::PolicyGet | Action::PolicyDelete => POLICY,
        Action::SubjectSet => field_set!(subject, policies),
        Action::TokenCreate => TOKEN_CREATE,
        Action::TokenRevoke => field_set!(accessor),
        Action::TokenLookup => field_set!(accessor),
        Action::AuditHash => field_set!(name, namespace),
        Action::Watch => field_set!(namespace, prefix, since),
        Action::WebhookAdd => field_set!(url, events, namespace, prefix),
        Action::WebhookRemove | Action::WebhookTest => field_set!(webhook),
        Action::Backup => field_set!(recipients, key),
        Action::Approle => field_set!(
            verb,
            name,
            policies,
            secret_id_ttl,
            num_uses,
            ttl,
            max_ttl,
            role_id,
            accessor
        ),
        Action::ApproleLogin => field_set!(role_id, secret_id),
        Action::Fleet => field_set!(
            verb, tags, num_uses, ttl, node, public_key, add, remove, namespace, name, tag, prefix,
            hubs
        ),
        _ => FieldSet::EMPTY,
    }
}

fn invalid(message: impl Into<String>) -> ParseError {
    ParseError::invalid(message)
}

fn needs<T>(field: Option<T>, name: &str, action: Action) -> Result<T, ParseError> {
    field.ok_or_else(|| invalid(format!("`{action}` needs the field `{name}`")))
}

fn parse_word<T: std::str::FromStr>(field: Option<String>) -> Result<Option<T>, ParseError>
where
    T::Err: std::fmt::Display,
{
    field
        .map(|w| w.parse::<T>().map_err(|e| invalid(e.to_string())))
        .transpose()
}

fn positive(n: u64, field: &str) -> Result<Version, ParseError> {
    u32::try_from(n)
        .ok()
        .and_then(Version::new)
        .ok_or_else(|| invalid(format!("field `{field}` must be a positive integer")))
}

fn slot_id(n: u64) -> Result<u32, ParseError> {
    u32::try_from(n).map_err(|_| invalid("field `slot_id` is not a slot of this store"))
}

/// The value of `set` or `rotate`: `value`, or `value_b64` decoded. (The request's size
/// bounds what is decoded; the value's own limit is the core's.)
fn value(f: &mut Fields) -> Result<Option<(SecretBytes, bool)>, ParseError> {
    match (f.value.take(), f.value_b64.take()) {
        (Some(v), None) => Ok(Some((v, false))),
        (None, Some(b64)) => {
            let text = b64
                .expose_str()
                .ok_or_else(|| invalid("field `value_b64` must be a base64 string"))?;
            let decoded = SecretBytes::from_base64(text)
                .map_err(|_| invalid("field `value_b64` is not valid base64 (RFC 4648, padded)"))?;
            Ok(Some((decoded, true)))
        }
        (Some(_), Some(_)) => Err(invalid("give `value` or `value_b64`, not both")),
        (None, None) => Ok(None),
    }
}

fn write_options(f: &mut Fields, binary: bool) -> Result<WriteOptions, ParseError> {
    Ok(WriteOptions {
        kind: parse_word::<Kind>(f.kind.take())?,
        binary,
        description: f.description.take(),
        max_versions: f.max_versions.take(),
        cas: None,
    })
}

/// The rotation policy fields of `generate`: `rotate_every` is required for the others.
fn rotation(f: &mut Fields) -> Result<Option<RotationInput>, ParseError> {
    let (every, command, grace) = (
        f.rotate_every.take(),
        f.rotate_command.take(),
        f.rotate_grace.take(),
    );
    match every {
        Some(every) => Ok(Some(RotationInput {
            every: every.0,
            command,
            grace: grace.map(|g| g.0),
        })),
        None if command.is_some() || grace.is_some() => Err(invalid(
            "`rotate_command` and `rotate_grace` need `rotate_every`",
        )),
        None => Ok(None),
    }
}

fn spec(f: &mut Fields) -> Result<Option<SpecInput>, ParseError> {
    let encoding = parse_word::<Encoding>(f.encoding.take())?;
    Ok(match (f.byte_len.take(), encoding) {
        (None, None) => None,
        (byte_len, encoding) => Some(SpecInput { byte_len, encoding }),
    })
}

/// Parses one request.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    let mut f = Fields::default();
    fields::read(bytes, &mut f)?;
    let action: Action = f
        .action
        .take()
        .ok_or_else(|| invalid("the request needs the field `action`"))?
        .parse()
        .ok()
        .filter(|a: &Action| a.on_socket())
        .ok_or_else(|| invalid(coffer_types::UnknownAction.to_string()))?;
    if let Some(extra) = f.present.first_outside(takes(action).and(ENVELOPE)) {
        return Err(invalid(format!(
            "the field `{extra}` does not apply to `{action}`"
        )));
    }
    let id = f.id.take().map(|i| i.0);
    let keep_alive = f.keep_alive.take().unwrap_or(false);
    let token = f.token.take();
    let operation = convert(action, &mut f)?;
    Ok(Parsed {
        action,
        operation,
        id,
        keep_alive,
        token,
    })
}

fn convert(action: Action, f: &mut Fields) -> Result<Operation, ParseError> {
    let secret = |f: &mut Fields, op: SecretOp| -> Result<Operation, ParseError> {
        let name = needs(f.name.take(), "name", action)?;
        Ok(Operation::Secret {
            target: Target::parse_owned(f.namespace.take(), name),
            op,
        })
    };
    let op = match action {
        Action::Set => {
            let (value, binary) = needs(value(f)?, "value` (or `value_b64", action)?;
            let options = write_options(f, binary)?;
            SecretOp::Set { value, options }
        }
        Action::Get => match f.version.take() {
            Some(VersionField::Previous) => SecretOp::GetPrevious,
            Some(VersionField::Number(v)) => SecretOp::Get {
                version: Some(positive(v, "version")?),
            },
            None => SecretOp::Get { version: None },
        },
        Action::Patch => SecretOp::Patch {
            patch: needs(f.value.take(), "value", action)?,
            cas: f.cas.take(),
        },
        Action::Del => SecretOp::Del,
        Action::Meta => SecretOp::Meta,
        Action::Versions => SecretOp::Versions,
        Action::Revoke => SecretOp::Revoke,
        Action::Generate => SecretOp::Generate {
            spec: spec(f)?.unwrap_or_default(),
            options: write_options(f, false)?,
            rotation: rotation(f)?,
        },
        Action::Rotate => {
            let generate = f.generate.take().unwrap_or(false);
            let given = value(f)?;
            let spec = spec(f)?;
            match (generate, given) {
                (true, Some(_)) => {
                    return Err(invalid("`rotate` takes a value or `generate`, not both"));
                }
                (false, None) => {
                    return Err(invalid(
                        "`rotate` needs the field `value` (or `value_b64`), or `generate`: true",
                    ));
                }
                (true, None) => SecretOp::Rotate {
                    value: None,
                    spec,
                    options: write_options(f, false)?,
                },
                (false, Some((value, binary))) => SecretOp::Rotate {
                    value: Some(value),
                    spec,
                    options: write_options(f, binary)?,
                },
            }
        }
        Action::Describe => SecretOp::Describe {
            change: MetadataChange {
                description: f.description.take(),
                max_versions: f.max_versions.take(),
                cas_required: f.cas_required.take(),
                delete_version_after: f.delete_version_after.take().map(|d| d.0),
                custom_metadata: f.custom_metadata.take().map(|m| m.0),
            },
        },
        Action::Destroy => SecretOp::Destroy {
            versions: needs(f.versions.take(), "versions", action)?
                .into_iter()
                .map(|v| positive(v, "versions"))
                .collect::<Result<_, _>>()?,
        },
        Action::Hmac => SecretOp::Hmac {
            algorithm: parse_word::<HmacAlgorithm>(f.algorithm.take())?.unwrap_or_default(),
            data: match (f.data.take(), f.data_b64.take()) {
                (Some(d), None) => d.expose_secret().to_vec(),
                (None, Some(b64)) => {
                    let text = b64
                        .expose_str()
                        .ok_or_else(|| invalid("field `data_b64` must be a base64 string"))?;
                    SecretBytes::from_base64(text)
                        .map_err(|_| invalid("field `data_b64` is not valid base64"))?
                        .expose_secret()
                        .to_vec()
                }
                (Some(_), Some(_)) => return Err(invalid("give `data` or `data_b64`, not both")),
                (None, None) => {
                    return Err(invalid("`hmac` needs the field `data` (or `data_b64`)"));
                }
            },
            encoding: parse_word::<DigestEncoding>(f.encoding.take())?.unwrap_or_default(),
        },
        Action::BasicAuth => SecretOp::BasicAuth {
            user: needs(f.user.take(), "user", action)?,
        },
        Action::Yescrypt => SecretOp::Yescrypt {
            setting: f.setting.take(),
        },
        _ => return daemon(action, f),
    };
    secret(f, op)
}

/// Requests that are not about one secret.
fn daemon(action: Action, f: &mut Fields) -> Result<Operation, ParseError> {
    Ok(match action {
        Action::List => Operation::List {
            namespace: parse_namespace(f.namespace.take().as_deref()),
            input: ListInput {
                prefix: f.prefix.take(),
                after: f.after.take(),
                limit: f.limit.take(),
                detail: f.detail.take().unwrap_or(false),
                revoked: f.revoked.take().unwrap_or(false),
                folders: false,
            },
        },
        Action::NamespaceCreate => Operation::NamespaceCreate {
            namespace: parse_namespace(Some(&needs(f.namespace.take(), "namespace", action)?)),
            passphrase: f.key.take(),
        },
        Action::NamespaceLock => Operation::NamespaceLock {
            namespace: parse_namespace(Some(&needs(f.namespace.take(), "namespace", action)?)),
        },
        Action::NamespaceUnlock => Operation::NamespaceUnlock {
            namespace: parse_namespace(Some(&needs(f.namespace.take(), "namespace", action)?)),
            passphrase: needs(f.key.take(), "key", action)?,
        },
        Action::NamespacePassphrase => Operation::NamespacePassphrase {
            namespace: parse_namespace(Some(&needs(f.namespace.take(), "namespace", action)?)),
            passphrase: needs(f.key.take(), "key", action)?,
        },
        Action::RotateMaster => Operation::RotateMaster {
            passphrases: f.passphrases.take(),
            drop_passphrase_slots: f.drop_passphrase_slots.take().unwrap_or(false),
        },
        Action::NamespaceRotateKey => Operation::NamespaceRotateKey {
            namespace: parse_namespace(Some(&needs(f.namespace.take(), "namespace", action)?)),
        },
        Action::NamespaceList => Operation::NamespaceList,
        Action::Status => Operation::Status,
        Action::Seal => Operation::Seal,
        Action::Unseal => {
            let key = f.key.take();
            let with = match f.slot.take().as_deref() {
                None if key.is_some() => UnsealWith::Passphrase,
                None => UnsealWith::KeyFile,
                Some(s) => s.parse().map_err(|_| {
                    invalid("field `slot` must be `passphrase`, `recovery`, `file` or `tpm`")
                })?,
            };
            Operation::Unseal {
                with,
                key,
                by_key: false,
            }
        }
        Action::SlotList => Operation::SlotList,
        Action::SlotAdd => Operation::SlotAdd {
            kind: needs(f.kind.take(), "kind", action)?
                .parse::<SlotKind>()
                .map_err(|e| invalid(e.to_string()))?,
            pcrs: f.pcrs.take(),
            key: f.key.take(),
            path: f.path.take(),
        },
        Action::SlotRemove => Operation::SlotRemove {
            id: slot_id(needs(f.slot_id.take(), "slot_id", action)?)?,
        },
        Action::SlotReseal => Operation::SlotReseal {
            id: f.slot_id.take().map(slot_id).transpose()?,
            key: f.key.take(),
        },
        Action::PolicyPut => Operation::PolicyPut {
            name: needs(f.policy.take(), "policy", action)?,
            rules: match (f.rules.take(), f.hcl.take()) {
                (rules, Some(hcl)) => PolicyText {
                    rules: rules.unwrap_or_default(),
                    hcl: Some(hcl),
                },
                (rules, None) => PolicyText {
                    rules: needs(rules, "rules", action)?,
                    hcl: None,
                },
            },
        },
        Action::PolicyGet => Operation::PolicyGet {
            name: needs(f.policy.take(), "policy", action)?,
        },
        Action::PolicyDelete => Operation::PolicyDelete {
            name: needs(f.policy.take(), "policy", action)?,
        },
        Action::PolicyList => Operation::PolicyList,
        Action::Backup => Operation::Backup {
            recipients: f.recipients.take().unwrap_or_default(),
            passphrase: f.key.take(),
        },
        Action::SubjectSet => Operation::SubjectSet {
            subject: needs(f.subject.take(), "subject", action)?,
            policies: needs(f.policies.take(), "policies", action)?,
        },
        Action::TokenCreate => Operation::TokenCreate(TokenInput {
            policies: needs(f.policies.take(), "policies", action)?,
            ttl: Some(needs(f.ttl.take(), "ttl", action)?.0),
            namespace: f.namespace.take(),
            display_name: f.display_name.take(),
            max_ttl: f.max_ttl.take().map(|s| s.0),
            orphan: f.orphan.take().unwrap_or(false),
            default_policy: false,
            role: None,
        }),
        Action::TokenList => Operation::TokenList,
        Action::TokenRenew => Operation::TokenRenewSelf,
        Action::TokenRevokeSelf => Operation::TokenRevokeSelf,
        Action::TokenRevoke => Operation::TokenRevoke {
            accessor: needs(f.accessor.take(), "accessor", action)?,
        },
        Action::TokenLookup => Operation::TokenLookup {
            accessor: f.accessor.take(),
        },
        Action::AuditHash => Operation::AuditHash {
            name: f.name.take(),
            namespace: f.namespace.take(),
        },
        Action::AuditVerify => Operation::AuditVerify,
        Action::AuditAcknowledge => Operation::AuditAcknowledge,
        Action::Watch => Operation::Watch(WatchInput {
            // `*`: every namespace (as HTTP's event subscription, with its grant).
            namespace: match f.namespace.take() {
                Some(all) if all == "*" => None,
                ns => Some(parse_namespace(ns.as_deref())),
            },
            prefix: f.prefix.take(),
            since: f.since.take(),
            subscription: None,
        }),
        Action::WebhookAdd => Operation::Webhook(WebhookOp::Add {
            url: needs(f.url.take(), "url", action)?,
            events: f.events.take().unwrap_or_default(),
            namespace: f.namespace.take(),
            prefix: f.prefix.take(),
        }),
        Action::WebhookList => Operation::Webhook(WebhookOp::List),
        Action::WebhookRemove => Operation::Webhook(WebhookOp::Remove {
            id: needs(f.webhook.take(), "webhook", action)?,
        }),
        Action::WebhookTest => Operation::Webhook(WebhookOp::Test {
            id: needs(f.webhook.take(), "webhook", action)?,
        }),
        Action::WebhookStatus => Operation::Webhook(WebhookOp::Status),
        Action::Approle => Operation::AppRole(approle(f)?),
        Action::Fleet => Operation::Fleet(fleet(f)?),
        Action::ApproleLogin => Operation::AppRole(AppRoleOp::Login {
            role_id: needs(f.role_id.take(), "role_id", action)?,
            secret_id: needs(f.secret_id.take(), "secret_id", action)?,
        }),
        _ => return Err(invalid("this action is not available on the socket")),
    })
}

/// The verbs of `approle`, for its error message.
const APPROLE_VERBS: &str = "role_put, role_get, role_list, role_delete, role_id, role_id_set, \
                             secret_id, secret_id_list, secret_id_lookup, secret_id_destroy";

/// `approle`: its `verb` says what is done; `name` is the role.
fn approle(f: &mut Fields) -> Result<AppRoleOp, ParseError> {
    let action = Action::Approle;
    let verb = needs(f.verb.take(), "verb", action)?;
    if verb == "role_list" {
        return Ok(AppRoleOp::RoleList);
    }
    let name = needs(f.name.take(), "name", action)?;
    Ok(match verb.as_str() {
        "role_put" => AppRoleOp::RolePut {
            name,
            input: RoleInput {
                token_policies: f.policies.take(),
                secret_id_ttl: f.secret_id_ttl.take().map(|s| s.0),
                secret_id_num_uses: f.num_uses.take(),
                token_ttl: f.ttl.take().map(|s| s.0),
                token_max_ttl: f.max_ttl.take().map(|s| s.0),
                token_no_default_policy: None,
            },
        },
        "role_get" => AppRoleOp::RoleGet { name },
        "role_delete" => AppRoleOp::RoleDelete { name },
        "role_id" => AppRoleOp::RoleIdGet { name },
        "role_id_set" => AppRoleOp::RoleIdSet {
            name,
            role_id: needs(f.role_id.take(), "role_id", action)?,
        },
        "secret_id" => AppRoleOp::SecretIdCreate {
            name,
            input: SecretIdInput {
                metadata: Default::default(),
                ttl: f.ttl.take().map(|s| s.0),
                num_uses: f.num_uses.take(),
            },
        },
        "secret_id_list" => AppRoleOp::SecretIdList { name },
        "secret_id_lookup" => AppRoleOp::AccessorLookup {
            name,
            accessor: needs(f.accessor.take(), "accessor", action)?,
        },
        "secret_id_destroy" => AppRoleOp::AccessorDestroy {
            name,
            accessor: needs(f.accessor.take(), "accessor", action)?,
        },
        _ => {
            return Err(invalid(format!(
                "field `verb` must be one of {APPROLE_VERBS}"
            )));
        }
    })
}

/// The fleet's verbs on the socket.
const FLEET_VERBS: &str = "token_create, token_list, token_revoke, node_add, node_list, \
    node_tag, node_enable, node_disable, node_remove, secret_tag, assign, unassign, rules, \
    bundle_create";

/// A join token lasts a day unless `ttl` says otherwise.
const DEFAULT_JOIN_TTL: u64 = 86_400;

fn fleet(f: &mut Fields) -> Result<FleetOp, ParseError> {
    let action = Action::Fleet;
    let verb = needs(f.verb.take(), "verb", action)?;
    let node = |f: &mut Fields| needs(f.node.take(), "node", action);
    Ok(match verb.as_str() {
        "token_create" => FleetOp::TokenCreate {
            tags: f.tags.take().unwrap_or_default(),
            uses: u32::try_from(f.num_uses.take().unwrap_or(1))
                .map_err(|_| invalid("field `num_uses` is at most 4294967295"))?,
            ttl_secs: f.ttl.take().map_or(DEFAULT_JOIN_TTL, |s| s.0),
        },
        "token_list" => FleetOp::TokenList,
        "token_revoke" => FleetOp::TokenRevoke {
            id: needs(f.name.take(), "name", action)?,
        },
        "node_add" => FleetOp::NodeAdd {
            key: needs(f.public_key.take(), "public_key", action)?,
            tags: f.tags.take().unwrap_or_default(),
        },
        "node_list" => FleetOp::NodeList,
        "node_tag" => FleetOp::NodeTag {
            node: node(f)?,
            add: f.add.take().unwrap_or_default(),
            remove: f.remove.take().unwrap_or_default(),
        },
        "node_enable" | "node_disable" => FleetOp::NodeEnable {
            node: node(f)?,
            enabled: verb == "node_enable",
        },
        "node_remove" => FleetOp::NodeRemove { node: node(f)? },
        "secret_tag" => FleetOp::SecretTag {
            namespace: f.namespace.take().unwrap_or_else(|| "default".to_owned()),
            name: needs(f.name.take(), "name", action)?,
            add: f.add.take().unwrap_or_default(),
            remove: f.remove.take().unwrap_or_default(),
        },
        "assign" | "unassign" => {
            let tag = needs(f.tag.take(), "tag", action)?;
            let namespace = f.namespace.take().unwrap_or_else(|| "default".to_owned());
            let prefix = f.prefix.take().unwrap_or_default();
            if verb == "assign" {
                FleetOp::Assign {
                    tag,
                    namespace,
                    prefix,
                }
            } else {
                FleetOp::Unassign {
                    tag,
                    namespace,
                    prefix,
                }
            }
        }
        "rules" => FleetOp::Rules,
        "bundle_create" => FleetOp::BundleCreate {
            tags: f.tags.take().unwrap_or_default(),
            hubs: f.hubs.take().unwrap_or_default(),
        },
        _ => {
            return Err(invalid(format!(
                "field `verb` must be one of {FLEET_VERBS}"
            )));
        }
    })
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
