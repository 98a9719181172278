//! One path for every request: the same table of cases sent through the Unix socket and the
//! HTTP API of one embedded daemon, expecting the same outcome code from each. Each case is a
//! rule the operation layer holds once (the size of a value after a merge, the capability a
//! field needs, the policy on every listed name, a revoked listing's prefix, the refusal
//! order, durations that would overflow, nesting depth); before it held them once, the two
//! protocols disagreed on every one.
//!
//! The suite runs as root (CI does): the socket caller is then root, and the cases that need
//! less use tokens made for them.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_server::daemon::{DaemonConfig, HttpListen, HttpTls};
use coffer_server::{Daemon, Limits};
use serde_json::{Value, json};

/// The largest value in these cases: small, so a merge can outgrow it cheaply.
const MAX_VALUE: usize = 1000;

struct Env {
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    daemon: Option<Daemon>,
    socket: PathBuf,
    http: SocketAddr,
}

impl Env {
    fn start() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests call the socket as root (CI runs the suite as root; use sudo)"
        );
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("coffer.sock");
        let mut config = DaemonConfig::new(dir.path().join("data"), socket.clone());
        config.service.max_value_bytes = MAX_VALUE;
        config.limits = Limits::for_values(MAX_VALUE);
        config.http = Some(HttpListen {
            addr: "127.0.0.1:0".parse().unwrap(),
            tls: HttpTls::Plain,
        });
        if let Some(audit) = &mut config.audit {
            audit.plain_names = true;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let daemon = runtime.block_on(Daemon::start(config)).unwrap();
        let http = daemon.http_addr().unwrap();
        Self {
            _dir: dir,
            runtime,
            daemon: Some(daemon),
            socket,
            http,
        }
    }

    /// A socket request on its own connection; the reply.
    fn socket(&self, request: Value) -> Value {
        call_socket(&self.socket, &request)
    }

    /// An HTTP request; the status, coffer's code (errors only) and the body as JSON.
    fn http(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&str>,
        content_type: &str,
    ) -> (u16, Option<String>, Value) {
        call_http(self.http, method, path, token, body, content_type)
    }

    /// Root's token over the socket, with `rules` as its only policy (`name`).
    fn token(&self, name: &str, rules: Value) -> String {
        let put = self.socket(json!({"action": "policy_put", "policy": name, "rules": rules}));
        assert_eq!(put["ok"], true, "{put}");
        let made = self.socket(json!({"action": "token_create", "policies": [name], "ttl": 3600}));
        made["token"].as_str().unwrap().to_owned()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take() {
            self.runtime.block_on(d.shutdown()).unwrap();
        }
    }
}

fn call_socket(socket: &Path, request: &Value) -> Value {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.to_string().as_bytes()).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    serde_json::from_slice(&reply).unwrap()
}

fn call_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
    content_type: &str,
) -> (u16, Option<String>, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: coffer\r\nConnection: close\r\n\
         X-Vault-Token: {token}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let text = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let code = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("x-coffer-code: ")
            .map(str::to_owned)
    });
    // Chunked or not, the bodies here are small JSON: take what lies between the braces.
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => serde_json::from_str(&body[a..=b]).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, code, json)
}

/// The code an answer gives: the error's code, or `ok`.
fn socket_code(reply: &Value) -> String {
    reply["code"].as_str().unwrap_or("ok").to_owned()
}

fn http_code(status: u16, code: Option<String>) -> String {
    if status < 300 {
        return "ok".to_owned();
    }
    code.unwrap_or_else(|| format!("status {status} without a code"))
}

/// A KV object as deep as asked.
fn deep(levels: usize) -> String {
    format!(
        "{{\"a\":{}1{}}}",
        "[".repeat(levels - 1),
        "]".repeat(levels - 1)
    )
}

