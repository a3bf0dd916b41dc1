//! Helpers shared by the command-line test files (`mod common;`): run the built `lofi`, find a
//! fixture, and check a success or a short, clean failure.
// Each test file uses a subset.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn lofi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lofi")).args(args).env_remove("RUST_BACKTRACE").output().unwrap()
}

pub fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel).display().to_string()
}

/// Success; stdout followed by stderr.
pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A failure whose message contains `needle`, without a panic or a backtrace (argument errors
/// from clap come with their usage lines).
pub fn fails_cleanly_with(out: &Output, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded but should fail with '{needle}'");
    assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
    for noise in ["panicked", "backtrace", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!stderr.contains(noise), "noisy error: {stderr}");
    }
    stderr
}

/// A failure with a short, single-line message containing `needle`.
pub fn fails_with(out: &Output, needle: &str) {
    let stderr = fails_cleanly_with(out, needle);
    assert!(stderr.trim().lines().count() <= 2, "long error: {stderr}");
}
