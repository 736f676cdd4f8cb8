//! Restart strategies across a pipeline's stages (OTP's one_for_one, one_for_all,
//! rest_for_one): which stages are rebuilt from their factories when one restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use weir::prelude::*;
use weir::supervisor::policy::RestartStrategy;

/// Passes elements through; the middle stage fails once on element 5.
struct Pass {
    fail_on: Option<(u64, Arc<AtomicBool>)>,
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
