//! The graph examples run to completion, check their own results and say so.

use crate::common;

use common::run;

#[test]
fn fan_out_fan_in_runs_and_reports_per_branch_counts() {
    let stdout = run(env!("CARGO_BIN_EXE_fan_out_fan_in"));
    assert!(stdout.contains("per-branch counts of `fanout`"), "{stdout}");
    assert!(stdout.contains("zip pairs: 20000"), "{stdout}");
    assert!(stdout.contains("dead letters"), "{stdout}");
}

#[test]
fn conditional_routing_runs_and_reports_per_branch_counts() {
    let stdout = run(env!("CARGO_BIN_EXE_conditional_routing"));
    assert!(
        stdout.contains("per-branch counts of `by_size`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("per-branch counts of `by_customer`"),
        "{stdout}"
    );
    assert!(stdout.contains("shard3"), "{stdout}");
}

#[test]
fn pool_runs_in_order_and_restarts_crashed_replicas() {
    let stdout = run(env!("CARGO_BIN_EXE_pool"));
    assert!(
        stdout.contains("50000 lines out, in input order"),
        "{stdout}"
    );
    assert!(stdout.contains("parse-1"), "{stdout}");
    assert!(stdout.contains("one per restart"), "{stdout}");
}
