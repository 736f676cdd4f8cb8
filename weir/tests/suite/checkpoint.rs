//! Checkpoints through the runtime: barriers, alignment at a merge, completion,
//! the final checkpoint, restore after a crash (abort), and the build errors.
//!
//! The operators here are written against the state contract directly (a
//! replayable counting source, a checkpointable summing sink), so that the tests
//! check the protocol and nothing else.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::Duration;

use weir::checkpoint::{
    CheckpointConfig, CheckpointStore, Checkpointable, RestoreContext, Snapshot, StateError,
    StoreOptions,
};
use weir::operator::{Counting, Io, Operator, Step};
use weir::prelude::FlowExt;
use weir::{BuildError, Flow, Graph, OutputReceiver, OutputSender, Runtime, output};

/// Emits `(tag, i)` for `i` in `next..end`, at most `burst` per step (then yields),
/// and resumes from its position.
pub(crate) struct Counter {
    tag: u64,
    next: u64,
    end: u64,
    burst: usize,
}

impl Counter {
    pub(crate) fn new(tag: u64, end: u64, burst: usize) -> Self {
        Counter {
            tag,
            next: 0,
            end,
            burst,
        }
    }
}

impl Checkpointable for Counter {
    fn snapshot(&mut self, _: u64) -> Result<Snapshot, StateError> {
        Snapshot::of(1, &self.next)
    }
    fn restore(&mut self, s: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        self.next = s.decode(1, ctx)?;
        Ok(())
    }
}

impl Operator for Counter {
    type In = Infallible;
    type Out = (u64, u64);
    fn kind(&self) -> &'static str {
        "counter"
    }
    fn step(&mut self, io: &mut Io<'_, Infallible, (u64, u64)>, cx: &mut Context<'_>) -> Step {
        let mut n = 0;
        while io.has_room() && self.next < self.end && n < self.burst {
            io.push((self.tag, self.next));
            self.next += 1;
            n += 1;
        }
        if self.next == self.end || io.input_ended() {
            return Step::Finished;
        }
        if n == self.burst {
            cx.waker().wake_by_ref();
        }
        Step::Continue
    }
    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }
}

/// Per tag: (count, sum of values), once the sink stopped.
pub(crate) type Totals = Arc<Mutex<Option<BTreeMap<u64, (u64, u64)>>>>;

/// Per tag: (count, sum of values). Checkpointable; publishes its totals on stop.
#[derive(Default)]
pub(crate) struct Sum {
    per: BTreeMap<u64, (u64, u64)>,
    out: Totals,
    done: Option<OutputSender<()>>,
    /// The state version it writes and reads (1 but in the version test).
    version: u32,
}

/// A summing sink and the receiver its pipeline's completion waits on.
pub(crate) fn sum(out: Totals) -> (Sum, OutputReceiver<()>) {
    let (tx, rx) = output();
    (
        Sum {
            per: BTreeMap::new(),
            out,
            done: Some(tx),
            version: 1,
        },
        rx,
    )
}

impl Checkpointable for Sum {
    fn snapshot(&mut self, _: u64) -> Result<Snapshot, StateError> {
        Snapshot::of(self.version, &self.per)
    }
    fn restore(&mut self, s: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        self.per = s.decode(self.version, ctx)?;
        Ok(())
    }
}

impl Operator for Sum {
    type In = (u64, u64);
    type Out = Infallible;
    fn kind(&self) -> &'static str {
        "sum"
    }
    fn step(&mut self, io: &mut Io<'_, (u64, u64), Infallible>, _: &mut Context<'_>) -> Step {
        let mut n = 0;
        while let Some((tag, v)) = io.pop() {
            let e = self.per.entry(tag).or_default();
            e.0 += 1;
            e.1 += v;
            n += 1;
        }
        io.complete(n);
        io.finish_when_drained()
    }
    fn counting(&self) -> Counting {
        Counting::Custom
    }
    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }
    fn on_stop(&mut self) {
        *self.out.lock().unwrap() = Some(self.per.clone());
        if let Some(mut done) = self.done.take() {
            done.send(());
        }
    }
}

