//! The client against a small stand-in daemon on a Unix socket in a temporary directory: one
//! call per connection with typed replies, a stream of replies, a keep-alive session.
#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use coffer_client::{Client, ClientError, Reply, TokenRequest};
use coffer_crypto::SecretBytes;
use coffer_types::ErrorCode;
use coffer_types::reply::{PolicySource, SealState};
use serde_json::{Value, json};

/// A stand-in daemon that serves one connection with `serve`, then stops.
struct Daemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl Daemon {
    fn start(serve: impl FnOnce(UnixStream) + Send + 'static) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("coffer.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let thread = thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            serve(conn);
        });
        Self {
            _dir: dir,
            socket,
            thread: Some(thread),
        }
    }

    fn client(&self) -> Client {
        Client::new(&self.socket).with_timeout(Duration::from_secs(10))
    }

    /// Waits for the connection to be served; a panic there fails the test.
    fn finish(mut self) {
        if let Some(t) = self.thread.take() {
            t.join().expect("the stand-in daemon failed");
        }
    }
}

/// Reads one request the way the daemon does: to the end of the object, without waiting
/// for the client to half-close.
fn request(conn: &UnixStream) -> Value {
    serde_json::Deserializer::from_reader(conn)
        .into_iter::<Value>()
        .next()
        .unwrap()
        .unwrap()
}

/// Answers one request with `reply` and closes, checking the request first.
fn answer(reply: &'static str, check: impl FnOnce(Value) + Send + 'static) -> Daemon {
    Daemon::start(move |mut conn| {
        check(request(&conn));
        conn.write_all(reply.as_bytes()).unwrap();
        conn.write_all(b"\n").unwrap();
    })
}

#[test]
fn calls_answer_the_daemons_typed_replies() {
    let d = answer(
        r#"{"ok":true,"status":{"state":"unsealed","version":"0.1.0","backend":"sqlite",
        "store_id":"abc","slots":[{"id":1,"kind":"file","created":"2026-01-01T00:00:00.000Z",
        "path":"/k"}],"namespaces":2,"tpm":{"present":true,"tcti":"swtpm:port=2321"},
        "cache":{"entries":1,"bytes":5,"ttl_seconds":300},"memory":{"locked_pages":3,
        "lock_refusals":0}}}"#,
        |req| assert_eq!(req, json!({"action": "status"})),
    );
    let status = d.client().status().unwrap();
    assert_eq!(status.state, SealState::Unsealed);
    assert_eq!(status.slots[0].path.as_deref(), Some("/k"));
    assert_eq!(status.tpm.tcti.as_deref(), Some("swtpm:port=2321"));
    assert_eq!((status.namespaces, status.cache.entries), (Some(2), 1));
    d.finish();

    let d = answer(
        r#"{"ok":true,"policies":[{"name":"app","source":"store","rules":{"rules":[{"path":
        "app/*","capabilities":["read"]}]}}],"subjects":[{"subject":"uid:1000","policies":
        ["app"],"source":"file"}]}"#,
        |req| assert_eq!(req["action"], "policy_list"),
    );
    let listing = d.client().policies().unwrap();
    assert_eq!(listing.policies[0].rules.rules[0].path, "app/*");
    assert_eq!(listing.subjects[0].source, PolicySource::File);
    d.finish();

    let d = answer(
        r#"{"ok":true,"token_info":{"accessor":"acc1","policies":["app"],"namespace":"app",
        "created":"2026-01-01T00:00:00.000Z","expires":"2026-01-01T01:00:00.000Z","ttl":3600,
        "creator":"uid:0"},"token":"cft_shown_once"}"#,
        |req| {
            assert_eq!(req["action"], "token_create");
            assert_eq!(req["token"], "cft_caller");
            assert_eq!(req["policies"], json!(["app"]));
            assert_eq!(req["ttl"], 3600);
        },
    );
    let made = d
        .client()
        .with_token(SecretBytes::copy_from(b"cft_caller"))
        .create_token(&TokenRequest {
            policies: &["app".to_owned()],
            ttl: Duration::from_secs(3600),
            namespace: Some("app"),
            display_name: None,
            max_ttl: None,
            orphan: false,
        })
        .unwrap();
    assert_eq!(made.token.expose_secret(), b"cft_shown_once");
    assert_eq!(made.record.accessor, "acc1");
    assert_eq!(made.record.ttl, Some(3600));
    assert!(!format!("{made:?}").contains("cft_shown_once"));
    d.finish();

    let d = answer(
        r#"{"ok":true,"audit":{"ok":false,"records":7,"files":1,"last_seq":7,"unanchored":7,
        "problem":"line 3: chain broken"}}"#,
        |_| {},
    );
    let audit = d.client().audit_verify().unwrap();
    assert_eq!(audit.problem.as_deref(), Some("line 3: chain broken"));
    assert_eq!(audit.checkpoint, None);
    d.finish();
}

