//! Fusion: which stages share an actor (the topology's `fused_group`), and that a
//! fused pipeline is observably the same as the unfused one — the same output and
//! the same counters for every stage, failures named after the member that failed,
//! early termination and aborts accounted for, checked by a proptest over random
//! chains.

use proptest::prelude::*;
use weir::prelude::*;
use weir::{Completion, PipelineError, Report, StageReport};

use crate::common::rt1;

fn groups<R: Send + 'static>(running: &weir::Running<R>) -> Vec<Option<usize>> {
    running
        .topology()
        .nodes
        .iter()
        .map(|n| n.fused_group)
        .collect()
}

#[test]
fn a_linear_chain_fuses_into_one_group_and_async_boundary_splits_it() {
    let rt = rt1();
    let running = Pipeline::from_iter(0..100_u64)
        .map(|x| x + 1)
        .filter(|x| x % 2 == 0)
        .async_boundary()
        .map(|x| x * 10)
        .collect()
        .fusion(true) // whatever WEIR_FUSION says
        .run(&rt)
        .unwrap();
    assert_eq!(
        groups(&running),
        [Some(0), Some(0), Some(0), Some(3), Some(3)]
    );
    let in_stats: Vec<_> = running
        .stats()
        .stages
        .iter()
        .map(|s| s.fused_group)
        .collect();
    assert_eq!(in_stats, groups(&running));
    let t = running.topology();
    assert_eq!(t.fused_groups(), [(0, vec![0, 1, 2]), (3, vec![3, 4])]);
    let dot = t.to_dot();
    assert!(
        dot.contains("  subgraph cluster_fused0 { label=\"fused\"; style=dashed; n0; n1; n2; }"),
        "{dot}"
    );
    let mermaid = t.to_mermaid();
    assert!(
        mermaid.contains("  subgraph fused3 [\"fused\"]\n    n3\n    n4\n  end\n"),
        "{mermaid}"
    );
    let done = running.wait().unwrap();
    assert_eq!(done.output.len(), 50);
    done.report.check_conservation().unwrap();

    let running = Pipeline::from_iter(0..100_u64)
        .map(|x| x + 1)
        .collect()
        .fusion(false)
        .run(&rt)
        .unwrap();
    assert_eq!(groups(&running), [None, None, None]);
    running.wait().unwrap();
}

#[test]
fn supervised_stages_fuse_and_pinned_and_async_stages_start_new_groups() {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let running = Pipeline::from_iter(0..50_u64)
        .map(|x| x + 1)
        .supervise(
            Supervision::new(SupervisionPolicy::default().action(ErrorClass::Panic, Action::Retry))
                .dead_letters(MemoryDlq::new(10)),
        )
        .map(|x| x * 2) // supervised: a member with its own policy
        .map(|x| x + 3)
        .map_async(4, |x| async move { x }) // async: its own actor
        .map(|x| x - 1)
        .on_arbiter(1) // pinned: its own actor
        .collect() // on the pipeline's arbiter, not the pinned stage's
        .fusion(true)
        .run(&rt)
        .unwrap();
    assert_eq!(
        groups(&running),
        [Some(0), Some(0), Some(0), Some(0), None, None, None]
    );
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    let expected: Vec<u64> = (0..50).map(|x| (x + 1) * 2 + 3 - 1).collect();
    assert_eq!(done.output, expected);
}

/// A supervised `try_map` between two maps: a transient panic on the first try of
/// every 100th element (retried), one permanent error on element 500 (restarts the
/// stage, which tries it again).
fn flaky_chain(fused: bool) -> (Vec<Option<usize>>, Completion<Vec<u64>>) {
    let rt = rt1();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let broke = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Panic, Action::Retry)
        .action(ErrorClass::Permanent, Action::Restart)
        .backoff(BackoffConfig::none())
        .restart_backoff(BackoffConfig::none());
    let running = Pipeline::from_iter(0..1_000_u64)
        .map(|x| x + 1)
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(10)))
        .try_map(move |x: u64| {
            if x % 100 == 7 && seen.lock().unwrap().insert(x) {
                panic!("transient trouble with {x}");
            }
            if x == 500 && !broke.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return Err(Failure::error(ErrorClass::Permanent, "broken once"));
            }
            Ok(x * 2)
        })
        .name("flaky")
        .map(|x| x + 1)
        .collect()
        .fusion(fused)
        .run(&rt)
        .unwrap();
    (groups(&running), running.wait().unwrap())
}

