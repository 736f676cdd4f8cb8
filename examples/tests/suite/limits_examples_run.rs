//! The rate-limit and barrier examples run to completion, check their own
//! results and say so.

use crate::common;

use common::run;

#[test]
fn rate_limited_client_retries_limits_and_reports_health() {
    let stdout = run(env!("CARGO_BIN_EXE_rate_limited_client"));
    assert!(
        stdout.contains("pages fetched:      24 (6 retried after a reset)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("malformed records:  17 dead-lettered"),
        "{stdout}"
    );
    assert!(stdout.contains("health: OK"), "{stdout}");
}

#[test]
fn barrier_sync_aligns_and_names_the_stalled_sensor() {
    let stdout = run(env!("CARGO_BIN_EXE_barrier_sync"));
    assert!(stdout.contains("aligned 40 steps of 3 sensors"), "{stdout}");
    assert!(stdout.contains("barrier timed out at step 3"), "{stdout}");
    assert!(stdout.contains("input 2 (\"humidity\") late"), "{stdout}");
}