/// A stateless pass-through that slows every element a little, so that barriers
/// meet queues.
pub(crate) struct Slow;

impl Operator for Slow {
    type In = (u64, u64);
    type Out = (u64, u64);
    fn kind(&self) -> &'static str {
        "slow"
    }
    fn step(&mut self, io: &mut Io<'_, (u64, u64), (u64, u64)>, _: &mut Context<'_>) -> Step {
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            std::hint::black_box((0..200).sum::<u64>());
            io.push(x);
        }
        io.finish_when_drained()
    }
}

trait ToSum {
    fn to_sum(self) -> weir::Runnable<()>;
}

impl ToSum for Flow<(u64, u64)> {
    fn to_sum(self) -> weir::Runnable<()> {
        let (sink, rx) = sum(Arc::default());
        self.to(sink, rx)
    }
}

pub(crate) fn rt() -> Runtime {
    Runtime::builder().arbiters(2).build().unwrap()
}

pub(crate) fn expected(ends: &[(u64, u64)]) -> BTreeMap<u64, (u64, u64)> {
    ends.iter()
        .map(|&(tag, end)| (tag, (end, end * end.saturating_sub(1) / 2)))
        .collect()
}

fn merge_graph(
    dir: &std::path::Path,
    ends: [(u64, u64); 2],
    out: Totals,
    config: impl FnOnce(CheckpointConfig) -> CheckpointConfig,
) -> Graph {
    let mut g = Graph::new();
    let fast = g.source(Flow::from_source(Counter::new(ends[0].0, ends[0].1, 64)).name("fast"));
    let slow = g.source(
        Flow::from_source(Counter::new(ends[1].0, ends[1].1, 3))
            .name("slow-src")
            .via(Slow)
            .name("slow"),
    );
    let merged = g.merge([fast, slow]);
    // The sink's result is `()`: the totals come through `out`.
    drop(g.sink(merged, |f| {
        let (sink, rx) = sum(out);
        f.to(sink, rx).name("sum")
    }));
    g.checkpoints(config(CheckpointConfig::new(dir).without_fsync()));
    g
}

/// The state at checkpoint n equals a fold over exactly the elements before
/// barrier n on each input, recomputed from the sources' positions in the same
/// checkpoint.
#[test]
fn merge_aligns_barriers_so_every_checkpoint_is_a_consistent_cut() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let out = Arc::new(Mutex::new(None));
    let g = merge_graph(
        dir.path(),
        [(1, 500_000), (2, 50_000)],
        Arc::clone(&out),
        |c| c.retain(1000),
    );
    let running = g.run(&rt).unwrap();
    let controller = running.controller();
    let mut taken = Vec::new();
    let system = futures::executor::block_on(async {
        for _ in 0..50 {
            match controller.checkpoint().await {
                Ok(info) => taken.push(info),
                Err(e) => {
                    // The pipeline may finish before the last ones.
                    assert!(
                        controller.is_finished()
                            || matches!(e, weir::checkpoint::CheckpointError::Ended { .. }),
                        "{e}"
                    );
                    break;
                }
            }
        }
        running.join().await
    });
    let done = system.unwrap();
    assert!(!taken.is_empty());
    let report_ck = done
        .report
        .checkpoint
        .clone()
        .expect("a checkpointed report");
    assert!(report_ck.completed as usize >= taken.len());
    let store = CheckpointStore::open(dir.path(), StoreOptions::default()).unwrap();
    let manifests = store.list().unwrap();
    assert!(manifests.len() >= taken.len(), "{manifests:?}");
    let ctx = RestoreContext::default();
    let mut mid_stream = 0;
    for m in &manifests {
        let (_, data) = store.load(m.id).unwrap();
        let state = |name: &str| {
            data.stages
                .iter()
                .find(|s| s.stage == name)
                .unwrap_or_else(|| panic!("checkpoint {} has no state for {name}", m.id))
                .snapshot
                .clone()
        };
        let fast: u64 = state("fast").decode(1, &ctx).unwrap();
        let slow: u64 = state("slow-src").decode(1, &ctx).unwrap();
        let sum: BTreeMap<u64, (u64, u64)> = state("sum").decode(1, &ctx).unwrap();
        let mut want = expected(&[(1, fast), (2, slow)]);
        want.retain(|_, v| v.0 > 0);
        assert_eq!(
            sum, want,
            "checkpoint {}: fast at {fast}, slow at {slow}",
            m.id
        );
        if fast < 500_000 && slow < 50_000 && fast + slow > 0 {
            mid_stream += 1;
        }
    }
    assert!(
        mid_stream > 0,
        "no checkpoint was taken while both sources ran"
    );
    // The last checkpoint is the final one: every source at its end.
    let last = manifests.last().unwrap();
    let (_, data) = store.load(last.id).unwrap();
    let fast: u64 = data
        .stages
        .iter()
        .find(|s| s.stage == "fast")
        .unwrap()
        .snapshot
        .decode(1, &ctx)
        .unwrap();
    assert_eq!(fast, 500_000);
    assert_eq!(
        out.lock().unwrap().clone().unwrap(),
        expected(&[(1, 500_000), (2, 50_000)])
    );
}

