//! The policy gate (gate 5): [`Engine::decide`] alone, and [`AccessControl::check`] as the
//! service calls it (engine behind its lock, the token's namespace confinement, the refusal's
//! message), over a realistic policy file: 24 team policies of four rules each (a deny
//! among them), bound to uids, gids and token accessors.
//!
//! `cargo bench -p coffer-core --bench decide -- --warm-up-time 1 --measurement-time 2`
#![allow(clippy::unwrap_used, missing_docs)] // A benchmark: a failed unwrap is a failed run.

use std::fmt::Write;
use std::hint::black_box;
use std::sync::Arc;

use coffer_core::access::policy::parse_policy_file;
use coffer_core::access::{AccessConfig, AccessControl, Caller, Decision, Engine, Principal};
use coffer_types::reply::TokenRecord;
use coffer_types::{Capability, Timestamp};
use criterion::{Criterion, criterion_group, criterion_main};

const TEAMS: usize = 24;
const DAEMON_UID: u32 = 999;

/// team-N reads its production secrets (but never `prod/root-*`), writes its staging ones,
/// lists both; ops-N holds sudo on one team's namespace; tokens carry three team policies.
fn policy_file() -> String {
    let mut f = String::new();
    for t in 0..TEAMS {
        writeln!(
            f,
            r#"[policies.team-{t}]
rules = [
  {{ path = "team{t}/prod/*", capabilities = ["read", "list"] }},
  {{ path = "team{t}/prod/root-*", capabilities = ["deny"] }},
  {{ path = "team{t}/staging/*", capabilities = ["create", "update", "read", "list", "meta"] }},
  {{ path = "shared/+/config", capabilities = ["read"] }},
]
[policies.ops-{t}]
rules = [{{ path = "team{t}/*", capabilities = ["sudo"] }}]"#
        )
        .unwrap();
    }
    writeln!(f, "[subjects]").unwrap();
    for t in 0..TEAMS {
        let uid = 2000 + t;
        writeln!(f, r#""uid:{uid}" = ["team-{t}"]"#).unwrap();
        writeln!(f, r#""gid:{uid}" = ["team-{}"]"#, (t + 1) % TEAMS).unwrap();
        writeln!(f, r#""token:acc{t}" = ["ops-{t}"]"#).unwrap();
    }
    f
}

fn policies() -> Vec<String> {
    ["team-3", "team-7", "team-11"].map(str::to_owned).to_vec()
}

fn engine_decide(c: &mut Criterion) {
    let set = parse_policy_file(&policy_file()).unwrap();
    let engine = Engine::compile(DAEMON_UID, &[&set]);
    let own = policies();
    let peer = Caller {
        uid: 2003,
        gid: 2002,
        token: None,
        unit: None,
    };
    let token = Caller {
        uid: 2003,
        gid: 2002,
        token: Some(("acc11", &own)),
        unit: None,
    };
    let root = Caller {
        uid: 0,
        gid: 0,
        token: None,
        unit: None,
    };
    let cases: [(&str, Caller<'_>, &str, Decision); 5] = [
        ("root", root, "team3/prod/db", Decision::Allowed),
        ("peer_allowed", peer, "team3/prod/db", Decision::Allowed),
        (
            "token_allowed",
            token,
            "team11/staging/api-key",
            Decision::Allowed,
        ),
        (
            "token_not_granted",
            token,
            "team20/prod/db",
            Decision::NotGranted,
        ),
        (
            "token_denied",
            token,
            "team7/prod/root-ca",
            Decision::Denied,
        ),
    ];
    let mut group = c.benchmark_group("policy_decide");
    for (label, caller, path, expected) in cases {
        assert_eq!(
            engine.decide(caller, Capability::Read, path),
            expected,
            "{label}"
        );
        group.bench_function(label, |b| {
            b.iter(|| engine.decide(black_box(caller), Capability::Read, black_box(path)))
        });
    }
    group.finish();
}

fn access_check(c: &mut Criterion) {
    let access = AccessControl::new(
        AccessConfig {
            file: parse_policy_file(&policy_file()).unwrap(),
            rate: Default::default(),
        },
        DAEMON_UID,
    );
    let peer = Principal {
        uid: 2003,
        gid: 2002,
        token: None,
        unit: None,
    };
    let now = Timestamp::now();
    let token = Principal {
        uid: 2003,
        gid: 2002,
        token: Some(Arc::new(TokenRecord {
            accessor: "acc11".to_owned(),
            policies: policies(),
            namespace: None,
            display_name: None,
            created: now,
            expires: now.saturating_add_secs(3600),
            ttl: None,
            creator: "uid:0".to_owned(),
            parent: None,
            max_expires: None,
        })),
        unit: None,
    };
    let mut group = c.benchmark_group("policy_check");
    group.bench_function("peer_allowed", |b| {
        b.iter(|| {
            access
                .check(
                    &peer,
                    Capability::Read,
                    black_box("team3/prod/db"),
                    Some("team3/prod"),
                )
                .is_ok()
        })
    });
    group.bench_function("token_allowed", |b| {
        b.iter(|| {
            access
                .check(
                    &token,
                    Capability::Read,
                    black_box("team11/staging/api-key"),
                    Some("team11/staging"),
                )
                .is_ok()
        })
    });
    group.bench_function("token_refused", |b| {
        b.iter(|| {
            access
                .check(
                    &token,
                    Capability::Read,
                    black_box("team20/prod/db"),
                    Some("team20/prod"),
                )
                .is_err()
        })
    });
    group.finish();
}

criterion_group!(benches, engine_decide, access_check);
criterion_main!(benches);
