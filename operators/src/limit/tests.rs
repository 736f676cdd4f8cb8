//! Unit tests of the limit stages on tiny edges (capacity 3, batches of 2).

use weir_runtime::Outcome;
use weir_supervisor::dead_letter::MemoryDlq;

use super::{AtLimit, LimitExt, Rate, Throttle, rejections_to};
use crate::test_support::run_small;
use crate::{FlowExt, Pipeline};

#[test]
fn max_elements_end_passes_exactly_n_and_cancels_an_endless_source() {
    let done = run_small(
        Pipeline::from_iter(0_u64..)
            .max_elements(7, AtLimit::End)
            .collect(),
    );
    assert_eq!(done.output, (0..7).collect::<Vec<_>>());
    assert_eq!(done.report.outcome, Outcome::Completed);
    let stage = done.report.stage("max_elements#1").unwrap();
    assert_eq!((stage.completed, stage.failed), (7, 0));
    assert_eq!(stage.input, 7 + stage.abandoned);
}

#[test]
fn max_elements_within_the_budget_passes_everything() {
    for at_limit in [AtLimit::End, AtLimit::Fail] {
        let done = run_small(
            Pipeline::from_iter(0..5_u8)
                .max_elements(5, at_limit)
                .collect(),
        );
        assert_eq!(done.output, [0, 1, 2, 3, 4]);
    }
}

#[test]
fn max_element_bytes_admits_the_limit_itself() {
    let dead = MemoryDlq::new(4);
    let done = run_small(
        Pipeline::from_iter(["abcd", "abcde", "abc"])
            .supervise(rejections_to(dead.clone()))
            .max_element_bytes(4, |s: &&str| s.len())
            .map(String::from)
            .collect(),
    );
    assert_eq!(done.output, ["abcd", "abc"]);
    assert_eq!(dead.drain()[0].element, "abcde");
}

/// Rejections in the middle of batches keep the order of what passes and the
/// exact count of what does not.
#[test]
fn validate_keeps_order_across_split_batches() {
    let dead = MemoryDlq::new(100);
    let done = run_small(
        Pipeline::from_iter(0..100_u32)
            .supervise(rejections_to(dead.clone()))
            .validate(|x| {
                if x % 4 == 0 {
                    Err("multiple of 4".into())
                } else {
                    Ok(())
                }
            })
            .collect(),
    );
    assert_eq!(
        done.output,
        (0..100).filter(|x| x % 4 != 0).collect::<Vec<_>>()
    );
    assert_eq!(dead.len(), 25);
    let stage = done.report.stage("validate#1").unwrap();
    assert_eq!((stage.completed, stage.dead_lettered), (75, 25));
}

/// Real time, small numbers: a shaping throttle with a burst as large as the
/// input delays nothing.
#[test]
fn a_burst_covering_the_input_does_not_wait() {
    let throttle = Throttle::shape(Rate::per_minute(1)).burst(50);
    let stats = throttle.stats();
    let done = run_small(Pipeline::from_iter(0..50_u32).throttle(throttle).collect());
    assert_eq!(done.output.len(), 50);
    assert_eq!(
        (stats.admitted(), stats.delayed(), stats.keys()),
        (50, 0, 1)
    );
}