/// Killed (aborted: no final checkpoint) after some checkpoints, started again
/// with the same directory: the result equals an uninterrupted run's.
#[test]
fn a_restart_after_an_abort_resumes_from_the_last_checkpoint_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ends = [(1, 200_000), (2, 30_000)];
    let out = Arc::new(Mutex::new(None));
    let running = merge_graph(dir.path(), ends, Arc::clone(&out), |c| c)
        .run(&rt)
        .unwrap();
    let info = futures::executor::block_on(running.checkpoint()).unwrap();
    assert!(info.stages.iter().any(|(s, _)| s == "sum"), "{info:?}");
    // With the manifest as written in the directory.
    let manifest = info.manifest.clone().unwrap();
    assert_eq!(manifest.id, info.id);
    assert!(
        manifest
            .stages
            .iter()
            .any(|e| e.stage == "sum" && e.version == 1)
    );
    let report = futures::executor::block_on(running.abort()).map(|c| c.report);
    // Aborted: the run did not finish, and wrote no final checkpoint.
    let _ = report;
    let store = CheckpointStore::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(store.list().unwrap().contains(&manifest));
    drop(store);
    let partial = out.lock().unwrap().clone().unwrap();
    assert_ne!(
        partial,
        expected(&ends),
        "the abort came too late to test anything"
    );

    let out = Arc::new(Mutex::new(None));
    let done = merge_graph(dir.path(), ends, Arc::clone(&out), |c| c)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    let ck = done.report.checkpoint.clone().unwrap();
    assert!(ck.restored_from.is_some_and(|id| id >= info.id), "{ck:?}");
    assert_eq!(out.lock().unwrap().clone().unwrap(), expected(&ends));
    done.report.check_conservation().unwrap();

    // Started again after it finished: restored at the end, no work, same result.
    let out = Arc::new(Mutex::new(None));
    let done = merge_graph(dir.path(), ends, Arc::clone(&out), |c| c)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(out.lock().unwrap().clone().unwrap(), expected(&ends));
    let src = done
        .report
        .stages
        .iter()
        .find(|s| s.name == "fast")
        .unwrap();
    assert_eq!(src.produced, 0, "a finished job does no work");
}

