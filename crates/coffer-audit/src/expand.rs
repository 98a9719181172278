//! Format-3 lines as people read them: [`expand`] turns a line's short field names back into
//! the full ones of format 2 (`seq`, `time` as ISO 8601, `request_id`, `actor`, `action`,
//! `namespace`, `name`, `outcome`...), for `coffer audit tail`. Lines of older formats are
//! already in that form and pass through unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use coffer_types::Timestamp;

/// A format-3 line as written (docs/audit.md has the table of fields).
#[derive(Deserialize)]
struct Short {
    v: u64,
    s: u64,
    t: Option<i64>,
    id: Option<String>,
    u: Option<u32>,
    g: Option<u32>,
    p: Option<i32>,
    exe: Option<String>,
    ip: Option<String>,
    tok: Option<String>,
    unit: Option<String>,
    op: Option<String>,
    ns: Option<String>,
    n: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    #[serde(default)]
    w: bool,
    o: Option<String>,
    c: Option<String>,
    gate: Option<String>,
    rep: Option<u64>,
    nsi: Option<u64>,
    ni: Option<u64>,
    prev: Option<String>,
    m: Option<String>,
    h: Option<String>,
    /// The fields of the records the log writes about itself (`event`, `after`...).
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Serialize)]
struct Actor {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<String>,
}

/// The readable form: format 2's names, in its order.
#[derive(Serialize)]
struct Long {
    v: u64,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    withheld: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repeated: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace_invalid: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_invalid: Option<u64>,
    #[serde(flatten)]
    rest: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev: Option<String>,
    /// The keyed tag (HMAC-SHA256 under the audit key, 128 bits).
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    /// The unkeyed tag (BLAKE3, 128 bits), written while sealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
}

/// Appends `line` (without its `\n`) to `out` in its readable form, followed by `\n`: a
/// format-3 line with full field names (a name's hash as `hmac-sha256:<32 hex>`, the time in
/// ISO 8601); any other line (older formats, or one that does not parse) unchanged.
pub fn expand(line: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    if line.starts_with(b"{\"v\":3,")
        && let Ok(short) = serde_json::from_slice::<Short>(line)
        && short.v == 3
        && serde_json::to_writer(&mut *out, &long(short)).is_ok()
    {
        out.push(b'\n');
        return;
    }
    out.truncate(start);
    out.extend_from_slice(line);
    out.push(b'\n');
}

fn long(s: Short) -> Long {
    let hashed = |h: Option<String>| h.map(|h| format!("hmac-sha256:{h}"));
    let actor = Actor {
        uid: s.u,
        gid: s.g,
        pid: s.p,
        exe: s.exe,
        addr: s.ip,
        token: s.tok,
        unit: s.unit,
    };
    let any_actor = actor.uid.is_some()
        || actor.gid.is_some()
        || actor.pid.is_some()
        || actor.exe.is_some()
        || actor.addr.is_some()
        || actor.token.is_some()
        || actor.unit.is_some();
    Long {
        v: s.v,
        seq: s.s,
        time: s.t.map(Timestamp::from_millis),
        actor: (any_actor || s.op.is_some()).then_some(actor),
        request_id: s.id,
        action: s.op,
        namespace: s.namespace.or(hashed(s.ns)),
        name: s.name.or(hashed(s.n)),
        withheld: s.w,
        outcome: s.o,
        code: s.c,
        gate: s.gate,
        repeated: s.rep,
        namespace_invalid: s.nsi,
        name_invalid: s.ni,
        rest: s.rest,
        prev: s.prev,
        mac: s.m,
        hash: s.h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> String {
        let mut out = Vec::new();
        expand(line.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn format_3_lines_get_their_full_names() {
        let line = r#"{"v":3,"s":7,"t":1700000000123,"id":"r-1","u":1000,"g":10,"p":42,"exe":"/bin/x","op":"get","ns":"aa","n":"bb","o":"denied","c":"denied","gate":"policy","prev":"00","m":"cc"}"#;
        assert_eq!(
            run(line),
            "{\"v\":3,\"seq\":7,\"time\":\"2023-11-14T22:13:20.123Z\",\"request_id\":\"r-1\",\
             \"actor\":{\"uid\":1000,\"gid\":10,\"pid\":42,\"exe\":\"/bin/x\"},\"action\":\"get\",\
             \"namespace\":\"hmac-sha256:aa\",\"name\":\"hmac-sha256:bb\",\"outcome\":\"denied\",\
             \"code\":\"denied\",\"gate\":\"policy\",\"prev\":\"00\",\"mac\":\"cc\"}\n"
        );
        let sealed = r#"{"v":3,"s":8,"t":0,"id":"r","op":"set","w":true,"o":"ok","h":"dd"}"#;
        assert_eq!(
            run(sealed),
            "{\"v\":3,\"seq\":8,\"time\":\"1970-01-01T00:00:00.000Z\",\"request_id\":\"r\",\
             \"actor\":{},\"action\":\"set\",\"withheld\":true,\"outcome\":\"ok\",\"hash\":\"dd\"}\n"
        );
    }

    #[test]
    fn events_keep_their_fields_and_older_lines_pass_through() {
        let gap = r#"{"v":3,"s":9,"acknowledged_by":"uid 0","after":3,"event":"gap","time":"2026-01-01T00:00:00Z","m":"ee"}"#;
        assert_eq!(
            run(gap),
            "{\"v\":3,\"seq\":9,\"acknowledged_by\":\"uid 0\",\"after\":3,\"event\":\"gap\",\
             \"time\":\"2026-01-01T00:00:00Z\",\"mac\":\"ee\"}\n"
        );
        for old in [r#"{"v":2,"seq":1,"prev":"00"}"#, "{\"seq\":1}", "not json"] {
            assert_eq!(run(old), format!("{old}\n"));
        }
    }
}
