//! The policy file parser (`coffer serve --policy-file`): TOML in, a compiled policy set or
//! an error naming the line out. Whatever parses must survive the store's round trip
//! (written form and back) unchanged and compile into an engine that answers decisions.
#![no_main]

use coffer_core::access::engine::{Caller, Engine};
use coffer_core::access::policy::{PolicySet, parse_policy_file};
use coffer_types::Capability;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(set) = parse_policy_file(text) else {
        return;
    };
    // The store keeps policies in their written form: reading it back gives the same set.
    let written = set.to_text();
    let again = PolicySet::from_text(&written, &|_| false)
        .expect("a parsed policy set reads back from its written form");
    assert_eq!(again, set, "the written form changes the policy set");
    let engine = Engine::compile(1000, &[&set]);
    let policies: Vec<String> = set.policies.keys().cloned().collect();
    let callers = [
        Caller {
            uid: 65534,
            gid: 65534,
            token: None,
            unit: None,
        },
        Caller {
            uid: 1000,
            gid: 1000,
            token: None,
            unit: None,
        },
        Caller {
            uid: 65534,
            gid: 65534,
            token: Some(("acc", &policies)),
            unit: None,
        },
        // A systemd unit asking through the credentials socket: its own bindings only.
        Caller {
            uid: u32::MAX,
            gid: u32::MAX,
            token: None,
            unit: Some("app.service"),
        },
    ];
    // Paths from the file itself (its rules) and a few fixed ones.
    let mut paths: Vec<String> = ["app/db", "default/prod/db", "sys/token", "a/b/c", ""]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for doc in set.policies.values() {
        for rule in &doc.to_text().rules {
            paths.push(rule.path.replace('*', "x").replace('+', "y"));
        }
    }
    for caller in callers {
        for path in &paths {
            for cap in [
                Capability::Read,
                Capability::Create,
                Capability::List,
                Capability::Sudo,
            ] {
                let _ = engine.decide(caller, cap, path);
            }
        }
    }
});
