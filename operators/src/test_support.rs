//! Helpers shared by the operators' unit tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weir_runtime::{Completion, Outcome, PipelineError, Report, Runnable, Runtime};

/// A runtime with one arbiter, so that every stage of a test pipeline shares it.
pub(crate) fn rt() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

/// Opened once `run()` has returned. Closures that panic wait for it, so that the
/// failure happens in a fully wired pipeline and a test checks what it means to
/// check. A failure before wiring completes is covered on its own by
/// `source::iter`'s `failure_before_run_returns_still_ends_the_pipeline`.
#[derive(Clone, Default)]
pub(crate) struct Gate(Arc<AtomicBool>);

impl Gate {
    pub(crate) fn open(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Waits for the gate, then panics.
    pub(crate) fn boom(&self, msg: &str) -> ! {
        while !self.0.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        panic!("{msg}")
    }
}

/// Checks that `err` is the failure of `stage`, with conservation intact.
pub(crate) fn failed_at(err: PipelineError, stage: &str) -> Report {
    let report = err.report().expect("a stage failure has a report").clone();
    match err {
        PipelineError::StageFailed { stage: s, .. } => assert_eq!(s, stage),
        other => panic!("expected StageFailed, got {other:?}"),
    }
    report.check_conservation().unwrap();
    assert!(matches!(&report.outcome, Outcome::Failed { stage: s, .. } if s == stage));
    report
}

/// Polls `cond` until it holds, for at most a second.
pub(crate) fn eventually(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(1), "timed out");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `runnable` on [`rt`] with tiny edges (capacity 3) and batches (at most 2),
/// so that batches split and queues grow past the batch limit, and checks that
/// conservation holds in its report.
pub(crate) fn run_small<R: Send + 'static>(runnable: Runnable<R>) -> Completion<R> {
    let done = runnable
        .default_capacity(3)
        .max_batch(2)
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    done
}

/// Runs `runnable` on [`rt`], opens `gate` once it is wired (so a closure waiting
/// on the gate fails in a fully built pipeline), and checks that it failed at
/// `stage` with conservation intact (see [`failed_at`]).
pub(crate) fn run_to_failure<R: Send + 'static>(
    runnable: Runnable<R>,
    gate: &Gate,
    stage: &str,
) -> Report {
    // The runtime must outlive the wait: dropping it joins the arbiter thread,
    // which is waiting for the gate.
    let rt = rt();
    let running = runnable.run(&rt).unwrap();
    gate.open();
    match running.wait() {
        Ok(_) => panic!("expected the pipeline to fail at `{stage}`"),
        Err(err) => failed_at(err, stage),
    }
}
