//! `logproc --console 127.0.0.1:0`: the console answers while logproc runs
//! (`/healthz`, `/api/graph` with the logproc pipeline), and the report is the
//! one a run without the console gives for the same input.
//!
//! logproc prints the console's address before its pipeline starts; 500 000
//! generated lines keep it running for about two seconds in a debug build,
//! hundreds of times what the test's requests take.

use std::io::{BufReader, Read};
use std::process::{Command, Stdio};

use crate::console_client::{first_pipeline, get};

use serde_json::Value;

/// The report's fields that do not depend on timing or paths.
fn figures(report: &Value) -> Vec<(&'static str, Value)> {
    [
        "lines",
        "parsed",
        "malformed",
        "dead_lettered",
        "bytes_total",
        "status_counts",
        "top_ips",
        "top_paths",
        "five_xx_per_minute",
        "restarts",
        "lines_in_failed_batches",
    ]
    .into_iter()
    .map(|k| (k, report[k].clone()))
    .collect()
}

/// Lines to generate: enough for a run of about two seconds (debug build).
const LINES: &str = "500000";

#[test]
fn the_console_answers_while_logproc_runs_and_the_report_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let generated = ["--lines", LINES, "--seed", "7", "--workers", "3"];

    let plain_report = dir.path().join("plain.json");
    let plain = Command::new(env!("CARGO_BIN_EXE_logproc"))
        .args(generated)
        .arg("--report")
        .arg(&plain_report)
        .arg("--dlq")
        .arg(dir.path().join("plain.dlq"))
        .output()
        .unwrap();
    assert!(plain.status.success(), "{plain:?}");

    let report = dir.path().join("console.json");
    let mut logproc = Command::new(env!("CARGO_BIN_EXE_logproc"))
        .args(generated)
        .args(["--console", "127.0.0.1:0"])
        .arg("--report")
        .arg(&report)
        .arg("--dlq")
        .arg(dir.path().join("console.dlq"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(logproc.stderr.take().unwrap());
    let addr = crate::console_client::printed_addr(&mut stderr, "logproc: console on ");

    let (status, health) = get(addr, "/healthz");
    assert_eq!(status, 200, "{health}");
    assert!(health.contains(r#""status":"alive""#), "{health}");
    let (pipeline, names) = first_pipeline(addr);
    assert_eq!(pipeline["pipeline"], "logproc");
    assert!(names.iter().any(|n| n == "read"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("parse")), "{names:?}");
    assert!(!pipeline["edges"].as_array().unwrap().is_empty());

    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let mut stdout = String::new();
    logproc
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = logproc.wait().unwrap();
    assert!(status.success(), "{stdout}\n{rest}");
    assert!(stdout.contains("lines/s"), "{stdout}");

    let read =
        |path| -> Value { serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap() };
    let (with_console, without) = (read(&report), read(&plain_report));
    assert_eq!(with_console["lines"], 500_000);
    assert_eq!(figures(&with_console), figures(&without));
}