#[test]
fn every_rule_answers_the_same_on_the_socket_and_over_http() {
    let env = Env::start();
    let root = env.token(
        "everything",
        json!([{"path": "*", "capabilities": ["sudo"]}]),
    );
    let writer = env.token(
        "writer",
        json!([{"path": "default/*", "capabilities": ["create", "update", "read"]}]),
    );
    let lister = env.token(
        "lister",
        json!([
            {"path": "default/*", "capabilities": ["read", "list", "meta"]},
            {"path": "default/prod/*", "capabilities": ["deny"]}
        ]),
    );
    // What the cases act on, written as root over the socket.
    let half = "x".repeat(MAX_VALUE * 6 / 10);
    for (name, value, kind) in [
        ("big", format!("{{\"a\":\"{half}\"}}"), "kv"),
        ("prod/db", "p".to_owned(), "text"),
        ("app/x", "a".to_owned(), "text"),
        ("old/a", "1".to_owned(), "text"),
        ("other/b", "2".to_owned(), "text"),
    ] {
        let r = env.socket(json!({"action": "set", "name": name, "value": value, "kind": kind}));
        assert_eq!(r["ok"], true, "{r}");
    }
    for name in ["old/a", "other/b"] {
        let r = env.socket(json!({"action": "revoke", "name": name}));
        assert_eq!(r["ok"], true, "{r}");
    }

    struct Case<'a> {
        rule: &'a str,
        socket: Value,
        http: (&'a str, String, &'a str, Option<String>),
        code: &'a str,
    }
    let patch = format!("{{\"b\":\"{half}\"}}");
    let cases = [
        Case {
            rule: "the value after a merge is within the size limit",
            socket: json!({"action": "patch", "name": "big", "value": patch, "token": writer}),
            http: (
                "PATCH",
                "/v1/secret/data/big".to_owned(),
                &writer,
                Some(format!("{{\"data\":{patch}}}")),
            ),
            code: "too_large",
        },
        Case {
            rule: "a version limit erases versions: it needs destroy",
            socket: json!({"action": "describe", "name": "big", "max_versions": 1, "token": writer}),
            http: (
                "POST",
                "/v1/secret/metadata/big".to_owned(),
                &writer,
                Some(r#"{"max_versions":1}"#.to_owned()),
            ),
            code: "denied",
        },
        Case {
            rule: "delete_version_after hides versions: it needs revoke",
            socket: json!({"action": "describe", "name": "big", "delete_version_after": "1h", "token": writer}),
            http: (
                "POST",
                "/v1/secret/metadata/big".to_owned(),
                &writer,
                Some(r#"{"delete_version_after":"1h"}"#.to_owned()),
            ),
            code: "denied",
        },
        Case {
            rule: "a deny rule covers a listed prefix it names",
            socket: json!({"action": "list", "prefix": "prod/", "token": lister}),
            http: ("LIST", "/v1/secret/metadata/prod".to_owned(), &lister, None),
            code: "denied",
        },
        Case {
            rule: "a bad token is refused before the namespace is looked at",
            socket: json!({"action": "get", "namespace": "nosuch", "name": "a", "token": "cft_bogus"}),
            http: ("GET", "/v1/nosuch/data/a".to_owned(), "cft_bogus", None),
            code: "unauthenticated",
        },
        Case {
            rule: "a bad token is refused the same on a namespace that exists",
            socket: json!({"action": "get", "name": "a", "token": "cft_bogus"}),
            http: ("GET", "/v1/secret/data/a".to_owned(), "cft_bogus", None),
            code: "unauthenticated",
        },
        Case {
            rule: "an unknown namespace, for a good token",
            socket: json!({"action": "get", "namespace": "nosuch", "name": "a", "token": root}),
            http: ("GET", "/v1/nosuch/data/a".to_owned(), &root, None),
            code: "not_found",
        },
        Case {
            rule: "a duration that would overflow is refused",
            socket: json!({"action": "describe", "name": "big", "delete_version_after": "99999999999999h", "token": root}),
            http: (
                "POST",
                "/v1/secret/metadata/big".to_owned(),
                &root,
                Some(r#"{"delete_version_after":"99999999999999h"}"#.to_owned()),
            ),
            code: "invalid_request",
        },
        Case {
            rule: "KV values nest no deeper on write than they can be read",
            socket: json!({"action": "set", "name": "deep", "kind": "kv", "value": deep(100), "token": root}),
            http: (
                "POST",
                "/v1/secret/data/deep".to_owned(),
                &root,
                Some(format!("{{\"data\":{}}}", deep(100))),
            ),
            code: "invalid_request",
        },
    ];
    let mut wrong = Vec::new();
    for case in &cases {
        let by_socket = socket_code(&env.socket(case.socket.clone()));
        let (method, path, token, body) = &case.http;
        let content_type = if *method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let (status, code, _) = env.http(method, path, token, body.as_deref(), content_type);
        let by_http = http_code(status, code);
        if by_socket != case.code || by_http != case.code {
            wrong.push(format!(
                "{}: expected {}, socket said {by_socket}, HTTP said {by_http} ({status})",
                case.rule, case.code
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));

    // Nothing above was written, and the store still takes writes to those secrets.
    let r = env.socket(json!({"action": "meta", "name": "big"}));
    assert_eq!(r["meta"]["current"], 1, "{r}");
    assert!(r["meta"].get("delete_version_after").is_none(), "{r}");
    let r = env.socket(json!({"action": "set", "name": "big", "value": "{}", "kind": "kv"}));
    assert_eq!(r["ok"], true, "{r}");

    // Listing through a wider prefix shows no name the deny rule covers, on either path.
    let r = env.socket(json!({"action": "list", "prefix": "pro", "detail": true, "token": lister}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["secrets"].as_array().unwrap().len(), 0, "{r}");
    let r = env.socket(json!({"action": "list", "token": lister}));
    let names: Vec<&str> = r["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"app/x") && !names.contains(&"prod/db"),
        "{r}"
    );
    let (status, _, body) = env.http(
        "LIST",
        "/v1/secret/metadata/",
        &lister,
        None,
        "application/json",
    );
    assert_eq!(status, 200, "{body}");
    let keys = body["data"]["keys"].to_string();
    assert!(keys.contains("app/") && !keys.contains("prod"), "{keys}");

    // A revoked listing keeps to its prefix, on either path.
    let r = env.socket(json!({"action": "list", "revoked": true, "prefix": "old/"}));
    let revoked: Vec<&str> = r["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(revoked, ["old/a"], "{r}");
    let (status, _, body) = env.http(
        "GET",
        "/v1/secret/revoked/old/",
        &root,
        None,
        "application/json",
    );
    assert_eq!(status, 200, "{body}");
    let revoked: Vec<&str> = body["data"]["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(revoked, ["old/a"], "{body}");
}

#[test]
fn a_merge_is_one_change_with_one_record() {
    let env = Env::start();
    let root = env.token(
        "everything",
        json!([{"path": "*", "capabilities": ["sudo"]}]),
    );
    let (status, _, body) = env.http(
        "POST",
        "/v1/secret/data/merged",
        &root,
        Some(r#"{"data":{"a":"1","b":"2"}}"#),
        "application/json",
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = env.http(
        "PATCH",
        "/v1/secret/data/merged",
        &root,
        Some(r#"{"data":{"a":null,"c":"3"}}"#),
        "application/merge-patch+json",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["version"], 2, "{body}");
    let r = env.socket(json!({"action": "get", "name": "merged"}));
    let value: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
    assert_eq!(value, json!({"b": "2", "c": "3"}));
    // A patch of a secret that is not there changes nothing and says so.
    let (status, code, _) = env.http(
        "PATCH",
        "/v1/secret/data/absent",
        &root,
        Some(r#"{"data":{"a":"1"}}"#),
        "application/merge-patch+json",
    );
    assert_eq!((status, code.as_deref()), (404, Some("not_found")));
    // Each request left exactly one record: the patch is one `patch`, not a read and a set.
    let data = env.daemon.as_ref().unwrap().data_dir().join("audit");
    let records: Vec<Value> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| {
                    let mut out = Vec::new();
                    coffer_audit::tail::expand(l.as_bytes(), &mut out);
                    serde_json::from_slice::<Value>(&out).unwrap()
                })
                .collect::<Vec<_>>()
        })
        .filter(|r| r["name"] == "merged")
        .collect();
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["set", "patch", "get"], "{records:?}");
}
