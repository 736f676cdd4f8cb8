//! Helpers shared by the operators' unit tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::{Duration, Instant};

use weir_runtime::checkpoint::{RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Counting, Io, Operator, Step};
use weir_runtime::{Completion, Flow, Outcome, PipelineError, Report, Runnable, Runtime};

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

/// A sink for the checkpoint tests that gathers what it gets without the serde
/// bounds of `collect`.
struct Gather<T> {
    items: Vec<T>,
    output: weir_runtime::OutputSender<Vec<T>>,
}

impl<T: Send + 'static> Operator for Gather<T> {
    type In = T;
    type Out = std::convert::Infallible;

    fn kind(&self) -> &'static str {
        "gather"
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn step(&mut self, io: &mut Io<'_, T, Self::Out>, _cx: &mut Context<'_>) -> Step {
        let items = &mut self.items;
        io.consume_all(|x| items.push(x));
        io.finish_when_drained()
    }

    fn on_stop(&mut self) {
        self.output.send(std::mem::take(&mut self.items));
    }
}

/// Ends `flow` with a [`Gather`] sink.
pub(crate) fn gather<T: Send + 'static>(flow: Flow<T>) -> Runnable<Vec<T>> {
    let (tx, rx) = weir_runtime::output();
    flow.to(
        Gather {
            items: Vec::new(),
            output: tx,
        },
        rx,
    )
}

/// Where [`SnapAt`] leaves the snapshot it took.
pub(crate) type SnapSlot = Arc<Mutex<Option<Result<Snapshot, StateError>>>>;

/// Runs `inner` until it has taken `k` elements from its queue, then snapshots
/// it (into `slot`) and finishes: what a checkpoint barrier after the `k`-th
/// element sees, followed by a crash.
pub(crate) struct SnapAt<Op> {
    pub(crate) inner: Op,
    pub(crate) k: usize,
    pub(crate) taken: usize,
    pub(crate) slot: SnapSlot,
}

impl<Op: Operator> SnapAt<Op> {
    pub(crate) fn new(inner: Op, k: usize) -> (Self, SnapSlot) {
        let slot = SnapSlot::default();
        let op = SnapAt {
            inner,
            k,
            taken: 0,
            slot: Arc::clone(&slot),
        };
        (op, slot)
    }

    fn snap(&mut self) {
        let snapshot = self
            .inner
            .checkpoint()
            .expect("a checkpointable operator")
            .snapshot(1);
        *self.slot.lock().unwrap() = Some(snapshot);
    }
}

impl<Op: Operator> Operator for SnapAt<Op> {
    type In = Op::In;
    type Out = Op::Out;

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn counting(&self) -> Counting {
        self.inner.counting()
    }

    fn held(&self) -> usize {
        self.inner.held()
    }

    fn step(&mut self, io: &mut Io<'_, Op::In, Op::Out>, cx: &mut Context<'_>) -> Step {
        if self.taken < self.k {
            let before = io.input_len();
            let step = self.inner.step(io, cx);
            self.taken += before.saturating_sub(io.input_len());
            if !matches!(step, Step::Continue) {
                if self.taken >= self.k {
                    self.snap();
                }
                return step;
            }
        }
        if self.taken >= self.k {
            self.snap();
            return Step::Finished;
        }
        Step::Continue
    }

    fn on_stop(&mut self) {
        self.inner.on_stop();
    }
}

/// A source of `items` that then never ends (the run is ended by [`SnapAt`]).
pub(crate) fn open_source<T: Send + 'static>(items: Vec<T>) -> Flow<T> {
    use futures::StreamExt;
    crate::Pipeline::from_stream(futures::stream::iter(items).chain(futures::stream::pending()))
}

/// The output of `op` over `input`, uninterrupted, through a small pipeline.
pub(crate) fn run_whole<Op>(op: Op, input: Vec<Op::In>) -> Vec<Op::Out>
where
    Op: Operator,
{
    let runnable = gather(crate::Pipeline::from_iter(input).via(op));
    runnable
        .default_capacity(3)
        .max_batch(2)
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap()
        .output
}

