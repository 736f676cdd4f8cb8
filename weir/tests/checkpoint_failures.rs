//! Failed checkpoints: a state that does not encode and a directory that cannot
//! be written fail the checkpoint, not the pipeline, and are reported in its
//! stats, its metrics and its log; `max_consecutive_failures` failures in a row
//! fail the pipeline with that error. A test binary of its own: it installs the
//! process's metrics recorder and tracing subscriber.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Context;
use std::time::{Duration, Instant};

use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use weir::checkpoint::{
    CheckpointConfig, CheckpointError, Checkpointable, RestoreContext, Snapshot, StateError,
};
use weir::operator::{Counting, Io, Operator, Step};
use weir::{Flow, OutputReceiver, OutputSender, Runnable, Runtime, output};
use weir_testkit::logs::Logs;

/// Emits `0, 1, 2, …` (a replayable position) until `stop` is set, a burst per step.
struct Endless {
    next: u64,
    stop: Arc<AtomicBool>,
}

impl Checkpointable for Endless {
    fn snapshot(&mut self, _: u64) -> Result<Snapshot, StateError> {
        Snapshot::of(1, &self.next)
    }
    fn restore(&mut self, s: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        self.next = s.decode(1, ctx)?;
        Ok(())
    }
}

impl Operator for Endless {
    type In = Infallible;
    type Out = u64;
    fn kind(&self) -> &'static str {
        "endless"
    }
    fn step(&mut self, io: &mut Io<'_, Infallible, u64>, cx: &mut Context<'_>) -> Step {
        if self.stop.load(Ordering::Acquire) {
            return Step::Finished;
        }
        let mut n = 0;
        while io.has_room() && n < 64 {
            io.push(self.next);
            self.next += 1;
            n += 1;
        }
        // Slow enough that the test's checkpoints meet a running pipeline.
        std::thread::sleep(Duration::from_micros(50));
        cx.waker().wake_by_ref();
        Step::Continue
    }
    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }
}

/// Counts and sums what it receives; its snapshot fails while `refuse` is set.
struct Total {
    count: u64,
    sum: u64,
    refuse: Arc<AtomicBool>,
    out: Arc<Mutex<Option<(u64, u64)>>>,
    done: Option<OutputSender<()>>,
}

impl Checkpointable for Total {
    fn snapshot(&mut self, _: u64) -> Result<Snapshot, StateError> {
        if self.refuse.load(Ordering::Acquire) {
            return Err(StateError::Encode("the total would not encode".into()));
        }
        Snapshot::of(1, &(self.count, self.sum))
    }
    fn restore(&mut self, s: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        (self.count, self.sum) = s.decode(1, ctx)?;
        Ok(())
    }
}

impl Operator for Total {
    type In = u64;
    type Out = Infallible;
    fn kind(&self) -> &'static str {
        "total"
    }
    fn step(&mut self, io: &mut Io<'_, u64, Infallible>, _: &mut Context<'_>) -> Step {
        let mut n = 0;
        while let Some(x) = io.pop() {
            self.count += 1;
            self.sum += x;
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
        *self.out.lock().unwrap() = Some((self.count, self.sum));
        if let Some(mut done) = self.done.take() {
            done.send(());
        }
    }
}

struct Job {
    stop: Arc<AtomicBool>,
    refuse: Arc<AtomicBool>,
    out: Arc<Mutex<Option<(u64, u64)>>>,
}

impl Job {
    fn new() -> Self {
        Job {
            stop: Arc::default(),
            refuse: Arc::default(),
            out: Arc::default(),
        }
    }

    fn runnable(&self, name: &str, config: CheckpointConfig) -> Runnable<()> {
        let (tx, rx): (OutputSender<()>, OutputReceiver<()>) = output();
        let total = Total {
            count: 0,
            sum: 0,
            refuse: Arc::clone(&self.refuse),
            out: Arc::clone(&self.out),
            done: Some(tx),
        };
        Flow::from_source(Endless {
            next: 0,
            stop: Arc::clone(&self.stop),
        })
        .name("numbers")
        .to(total, rx)
        .name("total")
        .named(name)
        .checkpoints(config)
    }
}

fn rt() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

/// The process's metrics, installed once for every test here.
fn metrics() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        snapshotter
    })
}