#[test]
fn a_supervised_fused_member_retries_and_restarts_on_its_own_as_unfused() {
    let (fused_groups, fused) = flaky_chain(true);
    let (plain_groups, plain) = flaky_chain(false);
    assert_eq!(fused_groups, [Some(0); 5]);
    assert_eq!(plain_groups, [None; 5]);
    fused.report.check_conservation().unwrap();
    // Every element delivered once, in order.
    let expected: Vec<u64> = (0..1_000).map(|x| (x + 1) * 2 + 1).collect();
    assert!(
        fused.output == expected,
        "lost, doubled or reordered elements"
    );
    assert!(plain.output == expected);
    let sup = |c: &Completion<Vec<u64>>| -> Vec<(String, u64, u64, u64, u64)> {
        c.report
            .stages
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.retries,
                    s.restarts,
                    s.dead_lettered,
                    s.failed,
                )
            })
            .collect()
    };
    assert_eq!(sup(&fused), sup(&plain));
    let flaky = fused.report.stage("flaky").unwrap();
    assert_eq!(
        (flaky.restarts, flaky.dead_lettered, flaky.failed),
        (1, 0, 0)
    );
    assert!(flaky.retries >= 10, "{}", flaky.retries);
}

#[test]
fn a_panic_in_a_fused_member_names_that_member_and_conserves() {
    let rt = rt1();
    let err = Pipeline::from_iter(0..1_000_u64)
        .map(|x| x + 1)
        .map(|x| {
            assert!(x != 500, "boom at {x}");
            x
        })
        .name("fragile")
        .map(|x| x * 2)
        .collect()
        .fusion(true)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap_err();
    match &err {
        PipelineError::StageFailed { stage, .. } => assert_eq!(stage, "fragile"),
        other => panic!("expected StageFailed, got {other:?}"),
    }
    let report = err.report().unwrap();
    report.check_conservation().unwrap();
    assert_eq!(report.stage("fragile").unwrap().failed, 1);
    assert_eq!(report.failed(), 1);
}

#[test]
fn take_in_a_fused_group_cancels_an_endless_source() {
    let rt = rt1();
    let running = Pipeline::from_iter(0_u64..)
        .map(|x| x * 3)
        .take(7)
        .map(|x| x + 1)
        .collect()
        .fusion(true)
        .run(&rt)
        .unwrap();
    assert_eq!(groups(&running), [Some(0); 5]);
    let done = running.wait().unwrap();
    assert_eq!(done.output, [1, 4, 7, 10, 13, 16, 19]);
    done.report.check_conservation().unwrap();
}

#[test]
fn an_aborted_fused_group_accounts_for_everything_it_held() {
    let rt = rt1();
    let (ingress, flow) = Pipeline::ingress::<u64>(64);
    // Nobody takes from the egress: the fused map and filter fill up behind it.
    let (runnable, _egress) = flow
        .map(|x| x + 1)
        .capacity(8)
        .filter(|_| true)
        .capacity(8)
        .egress(2);
    let running = runnable.default_capacity(2).fusion(true).run(&rt).unwrap();
    assert_eq!(groups(&running), [Some(0), Some(0), Some(0), None]);
    for x in 0..40 {
        ingress.try_send(x).unwrap();
    }
    let start = std::time::Instant::now();
    while running.stats().stages[1].received < 8 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "timed out"
        );
        std::thread::yield_now();
    }
    let done = futures::executor::block_on(running.abort()).unwrap();
    assert_eq!(done.report.outcome, weir::Outcome::Aborted);
    done.report.check_conservation().unwrap();
    let abandoned = |name: &str| done.report.stage(name).unwrap().abandoned;
    assert!(
        abandoned("map#1") + abandoned("filter#2") > 0,
        "the members held elements: {:?}",
        done.report.stages
    );
}

