//! The `sse_feed` example serves a pipeline over SSE to two clients of its own,
//! checks that each accounted for every summary, and says so.

use std::process::Command;

#[test]
fn sse_feed_runs_and_every_client_accounts_for_every_summary() {
    let out = Command::new(env!("CARGO_BIN_EXE_sse_feed"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    for who in ["reader:", "staller:"] {
        let line = stdout.lines().find(|l| l.starts_with(who)).unwrap();
        assert!(line.ends_with("end: completed"), "{line}");
    }
    assert!(stdout.contains("server:  2 clients"), "{stdout}");
}