/// Runs a fresh `make()` over the first `k` elements of `input`, snapshots it
/// there, restores another fresh `make()` from the snapshot (with `ctx`) and
/// runs it over the rest: the outputs of both runs, in order, and the
/// snapshot.
pub(crate) fn run_resumed<Op>(
    make: &dyn Fn() -> Op,
    input: &[Op::In],
    k: usize,
    ctx: &RestoreContext,
) -> (Vec<Op::Out>, Snapshot)
where
    Op: Operator,
    Op::In: Clone,
{
    let (head, tail) = input.split_at(k);
    let (op, slot) = SnapAt::new(make(), k);
    let first = gather(open_source(head.to_vec()).via(op))
        .default_capacity(3)
        .max_batch(2)
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap()
        .output;
    let snapshot = slot
        .lock()
        .unwrap()
        .take()
        .expect("a snapshot was taken")
        .expect("the snapshot encodes");
    let mut fresh = make();
    fresh
        .checkpoint()
        .expect("a checkpointable operator")
        .restore(&snapshot, ctx)
        .expect("the snapshot restores");
    let mut out = first;
    out.extend(run_whole(fresh, tail.to_vec()));
    (out, snapshot)
}

/// Checks that `make()` over `input` interrupted by a snapshot and a restore
/// after every split point in `ks` gives what it gives uninterrupted, and that
/// a snapshot of another version is refused.
pub(crate) fn assert_resumes<Op>(make: &dyn Fn() -> Op, input: &[Op::In], ks: &[usize])
where
    Op: Operator,
    Op::In: Clone,
    Op::Out: PartialEq + std::fmt::Debug,
{
    let whole = run_whole(make(), input.to_vec());
    let mut last = None;
    for &k in ks {
        let (resumed, snapshot) = run_resumed(make, input, k, &RestoreContext::default());
        assert_eq!(resumed, whole, "snapshot after {k} elements");
        last = Some(snapshot);
    }
    if let Some(mut snapshot) = last {
        assert_refuses_other_versions(&mut make(), &mut snapshot);
    }
}

/// Checks that `op` refuses `snapshot` with its version changed.
pub(crate) fn assert_refuses_other_versions<Op: Operator>(op: &mut Op, snapshot: &mut Snapshot) {
    let found = snapshot.version + 1;
    snapshot.version = found;
    let r = op
        .checkpoint()
        .expect("a checkpointable operator")
        .restore(snapshot, &RestoreContext::default());
    assert!(
        matches!(r, Err(StateError::Version { found: f, .. }) if f == found),
        "{r:?}"
    );
}

/// The restore context of replica `i` of `n`.
pub(crate) fn replica(i: usize, n: usize) -> RestoreContext {
    RestoreContext {
        replica: Some((i, n)),
        ..RestoreContext::default()
    }
}

/// [`assert_resumes`] for a sink made by `make` (handed its output sender):
/// snapshotted after `k` elements and restored, it ends with the result of the
/// uninterrupted run.
pub(crate) fn assert_sink_resumes<Op, R>(
    make: &dyn Fn(weir_runtime::OutputSender<R>) -> Op,
    input: &[Op::In],
    ks: &[usize],
) where
    Op: Operator<Out = std::convert::Infallible>,
    Op::In: Clone,
    R: PartialEq + std::fmt::Debug + Send + 'static,
{
    fn run<S, R>(op: S, rx: weir_runtime::OutputReceiver<R>, items: Vec<S::In>, open: bool) -> R
    where
        S: Operator<Out = std::convert::Infallible>,
        R: Send + 'static,
    {
        let source = if open {
            open_source(items)
        } else {
            crate::Pipeline::from_iter(items)
        };
        source
            .to(op, rx)
            .default_capacity(3)
            .max_batch(2)
            .run(&rt())
            .unwrap()
            .wait()
            .unwrap()
            .output
    }
    let (tx, rx) = weir_runtime::output();
    let whole = run(make(tx), rx, input.to_vec(), false);
    let mut last = None;
    for &k in ks {
        let (tx, rx) = weir_runtime::output();
        let (op, slot) = SnapAt::new(make(tx), k);
        let _partial = run(op, rx, input[..k].to_vec(), true);
        let snapshot = slot.lock().unwrap().take().unwrap().unwrap();
        let (tx, rx) = weir_runtime::output();
        let mut fresh = make(tx);
        fresh
            .checkpoint()
            .unwrap()
            .restore(&snapshot, &RestoreContext::default())
            .unwrap();
        let resumed = run(fresh, rx, input[k..].to_vec(), false);
        assert_eq!(resumed, whole, "snapshot after {k} elements");
        last = Some(snapshot);
    }
    if let Some(mut snapshot) = last {
        let (tx, _rx) = weir_runtime::output();
        assert_refuses_other_versions(&mut make(tx), &mut snapshot);
    }
}