#[test]
fn calls_carry_values_both_ways_and_refusals_keep_their_code() {
    let d = answer(r#"{"ok":true,"value_b64":"AJ//"}"#, |req| {
        assert_eq!(req, json!({"action": "get", "name": "blob", "version": 2}));
    });
    let v = d
        .client()
        .get(None, "blob", coffer_types::Version::new(2))
        .unwrap();
    assert_eq!(v.expose_secret(), &[0, 0x9f, 0xff]);
    d.finish();

    let d = answer(
        r#"{"error":"no such secret","code":"not_found","rc":"0x18b"}"#,
        |req| assert_eq!(req["value"], "sk_live_abc"),
    );
    let err = d
        .client()
        .set(None, "k", &SecretBytes::copy_from(b"sk_live_abc"), None)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert_eq!(err.to_string(), "no such secret");
    d.finish();

    // A reply past the limit is refused, not read to the end.
    let d = Daemon::start(|mut conn| {
        request(&conn);
        let _ = conn.write_all(&[b' '; 1 << 20]);
    });
    let err = d.client().with_max_reply(1000).status().unwrap_err();
    assert!(
        matches!(err, ClientError::ReplyTooLarge { limit: 1000 }),
        "{err:?}"
    );
    d.finish();
}

/// A change event as a watch might stream it.
#[derive(serde::Deserialize, Debug, PartialEq)]
struct Event {
    revision: u64,
    name: String,
}

#[test]
fn a_stream_yields_each_line_until_the_daemon_closes() {
    let d = Daemon::start(|mut conn| {
        assert_eq!(request(&conn)["action"], "watch");
        // Lines split across writes, a blank line, and a last line without its newline.
        for piece in [
            &b"{\"ok\":true,\"revision\":1,\"name\":\"a\"}\n{\"ok\":true,"[..],
            b"\"revision\":2,\"name\":\"b\"}\n\n",
            b"{\"ok\":true,\"revision\":3,\"name\":\"c\"}",
        ] {
            conn.write_all(piece).unwrap();
            thread::sleep(Duration::from_millis(20));
        }
    });
    let client = d.client();
    let events: Vec<Event> = client
        .stream(&client.request("watch").finish())
        .unwrap()
        .decoded_as::<Event>()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(events[2].name, "c");
    d.finish();
}

#[test]
fn an_error_reply_ends_the_stream_with_its_error() {
    let d = Daemon::start(|mut conn| {
        request(&conn);
        conn.write_all(
            b"{\"ok\":true,\"value\":\"v1\"}\n{\"error\":\"sealed\",\"code\":\"sealed\"}\n\
              {\"ok\":true,\"value\":\"never read\"}\n",
        )
        .unwrap();
    });
    let client = d.client();
    let mut replies = client.stream(&client.request("watch").finish()).unwrap();
    let mut first: Reply = replies.next().unwrap().unwrap();
    assert_eq!(first.take_value().unwrap().expose_secret(), b"v1");
    let err = replies.next().unwrap().unwrap_err();
    assert_eq!(err.code(), ErrorCode::Sealed);
    assert!(replies.next().is_none());
    assert!(replies.next().is_none());
    d.finish();
}

