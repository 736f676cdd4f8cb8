//! The `hubs` example runs to completion, checks its own results and says so.

use std::process::Command;

#[test]
fn hubs_runs_and_reports_per_subscriber_counts() {
    let out = Command::new(env!("CARGO_BIN_EXE_hubs")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    assert!(stdout.contains("the merge hub accepted 6000"), "{stdout}");
    assert!(stdout.contains("bus ended: Some(Completed)"), "{stdout}");
    for name in ["audit", "dashboard", "monitor"] {
        assert!(stdout.contains(name), "{stdout}");
    }
    assert!(stdout.contains("bus completed 6000 filtered 0"), "{stdout}");
}
