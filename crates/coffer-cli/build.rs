//! Names the commit in `coffer --version`: `coffer 0.1.0 (abc1234 2026-12-01)`.
//!
//! The commit comes from `git rev-parse --short HEAD`, else the `COFFER_COMMIT` variable
//! (packaging builds from a tarball have no `.git`), else `unknown`; the build never fails
//! for want of git. Only HEAD and the branch's ref file are watched, so an ordinary edit does
//! not rerun this script.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn env(name: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={name}");
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let from_env = env("COFFER_COMMIT");
    let date_env = env("COFFER_COMMIT_DATE");
    let commit = from_env
        .clone()
        .or_else(|| git(&dir, &["rev-parse", "--short=7", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let date = date_env.or_else(|| {
        from_env
            .is_none()
            .then(|| git(&dir, &["log", "-1", "--format=%cs", "HEAD"]))
            .flatten()
    });
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let long = match date {
        Some(date) => format!("{version} ({commit} {date})"),
        None => format!("{version} ({commit})"),
    };
    println!("cargo:rustc-env=COFFER_VERSION_LONG={long}");
    println!("cargo:rustc-env=COFFER_COMMIT={commit}");

    // Rerun when HEAD moves: HEAD itself, and the ref it names (or packed-refs).
    let path = |args: &[&str]| {
        git(&dir, args).map(|p| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { dir.join(p) }
        })
    };
    if let Some(git_dir) = path(&["rev-parse", "--git-dir"]) {
        watch(&git_dir.join("HEAD"));
        let common = path(&["rev-parse", "--git-common-dir"]).unwrap_or(git_dir);
        match git(&dir, &["symbolic-ref", "-q", "HEAD"]) {
            Some(reference) if common.join(&reference).exists() => watch(&common.join(reference)),
            _ => watch(&common.join("packed-refs")),
        }
    }
}

/// Watches a file that exists (a missing one would make cargo rerun the script every build).
fn watch(file: &Path) {
    if file.exists() {
        println!("cargo:rerun-if-changed={}", file.display());
    }
}
