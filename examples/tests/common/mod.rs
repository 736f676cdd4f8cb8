//! What the example tests share.
#![allow(dead_code, unreachable_pub)]

use std::process::Command;

/// Runs an example binary and returns its stdout; fails the test unless it exits
/// 0 and says "all checks passed".
pub fn run(exe: &str) -> String {
    let out = Command::new(exe).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    stdout
}