/// One stateless or keyed step of a random chain.
#[derive(Debug, Clone, Copy)]
enum Step {
    Map(u64),
    Filter(u64),
    FilterMap(u64),
    FlatMap(u64),
    Chunks(usize),
    Scan(u64),
    Take(u64),
    Boundary,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1..5_u64).prop_map(Step::Map),
        (2..4_u64).prop_map(Step::Filter),
        (2..4_u64).prop_map(Step::FilterMap),
        (0..3_u64).prop_map(Step::FlatMap),
        (1..5_usize).prop_map(Step::Chunks),
        (2..6_u64).prop_map(Step::Scan),
        (0..200_u64).prop_map(Step::Take),
        Just(Step::Boundary),
    ]
}

fn apply(flow: Flow<u64>, step: Step, capacity: usize) -> Flow<u64> {
    let flow = match step {
        Step::Map(k) => flow.map(move |x| x.wrapping_mul(k).wrapping_add(1)),
        Step::Filter(k) => flow.filter(move |x| x % k != 0),
        Step::FilterMap(k) => flow.filter_map(move |x| (x % k == 0).then_some(x / k)),
        Step::FlatMap(n) => flow.flat_map(move |x| (0..n).map(move |i| x + i)),
        Step::Chunks(n) => flow.chunks(n).map(|c: Vec<u64>| c.iter().sum()),
        Step::Scan(k) => flow
            .key_by(move |x: &u64| x % k)
            .scan(0_u64, |s: &mut u64, x| {
                *s = s.wrapping_add(x);
                *s
            }),
        Step::Take(n) => flow.take(n),
        Step::Boundary => return flow.async_boundary(),
    };
    flow.capacity(capacity)
}

/// The counters that must not depend on fusion (batching may).
fn counts(s: &StageReport) -> (String, u64, u64, u64, u64, u64, u64, u64) {
    (
        s.name.clone(),
        s.input,
        s.received,
        s.completed,
        s.filtered,
        s.failed,
        s.produced,
        s.emitted,
    )
}

fn run_chain(steps: &[Step], capacity: usize, fused: bool) -> (Vec<u64>, Report) {
    let rt = rt1();
    let mut flow = Pipeline::from_iter(0..300_u64);
    for &s in steps {
        flow = apply(flow, s, capacity);
    }
    let done = flow
        .collect()
        .default_capacity(capacity)
        .fusion(fused)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    (done.output, done.report)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn fused_and_unfused_chains_give_the_same_output_and_counters(
        steps in prop::collection::vec(step(), 1..7),
        capacity in 1..40_usize,
    ) {
        let (out_fused, fused) = run_chain(&steps, capacity, true);
        let (out_plain, plain) = run_chain(&steps, capacity, false);
        fused.check_conservation().unwrap();
        plain.check_conservation().unwrap();
        prop_assert_eq!(out_fused, out_plain);
        // Before a `take` that ends the stream early, how much was produced in
        // flight depends on timing, fused or not; without one it may not differ.
        if !steps.iter().any(|s| matches!(s, Step::Take(_))) {
            let a: Vec<_> = fused.stages.iter().map(counts).collect();
            let b: Vec<_> = plain.stages.iter().map(counts).collect();
            prop_assert_eq!(a, b);
        }
        for s in &fused.stages {
            prop_assert!(s.peak_occupancy <= s.capacity.max(1), "{} above its capacity", s.name);
            prop_assert_eq!(s.bound_violations, 0);
        }
    }
}