#[test]
fn periodic_checkpoints_complete_while_the_pipeline_runs() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let out = Arc::new(Mutex::new(None));
    let ends = [(1, 400_000), (2, 50_000)];
    let done = merge_graph(dir.path(), ends, Arc::clone(&out), |c| {
        c.interval(Duration::from_millis(5))
    })
    .run(&rt)
    .unwrap()
    .wait()
    .unwrap();
    let ck = done.report.checkpoint.clone().unwrap();
    assert!(ck.completed >= 2, "{ck:?}");
    assert_eq!(ck.failed, 0, "{ck:?}");
    assert_eq!(out.lock().unwrap().clone().unwrap(), expected(&ends));
}

#[test]
fn a_zip_in_a_checkpointed_graph_is_a_build_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Graph::new();
    let a = g.source(Flow::from_source(Counter::new(1, 10, 4)));
    let b = g.source(Flow::from_source(Counter::new(2, 10, 4)));
    let z = g.zip(a, b);
    drop(g.sink(z, |f| f.map(|(x, _)| x).to_sum()));
    g.checkpoints(CheckpointConfig::new(dir.path()));
    let err = g.run(&rt()).unwrap_err();
    assert!(
        matches!(&err, BuildError::NotCheckpointable { stage, .. } if stage.starts_with("zip")),
        "{err}"
    );
}

#[test]
fn a_checkpoint_that_does_not_fit_is_refused_naming_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let run = |name: &str| {
        Flow::from_source(Counter::new(1, 100, 8))
            .name("src")
            .to_sum()
            .name(name)
            .checkpoints(CheckpointConfig::new(dir.path()).without_fsync())
            .run(&rt)
    };
    run("sum").unwrap().wait().unwrap();
    let err = run("total").unwrap_err();
    match &err {
        BuildError::CheckpointMismatch { stage, reason, .. } => {
            // The state for `sum` has nowhere to go (or `total` has no state).
            assert!(stage == "sum" || stage == "total", "{err}");
            assert!(
                reason.contains("discard_state") || reason.contains("start_fresh"),
                "{err}"
            );
        }
        other => panic!("{other}"),
    }
    // With both escapes, it runs.
    Flow::from_source(Counter::new(1, 100, 8))
        .name("src")
        .to_sum()
        .name("total")
        .checkpoints(
            CheckpointConfig::new(dir.path())
                .without_fsync()
                .discard_state("sum")
                .start_fresh("total"),
        )
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
}

#[test]
fn a_directory_that_cannot_be_written_is_a_build_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = Flow::from_source(Counter::new(1, 10, 8))
        .to_sum()
        .checkpoints(CheckpointConfig::new(file.path().join("under-a-file")))
        .run(&rt())
        .unwrap_err();
    assert!(matches!(err, BuildError::CheckpointDir { .. }), "{err}");
}

#[test]
fn checkpoint_on_a_pipeline_without_config_says_so() {
    let rt = rt();
    let running = Flow::from_source(Counter::new(1, 10, 8))
        .to_sum()
        .run(&rt)
        .unwrap();
    let err = futures::executor::block_on(running.checkpoint()).unwrap_err();
    assert_eq!(err, weir::checkpoint::CheckpointError::NotEnabled);
    running.wait().unwrap();
}

#[test]
fn the_report_names_sources_that_cannot_replay_and_sinks_that_stay_at_least_once() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let done = weir::Pipeline::from_iter(0..100_u64)
        .name("numbers")
        .map(|x| (1, x))
        .for_each(|_| {})
        .name("effects")
        .checkpoints(CheckpointConfig::new(dir.path()).without_fsync())
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    let ck = done.report.checkpoint.unwrap();
    assert_eq!(ck.unreplayable_sources, vec!["numbers".to_string()]);
    assert_eq!(ck.at_least_once_sinks, vec!["effects".to_string()]);

    let dir = tempfile::tempdir().unwrap();
    let done = Flow::from_source(Counter::new(1, 100, 8))
        .to_sum()
        .checkpoints(CheckpointConfig::new(dir.path()).without_fsync())
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    let ck = done.report.checkpoint.unwrap();
    assert!(
        ck.unreplayable_sources.is_empty() && ck.at_least_once_sinks.is_empty(),
        "{ck:?}"
    );
    assert_eq!(ck.completed, 1, "the final checkpoint: {ck:?}");
}

