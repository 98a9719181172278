//! The socket protocol: framing (the scanner that finds where the first request ends, the
//! newline framing of keep-alive requests) and the request parser, answered by the real
//! handler over a real service. Asserts that framing is the same however the bytes are split,
//! and that every reply is one well-formed JSON object on one line.
#![no_main]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_core::{Identity, Operation};
use coffer_fuzz::Fixture;
use coffer_server::framing::{ObjectScanner, Scan, next_line};
use coffer_server::protocol::{CofferHandler, parse};
use coffer_server::{Handler, Replies};
use libfuzzer_sys::fuzz_target;

static FIXTURE: Mutex<Option<(Fixture, CofferHandler)>> = Mutex::new(None);

/// Requests at most this many bytes are answered (the daemon's default limit is larger; the
/// fuzzer gains nothing from huge ones).
const MAX_REQUEST: usize = 64 << 10;

fn check_reply(request: &[u8], reply: &[u8]) {
    assert!(
        reply.ends_with(b"\n"),
        "a reply ends with a newline: {:?} -> {:?}",
        String::from_utf8_lossy(request),
        String::from_utf8_lossy(reply)
    );
    let body = &reply[..reply.len() - 1];
    assert!(!body.contains(&b'\n'), "a reply is one line");
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "a reply is JSON ({e}): {:?}",
            String::from_utf8_lossy(reply)
        )
    });
    assert!(value.is_object(), "a reply is a JSON object");
}

/// Operations the fuzzer does not run against the service: they touch files outside the
/// fixture (a key-file slot's path) or the TPM. They are still parsed.
fn runs(op: &Operation) -> bool {
    !matches!(
        op,
        Operation::SlotAdd { .. } | Operation::SlotRemove { .. } | Operation::SlotReseal { .. }
    )
}

fn answer(request: &[u8]) {
    if request.len() > MAX_REQUEST {
        return;
    }
    let Ok(parsed) = parse(request).map(|p| p.operation) else {
        // Refused by the parser: the handler answers without the service.
        return handle(request);
    };
    if runs(&parsed) {
        handle(request);
    }
}

fn handle(request: &[u8]) {
    let mut guard = FIXTURE.lock().unwrap_or_else(|e| e.into_inner());
    let rebuild = match guard.as_mut() {
        None => true,
        Some((f, _)) => f.tick(),
    };
    if rebuild {
        *guard = None;
        let f = Fixture::new();
        let h = CofferHandler::new(f.service.clone());
        *guard = Some((f, h));
    }
    let Some((fixture, handler)) = guard.as_ref() else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for uid in [me, 65534] {
        let peer = Arc::new(Identity::peer(uid, uid, None));
        let mut out = Vec::new();
        fixture.runtime.block_on(async {
            let mut replies = Replies::new(&mut out, None, Duration::from_secs(10));
            handler.handle(&peer, request, &mut replies).await
        });
        check_reply(request, &out);
    }
}

fuzz_target!(|data: &[u8]| {
    // The first request, framed in one read and in two (split where the first byte says).
    let whole = ObjectScanner::default().scan(data);
    let split = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let mut scanner = ObjectScanner::default();
    let in_two = match scanner.scan(&data[..split]) {
        Scan::Partial => scanner.scan(data),
        done => done,
    };
    assert_eq!(whole, in_two, "framing depends on how the bytes arrive");
    let Scan::Complete(end) = whole else {
        return;
    };
    assert!(end <= data.len() && end > 0);
    answer(&data[..end]);
    // What follows: keep-alive requests, one a line.
    let mut from = end;
    let mut n = 0;
    while let Some((line_end, next)) = next_line(data, from) {
        assert!(from <= line_end && line_end < next && next <= data.len());
        let line = &data[from..line_end];
        if !line.iter().all(u8::is_ascii_whitespace) {
            answer(line);
        }
        from = next;
        n += 1;
        if n == 8 {
            break;
        }
    }
});
