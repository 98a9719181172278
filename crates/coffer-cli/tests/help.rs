//! Snapshot tests of help text and usage errors (tests/cmd/*.toml): the wording operators and
//! scripts rely on changes only on purpose. Regenerate after an intended change with
//! `TRYCMD=overwrite cargo test -p coffer-cli --test help`.

#[test]
fn help_and_usage_errors_are_pinned() {
    trycmd::TestCases::new()
        .register_bin("coffer", std::path::Path::new(env!("CARGO_BIN_EXE_coffer")))
        .case("tests/cmd/*.toml");
}