/// An ordered pool under frequent checkpoints: the collect must not wait for a
/// replica whose results before the barrier are all in (its next ones are held
/// behind the barrier), or the pipeline deadlocks. Results stay in input order.
#[test]
fn an_ordered_pool_passes_barriers_without_deadlock_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let path = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let rt = rt();
        let out = Arc::new(Mutex::new(None));
        let mut g = Graph::new();
        let src = g.source(Flow::from_source(Counter::new(1, 100_000, 16)).name("src"));
        // Uneven work: some replicas fall behind, so the collect waits on them.
        let pooled = g.pool_map(src, weir::Pool::new(3).ordered(), || {
            |(tag, v): (u64, u64)| {
                if v % 7 == 0 {
                    std::hint::black_box((0..2_000).sum::<u64>());
                }
                (tag, v)
            }
        });
        let last = Arc::new(Mutex::new(None::<u64>));
        let sink_out = Arc::clone(&out);
        drop(g.sink(pooled, move |f| {
            let (sink, rx) = sum(sink_out);
            f.inspect(move |&(_, v): &(u64, u64)| {
                let mut last = last.lock().unwrap();
                assert_eq!(last.map_or(0, |l| l + 1), v, "out of order");
                *last = Some(v);
            })
            .to(sink, rx)
            .name("sum")
        }));
        g.checkpoints(
            CheckpointConfig::new(&path)
                .without_fsync()
                .interval(Duration::from_millis(1)),
        );
        let done = g.run(&rt).unwrap().wait().unwrap();
        let _ = tx.send((
            done.report.checkpoint.clone().unwrap(),
            out.lock().unwrap().clone(),
        ));
    });
    let (ck, totals) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the ordered pool deadlocked at a barrier");
    assert!(ck.completed >= 2, "{ck:?}");
    assert_eq!(ck.failed, 0, "{ck:?}");
    assert_eq!(totals.unwrap(), expected(&[(1, 100_000)]));
}

/// The final checkpoint of a finished job holds the sinks' state: run again with
/// the same directory, a collect or fold sink returns the same result (and the
/// source reads nothing). It used to hand its result over before the snapshot.
#[test]
fn a_finished_job_run_again_returns_the_same_collect_and_fold_results() {
    use weir::Pipeline;
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let config = || CheckpointConfig::new(dir.path().join("collect")).without_fsync();
    let collect = || {
        Pipeline::replayable(|from| from..1_000)
            .map(|x| x * 2)
            .collect()
            .checkpoints(config())
    };
    let first = collect().run(&rt).unwrap().wait().unwrap().output;
    assert_eq!(first, (0..1_000).map(|x| x * 2).collect::<Vec<u64>>());
    let again = collect().run(&rt).unwrap().wait().unwrap();
    assert_eq!(again.output, first);
    assert!(again.report.checkpoint.unwrap().restored_from.is_some());

    let config = || CheckpointConfig::new(dir.path().join("fold")).without_fsync();
    let fold = || {
        Pipeline::replayable(|from| from..1_000)
            .fold(0u64, |a, x| a + x)
            .checkpoints(config())
    };
    assert_eq!(fold().run(&rt).unwrap().wait().unwrap().output, 499_500);
    assert_eq!(fold().run(&rt).unwrap().wait().unwrap().output, 499_500);
}