/// A pipeline's counter `name` so far (0 when it was never incremented). A
/// snapshot drains the recorder's counters, so every snapshot any test takes is
/// added up here.
fn counter(name: &str, pipeline: &str) -> u64 {
    static TOTALS: Mutex<BTreeMap<(String, String), u64>> = Mutex::new(BTreeMap::new());
    let mut totals = TOTALS.lock().unwrap();
    for (key, _, _, value) in metrics().snapshot().into_vec() {
        let k = key.key();
        let label = k.labels().find(|l| l.key() == "pipeline");
        if let (MetricKind::Counter, DebugValue::Counter(n), Some(l)) = (key.kind(), value, label) {
            *totals
                .entry((k.name().to_owned(), l.value().to_owned()))
                .or_default() += n;
        }
    }
    totals
        .get(&(name.to_owned(), pipeline.to_owned()))
        .copied()
        .unwrap_or(0)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// A state that does not encode fails that checkpoint, naming the stage, and
/// the pipeline goes on; the next checkpoint that encodes completes (the
/// consecutive count starts again), and the job's result is exact. The failure
/// is in the stats, the `weir_checkpoints_failed_total` counter and a warning.
#[test]
fn a_state_that_does_not_encode_fails_the_checkpoint_not_the_pipeline() {
    let (_, logs) = (metrics(), Logs::capture());
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let job = Job::new();
    let config = CheckpointConfig::new(dir.path())
        .without_fsync()
        .max_consecutive_failures(3);
    let running = job.runnable("refusing", config).run(&rt).unwrap();

    block_on(running.checkpoint()).unwrap();
    job.refuse.store(true, Ordering::Release);
    for _ in 0..2 {
        match block_on(running.checkpoint()) {
            Err(CheckpointError::Stage { stage, reason, .. }) => {
                assert_eq!(stage, "total");
                assert!(reason.contains("would not encode"), "{reason}");
            }
            other => panic!("expected a stage failure, got {other:?}"),
        }
    }
    let stats = running.stats().checkpoint.unwrap();
    assert_eq!((stats.completed, stats.failed), (1, 2), "{stats:?}");
    assert_eq!(stats.consecutive_failures, 2);
    assert!(
        stats
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("`total`")),
        "{stats:?}"
    );

    // Two in a row is under the limit of three: the pipeline runs on.
    job.refuse.store(false, Ordering::Release);
    let info = block_on(running.checkpoint()).unwrap();
    let stats = running.stats().checkpoint.unwrap();
    assert_eq!((stats.completed, stats.failed), (2, 2), "{stats:?}");
    assert_eq!(stats.consecutive_failures, 0);
    assert_eq!(stats.last_id, Some(info.id));

    job.stop.store(true, Ordering::Release);
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    let produced = done.report.stages[0].produced;
    let (count, sum) = job.out.lock().unwrap().unwrap();
    assert_eq!(count, produced, "every element counted once");
    assert_eq!(sum, produced * produced.saturating_sub(1) / 2);

    assert_eq!(counter("weir_checkpoints_failed_total", "refusing"), 2);
    let completed = counter("weir_checkpoints_completed_total", "refusing");
    assert!(completed >= 2, "{completed}");
    let failed: Vec<_> = logs
        .events()
        .into_iter()
        .filter(|e| e.level == weir_testkit::logs::Level::WARN)
        .filter(|e| {
            e.fields.contains("checkpoint failed") && e.fields.contains("pipeline=refusing")
        })
        .collect();
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert!(failed[0].fields.contains("would not encode"), "{failed:?}");
}

/// `max_consecutive_failures` failed checkpoints in a row fail the pipeline
/// with the last one's error, naming the stage.
#[test]
fn consecutive_failures_up_to_the_limit_fail_the_pipeline() {
    metrics();
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let job = Job::new();
    job.refuse.store(true, Ordering::Release);
    let config = CheckpointConfig::new(dir.path())
        .without_fsync()
        .interval(Duration::from_millis(5))
        .max_consecutive_failures(3);
    let running = job.runnable("giving-up", config).run(&rt).unwrap();
    // Should the limit not stop it, the job ends on its own after 10 s, and the
    // pipeline's success fails the test.
    let stop = Arc::clone(&job.stop);
    let started = Instant::now();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(10));
        stop.store(true, Ordering::Release);
    });
    let err = running.wait().unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        err.contains("checkpoints keep failing") && err.contains("`total`"),
        "{err}"
    );
    assert!(err.contains("would not encode"), "{err}");
    assert!(counter("weir_checkpoints_failed_total", "giving-up") >= 3);
}

/// A directory that is gone while the pipeline runs fails each checkpoint with
/// a write error, and the pipeline goes on; once the directory is back,
/// checkpoints complete again and a restart restores the newest.
#[test]
fn a_directory_gone_mid_run_fails_checkpoints_until_it_is_back() {
    let rt = rt();
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("checkpoints");
    let job = Job::new();
    let config = || {
        CheckpointConfig::new(&dir)
            .without_fsync()
            .max_consecutive_failures(5)
    };
    let running = job.runnable("unwritable", config()).run(&rt).unwrap();
    block_on(running.checkpoint()).unwrap();

    std::fs::remove_dir_all(&dir).unwrap();
    match block_on(running.checkpoint()) {
        Err(CheckpointError::Write { reason, .. }) => {
            assert!(!reason.is_empty());
        }
        other => panic!("expected a write failure, got {other:?}"),
    }
    let stats = running.stats().checkpoint.unwrap();
    assert_eq!((stats.completed, stats.failed), (1, 1), "{stats:?}");

    std::fs::create_dir_all(&dir).unwrap();
    let info = block_on(running.checkpoint()).unwrap();
    let _ = block_on(running.abort());

    // A new run restores the checkpoint taken after the directory came back.
    let again = Job::new();
    let running = again.runnable("unwritable", config()).run(&rt).unwrap();
    let stats = running.stats().checkpoint.unwrap();
    assert!(
        stats.restored_from.is_some_and(|id| id >= info.id),
        "{stats:?}"
    );
    again.stop.store(true, Ordering::Release);
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    // The restored total goes on from the checkpoint: every number from 0 to
    // the source's last is counted once.
    let (count, sum) = again.out.lock().unwrap().unwrap();
    assert!(count > 0);
    assert_eq!(sum, count * (count - 1) / 2, "{count} {sum}");
}
