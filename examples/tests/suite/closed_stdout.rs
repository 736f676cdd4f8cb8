//! An example whose stdout is closed (`logproc | head -1`) stops quietly with
//! exit code 0 instead of panicking on the broken pipe (see `weir_examples::cli`).

use std::process::{Command, Output, Stdio};

/// Runs `exe` with a stdout pipe that is closed before it writes anything.
fn with_closed_stdout(exe: &str, args: &[&str]) -> Output {
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the example");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait for the example")
}

fn assert_quiet_success(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn logproc_with_a_closed_stdout_exits_0_and_still_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let dlq = dir.path().join("d.dlq");
    let out = with_closed_stdout(
        env!("CARGO_BIN_EXE_logproc"),
        &[
            "--lines",
            "2000",
            "--health-every",
            "0.01",
            "--dlq",
            dlq.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_quiet_success(&out);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["lines"], 2000);
}

#[test]
fn etl_with_a_closed_stdout_exits_0_and_still_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let out = with_closed_stdout(
        env!("CARGO_BIN_EXE_etl"),
        &[
            "--rows",
            "200",
            "--generated-rows",
            "100",
            "--out",
            dir.path().to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_quiet_success(&out);
    assert!(report.exists());
}

#[test]
fn a_scenario_with_a_closed_stdout_stops_at_once_with_exit_0() {
    assert_quiet_success(&with_closed_stdout(env!("CARGO_BIN_EXE_quickstart"), &[]));
    assert_quiet_success(&with_closed_stdout(
        env!("CARGO_BIN_EXE_moving_average"),
        &[],
    ));
}