/// Every stage that cannot be checkpointed is refused at `run` with
/// `NotCheckpointable` naming it and saying why (docs/checkpoints.md, "What
/// cannot be checkpointed").
#[test]
fn each_stage_that_cannot_be_checkpointed_is_a_build_error_naming_it() {
    use weir::barrier::{Barrier, BarrierExt};
    use weir::hub::NoSubscriber;
    use weir::junction::{Feedback, MergePrioritized, Priority};
    use weir::prelude::FileFlowExt;

    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let config = || CheckpointConfig::new(dir.path()).without_fsync();
    let src = |g: &mut Graph, tag| g.source(Flow::from_source(Counter::new(tag, 10, 4)));
    let refused =
        |what: &str, result: Result<weir::Running<()>, BuildError>, kind: &str| match result {
            Err(BuildError::NotCheckpointable { stage, reason }) => {
                assert!(stage.starts_with(kind), "{what}: stage {stage}");
                assert!(!reason.is_empty(), "{what}");
            }
            Err(other) => panic!("{what}: {other}"),
            Ok(_) => panic!("{what}: built"),
        };

    let mut g = Graph::new();
    let (a, b) = (src(&mut g, 1), src(&mut g, 2));
    let c = g.concat([a, b]);
    drop(g.sink(c, |f| f.to_sum()));
    g.checkpoints(config());
    refused("concat", g.run(&rt), "concat");

    let mut g = Graph::new();
    let (a, b) = (src(&mut g, 1), src(&mut g, 2));
    let i = g.interleave([a, b], 2);
    drop(g.sink(i, |f| f.to_sum()));
    g.checkpoints(config());
    refused("interleave", g.run(&rt), "interleave");

    let mut g = Graph::new();
    let (a, b) = (src(&mut g, 1), src(&mut g, 2));
    let [a, b] = g.barrier([a, b], Barrier::new());
    drop(g.sink(a, |f| f.to_sum()));
    drop(g.sink(b, |f| f.to_sum()));
    g.checkpoints(config());
    refused("step barrier", g.run(&rt), "barrier");

    let mut g = Graph::new();
    let numbers = src(&mut g, 1);
    let head = g.junction(MergePrioritized::new(Priority::Strict), 2, 1);
    g.connect(numbers, head.inlets[1]);
    let [done, again] = g.partition(head.outlets[0], |x: &(u64, u64)| {
        usize::from(x.1 % 2 == 1 && x.0 == 1)
    });
    let again = g.flow(again, |f| f.map(|(_, v)| (2, v)));
    g.feedback(again, head.inlets[0], Feedback::buffer(100).name("loop"));
    drop(g.sink(done, |f| f.to_sum()));
    g.checkpoints(config());
    // Named by the stage the feedback edge closes on: the head of the cycle.
    refused("feedback", g.run(&rt), "merge_prioritized");

    let (hub_run, _hub) =
        Flow::from_source(Counter::new(1, 10, 4)).broadcast_hub(NoSubscriber::Drop);
    refused(
        "broadcast hub",
        hub_run.checkpoints(config()).run(&rt),
        "broadcast_hub",
    );

    let plain = tempfile::tempdir().unwrap();
    let file = Flow::from_source(Counter::new(1, 10, 4))
        .map(|(_, v)| format!("{v}\n").into_bytes())
        .to_file(weir::file::FileSink::new(plain.path().join("out")))
        .name("plain-file")
        .checkpoints(config())
        .run(&rt);
    match file {
        Err(BuildError::NotCheckpointable { stage, reason }) => {
            assert_eq!(stage, "plain-file");
            assert!(reason.contains("exactly_once"), "{reason}");
        }
        Err(other) => panic!("file sink: {other}"),
        Ok(_) => panic!("file sink: built"),
    }
}

