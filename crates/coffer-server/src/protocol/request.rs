//! Turning the fields of a request into a core [`Request`] (DESIGN.md, Local socket protocol;
//! reference 000 for `set`/`get`/`del`).
//!
//! Each action names the fields it takes; any other field is refused, so a typo or a field
//! meant for another action is never silently ignored.

use coffer_core::access::PolicyText;
use coffer_core::{ListRequest, Request, SecretOp, WriteOptions};
use coffer_crypto::SecretBytes;
use coffer_types::wire::{Action, UnsealWith};
use coffer_types::{
    DigestEncoding, Encoding, ErrorCode, GeneratorSpec, HmacAlgorithm, Kind, Version,
};

use super::fields::{self, FieldSet, Fields, ParseError, field_set};

/// A parsed request with its envelope fields.
#[derive(Debug)]
pub struct Parsed {
    /// The action, for shaping the reply.
    pub action: Action,
    /// What to do.
    pub request: Request,
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

/// The fields each action takes besides the envelope.
fn takes(action: Action) -> FieldSet {
    // Every set is a constant: no lookups by name at run time.
    const ONE: FieldSet = field_set!(namespace, name);
    const SET: FieldSet = ONE.and(field_set!(value, value_b64)).and(WRITE);
    const GET: FieldSet = ONE.and(field_set!(version));
    const GENERATE: FieldSet = ONE.and(field_set!(byte_len, encoding)).and(WRITE);
    const ROTATE: FieldSet = ONE
        .and(field_set!(value, value_b64, generate, byte_len, encoding))
        .and(WRITE);
    const DESCRIBE: FieldSet = ONE.and(field_set!(description, max_versions));
    const DESTROY: FieldSet = ONE.and(field_set!(versions));
    const LIST: FieldSet = field_set!(namespace, prefix, after, limit, detail, revoked);
    const HMAC: FieldSet = ONE.and(field_set!(algorithm, data, data_b64, encoding));
    const BASIC_AUTH: FieldSet = ONE.and(field_set!(user));
    const NAMESPACE: FieldSet = field_set!(namespace);
    const UNSEAL: FieldSet = field_set!(slot, key);
    const SLOT_ADD: FieldSet = field_set!(kind, pcrs, key, path);
    const SLOT_RESEAL: FieldSet = field_set!(slot_id, key);
    const POLICY: FieldSet = field_set!(policy);
    const TOKEN_CREATE: FieldSet = field_set!(policies, ttl, namespace, display_name);
    match action {
        Action::Set => SET,
        Action::Get => GET,
        Action::Del | Action::Meta | Action::Versions | Action::Revoke => ONE,
        Action::Generate => GENERATE,
        Action::Rotate => ROTATE,
        Action::Describe => DESCRIBE,
        Action::Destroy => DESTROY,
        Action::List => LIST,
        Action::Hmac => HMAC,
        Action::BasicAuth => BASIC_AUTH,
        Action::NamespaceCreate => NAMESPACE,
        Action::Unseal => UNSEAL,
        Action::SlotAdd => SLOT_ADD,
        Action::SlotRemove => field_set!(slot_id),
        Action::SlotReseal => SLOT_RESEAL,
        Action::PolicyPut => POLICY.and(field_set!(rules)),
        Action::PolicyGet | Action::PolicyDelete => POLICY,
        Action::SubjectSet => field_set!(subject, policies),
        Action::TokenCreate => TOKEN_CREATE,
        Action::TokenRevoke => field_set!(accessor),
        Action::TokenLookup => field_set!(accessor),
        Action::AuditHash => field_set!(name, namespace),
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

/// The value of `set` or `rotate`: `value`, or `value_b64` decoded (refused early when its
/// decoded size must exceed `max_value`).
fn value(f: &mut Fields, max_value: usize) -> Result<Option<(SecretBytes, bool)>, ParseError> {
    match (f.value.take(), f.value_b64.take()) {
        (Some(v), None) => Ok(Some((v, false))),
        (None, Some(b64)) => {
            if b64.len() / 4 * 3 > max_value + 3 {
                return Err(ParseError {
                    code: ErrorCode::TooLarge,
                    message: format!("the value is larger than the limit of {max_value} bytes"),
                });
            }
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
        max_versions: f
            .max_versions
            .take()
            .map(|n| u32::try_from(n).map_err(|_| invalid("field `max_versions` is too large")))
            .transpose()?,
        cas: None,
    })
}

fn spec(f: &mut Fields) -> Result<Option<GeneratorSpec>, ParseError> {
    let encoding = parse_word::<Encoding>(f.encoding.take())?;
    match (f.byte_len.take(), encoding) {
        (None, None) => Ok(None),
        (len, enc) => GeneratorSpec::new(
            len.unwrap_or(u64::from(GeneratorSpec::DEFAULT_BYTES)),
            enc.unwrap_or_default(),
        )
        .map(Some)
        .map_err(|e| invalid(e.to_string())),
    }
}

/// Parses one request. `max_value` bounds a base64 value before it is decoded.
pub fn parse(bytes: &[u8], max_value: usize) -> Result<Parsed, ParseError> {
    let mut f = Fields::default();
    fields::read(bytes, &mut f)?;
    let action: Action = f
        .action
        .take()
        .ok_or_else(|| invalid("the request needs the field `action`"))?
        .parse()
        .map_err(|e: coffer_types::wire::UnknownAction| invalid(e.to_string()))?;
    if let Some(extra) = f.present.first_outside(takes(action).and(ENVELOPE)) {
        return Err(invalid(format!(
            "the field `{extra}` does not apply to `{action}`"
        )));
    }
    let id = f.id.take().map(|i| i.0);
    let keep_alive = f.keep_alive.take().unwrap_or(false);
    let token = f.token.take();
    let request = convert(action, &mut f, max_value)?;
    Ok(Parsed {
        action,
        request,
        id,
        keep_alive,
        token,
    })
}

fn convert(action: Action, f: &mut Fields, max_value: usize) -> Result<Request, ParseError> {
    let secret = |f: &mut Fields, op: SecretOp| -> Result<Request, ParseError> {
        Ok(Request::Secret {
            namespace: f.namespace.take(),
            name: needs(f.name.take(), "name", action)?,
            op,
        })
    };
    let op = match action {
        Action::Set => {
            let (value, binary) = needs(value(f, max_value)?, "value` (or `value_b64", action)?;
            let options = write_options(f, binary)?;
            SecretOp::Set { value, options }
        }
        Action::Get => SecretOp::Get {
            version: f
                .version
                .take()
                .map(|v| positive(v, "version"))
                .transpose()?,
        },
        Action::Del => SecretOp::Del,
        Action::Meta => SecretOp::Meta,
        Action::Versions => SecretOp::Versions,
        Action::Revoke => SecretOp::Revoke,
        Action::Generate => {
            let spec = spec(f)?.unwrap_or_default();
            SecretOp::Generate {
                spec,
                options: write_options(f, false)?,
            }
        }
        Action::Rotate => {
            let generate = f.generate.take().unwrap_or(false);
            let given = value(f, max_value)?;
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
                (false, Some(_)) if spec.is_some() => {
                    return Err(invalid("`byte_len` and `encoding` go with `generate`"));
                }
                (true, None) => SecretOp::Rotate {
                    value: None,
                    spec,
                    options: write_options(f, false)?,
                },
                (false, Some((value, binary))) => SecretOp::Rotate {
                    value: Some(value),
                    spec: None,
                    options: write_options(f, binary)?,
                },
            }
        }
        Action::Describe => {
            let change = coffer_store::Describe {
                description: f.description.take(),
                max_versions: f
                    .max_versions
                    .take()
                    .map(|n| {
                        u32::try_from(n).map_err(|_| invalid("field `max_versions` is too large"))
                    })
                    .transpose()?,
                ..coffer_store::Describe::default()
            };
            if change.is_empty() {
                return Err(invalid("describe needs a description or max_versions"));
            }
            SecretOp::Describe { change }
        }
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
        Action::List => {
            return Ok(Request::List {
                namespace: f.namespace.take(),
                query: ListRequest {
                    prefix: f.prefix.take(),
                    after: f.after.take(),
                    limit: f
                        .limit
                        .take()
                        .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                    detail: f.detail.take().unwrap_or(false),
                    revoked: f.revoked.take().unwrap_or(false),
                },
            });
        }
        Action::NamespaceCreate => {
            return Ok(Request::CreateNamespace {
                namespace: needs(f.namespace.take(), "namespace", action)?,
            });
        }
        Action::NamespaceList => return Ok(Request::ListNamespaces),
        Action::Status => return Ok(Request::Status),
        Action::Seal => return Ok(Request::Seal),
        Action::Unseal => {
            let key = f.key.take();
            let with = match f.slot.take().as_deref() {
                None if key.is_some() => UnsealWith::Passphrase,
                None => UnsealWith::KeyFile,
                Some(s) => s.parse().map_err(|_| {
                    invalid("field `slot` must be `passphrase`, `recovery`, `file` or `tpm`")
                })?,
            };
            return Ok(Request::Unseal { with, key });
        }
        Action::SlotList => return Ok(Request::SlotList),
        Action::SlotAdd => {
            return Ok(Request::SlotAdd {
                kind: needs(f.kind.take(), "kind", action)?,
                pcrs: f.pcrs.take(),
                key: f.key.take(),
                path: f.path.take(),
            });
        }
        Action::SlotRemove => {
            return Ok(Request::SlotRemove {
                id: slot_id(needs(f.slot_id.take(), "slot_id", action)?)?,
            });
        }
        Action::SlotReseal => {
            return Ok(Request::SlotReseal {
                id: f.slot_id.take().map(slot_id).transpose()?,
                key: f.key.take(),
            });
        }
        Action::PolicyPut => {
            return Ok(Request::PolicyPut {
                name: needs(f.policy.take(), "policy", action)?,
                rules: PolicyText {
                    rules: needs(f.rules.take(), "rules", action)?,
                },
            });
        }
        Action::PolicyGet => {
            return Ok(Request::PolicyGet {
                name: needs(f.policy.take(), "policy", action)?,
            });
        }
        Action::PolicyDelete => {
            return Ok(Request::PolicyDelete {
                name: needs(f.policy.take(), "policy", action)?,
            });
        }
        Action::PolicyList => return Ok(Request::PolicyList),
        Action::SubjectSet => {
            return Ok(Request::SubjectSet {
                subject: needs(f.subject.take(), "subject", action)?,
                policies: needs(f.policies.take(), "policies", action)?,
            });
        }
        Action::TokenCreate => {
            return Ok(Request::TokenCreate {
                policies: needs(f.policies.take(), "policies", action)?,
                ttl: std::time::Duration::from_secs(needs(f.ttl.take(), "ttl", action)?),
                namespace: f.namespace.take(),
                display_name: f.display_name.take(),
            });
        }
        Action::TokenList => return Ok(Request::TokenList),
        Action::TokenRevoke => {
            return Ok(Request::TokenRevoke {
                accessor: needs(f.accessor.take(), "accessor", action)?,
            });
        }
        Action::TokenLookup => {
            return Ok(Request::TokenLookup {
                accessor: f.accessor.take(),
            });
        }
        Action::AuditHash => {
            let (name, namespace) = (f.name.take(), f.namespace.take());
            if name.is_none() && namespace.is_none() {
                return Err(invalid("`audit_hash` needs `name`, `namespace`, or both"));
            }
            return Ok(Request::AuditHash { name, namespace });
        }
        Action::AuditVerify => return Ok(Request::AuditVerify),
        _ => return Err(invalid("this action is not available on the socket")),
    };
    secret(f, op)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> Parsed {
        parse(input.as_bytes(), 1 << 20).unwrap_or_else(|e| panic!("{input}: {}", e.message))
    }

    fn err(input: &str) -> ParseError {
        parse(input.as_bytes(), 1 << 20).expect_err("expected an error")
    }

    fn op(input: &str) -> SecretOp {
        match ok(input).request {
            Request::Secret { op, .. } => op,
            other => panic!("not a secret request: {other:?}"),
        }
    }

    #[test]
    fn the_device_requests_parse() {
        let p = ok(r#"{"action":"set","name":"third-party-api-key","value":"sk_live_abc123xyz"}"#);
        let Request::Secret {
            name,
            namespace,
            op: SecretOp::Set { value, options },
        } = p.request
        else {
            panic!()
        };
        assert_eq!(name, "third-party-api-key");
        assert_eq!(value.expose_secret(), b"sk_live_abc123xyz");
        assert_eq!((options, namespace), (WriteOptions::default(), None));
        assert!(!p.keep_alive && p.id.is_none());
        assert!(matches!(
            op(r#"{"action":"get","name":"k"}"#),
            SecretOp::Get { version: None }
        ));
        assert!(matches!(
            op(r#"{"action":"del","name":"k"}"#),
            SecretOp::Del
        ));
    }

    #[test]
    fn envelope_fields() {
        let p = ok(
            r#"{"action":"get","name":"k","namespace":"acme/prod","version":2,"id":"r-1","keep_alive":true}"#,
        );
        assert_eq!(p.id.as_deref(), Some(r#""r-1""#));
        assert!(p.keep_alive);
        let Request::Secret {
            namespace,
            op: SecretOp::Get { version },
            ..
        } = p.request
        else {
            panic!()
        };
        assert_eq!(version.map(Version::get), Some(2));
        assert_eq!(namespace.as_deref(), Some("acme/prod"));
        assert_eq!(ok(r#"{"action":"status","id":7}"#).id.as_deref(), Some("7"));
    }

    #[test]
    fn lifecycle_actions() {
        let SecretOp::Generate { spec, options } = op(
            r#"{"action":"generate","name":"k","byte_len":16,"encoding":"hex","description":"d"}"#,
        ) else {
            panic!()
        };
        assert_eq!((spec.byte_len(), spec.encoding), (16, Encoding::Hex));
        assert_eq!(options.description.as_deref(), Some("d"));
        assert!(matches!(
            op(r#"{"action":"generate","name":"k"}"#),
            SecretOp::Generate { spec, .. } if spec == GeneratorSpec::default()
        ));
        assert_eq!(
            err(r#"{"action":"generate","name":"k","byte_len":4097}"#).message,
            "byte_len must be between 1 and 4096, got 4097"
        );
        assert!(matches!(
            op(r#"{"action":"rotate","name":"k","generate":true}"#),
            SecretOp::Rotate {
                value: None,
                spec: None,
                ..
            }
        ));
        assert!(matches!(
            op(r#"{"action":"rotate","name":"k","value":"v"}"#),
            SecretOp::Rotate { value: Some(_), .. }
        ));
        assert!(
            err(r#"{"action":"rotate","name":"k"}"#)
                .message
                .contains("`generate`")
        );
        assert!(matches!(
            op(r#"{"action":"destroy","name":"k","versions":[1,3]}"#),
            SecretOp::Destroy { versions } if versions.len() == 2
        ));
        assert!(
            err(r#"{"action":"destroy","name":"k","versions":[0]}"#)
                .message
                .contains("positive")
        );
        assert!(matches!(
            op(r#"{"action":"describe","name":"k","description":"x","max_versions":5}"#),
            SecretOp::Describe { change } if change.max_versions == Some(5)
        ));
        assert!(matches!(
            op(
                r#"{"action":"hmac","name":"k","data":"body","algorithm":"sha512","encoding":"base64"}"#
            ),
            SecretOp::Hmac {
                algorithm: HmacAlgorithm::Sha512,
                encoding: DigestEncoding::Base64,
                ..
            }
        ));
        assert!(matches!(
            op(r#"{"action":"basic_auth","name":"pw","user":"alice"}"#),
            SecretOp::BasicAuth { .. }
        ));
        let p = ok(r#"{"action":"list","prefix":"db/","limit":10,"after":"db/a","detail":true}"#);
        let Request::List { query, .. } = p.request else {
            panic!()
        };
        assert_eq!(query.limit, Some(10));
        assert!(query.detail && !query.revoked);
        assert!(matches!(
            ok(r#"{"action":"namespace_create","namespace":"acme/prod"}"#).request,
            Request::CreateNamespace { .. }
        ));
    }

    #[test]
    fn base64_values() {
        let SecretOp::Set { value, options } =
            op(r#"{"action":"set","name":"f","value_b64":"AAEC/w=="}"#)
        else {
            panic!()
        };
        assert_eq!(value.expose_secret(), &[0, 1, 2, 255]);
        assert!(options.binary && options.kind.is_none());
        assert_eq!(
            err(r#"{"action":"set","name":"f","value_b64":"@@@"}"#).code,
            ErrorCode::InvalidRequest
        );
        let big = format!(
            r#"{{"action":"set","name":"f","value_b64":"{}"}}"#,
            "A".repeat(100)
        );
        assert_eq!(
            parse(big.as_bytes(), 10).err().unwrap().code,
            ErrorCode::TooLarge
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases = [
            ("{", "malformed JSON"),
            (r#"{"action":"get","name":"k",}"#, "malformed JSON"),
            (r#"{"name":"k"}"#, "needs the field `action`"),
            (r#"{"action":"steal","name":"k"}"#, "unknown action"),
            (r#"{"action":"get"}"#, "`get` needs the field `name`"),
            (
                r#"{"action":"set","name":"k"}"#,
                "`set` needs the field `value`",
            ),
            (
                r#"{"action":"get","name":7}"#,
                "field `name` must be a string",
            ),
            (
                r#"{"action":"get","name":"k","version":0}"#,
                "positive integer",
            ),
            (
                r#"{"action":"get","name":"k","version":-1}"#,
                "field `version` must be a positive integer",
            ),
            (
                r#"{"action":"get","name":"k","vlaue":"x"}"#,
                "unknown field `vlaue`",
            ),
            (r#"{"action":"get","name":"k","name":"j"}"#, "appears twice"),
            (
                r#"{"action":"get","name":"k","value":"v"}"#,
                "does not apply to `get`",
            ),
            (
                r#"{"action":"del","name":"k","kind":"text"}"#,
                "does not apply to `del`",
            ),
            (
                r#"{"action":"get","name":"k","id":{"a":1}}"#,
                "field `id` must be a string or a number",
            ),
            (r#"{"action":"get","name":"k"} trailing"#, "malformed JSON"),
            (
                r#"{"action":"set","name":"k","value":"v","kind":"blob"}"#,
                "unknown kind",
            ),
            (
                r#"{"action":"destroy","name":"k","versions":"1"}"#,
                "list of positive integers",
            ),
            (r#"["get"]"#, "not a JSON object"),
        ];
        for (input, expected) in cases {
            let e = err(input);
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{input}");
            assert!(e.message.contains(expected), "{input}: {}", e.message);
        }
    }

    #[test]
    fn mistyped_values_are_never_quoted() {
        for input in [
            r#"{"action":"set","name":"k","value":918273645}"#,
            r#"{"action":"set","name":"k","value":[918273645]}"#,
            r#"{"action":"set","name":918273645,"value":"x"}"#,
            r#"{"action":"get","name":"k","version":"918273645"}"#,
            r#"{"action":"unseal","key":918273645}"#,
            r#"{"action":"get","name":"k","keep_alive":"918273645"}"#,
            r#"{"action":"hmac","name":"k","data":918273645}"#,
        ] {
            let e = err(input);
            assert!(!e.message.contains("918273645"), "{input}: {}", e.message);
            assert!(e.message.starts_with("field `"), "{input}: {}", e.message);
        }
    }

    #[test]
    fn tokens_ride_on_any_request() {
        let p = ok(r#"{"action":"get","name":"k","token":"cft_abc"}"#);
        assert_eq!(p.token.unwrap().expose_secret(), b"cft_abc");
        assert!(ok(r#"{"action":"get","name":"k"}"#).token.is_none());
    }

    #[test]
    fn access_actions() {
        let Request::PolicyPut { name, rules } = ok(
            r#"{"action":"policy_put","policy":"app","rules":[{"path":"app/*","capabilities":["read"]}]}"#,
        )
        .request
        else {
            panic!()
        };
        assert_eq!(
            (name.as_str(), rules.rules[0].path.as_str()),
            ("app", "app/*")
        );
        assert!(
            err(r#"{"action":"policy_put","policy":"app","rules":[{"path":"a"}]}"#)
                .message
                .contains("field `rules` must be")
        );
        let Request::TokenCreate {
            policies,
            ttl,
            namespace,
            ..
        } = ok(r#"{"action":"token_create","policies":["app"],"ttl":3600,"namespace":"app"}"#)
            .request
        else {
            panic!()
        };
        assert_eq!(
            (policies, ttl.as_secs(), namespace.as_deref()),
            (vec!["app".to_owned()], 3600, Some("app"))
        );
        assert!(
            err(r#"{"action":"token_create","policies":["a"]}"#)
                .message
                .contains("`ttl`")
        );
        assert!(matches!(
            ok(r#"{"action":"token_lookup"}"#).request,
            Request::TokenLookup { accessor: None }
        ));
        assert!(matches!(
            ok(r#"{"action":"subject_set","subject":"uid:5","policies":[]}"#).request,
            Request::SubjectSet { .. }
        ));
        assert!(err(r#"{"action":"audit_hash"}"#).message.contains("needs"));
    }

    #[test]
    fn unseal_slots() {
        let p = ok(r#"{"action":"unseal","slot":"recovery","key":"AAAA"}"#);
        assert!(matches!(
            p.request,
            Request::Unseal {
                with: UnsealWith::Recovery,
                key: Some(_)
            }
        ));
        let p = ok(r#"{"action":"unseal","key":"pw"}"#);
        assert!(matches!(
            p.request,
            Request::Unseal {
                with: UnsealWith::Passphrase,
                ..
            }
        ));
        let p = ok(r#"{"action":"unseal"}"#);
        assert!(matches!(
            p.request,
            Request::Unseal {
                with: UnsealWith::KeyFile,
                key: None
            }
        ));
        assert!(matches!(
            ok(r#"{"action":"unseal","slot":"tpm"}"#).request,
            Request::Unseal {
                with: UnsealWith::Tpm,
                key: None
            }
        ));
        assert!(
            err(r#"{"action":"unseal","slot":"hsm"}"#)
                .message
                .contains("`slot`")
        );
    }

    #[test]
    fn slot_actions() {
        assert!(matches!(
            ok(r#"{"action":"slot_list"}"#).request,
            Request::SlotList
        ));
        let Request::SlotAdd {
            kind,
            pcrs,
            key,
            path,
        } = ok(r#"{"action":"slot_add","kind":"tpm+passphrase","pcrs":"sha256:0,7","key":"pw"}"#)
            .request
        else {
            panic!()
        };
        assert_eq!(
            (kind.as_str(), pcrs.as_deref(), path),
            ("tpm+passphrase", Some("sha256:0,7"), None)
        );
        assert_eq!(key.unwrap().expose_secret(), b"pw");
        assert!(err(r#"{"action":"slot_add"}"#).message.contains("`kind`"));
        assert!(matches!(
            ok(r#"{"action":"slot_remove","slot_id":3}"#).request,
            Request::SlotRemove { id: 3 }
        ));
        assert!(
            err(r#"{"action":"slot_remove"}"#)
                .message
                .contains("`slot_id`")
        );
        assert!(
            err(r#"{"action":"slot_remove","slot_id":4294967296}"#)
                .message
                .contains("`slot_id`")
        );
        assert!(matches!(
            ok(r#"{"action":"slot_reseal"}"#).request,
            Request::SlotReseal {
                id: None,
                key: None
            }
        ));
        assert!(matches!(
            ok(r#"{"action":"slot_reseal","slot_id":1,"key":"pw"}"#).request,
            Request::SlotReseal {
                id: Some(1),
                key: Some(_)
            }
        ));
        // Fields of one slot action are refused on another.
        assert!(
            err(r#"{"action":"slot_remove","slot_id":1,"pcrs":"sha256:7"}"#)
                .message
                .contains("`pcrs`")
        );
    }
}
