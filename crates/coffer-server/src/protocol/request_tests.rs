//! Tests of the socket request parser (request.rs).

use super::*;
use coffer_core::Operation;
use coffer_types::ErrorCode;

fn ok(input: &str) -> Parsed {
    parse(input.as_bytes()).unwrap_or_else(|e| panic!("{input}: {}", e.message))
}

fn err(input: &str) -> ParseError {
    parse(input.as_bytes()).expect_err("expected an error")
}

fn op(input: &str) -> SecretOp {
    match ok(input).operation {
        Operation::Secret { op, .. } => op,
        other => panic!("not a secret request: {other:?}"),
    }
}

#[test]
fn the_device_requests_parse() {
    let p = ok(r#"{"action":"set","name":"third-party-api-key","value":"sk_live_abc123xyz"}"#);
    let Operation::Secret {
        target,
        op: SecretOp::Set { value, options },
    } = p.operation
    else {
        panic!()
    };
    assert_eq!(target, Target::parse(None, "third-party-api-key"));
    assert_eq!(value.expose_secret(), b"sk_live_abc123xyz");
    assert_eq!(options, WriteOptions::default());
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
    let Operation::Secret {
        target,
        op: SecretOp::Get { version },
    } = p.operation
    else {
        panic!()
    };
    assert_eq!(version.map(Version::get), Some(2));
    assert_eq!(target.namespace.valid().unwrap().as_str(), "acme/prod");
    assert_eq!(ok(r#"{"action":"status","id":7}"#).id.as_deref(), Some("7"));
}

#[test]
fn lifecycle_actions() {
    let SecretOp::Generate { spec, options, .. } =
        op(r#"{"action":"generate","name":"k","byte_len":16,"encoding":"hex","description":"d"}"#)
    else {
        panic!()
    };
    assert_eq!(
        (spec.byte_len, spec.encoding),
        (Some(16), Some(Encoding::Hex))
    );
    assert_eq!(options.description.as_deref(), Some("d"));
    assert!(matches!(
        op(r#"{"action":"generate","name":"k"}"#),
        SecretOp::Generate { spec, .. } if spec == SpecInput::default()
    ));
    // Ranges are the core's to check: the wire passes the number on.
    assert!(matches!(
        op(r#"{"action":"generate","name":"k","byte_len":4097}"#),
        SecretOp::Generate { spec, .. } if spec.byte_len == Some(4097)
    ));
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
    assert!(matches!(
        op(r#"{"action":"yescrypt","name":"pw"}"#),
        SecretOp::Yescrypt { setting: None }
    ));
    assert!(matches!(
        op(r#"{"action":"yescrypt","name":"pw","setting":"$y$j9T$abc"}"#),
        SecretOp::Yescrypt { setting: Some(s) } if s == "$y$j9T$abc"
    ));
    // The fields of other computed values are not this one's.
    assert!(
        err(r#"{"action":"yescrypt","name":"pw","user":"a"}"#)
            .message
            .contains("`user`")
    );
    let p = ok(r#"{"action":"list","prefix":"db/","limit":10,"after":"db/a","detail":true}"#);
    let Operation::List { input, .. } = p.operation else {
        panic!()
    };
    assert_eq!(input.limit, Some(10));
    assert!(input.detail && !input.revoked && !input.folders);
    assert!(matches!(
        ok(r#"{"action":"namespace_create","namespace":"acme/prod"}"#).operation,
        Operation::NamespaceCreate { .. }
    ));
    let SecretOp::Describe { change } = op(
        r#"{"action":"describe","name":"k","cas_required":true,"delete_version_after":"30d","custom_metadata":{"team":"ops"}}"#,
    ) else {
        panic!()
    };
    assert_eq!(change.cas_required, Some(true));
    assert_eq!(change.delete_version_after, Some(30 * 86_400));
    assert!(change.custom_metadata.is_some());
    assert!(matches!(
        op(r#"{"action":"patch","name":"k","value":"{\"a\":1}","cas":2}"#),
        SecretOp::Patch { cas: Some(2), .. }
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
    let Operation::PolicyPut { name, rules } = ok(
        r#"{"action":"policy_put","policy":"app","rules":[{"path":"app/*","capabilities":["read"]}]}"#,
    )
    .operation
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
    let Operation::TokenCreate(input) =
        ok(r#"{"action":"token_create","policies":["app"],"ttl":"1h","namespace":"app"}"#)
            .operation
    else {
        panic!()
    };
    assert_eq!(
        (input.policies, input.ttl, input.namespace.as_deref()),
        (vec!["app".to_owned()], Some(3600), Some("app"))
    );
    assert!(
        err(r#"{"action":"token_create","policies":["a"]}"#)
            .message
            .contains("`ttl`")
    );
    assert!(matches!(
        ok(r#"{"action":"token_lookup"}"#).operation,
        Operation::TokenLookup { accessor: None }
    ));
    assert!(matches!(
        ok(r#"{"action":"subject_set","subject":"uid:5","policies":[]}"#).operation,
        Operation::SubjectSet { .. }
    ));
}

#[test]
fn unseal_slots() {
    let p = ok(r#"{"action":"unseal","slot":"recovery","key":"AAAA"}"#);
    assert!(matches!(
        p.operation,
        Operation::Unseal {
            with: UnsealWith::Recovery,
            key: Some(_),
            by_key: false
        }
    ));
    let p = ok(r#"{"action":"unseal","key":"pw"}"#);
    assert!(matches!(
        p.operation,
        Operation::Unseal {
            with: UnsealWith::Passphrase,
            ..
        }
    ));
    let p = ok(r#"{"action":"unseal"}"#);
    assert!(matches!(
        p.operation,
        Operation::Unseal {
            with: UnsealWith::KeyFile,
            key: None,
            ..
        }
    ));
    assert!(matches!(
        ok(r#"{"action":"unseal","slot":"tpm"}"#).operation,
        Operation::Unseal {
            with: UnsealWith::Tpm,
            key: None,
            ..
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
        ok(r#"{"action":"slot_list"}"#).operation,
        Operation::SlotList
    ));
    let Operation::SlotAdd {
        kind,
        pcrs,
        key,
        path,
    } = ok(r#"{"action":"slot_add","kind":"tpm+passphrase","pcrs":"sha256:0,7","key":"pw"}"#)
        .operation
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
        ok(r#"{"action":"slot_remove","slot_id":3}"#).operation,
        Operation::SlotRemove { id: 3 }
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
        ok(r#"{"action":"slot_reseal"}"#).operation,
        Operation::SlotReseal {
            id: None,
            key: None
        }
    ));
    assert!(matches!(
        ok(r#"{"action":"slot_reseal","slot_id":1,"key":"pw"}"#).operation,
        Operation::SlotReseal {
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

#[test]
fn watch_reads_its_scope_and_refuses_what_it_does_not_take() {
    let watch = |input: &str| match ok(input).operation {
        Operation::Watch(w) => w,
        other => panic!("not a watch: {other:?}"),
    };
    let w = watch(r#"{"action":"watch","prefix":"app/","since":41}"#);
    assert_eq!(w.prefix.as_deref(), Some("app/"));
    assert_eq!(w.since, Some(41));
    assert_eq!(w.namespace, Some(coffer_types::parse_namespace(None)));
    assert!(w.subscription.is_none());
    assert_eq!(
        watch(r#"{"action":"watch","namespace":"*"}"#).namespace,
        None
    );
    for bad in [
        r#"{"action":"watch","since":-1}"#,
        r#"{"action":"watch","since":"1"}"#,
        r#"{"action":"watch","name":"x"}"#,
    ] {
        assert_eq!(err(bad).code, ErrorCode::InvalidRequest, "{bad}");
    }
}