/// A stage whose state has another version than the checkpoint's is refused at
/// `run`, naming the stage and both versions; `discard_state` lets it start
/// empty.
#[test]
fn a_state_of_another_version_is_refused_at_run_naming_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let run = |version: u32, config: CheckpointConfig| {
        let (mut sink, rx) = sum(Arc::default());
        sink.version = version;
        Flow::from_source(Counter::new(1, 100, 8))
            .name("src")
            .to(sink, rx)
            .name("sum")
            .checkpoints(config)
            .run(&rt)
    };
    let config = || CheckpointConfig::new(dir.path()).without_fsync();
    run(1, config()).unwrap().wait().unwrap();
    match run(2, config()) {
        Err(BuildError::CheckpointMismatch { stage, reason, .. }) => {
            assert_eq!(stage, "sum");
            assert!(
                reason.contains("version 1") && reason.contains("version 2"),
                "{reason}"
            );
            assert!(reason.contains("discard_state"), "{reason}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a state of version 1 was restored into version 2"),
    }
    let out: Totals = Arc::default();
    let (mut sink, rx) = sum(Arc::clone(&out));
    sink.version = 2;
    Flow::from_source(Counter::new(1, 100, 8))
        .name("src")
        .to(sink, rx)
        .name("sum")
        .checkpoints(config().discard_state("sum"))
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    // Started empty; the source resumed at its end: nothing more to count.
    assert_eq!(out.lock().unwrap().clone().unwrap(), BTreeMap::new());
}

/// A fast source (tag 1, `0..fast_end`) and a slow one (tag 2, `0..slow_end`,
/// behind a `Slow` stage), so that the fast one's elements wait at barriers.
fn fast_and_slow(g: &mut Graph, fast_end: u64, slow_end: u64) -> [weir::Outlet<(u64, u64)>; 2] {
    let fast = g.source(Flow::from_source(Counter::new(1, fast_end, 64)).name("fast"));
    let slow = g.source(
        Flow::from_source(Counter::new(2, slow_end, 3))
            .name("slow-src")
            .via(Slow)
            .name("slow"),
    );
    [fast, slow]
}

/// Starts what `start` runs three times, each run restoring the last one's
/// newest checkpoint: after 10, 20 and 30 ms it takes a checkpoint (so that
/// there is one to restore, however loaded the machine), runs 10 ms more and
/// is aborted (no final checkpoint).
fn abort_three_times(start: impl Fn() -> Result<weir::Running<()>, BuildError>) {
    for pause_ms in [10, 20, 30] {
        let running = start().unwrap();
        std::thread::sleep(Duration::from_millis(pause_ms));
        // A run that finished first has nothing more to checkpoint.
        let _ = futures::executor::block_on(running.checkpoint());
        std::thread::sleep(Duration::from_millis(10));
        let _ = futures::executor::block_on(running.abort());
    }
}

/// Ends the graph with a summing sink `sum` fed by `from`, checkpointed every
/// 2 ms into `dir`.
fn finish_with_sum(
    mut g: Graph,
    from: weir::Outlet<(u64, u64)>,
    out: Totals,
    dir: &std::path::Path,
) -> Graph {
    drop(g.sink(from, |f| {
        let (sink, rx) = sum(out);
        f.to(sink, rx).name("sum")
    }));
    g.checkpoints(
        CheckpointConfig::new(dir)
            .without_fsync()
            .interval(Duration::from_millis(2)),
    );
    g
}

/// A checkpointed zip keeps the elements still waiting for their partners in
/// its checkpoint: aborted several times mid-run (with a fast and a slow input,
/// so that one input's queue holds unmatched elements at barriers) and started
/// again each time, the pairs it emits are exactly an uninterrupted run's: each
/// k-th element with the other input's k-th, none missing, none twice.
#[test]
fn a_checkpointed_zip_restores_its_unmatched_elements_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (fast_end, slow_end) = (60_000_u64, 40_000_u64);
    let build = |out: Totals| {
        let mut g = Graph::new();
        let [fast, slow] = fast_and_slow(&mut g, fast_end, slow_end);
        // Tag 0 for a right pair (the k-th of each), 9 for a wrong one.
        let pairs =
            g.zip_with_checkpointed(fast, slow, |(_, a), (_, b)| (if a == b { 0 } else { 9 }, a));
        g.name_stage(pairs, "zip");
        finish_with_sum(g, pairs, out, dir.path())
    };
    abort_three_times(|| build(Arc::default()).run(&rt));
    let out: Totals = Arc::default();
    let done = build(Arc::clone(&out)).run(&rt).unwrap().wait().unwrap();
    let ck = done.report.checkpoint.clone().unwrap();
    assert!(ck.restored_from.is_some(), "{ck:?}");
    let n = slow_end;
    let want: BTreeMap<u64, (u64, u64)> = [(0, (n, n * (n - 1) / 2))].into();
    assert_eq!(out.lock().unwrap().clone().unwrap(), want, "{ck:?}");
}

