//! The HTTP API as an axum router, driven with `tower::ServiceExt::oneshot`: no socket, a
//! real service over a real SQLite file, every answer's status and stable code. The
//! real-client tests (hvac, bao, curl) are in coffer-cli's tests/http.rs.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use coffer_core::{
    Caller, FirstBoot, Identity, Operation, Reply, Service, ServiceConfig, TokenInput, Vault,
    VaultOptions,
};
use coffer_server::Limits;
use coffer_server::http::{AppState, CODE_HEADER, app};
use coffer_store::SqliteBackend;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

struct Api {
    _dir: tempfile::TempDir,
    service: Arc<Service>,
    router: axum::Router,
    root: String,
}

impl Api {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(SqliteBackend::open(&dir.path().join("coffer.db")).unwrap());
        let vault = Vault::start(
            backend,
            VaultOptions {
                first_boot: Some(FirstBoot::KeyFile(dir.path().join("coffer.key"))),
                ..VaultOptions::default()
            },
        );
        let service = Arc::new(Service::new(vault, ServiceConfig::default()));
        let router = app(AppState::new(service.clone(), Limits::for_values(1 << 20)));
        // The daemon's own user holds `root`; it makes the token the requests carry.
        let me = Identity::peer(nix::unistd::geteuid().as_raw(), 0, None);
        let made = service
            .call(
                Caller::peer(me),
                Operation::TokenCreate(TokenInput {
                    policies: vec!["root".to_owned()],
                    ttl: Some(3600),
                    ..TokenInput::default()
                }),
            )
            .await
            .unwrap();
        let Reply::TokenCreated { token, .. } = made else {
            panic!("no token")
        };
        Self {
            _dir: dir,
            service,
            router,
            root: token.expose_str().unwrap().to_owned(),
        }
    }

    /// Sends a request; answers the status, coffer's code (on errors) and the JSON body.
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        content_type: &str,
    ) -> (StatusCode, Option<String>, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type);
        if let Some(t) = token {
            request = request.header("x-vault-token", t);
        }
        let request = request
            .body(Body::from(body.unwrap_or("").to_owned()))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let code = response
            .headers()
            .get(CODE_HEADER)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, code, json)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Option<String>, Value) {
        self.send("GET", path, token, None, "application/json")
            .await
    }

    async fn post(&self, path: &str, body: &str) -> (StatusCode, Option<String>, Value) {
        let root = self.root.clone();
        self.send("POST", path, Some(&root), Some(body), "application/json")
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_round_trip_in_vaults_shapes() {
    let api = Api::new().await;
    let (status, _, body) = api
        .post(
            "/v1/secret/data/app/db",
            r#"{"data":{"password":"pw-123"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["version"], 1);
    let root = api.root.clone();
    let (status, _, body) = api.get("/v1/secret/data/app/db", Some(&root)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["data"], json!({"password": "pw-123"}));
    assert_eq!(body["data"]["metadata"]["version"], 1);
    let (status, _, body) = api
        .send(
            "LIST",
            "/v1/secret/metadata/",
            Some(&root),
            None,
            "application/json",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["keys"], json!(["app/"]));
    let (status, _, body) = api.get("/v1/secret/metadata/app/db", Some(&root)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["current_version"], 1);
    let (status, code, body) = api.get("/v1/secret/data/app/none", Some(&root)).await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    assert_eq!(body, json!({"errors": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_map_to_vaults_status_and_coffers_code() {
    let api = Api::new().await;
    let root = api.root.clone();
    // method, path, token, body, content type, status, code.
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "GET",
            "/v1/secret/data/x",
            None,
            None,
            "application/json",
            StatusCode::FORBIDDEN,
            "unauthenticated",
        ),
        (
            "GET",
            "/v1/secret/data/x",
            Some("cft_bogus"),
            None,
            "application/json",
            StatusCode::FORBIDDEN,
            "unauthenticated",
        ),
        (
            "GET",
            "/v1/nosuch/data/x",
            Some("cft_bogus"),
            None,
            "application/json",
            StatusCode::FORBIDDEN,
            "unauthenticated",
        ),
        (
            "GET",
            "/v1/nosuch/data/x",
            Some(&root),
            None,
            "application/json",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "POST",
            "/v1/secret/data/x",
            Some(&root),
            Some("{\"data\":"),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/secret/data/x",
            Some(&root),
            Some("{\"data\":[1]}"),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "PATCH",
            "/v1/secret/data/x",
            Some(&root),
            Some("{\"data\":{}}"),
            "application/json",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/secret/data/a%20b",
            Some(&root),
            Some("{\"data\":{}}"),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            "PUT",
            "/v1/sys/health",
            None,
            None,
            "application/json",
            StatusCode::METHOD_NOT_ALLOWED,
            "unsupported",
        ),
        (
            "GET",
            "/v1/sys/nothing-here",
            Some(&root),
            None,
            "application/json",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/v1/no..such/data/x",
            Some("cft_bogus"),
            None,
            "application/json",
            StatusCode::FORBIDDEN,
            "unauthenticated",
        ),
        (
            "GET",
            "/v1/no..such/data/x",
            Some(&root),
            None,
            "application/json",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/elsewhere",
            None,
            None,
            "application/json",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/v1/secret/data/x?version=zero",
            Some(&root),
            None,
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/secret/metadata/x",
            Some(&root),
            Some("{\"delete_version_after\":\"99999999999999h\"}"),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (method, path, token, body, ct, status, code) in cases {
        let (got, got_code, answer) = api.send(method, path, token, body, ct).await;
        assert_eq!(
            (got, got_code.as_deref()),
            (status, Some(code)),
            "{method} {path}: {answer}"
        );
        assert!(answer["errors"].is_array(), "{method} {path}: {answer}");
    }
    // A body over the limit is refused before anything is parsed.
    let big = format!("{{\"data\":{{\"a\":\"{}\"}}}}", "x".repeat(5 << 20));
    let (status, code, _) = api.post("/v1/secret/data/big", &big).await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_store_answers_503_before_anything_else() {
    let api = Api::new().await;
    let root = api.root.clone();
    let me = Identity::peer(nix::unistd::geteuid().as_raw(), 0, None);
    api.service
        .call(Caller::peer(me), Operation::Seal)
        .await
        .unwrap();
    for token in [None, Some("cft_bogus"), Some(root.as_str())] {
        let (status, code, body) = api.get("/v1/nosuch/data/x", token).await;
        assert_eq!(
            (status, code.as_deref()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("sealed"))
        );
        assert!(
            body["errors"][0]
                .as_str()
                .unwrap()
                .starts_with("Vault is sealed"),
            "{body}"
        );
    }
    let (status, _, body) = api.get("/v1/sys/seal-status", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["sealed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_mounts() {
    let api = Api::new().await;
    let root = api.root.clone();
    let (status, _, body) = api.get("/v1/sys/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["sealed"], false);
    let (status, _, body) = api.get("/v1/sys/mounts", Some(&root)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["secret/"]["options"]["version"], "2");
    let (status, _, body) = api
        .get("/v1/sys/internal/ui/mounts/secret/app/db", Some(&root))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["path"], "secret/");
    let (status, _, body) = api.get("/v1/secret/config", Some(&root)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["max_versions"], 0);
    let (status, code, _) = api
        .get("/v1/sys/internal/ui/mounts/nosuch/x", Some(&root))
        .await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::FORBIDDEN, Some("denied"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_mount_is_the_mount_even_when_its_request_is_wrong() {
    let api = Api::new().await;
    let root = api.root.clone();
    let me = Identity::peer(nix::unistd::geteuid().as_raw(), 0, None);
    for ns in ["acme", "acme/metadata"] {
        let op = Operation::NamespaceCreate {
            namespace: coffer_types::parse_namespace(Some(ns)),
            passphrase: None,
        };
        api.service
            .call(Caller::peer(me.clone()), op)
            .await
            .unwrap();
    }
    for v in 1..=3 {
        let body = format!("{{\"data\":{{\"v\":\"{v}\"}}}}");
        let (status, _, _) = api.post("/v1/acme/data/x", &body).await;
        assert_eq!(status, StatusCode::OK);
    }
    // Read under the longest mount `acme/metadata`, this is a data write without data: it is
    // refused, and is never taken for a metadata write under `acme` (which would prune).
    let (status, code, body) = api
        .post("/v1/acme/metadata/data/x", r#"{"max_versions":1}"#)
        .await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{body}"
    );
    let (status, _, body) = api.get("/v1/acme/metadata/x", Some(&root)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["data"]["versions"].as_object().unwrap().len(),
        3,
        "{body}"
    );
    // A reading that exists only under the shorter mount still works.
    let (status, _, body) = api.get("/v1/acme/data/x?version=1", Some(&root)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_errors_never_quote_the_request() {
    let api = Api::new().await;
    for body in [
        r#"{"data":{"a":"b"},"options":{"cas":"sk_live_SENTINEL_1"}}"#,
        r#"{"data":"sk_live_SENTINEL_1"}"#,
        r#"{"data":{"a":"b"},"options":"sk_live_SENTINEL_1"}"#,
    ] {
        let (status, _, answer) = api.post("/v1/secret/data/quoted", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(!answer.to_string().contains("SENTINEL"), "{answer}");
    }
}
