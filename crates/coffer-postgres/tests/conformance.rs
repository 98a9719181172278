//! The store conformance suite on PostgreSQL: every case on a fresh database of one private
//! server (one server for all cases: starting one costs seconds).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use coffer_postgres::fixture::Postgres;
use coffer_postgres::{PgBackend, PgOptions};
use coffer_store::conformance::Made;

#[test]
fn the_conformance_suite_passes_on_postgres() {
    let pg = Postgres::start();
    let next = AtomicUsize::new(0);
    let make = || -> Made<PgBackend> {
        let db = format!("case_{}", next.fetch_add(1, Ordering::Relaxed));
        pg.psql(&format!("CREATE DATABASE {db}"));
        let options = PgOptions {
            url: format!(
                "postgresql://coffer@/{db}?host={}",
                pg.socket_dir().display()
            ),
            password_file: None,
        };
        let backend = PgBackend::open(&options, "hub-a").expect("open");
        (Arc::new(backend), Box::new(()))
    };
    let mut failed = Vec::new();
    let cases = coffer_store::conformance_suite!(@each make);
    let total = cases.len();
    for (name, case) in cases {
        let started = std::time::Instant::now();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(case)).is_err() {
            failed.push(name);
        }
        eprintln!("case {name}: {} ms", started.elapsed().as_millis());
    }
    assert!(
        failed.is_empty(),
        "{} of {total} cases failed on PostgreSQL: {failed:?}",
        failed.len()
    );
}