/// A checkpointed step barrier keeps the elements of the input ahead in its
/// checkpoint, with its step: aborted three times mid-run and started again,
/// each output carries exactly the steps an uninterrupted run releases.
#[test]
fn a_checkpointed_step_barrier_restores_its_waiting_elements_exactly_once() {
    use weir::barrier::{Barrier, BarrierExt};

    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (fast_end, slow_end) = (60_000_u64, 40_000_u64);
    let build = |out: Totals| {
        let mut g = Graph::new();
        let [fast, slow] = fast_and_slow(&mut g, fast_end, slow_end);
        let [a, b] = g.barrier_checkpointed([fast, slow], Barrier::new());
        g.name_stage(a, "step");
        let both = g.merge([a, b]);
        finish_with_sum(g, both, out, dir.path())
    };
    abort_three_times(|| build(Arc::default()).run(&rt));
    let out: Totals = Arc::default();
    let done = build(Arc::clone(&out)).run(&rt).unwrap().wait().unwrap();
    assert!(done.report.checkpoint.unwrap().restored_from.is_some());
    // Steps 0..slow_end on each output; the fast input's rest had no partner.
    assert_eq!(
        out.lock().unwrap().clone().unwrap(),
        expected(&[(1, slow_end), (2, slow_end)])
    );
}

/// Elements in flight in stages that keep no checkpointed state — a
/// `map_async` whose futures finish out of order, a `buffer`, a `batch` and the
/// `flat_map` that splits its batches — are finished before a barrier passes
/// them: aborted three times mid-run and started again, the sum counts every
/// element exactly once.
#[test]
fn elements_in_flight_in_async_and_buffering_stages_are_counted_once_across_restores() {
    use weir::ops::FlowControlExt;
    use weir::prelude::FlowExt as _;

    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let end = 20_000_u64;
    let run = |out: Totals| {
        let (sink, rx) = sum(out);
        Flow::from_source(Counter::new(1, end, 16))
            .name("src")
            .map_async(8, |(tag, v)| async move {
                // Later elements overtake earlier ones; the stage keeps order.
                for _ in 0..v % 5 {
                    tokio::task::yield_now().await;
                }
                (tag, v)
            })
            .name("async")
            .buffer(64, weir::junction::Overflow::Backpressure)
            .name("buffer")
            .batch(
                10,
                |x| vec![x],
                |mut rows, x| {
                    rows.push(x);
                    rows
                },
            )
            .name("batch")
            .flat_map(|rows| rows)
            .name("split")
            .to(sink, rx)
            .name("sum")
            .checkpoints(
                CheckpointConfig::new(dir.path())
                    .without_fsync()
                    .interval(Duration::from_millis(2)),
            )
    };
    abort_three_times(|| run(Arc::default()).run(&rt));
    let out: Totals = Arc::default();
    let done = run(Arc::clone(&out)).run(&rt).unwrap().wait().unwrap();
    let ck = done.report.checkpoint.clone().unwrap();
    assert!(ck.restored_from.is_some(), "{ck:?}");
    assert_eq!(
        out.lock().unwrap().clone().unwrap(),
        expected(&[(1, end)]),
        "{ck:?}"
    );
}