#[test]
fn a_stream_line_past_the_limit_ends_the_stream() {
    let d = Daemon::start(|mut conn| {
        request(&conn);
        let _ = conn.write_all(b"{\"ok\":true}\n");
        let _ = conn.write_all(&[b'x'; 1 << 20]);
    });
    let client = d.client().with_max_reply(4096);
    let mut replies = client.stream(&client.request("watch").finish()).unwrap();
    assert!(replies.next().unwrap().is_ok());
    assert!(matches!(
        replies.next(),
        Some(Err(ClientError::ReplyTooLarge { limit: 4096 }))
    ));
    assert!(replies.next().is_none());
    d.finish();
}

#[test]
fn dropping_a_stream_closes_its_connection() {
    let d = Daemon::start(|mut conn| {
        request(&conn);
        // Writes until the client has gone; a stream must not outlive its reader.
        for revision in 0.. {
            let line = format!("{{\"ok\":true,\"revision\":{revision},\"name\":\"n\"}}\n");
            if conn.write_all(line.as_bytes()).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
    });
    let client = d.client();
    let replies = client.stream(&client.request("watch").finish()).unwrap();
    replies
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let two: Vec<Event> = replies
        .decoded_as::<Event>()
        .take(2)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(two[1].revision, 1);
    d.finish();
}

/// Serves a keep-alive connection: answers each request line with `answer(n, request)`,
/// until the client closes.
fn keep_alive(answer: fn(u64, &Value) -> Option<String>) -> Daemon {
    Daemon::start(move |conn| {
        let mut lines = BufReader::new(&conn);
        let mut out = &conn;
        for n in 1.. {
            let mut line = String::new();
            if lines.read_line(&mut line).unwrap() == 0 {
                return;
            }
            assert!(line.ends_with('\n'), "each request is a line");
            let req: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(
                req.get("keep_alive").is_some(),
                n == 1,
                "only the first request switches the connection: {req}"
            );
            match answer(n, &req) {
                Some(reply) => writeln!(out, "{reply}").unwrap(),
                None => return,
            }
        }
    })
}

#[test]
fn a_session_sends_requests_in_order_on_one_connection() {
    let d = keep_alive(|n, req| {
        let id = &req["id"];
        assert_eq!(id, n, "requests are numbered");
        Some(match req["action"].as_str().unwrap() {
            "get" => format!(r#"{{"ok":true,"value":"value-{n}","id":{id}}}"#),
            "del" => format!(r#"{{"error":"no such secret","code":"not_found","id":{id}}}"#),
            _ => format!(r#"{{"ok":true,"id":{id}}}"#),
        })
    });
    let client = d.client().with_token(SecretBytes::copy_from(b"cft_t"));
    let mut session = client.session().unwrap();
    for n in 1..=3 {
        let req = session.request("get").field("name", "k");
        let mut reply = session.call(req).unwrap();
        let value = reply.take_value().unwrap();
        assert_eq!(value.expose_secret(), format!("value-{n}").as_bytes());
    }
    // A refusal fails its call only.
    let err = session
        .call(session.request("del").field("name", "k"))
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(session.call(session.request("seal")).is_ok());
    drop(session);
    d.finish();
}

#[test]
fn a_session_closes_on_a_reply_out_of_order_or_a_closed_connection() {
    let d = keep_alive(|n, _| (n == 1).then(|| r#"{"ok":true,"id":7}"#.to_owned()));
    let client = d.client();
    let mut session = client.session().unwrap();
    let err = session.call(session.request("status")).unwrap_err();
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
    let again = session.call(session.request("status")).unwrap_err();
    assert!(again.to_string().contains("closed"), "{again}");
    drop(session);
    d.finish();

    let d = keep_alive(|n, _| (n == 1).then(|| r#"{"ok":true,"id":1}"#.to_owned()));
    let client = d.client();
    let mut session = client.session().unwrap();
    assert!(session.call(session.request("status")).is_ok());
    let err = session.call(session.request("status")).unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
    drop(session);
    d.finish();
}
