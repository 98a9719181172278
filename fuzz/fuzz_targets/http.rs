//! The HTTP API: method, path, query, headers and body through the real axum router over a
//! real service, with `tower::ServiceExt::oneshot`. Asserts no panic (libfuzzer-sys aborts on
//! one, in any task) and that every answer's body can be read.
//!
//! Input: `METHOD URI\n`, header lines `name: value\n`, an empty line, then the body. `@ROOT@`
//! in a header value is replaced by a root token, so seeds can reach past the token gate.
#![no_main]

use std::sync::Mutex;

use axum::body::Body;
use axum::http::Request;
use coffer_fuzz::Fixture;
use coffer_server::Limits;
use coffer_server::http::{AppState, app};
use http_body_util::BodyExt as _;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

static FIXTURE: Mutex<Option<(Fixture, axum::Router)>> = Mutex::new(None);

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (first, mut rest) = split_line(data);
    let first = String::from_utf8_lossy(first);
    let (method, uri) = first.split_once(' ').unwrap_or(("GET", &first));
    let mut guard = FIXTURE.lock().unwrap_or_else(|e| e.into_inner());
    let rebuild = match guard.as_mut() {
        None => true,
        Some((f, _)) => f.tick(),
    };
    if rebuild {
        *guard = None;
        let f = Fixture::new();
        let router = app(AppState::new(
            f.service.clone(),
            Limits::for_values(1 << 20),
        ));
        *guard = Some((f, router));
    }
    let Some((fixture, router)) = guard.as_ref() else {
        return;
    };
    let mut request = Request::builder().method(method).uri(uri);
    loop {
        let (line, after) = split_line(rest);
        rest = after;
        if line.is_empty() {
            break;
        }
        let line = String::from_utf8_lossy(line);
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        let value = value.trim_start().replace("@ROOT@", &fixture.root_token);
        request = request.header(name, value);
    }
    let Ok(request) = request.body(Body::from(rest.to_vec())) else {
        return; // not a request http can represent
    };
    fixture.runtime.block_on(async {
        let response = router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let _status = response.status();
        response
            .into_body()
            .collect()
            .await
            .expect("an answer's body can be read");
    });
});
