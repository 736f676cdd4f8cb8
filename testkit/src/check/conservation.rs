//! Conservation and bound assertions over a [`Report`].

use weir::{Outcome, PipelineError, Report, Running};

/// Asserts that the report accounts for every element: for each stage,
/// `input = completed + filtered + failed + dead_lettered + abandoned`, each
/// one-to-one stage produced one output per completed input, and end to end what
/// the sources emitted equals what was delivered, filtered, failed,
/// dead-lettered or abandoned (see [`Report::check_conservation`]).
///
/// # Examples
///
/// ```
/// use weir::prelude::*;
/// use weir_testkit::check::assert_conserved;
///
/// let rt = Runtime::builder().arbiters(1).build()?;
/// let done = Pipeline::from_iter(0..100_u32).filter(|x| x % 3 == 0).collect().run(&rt)?.wait()?;
/// assert_conserved(&done.report);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Panics
///
/// If an equation does not hold, with the stage that breaks it, the equation with
/// its numbers, and the whole report.
#[track_caller]
pub fn assert_conserved(report: &Report) {
    if let Err(e) = report.check_conservation() {
        panic!(
            "conservation broken at stage `{}`: {}\n{report}",
            e.stage, e.equation
        );
    }
}

/// Asserts that no stage's input edge ever held more than its capacity: the
/// largest occupancy each stage saw is at most its capacity, and the runtime
/// counted no bound violation.
///
/// # Panics
///
/// Naming the first stage over its bound, with its numbers.
#[track_caller]
pub fn assert_bounded(report: &Report) {
    for s in report.stages.iter().filter(|s| !s.is_source) {
        assert!(
            s.peak_occupancy <= s.capacity && s.bound_violations == 0,
            "stage `{}` exceeded its bound: peak occupancy {} > capacity {} or {} bound violations\n{report}",
            s.name,
            s.peak_occupancy,
            s.capacity,
            s.bound_violations
        );
    }
}

/// Awaits `running` and asserts that it failed at `stage`; returns the failure's
/// text and the report, after asserting conservation on it.
///
/// # Examples
///
/// ```
/// use weir::prelude::*;
/// use weir_testkit::prelude::*;
///
/// run(|rt| async move {
///     let running = Pipeline::from_iter(0..10_u32)
///         .inject(Fault::error_at(3))
///         .name("flaky")
///         .collect()
///         .run(&rt)
///         .unwrap();
///     let (error, report) = expect_failure(running, "flaky").await;
///     assert!(error.contains("injected fault at attempt 3"), "{error}");
///     assert_eq!(report.stage("flaky").unwrap().failed, 1);
/// });
/// ```
///
/// # Panics
///
/// If the pipeline completed, failed at another stage, or its runtime stopped; or
/// if the report breaks conservation.
pub async fn expect_failure<R: Send + 'static>(
    running: Running<R>,
    stage: &str,
) -> (String, Report) {
    match running.await {
        Ok(done) => panic!(
            "expected the pipeline to fail at `{stage}`, it ended with {:?}\n{}",
            done.report.outcome, done.report
        ),
        Err(PipelineError::StageFailed {
            stage: failed,
            failure,
            report,
        }) => {
            assert_eq!(
                failed, stage,
                "expected the pipeline to fail at `{stage}`, it failed at `{failed}` with {failure}\n{report}"
            );
            assert!(matches!(report.outcome, Outcome::Failed { .. }));
            assert_conserved(&report);
            (failure.to_string(), *report)
        }
        Err(other) => panic!("expected the pipeline to fail at `{stage}`, got {other}"),
    }
}
