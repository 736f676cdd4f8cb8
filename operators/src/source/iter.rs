//! [`IterSource`]: a source that pulls from an iterator.

use std::convert::Infallible;
use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};

/// Emits the items of an iterator, pulling only as many as downstream has credit
/// for. Created by [`Pipeline::from_iter`](crate::Pipeline::from_iter). On shutdown
/// it stops pulling: items the iterator has not yielded were never admitted.
///
/// Not replayable: it keeps no checkpoint position. In a checkpointed pipeline it
/// is allowed, but restored from a checkpoint it starts again from its beginning,
/// and what it emitted after the last completed checkpoint before a crash is not
/// replayed (at most once). Use [`ReplayableSource`](super::ReplayableSource) for
/// a source that resumes.
#[derive(Debug)]
pub struct IterSource<I> {
    iter: I,
    /// The iterator said `None` once: it is not asked again (what `Fuse` would
    /// do, without `Fuse`'s check on every item, which halved the fill loop's
    /// speed for a range).
    done: bool,
}

impl<I: Iterator> IterSource<I> {
    pub(crate) fn new(iter: I) -> Self {
        IterSource { iter, done: false }
    }
}

impl<I> Operator for IterSource<I>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    type In = Infallible;
    type Out = I::Item;

    fn kind(&self) -> &'static str {
        "iter"
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, I::Item>, _cx: &mut Context<'_>) -> Step {
        if io.input_ended() || self.done {
            return Step::Finished;
        }
        let room = io.room();
        let out = io.output();
        let before = out.len();
        out.extend(self.iter.by_ref().take(room));
        if out.len() - before < room {
            self.done = true;
            Step::Finished
        } else {
            Step::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use weir_runtime::{Outcome, PipelineError, Runtime};

    use crate::test_support::{Gate, rt, run_small};
    use crate::{FlowExt, Pipeline};

    #[test]
    fn emits_every_item_in_order() {
        let input: Vec<String> = (0..100).map(|i| format!("i{i}")).collect();
        let done = run_small(Pipeline::from_iter(input.clone()).collect());
        assert_eq!(done.output, input);
        let r = &done.report;
        r.check_conservation().unwrap();
        assert_eq!(r.outcome, Outcome::Completed);
        let source = r.stage("iter#0").unwrap();
        assert_eq!(source.kind, "iter");
        assert!(source.is_source);
        assert_eq!(source.capacity, 0);
        assert_eq!(
            (source.input, source.produced, source.emitted),
            (100, 100, 100)
        );
        assert_eq!(source.abandoned, 0);
        assert!(source.largest_batch <= 2);
        assert_eq!(r.admitted(), 100);
    }

    #[test]
    fn empty_iterator_completes_at_once() {
        let done = run_small(Pipeline::from_iter(std::iter::empty::<u8>()).collect());
        assert!(done.output.is_empty());
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.admitted(), 0);
    }

    /// An iterator whose length is an exact multiple of the room: the source finds
    /// out it has ended on the next pull.
    #[test]
    fn length_a_multiple_of_the_room() {
        let rt = rt();
        let done = Pipeline::from_iter(0..8_u32)
            .collect()
            .default_capacity(2)
            .max_batch(2)
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(done.output, (0..8).collect::<Vec<_>>());
        done.report.check_conservation().unwrap();
    }

    /// The source pulls only what downstream has room for.
    #[test]
    fn pulls_only_what_downstream_has_room_for() {
        let rt = rt();
        let pulled = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&pulled);
        let (runnable, mut egress) = Pipeline::from_iter((0_u64..).inspect(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        }))
        .egress(2);
        let running = runnable.default_capacity(3).max_batch(2).run(&rt).unwrap();
        let start = Instant::now();
        while egress.len() < 2 {
            assert!(start.elapsed() < Duration::from_secs(1), "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        // Egress buffer + the sink's input capacity.
        assert!(pulled.load(Ordering::Relaxed) <= 2 + 3);
        assert_eq!(egress.try_recv(), Some(0));
        drop(egress);
        let done = running.wait().unwrap();
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.admitted(), pulled.load(Ordering::Relaxed));
    }

    /// On shutdown an endless source stops pulling and the pipeline drains.
    #[test]
    fn shutdown_stops_an_endless_iterator() {
        let rt = rt();
        let running = Pipeline::from_iter(0_u64..)
            .for_each(drop)
            .default_capacity(3)
            .max_batch(2)
            .run(&rt)
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        running.controller().shutdown(Duration::from_secs(5));
        let done = running.wait().unwrap();
        let r = &done.report;
        r.check_conservation().unwrap();
        assert!(
            matches!(r.outcome, Outcome::Drained { .. }),
            "{:?}",
            r.outcome
        );
        assert_eq!(r.admitted(), r.delivered());
    }

    #[test]
    fn panic_in_the_iterator_fails_the_source() {
        let rt = rt();
        let gate = Gate::default();
        let g = gate.clone();
        let running = Pipeline::from_iter((0..100_u32).inspect(move |&x| {
            if x == 10 {
                g.boom("iterator panics on 10")
            }
        }))
        .collect()
        .default_capacity(3)
        .max_batch(2)
        .run(&rt)
        .unwrap();
        gate.open();
        let err = running.wait().unwrap_err();
        let report = err.report().unwrap().clone();
        match err {
            PipelineError::StageFailed { stage, .. } => assert_eq!(stage, "iter#0"),
            other => panic!("expected StageFailed, got {other:?}"),
        }
        report.check_conservation().unwrap();
        assert!(matches!(&report.outcome, Outcome::Failed { stage, .. } if stage == "iter#0"));
        // The item being pulled was never admitted.
        assert!(report.admitted() <= 10);
    }

    #[test]
    fn many_items_with_default_settings() {
        let rt = rt();
        let done = Pipeline::from_iter(0..100_000_u64)
            .fold(0_u64, |n, _| n + 1)
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(done.output, 100_000);
        done.report.check_conservation().unwrap();
    }

    /// Regression: `Runnable::run` starts the stages before it hands the pipeline
    /// their control addresses (`set_controls`). A stage that failed in that window
    /// broadcast its `Abort` to nobody, and the stages after it waited for input
    /// forever. A source that fails on its first pull, in front of a long chain
    /// spread over two arbiters, hits the window most of the time.
    #[test]
    fn failure_before_run_returns_still_ends_the_pipeline() {
        let rt = Runtime::builder().arbiters(2).build().unwrap();
        let mut hangs = 0;
        for _ in 0..50 {
            let mut flow = Pipeline::from_iter(
                (0..10_u32).inspect(|_| std::panic::resume_unwind(Box::new("boom"))),
            );
            for _ in 0..30 {
                flow = flow.map(|x| x);
            }
            let running = flow
                .collect()
                .placement(weir_runtime::Placement::Spread)
                .run(&rt)
                .unwrap();
            let controller = running.controller();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(running.wait().is_err());
            });
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(failed) => assert!(failed),
                Err(_) => {
                    hangs += 1;
                    // An abort now reaches every stage and ends the pipeline: the
                    // stages were alive, only the failure's abort was lost.
                    controller.abort();
                    assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok(true));
                    break;
                }
            }
        }
        assert_eq!(hangs, 0, "a failed pipeline never completed");
    }
}
