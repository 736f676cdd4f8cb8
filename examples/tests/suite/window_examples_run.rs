//! The window examples run to completion, check their own results and say so.

use crate::common;

use common::run;

#[test]
fn moving_average_matches_the_direct_computation() {
    let stdout = run(env!("CARGO_BIN_EXE_moving_average"));
    assert!(stdout.contains("9996 moving averages over 5"), "{stdout}");
}

#[test]
fn sessionize_finds_the_reference_sessions_and_the_late_clicks() {
    let stdout = run(env!("CARGO_BIN_EXE_sessionize"));
    assert!(
        stdout.contains("late clicks on the side output: 3"),
        "{stdout}"
    );
}
