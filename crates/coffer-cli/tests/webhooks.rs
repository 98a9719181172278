//! Issue 14, items 4 and 6: signed webhooks. The real daemon and CLI, a webhook receiver in
//! Python on 127.0.0.1, and the Standard Webhooks library (`standardwebhooks`), which
//! verifies every delivery: a wrong secret fails it. A failing endpoint gets its delivery on
//! the third attempt (a shortened retry schedule); deliveries queued when the daemon is
//! killed arrive after its restart; plain http:// to anything but loopback is refused; no
//! value and no signing secret reaches a body, the daemon's log or the audit log.
//!
//! Needs python3 with `standardwebhooks` (`pip install standardwebhooks`; scripts/test
//! installs it).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Daemon, assert_absent, eventually, stderr, stdout};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/webhook")
        .join(name)
}

fn need_standardwebhooks() {
    let ok = Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3 with the standardwebhooks library is missing: pip install standardwebhooks \
         (scripts/test installs it)"
    );
}

/// A receiver (tests/webhook/receiver.py) on a free port of 127.0.0.1.
struct Receiver {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Receiver {
    fn start(plan: &str) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), plan)
    }

    /// An HTTPS receiver with a self-signed certificate (which no webhook trusts).
    fn start_tls() -> Self {
        let dir = tempfile::tempdir().unwrap();
        common::self_signed_p256(
            &dir.path().join("cert.pem"),
            &dir.path().join("key.pem"),
            "/CN=127.0.0.1",
            &["-addext", "subjectAltName=IP:127.0.0.1"],
        );
        Self::start_in(dir, "")
    }

    fn start_in(dir: tempfile::TempDir, plan: &str) -> Self {
        need_standardwebhooks();
        std::fs::write(dir.path().join("plan"), plan).unwrap();
        let child = Command::new("python3")
            .arg(script("receiver.py"))
            .arg(dir.path())
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let port_file = dir.path().join("port");
        assert!(
            eventually(Duration::from_secs(20), || port_file.exists()),
            "the receiver did not start"
        );
        let port = std::fs::read_to_string(&port_file)
            .unwrap()
            .parse()
            .unwrap();
        Self { dir, child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn plan(&self, plan: &str) {
        std::fs::write(self.dir.path().join("plan"), plan).unwrap();
    }

    /// The raw record of what it received.
    fn raw(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("received.jsonl")).unwrap_or_default()
    }

    /// Every request so far, verified under `secret` by the standardwebhooks library.
    fn verified(&self, secret: &str) -> Vec<Value> {
        if self.raw().is_empty() {
            return Vec::new();
        }
        let mut child = Command::new("python3")
            .arg(script("verify.py"))
            .arg(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(secret.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "verify.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn daemon(schedule: &str) -> Daemon {
    daemon_with(schedule, &[])
}

fn daemon_with(schedule: &str, args: &[&str]) -> Daemon {
    let mut d = Daemon::new(args);
    d.env("COFFER_WEBHOOK_RETRY_SCHEDULE", schedule);
    d.spawn();
    d
}

/// `coffer webhooks add`: answers the id (from stderr) and the secret (stdout).
fn add(d: &Daemon, args: &[&str]) -> (String, String) {
    let out = d.cli(&[&["webhooks", "add"], args].concat(), b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let secret = stdout(&out).trim().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = stderr(&out)
        .split_whitespace()
        .find(|w| w.starts_with("wh_"))
        .unwrap()
        .to_owned();
    (id, secret)
}

fn status(d: &Daemon) -> Vec<Value> {
    let out = d.cli(&["webhooks", "status", "--json"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str::<Value>(&stdout(&out))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn deliveries_are_signed_filtered_and_hold_no_secret() {
    let d = daemon("0s,1s,1s");
    let rx = Receiver::start("");
    // Plain http:// to anything but loopback is refused, clearly.
    let refused = d.cli(&["webhooks", "add", "http://example.com/hook"], b"");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("https://") && stderr(&refused).contains("loopback"),
        "{}",
        stderr(&refused)
    );
    assert!(stdout(&refused).is_empty());
    let (id, secret) = add(
        &d,
        &[
            &rx.url(),
            "--events",
            "secret.written,secret.rotated",
            "--prefix",
            "app/",
        ],
    );
    let value = "hook-value-5e1f0a77";
    for name in ["app/db", "other/db"] {
        let out = d.cli(&["set", name], value.as_bytes());
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = d.cli(&["namespaces", "create", "elsewhere"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let test = d.cli(&["webhooks", "test", &id], b"");
    assert!(test.status.success(), "{}", stderr(&test));
    assert!(
        eventually(LIMIT, || rx.verified(&secret).len() >= 2),
        "no deliveries:\n{}",
        d.log()
    );
    // Every delivery verifies under the webhook's secret; none under another.
    let got = rx.verified(&secret);
    assert!(got.iter().all(|g| g["verified"] == true), "{got:?}");
    let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(rx.verified(wrong).iter().all(|g| g["verified"] == false));
    // The filter: app/db's write and the test; not other/db, not the namespace.
    let written: Vec<&Value> = got
        .iter()
        .filter(|g| g["type"] == "secret.written")
        .collect();
    assert_eq!(written.len(), 1, "{got:?}");
    assert_eq!(written[0]["data"]["name"], "app/db");
    assert!(written[0]["id"].as_str().unwrap().starts_with("msg_"));
    assert!(got.iter().any(|g| g["type"] == "webhook.test"), "{got:?}");
    assert!(!got.iter().any(|g| g["type"] == "namespace.created"));
    // Listing and status never show the secret; the status shows the delivery.
    let list = d.cli(&["webhooks", "list", "--json"], b"");
    assert!(stdout(&list).contains(&id));
    // (The outcome is stored just after the receiver saw the request.)
    assert!(
        eventually(LIMIT, || {
            let st = status(&d);
            st[0]["pending"] == 0 && st[0]["last_delivered"].is_string()
        }),
        "{:?}",
        status(&d)
    );
    assert_eq!(status(&d)[0]["id"], id.as_str());
    let secret_b64 = secret.strip_prefix("whsec_").unwrap();
    let shown = format!(
        "{}{}{}",
        stdout(&list),
        stdout(&d.cli(&["webhooks", "status"], b"")),
        stdout(&d.cli(&["webhooks", "list"], b""))
    );
    assert_absent("webhooks list/status", shown.as_bytes(), &[secret_b64]);
    // The operations are audited; the records hold no secret.
    let audit = d.audit();
    for action in [
        "webhook_add",
        "webhook_test",
        "webhook_status",
        "webhook_list",
    ] {
        assert!(
            audit.iter().any(|r| r["action"] == action),
            "no {action} record"
        );
    }
    // Each delivery attempt, the daemon's own work, has its record too.
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "webhook_deliver" && r["outcome"] == "ok"),
        "no webhook_deliver record"
    );
    let audit_text = serde_json::to_vec(&audit).unwrap();
    assert_absent("the audit log", &audit_text, &[secret_b64, value]);
    assert_absent("the bodies", &rx.raw(), &[secret_b64, value]);
    assert_absent("the daemon's log", d.log().as_bytes(), &[secret_b64, value]);
    // Removed: no more deliveries are made to it.
    let out = d.cli(&["webhooks", "remove", &id], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(status(&d).is_empty());
    let missing = d.cli(&["webhooks", "test", &id], b"");
    assert!(!missing.status.success());
}

#[test]
fn a_failing_endpoint_gets_the_delivery_on_the_third_attempt() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let d = daemon_with("0s,1s,1s", &["--http", &addr]);
    // For the metrics (made first: its token.created event is before the webhooks).
    let token = d.cli(&["token", "create", "--policy", "root", "--ttl", "1h"], b"");
    let token = stdout(&token).trim().to_owned();
    let flaky = Receiver::start("500,500");
    let broken = Receiver::start("500*");
    let (flaky_id, flaky_secret) = add(&d, &[&flaky.url()]);
    let (broken_id, _) = add(&d, &[&broken.url(), "--events", "secret.rotated"]);
    let out = d.cli(&["set", "svc/key"], b"retry-value-77aa");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.cli(&["secrets", "rotate", "svc/key"], b"retry-value-88bb");
    assert!(out.status.success(), "{}", stderr(&out));
    // The flaky endpoint: 500, 500, then 200, all for the same message per event.
    assert!(
        eventually(LIMIT, || {
            rx_delivered(&flaky.verified(&flaky_secret)) >= 2
        }),
        "not delivered:\n{}",
        d.log()
    );
    let got = flaky.verified(&flaky_secret);
    assert!(got.iter().all(|g| g["verified"] == true), "{got:?}");
    let first = got[0]["id"].as_str().unwrap();
    let attempts: Vec<&Value> = got.iter().filter(|g| g["id"] == first).collect();
    assert_eq!(
        attempts
            .iter()
            .map(|g| g["status"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [500, 500, 200],
        "{got:?}"
    );
    // The broken one: three attempts, then failed, with its last HTTP status.
    assert!(
        eventually(LIMIT, || {
            status(&d).iter().any(|w| {
                w["id"] == broken_id.as_str()
                    && w["failed"].as_array().is_some_and(|f| !f.is_empty())
            })
        }),
        "never failed:\n{}",
        d.log()
    );
    // Every delivery settled (the flaky one's last may come a round later).
    assert!(
        eventually(LIMIT, || status(&d).iter().all(|w| w["pending"] == 0
            && (w["id"] != flaky_id.as_str()
                || w["last_delivered"].is_string()))),
        "{:?}",
        status(&d)
    );
    let st = status(&d);
    let broken_st = st.iter().find(|w| w["id"] == broken_id.as_str()).unwrap();
    assert_eq!(broken_st["pending"], 0);
    assert_eq!(broken_st["failed"][0]["http_status"], 500);
    assert_eq!(broken_st["failed"][0]["attempt"], 3);
    assert!(
        broken_st["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("500")
    );
    let failed_records = d
        .audit()
        .iter()
        .filter(|r| r["action"] == "webhook_deliver" && r["outcome"] == "error")
        .count();
    assert_eq!(
        failed_records, 7,
        "four failed attempts to one, three to the other"
    );
    let human = stdout(&d.cli(&["webhooks", "status"], b""));
    assert!(
        human.contains("failed deliveries") && human.contains("HTTP 500"),
        "{human}"
    );
    assert_eq!(
        String::from_utf8_lossy(&broken.raw())
            .matches("\"status\": 500")
            .count(),
        3
    );
    assert_absent(
        "the bodies",
        &[flaky.raw(), broken.raw()].concat(),
        &["retry-value-77aa", "retry-value-88bb"],
    );
    // The same operations over HTTP: the list holds both webhooks and no secret; a plain
    // http:// endpoint elsewhere is refused there too.
    let http = |args: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-w",
                "\n%{http_code}",
                "-H",
                &format!("X-Vault-Token: {token}"),
            ])
            .args(args)
            .output()
            .expect("curl runs (apt-get install curl)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = http(&[&format!("http://{addr}/v1/sys/coffer/webhooks")]);
    assert!(listed.ends_with("\n200"), "{listed}");
    assert!(
        listed.contains(&flaky_id) && listed.contains(&broken_id),
        "{listed}"
    );
    assert_absent(
        "the HTTP list",
        listed.as_bytes(),
        &[flaky_secret.strip_prefix("whsec_").unwrap()],
    );
    let refused = http(&[
        "-X",
        "POST",
        "-d",
        r#"{"url":"http://example.com/x"}"#,
        &format!("http://{addr}/v1/sys/coffer/webhooks"),
    ]);
    assert!(
        refused.ends_with("\n400") && refused.contains("loopback"),
        "{refused}"
    );
    // The metrics: two deliveries made, six attempts retried, one delivery failed.
    let metrics = Command::new("curl")
        .args(["-sS", "-H", &format!("X-Vault-Token: {token}")])
        .arg(format!("http://{addr}/v1/sys/metrics?format=prometheus"))
        .output()
        .expect("curl runs (apt-get install curl)");
    let text = String::from_utf8_lossy(&metrics.stdout);
    for line in [
        "coffer_webhook_deliveries_total{outcome=\"delivered\"} 2",
        "coffer_webhook_deliveries_total{outcome=\"retried\"} 6",
        "coffer_webhook_deliveries_total{outcome=\"failed\"} 1",
        "coffer_webhook_pending 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
    }
}

/// Deliveries that the receiver answered 2xx.
fn rx_delivered(got: &[Value]) -> usize {
    got.iter().filter(|g| g["status"] == 200).count()
}

#[test]
fn deliveries_queued_at_a_kill_arrive_after_the_restart() {
    let mut d = daemon("0s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s");
    let rx = Receiver::start("500*");
    let (id, secret) = add(&d, &[&rx.url()]);
    let out = d.cli(&["set", "crash/key"], b"crash-value-31c7");
    assert!(out.status.success(), "{}", stderr(&out));
    // The first attempt failed and its retry is stored.
    assert!(
        eventually(LIMIT, || status(&d).iter().any(
            |w| w["id"] == id.as_str() && w["pending"].as_u64().unwrap() >= 1
        )),
        "no retry queued:\n{}",
        d.log()
    );
    d.kill9();
    rx.plan("");
    d.spawn();
    assert!(
        eventually(LIMIT, || rx_delivered(&rx.verified(&secret)) >= 1),
        "not delivered after the restart:\n{}",
        d.log()
    );
    let got = rx.verified(&secret);
    assert!(got.iter().all(|g| g["verified"] == true), "{got:?}");
    let delivered: Vec<&Value> = got.iter().filter(|g| g["status"] == 200).collect();
    assert_eq!(delivered[0]["type"], "secret.written");
    assert_eq!(delivered[0]["data"]["name"], "crash/key");
    // Every attempt carried the same message id: a receiver dedupes by it.
    let msg = delivered[0]["id"].as_str().unwrap();
    assert!(
        got.iter()
            .filter(|g| g["type"] == "secret.written")
            .all(|g| g["id"] == msg)
    );
    assert!(
        eventually(LIMIT, || status(&d)[0]["pending"] == 0),
        "{:?}",
        status(&d)
    );
    assert_absent("the bodies", &rx.raw(), &["crash-value-31c7"]);
    assert_absent(
        "the daemon's log",
        d.log().as_bytes(),
        &["crash-value-31c7", secret.strip_prefix("whsec_").unwrap()],
    );
}

#[test]
fn a_webhook_of_the_configuration_file_signs_with_a_secret_from_the_store() {
    let rx = Receiver::start("");
    let conf = tempfile::tempdir().unwrap();
    let file = conf.path().join("coffer.toml");
    std::fs::write(
        &file,
        format!(
            "webhook_retry_schedule = \"0s,1s\"\n\n[[webhooks]]\nurl = \"{}\"\nevents = \
             [\"secret.rotated\"]\nsecret_name = \"hooks/signing\"\n",
            rx.url()
        ),
    )
    .unwrap();
    let d = Daemon::start(&["--config", file.to_str().unwrap()]);
    // The file names the secret; its value (whsec_ and base64) is kept in the store.
    let signing = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let out = d.cli(&["set", "hooks/signing"], signing.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.cli(&["set", "svc/token"], b"file-hook-value-1");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.cli(&["secrets", "rotate", "svc/token"], b"file-hook-value-2");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        eventually(LIMIT, || !rx.verified(signing).is_empty()),
        "no delivery:\n{}",
        d.log()
    );
    let got = rx.verified(signing);
    assert!(got.iter().all(|g| g["verified"] == true), "{got:?}");
    assert!(got.iter().all(|g| g["type"] == "secret.rotated"), "{got:?}");
    let list: Value =
        serde_json::from_str(&stdout(&d.cli(&["webhooks", "list", "--json"], b""))).unwrap();
    assert_eq!(list[0]["id"], "file_1");
    assert_eq!(list[0]["configured"], true);
    let refused = d.cli(&["webhooks", "remove", "file_1"], b"");
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("configuration file"));
    let b64 = signing.strip_prefix("whsec_").unwrap();
    assert_absent(
        "the bodies",
        &rx.raw(),
        &[b64, "file-hook-value-1", "file-hook-value-2"],
    );
    assert_absent(
        "the daemon's log",
        d.log().as_bytes(),
        &[b64, "file-hook-value-2"],
    );
}

#[test]
fn an_event_whose_delivery_was_in_flight_at_a_kill_arrives_after_the_restart() {
    let mut d = daemon("0s,1s");
    let rx = Receiver::start("hang");
    let (_, secret) = add(&d, &[&rx.url()]);
    let out = d.cli(&["set", "inflight/key"], b"inflight-value-9d02");
    assert!(out.status.success(), "{}", stderr(&out));
    // The first attempt reached the receiver, which does not answer: the event is
    // committed, not delivered, and its cursor not moved when the daemon is killed.
    assert!(
        eventually(LIMIT, || !rx.raw().is_empty()),
        "no attempt:\n{}",
        d.log()
    );
    d.kill9();
    rx.plan("");
    d.spawn();
    assert!(
        eventually(LIMIT, || rx_delivered(&rx.verified(&secret)) >= 1),
        "not delivered after the restart:\n{}",
        d.log()
    );
    let got = rx.verified(&secret);
    assert!(got.iter().all(|g| g["verified"] == true), "{got:?}");
    // The same message, first in flight, then delivered.
    assert_eq!(got[0]["id"], got.last().unwrap()["id"], "{got:?}");
    assert_eq!(got.last().unwrap()["data"]["name"], "inflight/key");
    assert_absent("the bodies", &rx.raw(), &["inflight-value-9d02"]);
}

#[test]
fn an_https_endpoint_is_verified_against_the_web_roots() {
    let d = daemon("0s");
    let rx = Receiver::start_tls();
    let (id, _) = add(&d, &[&format!("https://127.0.0.1:{}/hook", rx.port)]);
    let out = d.cli(&["set", "tls/key"], b"tls-value-4c1e");
    assert!(out.status.success(), "{}", stderr(&out));
    // A self-signed certificate: the one attempt fails in TLS, and nothing is posted.
    assert!(
        eventually(LIMIT, || status(&d).iter().any(
            |w| w["id"] == id.as_str() && w["failed"].as_array().is_some_and(|f| !f.is_empty())
        )),
        "never failed:\n{}",
        d.log()
    );
    let st = status(&d);
    let error = st[0]["failed"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("TLS") && error.contains("certificate"),
        "{error}"
    );
    assert!(st[0]["failed"][0]["http_status"].is_null());
    assert!(rx.raw().is_empty());
}
