//! Restart strategies across a pipeline's stages (OTP's one_for_one, one_for_all,
//! rest_for_one): which stages are rebuilt from their factories when one restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use weir::prelude::*;
use weir::supervisor::policy::{RestartStrategy, RestartType};

/// Passes elements through; fails once on `fail_on` (also used by
/// `supervision_policy_file`).
pub(crate) struct Pass {
    pub(crate) fail_on: Option<(u64, Arc<AtomicBool>)>,
}

impl weir::operator::Operator for Pass {
    type In = u64;
    type Out = u64;

    fn kind(&self) -> &'static str {
        "pass"
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn step(
        &mut self,
        io: &mut weir::operator::Io<'_, u64, u64>,
        _cx: &mut std::task::Context<'_>,
    ) -> weir::operator::Step {
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            if let Some((bad, failed)) = &self.fail_on
                && x == *bad
                && !failed.swap(true, Ordering::SeqCst)
            {
                panic!("failing once on {x}");
            }
            io.push(x);
        }
        io.finish_when_drained()
    }
}

/// Runs source → a → b (fails once) → c → collect, and returns how many times
/// each of a, b, c was built.
fn builds(strategy: RestartStrategy) -> [u64; 3] {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let counts: [Arc<AtomicU64>; 3] = Default::default();
    let failed = Arc::new(AtomicBool::new(false));
    let factory = |i: usize, fail: bool| {
        let count = Arc::clone(&counts[i]);
        let failed = Arc::clone(&failed);
        move || {
            count.fetch_add(1, Ordering::SeqCst);
            Pass {
                fail_on: fail.then(|| (5, Arc::clone(&failed))),
            }
        }
    };
    let policy = || SupervisionPolicy::default().restart_backoff(BackoffConfig::none());
    let done = Pipeline::from_iter(0..200_u64)
        .supervise(Supervision::new(policy()).dead_letters(MemoryDlq::new(1)))
        .via_factory(factory(0, false))
        .name("a")
        .supervise(Supervision::new(policy()).dead_letters(MemoryDlq::new(1)))
        .via_factory(factory(1, true))
        .name("b")
        .supervise(Supervision::new(policy()).dead_letters(MemoryDlq::new(1)))
        .via_factory(factory(2, false))
        .name("c")
        .collect()
        .default_capacity(1)
        .strategy(strategy)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        done.output,
        (0..200).collect::<Vec<_>>(),
        "nothing lost or reordered"
    );
    done.report.check_conservation().unwrap();
    counts.map(|c| c.load(Ordering::SeqCst))
}

#[test]
fn one_for_one_restarts_only_the_failed_stage() {
    assert_eq!(builds(RestartStrategy::OneForOne), [1, 2, 1]);
}

#[test]
fn rest_for_one_restarts_the_failed_stage_and_everything_downstream() {
    assert_eq!(builds(RestartStrategy::RestForOne), [1, 2, 2]);
}

#[test]
fn one_for_all_restarts_every_stage() {
    assert_eq!(builds(RestartStrategy::OneForAll), [2, 2, 2]);
}

/// Runs source → b (fails once on 5, policy `Restart` on a panic) → collect under
/// restart type `kind`; returns (restarts, dead letters, builds of b).
fn restart_type_run(kind: RestartType) -> (u64, u64, u64) {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let builds = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let (count, once) = (Arc::clone(&builds), Arc::clone(&failed));
    let policy = SupervisionPolicy::default()
        .restart(kind)
        .restart_backoff(BackoffConfig::none());
    let dlq = MemoryDlq::new(4);
    let done = Pipeline::from_iter(0..50_u64)
        .supervise(Supervision::new(policy).dead_letters(dlq.clone()))
        .via_factory(move || {
            count.fetch_add(1, Ordering::SeqCst);
            Pass {
                fail_on: Some((5, Arc::clone(&once))),
            }
        })
        .name("b")
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    let dead: Vec<u64> = dlq.drain().into_iter().map(|l| l.element).collect();
    let mut expected: Vec<u64> = (0..50).collect();
    expected.retain(|x| !dead.contains(x));
    assert_eq!(done.output, expected, "nothing lost or reordered");
    (
        done.report.restarts(),
        done.report.dead_lettered(),
        builds.load(Ordering::SeqCst),
    )
}

/// `Transient` (the default) and `Permanent` restart a stage after a failure whose
/// action is `Restart`, from its factory, and retry the element; `Temporary` never
/// restarts: the element takes the give-up path (`on_exhausted`, dead letters by
/// default) and the stage goes on with its instance.
#[test]
fn restart_types_transient_and_permanent_restart_temporary_does_not() {
    assert_eq!(restart_type_run(RestartType::Transient), (1, 0, 2));
    assert_eq!(restart_type_run(RestartType::Permanent), (1, 0, 2));
    assert_eq!(restart_type_run(RestartType::Temporary), (0, 1, 1));
}

/// Source → b (fails once on 5, policy `Escalate` on a panic) → collect: a
/// permanent stage restarts instead of escalating and loses nothing; a transient
/// one fails the pipeline.
#[test]
fn a_permanent_stage_restarts_where_a_transient_one_escalates() {
    use weir::supervisor::ErrorClass;
    let run = |kind: RestartType| {
        let rt = Runtime::builder().arbiters(1).build().unwrap();
        let builds = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let (count, once) = (Arc::clone(&builds), Arc::clone(&failed));
        let policy = SupervisionPolicy::default()
            .actions(
                ClassActions::default()
                    .set(ErrorClass::Panic, Action::Escalate)
                    .set(ErrorClass::Permanent, Action::Escalate)
                    .on_exhausted(Action::Escalate),
            )
            .restart(kind)
            .restart_backoff(BackoffConfig::none());
        let result = Pipeline::from_iter(0..50_u64)
            .supervise(Supervision::new(policy))
            .via_factory(move || {
                count.fetch_add(1, Ordering::SeqCst);
                Pass {
                    fail_on: Some((5, Arc::clone(&once))),
                }
            })
            .name("b")
            .collect()
            .run(&rt)
            .unwrap()
            .wait();
        (result, builds.load(Ordering::SeqCst))
    };
    let (done, builds) = run(RestartType::Permanent);
    let done = done.unwrap();
    assert_eq!(done.output, (0..50).collect::<Vec<_>>());
    assert_eq!((done.report.restarts(), builds), (1, 2));
    done.report.check_conservation().unwrap();
    let (failed, builds) = run(RestartType::Transient);
    let err = failed.unwrap_err();
    assert!(err.to_string().contains("`b`"), "{err}");
    assert_eq!(builds, 1);
}
