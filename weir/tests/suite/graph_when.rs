//! `Graph::when`: a sub-pipeline for the matching elements only, input order kept,
//! one-to-one sub-pipelines enforced.

use crate::common;

use std::time::Duration;

use common::*;
use proptest::prelude::*;
use weir::prelude::*;

fn rt(arbiters: usize) -> Runtime {
    Runtime::builder().arbiters(arbiters).build().unwrap()
}

fn fast() -> BackoffConfig {
    BackoffConfig::new(Duration::from_millis(1), Duration::from_millis(1))
}

fn expected(n: u64, every: u64) -> Vec<u64> {
    (0..n)
        .map(|x| if x % every == 0 { x * 1_000 + 1 } else { x })
        .collect()
}

#[test]
fn matching_elements_take_the_sub_pipeline_and_order_is_kept() {
    for placement in [Placement::Together, Placement::Spread] {
        let rt = rt(2);
        let mut g = Graph::new();
        g.placement(placement).default_capacity(8);
        let numbers = g.source(Pipeline::from_iter(0..20_000_u64));
        let out = g.when(
            numbers,
            |x| x % 3 == 0,
            |f| f.map(|x| x * 1_000).name("times").map(|x| x + 1),
        );
        let out = collect(&mut g, out);
        let done = g.run(&rt).unwrap().wait().unwrap();
        done.report.check_conservation().unwrap();
        assert_eq!(take(out), expected(20_000, 3), "{placement:?}");
        let times = done.report.stage("times").unwrap();
        assert_eq!(times.input, 6_667, "only the matching elements");
    }
}

#[test]
fn an_async_sub_pipeline_finishing_out_of_order_keeps_the_order() {
    let rt = rt(2);
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..2_000_u64));
    let out = g.when(
        numbers,
        |x| x % 2 == 1,
        |f| {
            f.map_async(8, |x| async move {
                tokio::time::sleep(Duration::from_micros((x * 7_919) % 300)).await;
                x * 1_000 + 1
            })
        },
    );
    let out = collect(&mut g, out);
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    let want: Vec<u64> = (0..2_000)
        .map(|x| if x % 2 == 1 { x * 1_000 + 1 } else { x })
        .collect();
    assert_eq!(take(out), want);
}

#[test]
fn an_empty_sub_pipeline_passes_everything_through() {
    let rt = rt(1);
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..1_000_u64));
    let out = g.when(numbers, |x| x % 2 == 0, |f| f);
    let out = collect(&mut g, out);
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(take(out), (0..1_000).collect::<Vec<_>>());
}

#[test]
fn a_supervised_sub_stage_that_retries_keeps_the_order() {
    let rt = rt(1);
    let mut g = Graph::new();
    let policy = SupervisionPolicy::default()
        .on_exhausted(Action::Escalate)
        .action(ErrorClass::Permanent, Action::Escalate)
        .backoff(fast())
        .restart_backoff(fast());
    let failed = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let numbers = g.source(Pipeline::from_iter(0..3_000_u64));
    let out = g.when(
        numbers,
        |x| x % 3 == 0,
        move |f| {
            f.supervise(Supervision::new(policy)).map(move |x| {
                if x % 300 == 0 && failed.lock().unwrap().insert(x) {
                    panic!("first try of {x}");
                }
                x * 1_000 + 1
            })
        },
    );
    let out = collect(&mut g, out);
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(take(out), expected(3_000, 3));
}

#[test]
fn sub_pipelines_that_can_drop_elements_are_rejected_naming_the_stage() {
    let rt = rt(1);
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..10_u64));
    let out = g.when(
        numbers,
        |x| x % 2 == 0,
        |f| f.filter(|x| *x > 4).name("drop-small"),
    );
    let _out = collect(&mut g, out);
    let err = g.run(&rt).unwrap_err().to_string();
    assert!(
        err.contains("`drop-small`") && err.contains("not one-to-one"),
        "{err}"
    );

    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..10_u64));
    let dlq = MemoryDlq::new(10);
    let out = g.when(
        numbers,
        |x| x % 2 == 0,
        |f| {
            f.supervise(Supervision::new(SupervisionPolicy::default()).dead_letters(dlq))
                .map(|x| x + 1)
                .name("lossy")
        },
    );
    let _out = collect(&mut g, out);
    let err = g.run(&rt).unwrap_err().to_string();
    assert!(
        err.contains("`lossy`") && err.contains("dead letter or skip"),
        "{err}"
    );
}

#[test]
fn a_panicking_predicate_fails_the_pipeline_and_counts_stay_exact() {
    let rt = rt(1);
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..1_000_u64));
    let out = g.when(
        numbers,
        |x| {
            assert!(*x != 500, "bad predicate");
            x % 2 == 0
        },
        |f| f.map(|x| x + 1),
    );
    let _out = collect(&mut g, out);
    let err = g.run(&rt).unwrap().wait().unwrap_err();
    assert!(err.to_string().contains("when-split"), "{err}");
    err.report().unwrap().check_conservation().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn when_equals_the_sequential_computation(
        n in 0_u64..3_000,
        every in 1_u64..6,
        capacity in 1_usize..40,
        spread in any::<bool>(),
    ) {
        let rt = rt(2);
        let mut g = Graph::new();
        g.default_capacity(capacity);
        if spread {
            g.placement(Placement::Spread);
        }
        let numbers = g.source(Pipeline::from_iter(0..n));
        let out = g.when(numbers, move |x| x % every == 0, |f| f.map(|x| x * 1_000).map(|x| x + 1));
        let out = collect(&mut g, out);
        let done = g.run(&rt).unwrap().wait().unwrap();
        prop_assert!(done.report.check_conservation().is_ok());
        prop_assert_eq!(take(out), expected(n, every));
    }
}
