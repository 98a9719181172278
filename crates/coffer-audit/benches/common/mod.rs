//! What the audit benchmarks share: the record they append.

use coffer_audit::{Actor, Outcome, Record};
use coffer_types::Timestamp;

/// A get as the socket records it.
pub fn record(i: u64) -> Record<'static> {
    Record {
        time: Timestamp::now(),
        request_id: format!("req-{i}").into(),
        actor: Actor {
            uid: Some(1000),
            gid: Some(1000),
            pid: Some(4242),
            exe: Some(std::path::Path::new("/usr/bin/app").into()),
            addr: None,
            token: None,
            unit: None,
        },
        action: coffer_types::Action::Get,
        namespace: Some("default".into()),
        name: Some(format!("app/secret-{}", i % 50).into()),
        outcome: Outcome::Ok,
        code: None,
        gate: None,
        repeated: None,
        namespace_invalid: None,
        name_invalid: None,
    }
}
