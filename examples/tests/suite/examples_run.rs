//! The examples run to completion and say what they should.

use std::process::Command;

#[test]
fn restart_policies_exits_zero_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_restart_policies"))
        .args(["--report", path.to_str().unwrap(), "--elements", "1200"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("element_dead_lettered"), "{stdout}");
    assert!(stdout.contains("stage_restarted"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for key in [
        "emitted",
        "delivered",
        "filtered",
        "dead_lettered",
        "retries",
        "restarts",
    ] {
        assert!(report[key].is_u64(), "{key} missing in {report}");
    }
    let emitted = report["emitted"].as_u64().unwrap();
    let delivered = report["delivered"].as_u64().unwrap();
    let dead = report["dead_lettered"].as_u64().unwrap();
    assert_eq!(emitted, 1200);
    assert_eq!(delivered + dead, emitted);
    assert!(dead > 0);
    assert_eq!(report["restarts"].as_u64(), Some(1));
}

#[test]
fn restart_policies_rejects_a_bad_config_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[default]\nmax_attempts = 0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_restart_policies"))
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("default.max_attempts"), "{stderr}");
}

#[test]
fn quickstart_runs() {
    let out = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("grand total"));
}

#[test]
fn restart_policies_and_sse_feed_take_their_arguments_through_clap() {
    for exe in [
        env!("CARGO_BIN_EXE_restart_policies"),
        env!("CARGO_BIN_EXE_sse_feed"),
    ] {
        let help = Command::new(exe).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        assert_eq!(help.status.code(), Some(0), "{exe}: {text}");
        assert!(
            text.contains("Usage:") && text.contains("Options:"),
            "{exe}: {text}"
        );
        let bad = Command::new(exe).arg("--bogus").output().unwrap();
        let err = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(bad.status.code(), Some(2), "{exe}: {err}");
        assert!(
            err.contains("unexpected argument '--bogus'"),
            "{exe}: {err}"
        );
        assert!(!err.contains("panicked"), "{exe}: {err}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_restart_policies"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--config <PATH>", "--report <PATH>", "--elements <N>"] {
        assert!(help.contains(flag), "{help}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_sse_feed"))
        .args(["--serve", "soon"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid value 'soon'"));
}
