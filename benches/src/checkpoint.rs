//! The checkpoint workloads of the comparison harness.
//!
//! `checkpoint_1s` and `checkpoint_100ms`: a keyed running sum (`key_by` +
//! `scan`, [`KEYS`] keys) from a replayable source into a folding sink, with a
//! checkpoint every second / every 100 ms (fsync on, in a temporary directory),
//! each next to the same pipeline with checkpoints off, in the same run.
//!
//! [`state_figures`]: with [`BIG_KEYS`] keys in the state of one operator (keyed
//! `scan` or `aggregate`, an event-time window, an interval join; see
//! [`StateOp`]), the longest pause any stage makes for a snapshot, the
//! checkpoint's size per key, and the time a restore of it takes.

use std::time::Duration;

use weir::checkpoint::CheckpointConfig;
use weir::prelude::*;

use crate::junctions::JunctionPlacement;
use crate::workload::sum_step;

/// Distinct keys of the throughput workload.
pub const KEYS: u64 = 10_000;
/// Keys in state for the pause, size and restore figures.
pub const BIG_KEYS: u64 = 1_000_000;

fn rt() -> Result<Runtime, String> {
    Runtime::builder()
        .arbiters(2)
        .build()
        .map_err(|e| e.to_string())
}

/// The keyed running sum over `0..n`, checkpointed every `interval` if given.
/// Returns the sum of every emitted running sum (independent of checkpoints).
///
/// # Errors
///
/// Fails when the pipeline cannot be built or does not complete.
pub fn keyed(n: u64, interval: Option<Duration>) -> Result<Vec<u64>, String> {
    let rt = rt()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut runnable = Pipeline::replayable(move |from| from..n)
        .key_by(|x: &u64| x % KEYS)
        .scan(0_u64, |s: &mut u64, x: u64| {
            *s = s.wrapping_add(x);
            *s
        })
        .fold(0_u64, sum_step);
    if let Some(interval) = interval {
        runnable = runnable.checkpoints(CheckpointConfig::new(dir.path()).interval(interval));
    }
    let done = runnable
        .run(&rt)
        .map_err(|e| e.to_string())?
        .wait()
        .map_err(|e| e.to_string())?;
    done.report
        .check_conservation()
        .map_err(|e| e.to_string())?;
    if let Some(ck) = &done.report.checkpoint
        && ck.failed > 0
    {
        return Err(format!(
            "{} checkpoints failed: {:?}",
            ck.failed, ck.last_error
        ));
    }
    Ok(vec![done.output])
}

/// The expected output of [`keyed`]: the same running sums by hand.
///
/// # Errors
///
/// Never; the signature matches the harness's.
pub fn keyed_expected(n: u64) -> Result<Vec<u64>, String> {
    let mut sums = vec![0_u64; usize::try_from(KEYS).unwrap_or(usize::MAX)];
    let mut total = 0_u64;
    for x in 0..std::hint::black_box(n) {
        let s = &mut sums[usize::try_from(x % KEYS).unwrap_or(0)];
        *s = s.wrapping_add(x);
        total = sum_step(total, *s);
    }
    Ok(vec![total])
}

/// `checkpoint_1s` on weir.
///
/// # Errors
///
/// As [`keyed`].
pub fn every_second(n: u64, _placement: JunctionPlacement) -> Result<Vec<u64>, String> {
    keyed(n, Some(Duration::from_secs(1)))
}

/// `checkpoint_100ms` on weir.
///
/// # Errors
///
/// As [`keyed`].
pub fn every_100ms(n: u64, _placement: JunctionPlacement) -> Result<Vec<u64>, String> {
    keyed(n, Some(Duration::from_millis(100)))
}

/// The baseline of both: checkpoints off.
///
/// # Errors
///
/// As [`keyed`].
pub fn off(n: u64, _placement: JunctionPlacement) -> Result<Vec<u64>, String> {
    keyed(n, None)
}

/// The operator whose state [`state_figures`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateOp {
    /// `key_by(x).scan`: one running sum per key.
    Scan,
    /// `key_by(x).aggregate`: one accumulator per key, emitted at the end.
    Aggregate,
    /// An event-time tumbling window (1 h) per key, every element at time 0, so
    /// every (key, window) stays open until the input ends.
    Window,
    /// An event-time interval join with left rows only: every row stays
    /// buffered (no right watermark) until the input ends and it leaves
    /// unmatched.
    Join,
}

impl StateOp {
    /// Every operator, in the order the binary reports them.
    pub const ALL: [StateOp; 4] = [
        StateOp::Scan,
        StateOp::Aggregate,
        StateOp::Window,
        StateOp::Join,
    ];

    /// The name the binary takes and prints.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            StateOp::Scan => "scan",
            StateOp::Aggregate => "aggregate",
            StateOp::Window => "window",
            StateOp::Join => "join",
        }
    }

    /// The operator named `name`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        StateOp::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// Figures of a checkpoint of a large keyed state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StateFigures {
    /// The operator measured.
    pub operator: StateOp,
    /// Keys (entries, rows) in the state.
    pub keys: u64,
    /// Each checkpoint's longest snapshot pause in one stage, in microseconds.
    pub pauses_us: Vec<u64>,
    /// Bytes of state in the last checkpoint taken while running.
    pub bytes: u64,
    /// Bytes per key.
    pub bytes_per_key: f64,
    /// The restore of that checkpoint at the next start, in microseconds.
    pub restore_us: u64,
}

/// A sum over `u64`s, as the folding sinks of [`state_figures`] make it.
fn add(acc: u64, x: u64) -> u64 {
    acc.wrapping_add(x)
}

/// Feeds [`BIG_KEYS`] keys through an ingress into `op`, takes `checkpoints`
/// checkpoints of the full state while the pipeline runs, aborts it (so no
/// final checkpoint replaces them), then starts it again to time the restore of
/// the last one. The restored run checks the state: `scan`'s sink sum comes
/// back; `aggregate`, the window and the join emit every key's state at the
/// input's end, which must sum to what was fed.
///
/// # Errors
///
/// Fails when a pipeline cannot be built, or a checkpoint fails.
pub fn state_figures(op: StateOp, checkpoints: usize) -> Result<StateFigures, String> {
    let expected = match op {
        StateOp::Scan => (0..BIG_KEYS).fold(0, sum_step),
        StateOp::Aggregate | StateOp::Window | StateOp::Join => (0..BIG_KEYS).fold(0, add),
    };
    match op {
        StateOp::Scan => measure(op, "keyed_scan", checkpoints, expected, |dir| {
            let (ingress, flow) = Pipeline::ingress::<u64>(4096);
            let runnable = flow
                .key_by(|x: &u64| *x)
                .scan(0_u64, |s: &mut u64, x: u64| {
                    *s = s.wrapping_add(x);
                    *s
                })
                .fold(0_u64, sum_step)
                .name("sum")
                .checkpoints(CheckpointConfig::new(dir).retain(2));
            (ingress, runnable)
        }),
        StateOp::Aggregate => measure(op, "keyed_aggregate", checkpoints, expected, |dir| {
            let (ingress, flow) = Pipeline::ingress::<u64>(4096);
            let runnable = flow
                .key_by(|x: &u64| *x)
                .aggregate(Sum)
                .map(|(_, s): (u64, u64)| s)
                .fold(0_u64, add)
                .name("sum")
                .checkpoints(CheckpointConfig::new(dir).retain(2));
            (ingress, runnable)
        }),
        StateOp::Window => measure(op, "event_time_windows", checkpoints, expected, |dir| {
            let (ingress, flow) = Pipeline::ingress::<u64>(4096);
            let runnable = flow
                .event_time_windows(
                    Windows::tumbling(Duration::from_secs(3_600)).max_windows(
                        usize::try_from(BIG_KEYS).unwrap_or(usize::MAX),
                        WindowOverflow::Fail,
                    ),
                    EventTime::new(|_: &u64| 0),
                    |x: &u64| *x,
                    Aggregate::new(|| 0_u64, |s: &mut u64, x: &u64| *s += *x, |s| *s),
                )
                .map(|r: WindowResult<u64, u64>| r.value)
                .fold(0_u64, add)
                .name("sum")
                .checkpoints(CheckpointConfig::new(dir).retain(2));
            (ingress, runnable)
        }),
        StateOp::Join => {
            measure(op, "interval_join", checkpoints, expected, |dir| {
                let (ingress, flow) = Pipeline::ingress::<Side<u64, u64>>(4096);
                let join = IntervalJoin::inner(|l: &u64| *l, |r: &u64| *r, |l, r| l ^ r)
                    .event_time(|_| 0, |_| 0, 0, 60_000);
                let runnable =
                    join.on(flow)
                        .map(|o: JoinOut<u64, u64, u64>| match o {
                            JoinOut::Joined(x)
                            | JoinOut::Unmatched(Side::Left(x) | Side::Right(x)) => x,
                        })
                        .fold(0_u64, add)
                        .name("sum")
                        .checkpoints(CheckpointConfig::new(dir).retain(2));
                (Tagged(ingress), runnable)
            })
        }
    }
}

/// `aggregate`'s accumulator in [`state_figures`]: a sum per key.
struct Sum;

impl KeyedAggregate<u64> for Sum {
    type Acc = u64;
    type Out = u64;
    fn init(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, x: u64) {
        *acc = acc.wrapping_add(x);
    }
    fn finish(&self, acc: u64) -> u64 {
        acc
    }
}

/// Something [`measure`] feeds keys `0..BIG_KEYS` into.
trait Feed {
    async fn feed(&self, x: u64) -> Result<(), String>;
}

impl Feed for Ingress<u64> {
    async fn feed(&self, x: u64) -> Result<(), String> {
        self.send(x)
            .await
            .map_err(|_| "the ingress closed".to_string())
    }
}

/// An ingress of join rows: every key a left row.
struct Tagged(Ingress<Side<u64, u64>>);

impl Feed for Tagged {
    async fn feed(&self, x: u64) -> Result<(), String> {
        self.0
            .send(Side::Left(x))
            .await
            .map_err(|_| "the ingress closed".to_string())
    }
}

/// [`state_figures`] for one pipeline: `build` makes it (checkpointing into
/// the directory given), `kind` is the stage whose state fills, `expected` what
/// the restored run's sink must end with.
fn measure<I: Feed>(
    op: StateOp,
    kind: &str,
    checkpoints: usize,
    expected: u64,
    build: impl Fn(&std::path::Path) -> (I, Runnable<u64>),
) -> Result<StateFigures, String> {
    let rt = rt()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (ingress, runnable) = build(dir.path());
    let running = runnable.run(&rt).map_err(|e| e.to_string())?;
    futures::executor::block_on(async {
        for x in 0..BIG_KEYS {
            ingress.feed(x).await?;
        }
        Ok::<(), String>(())
    })?;
    // Every key is in the stage's state once its queue is empty.
    let started = std::time::Instant::now();
    let full = |stats: &weir::PipelineStats| {
        stats
            .stages
            .iter()
            .any(|s| s.kind == kind && s.received == BIG_KEYS && s.in_flight == 0)
    };
    while !full(&running.stats()) {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("the keys did not reach {kind} within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut pauses = Vec::new();
    let mut bytes = 0;
    for _ in 0..checkpoints {
        let info = futures::executor::block_on(running.checkpoint()).map_err(|e| e.to_string())?;
        pauses.push(u64::try_from(info.longest_snapshot.as_micros()).unwrap_or(u64::MAX));
        bytes = info.bytes;
    }
    let _ = futures::executor::block_on(running.abort());
    drop(ingress);
    let (ingress, runnable) = build(dir.path());
    let running = runnable.run(&rt).map_err(|e| e.to_string())?;
    let restore_us = running.stats().checkpoint.map_or(0, |c| c.restore_us);
    drop(ingress);
    let done = running.wait().map_err(|e| e.to_string())?;
    if done.output != expected {
        return Err(format!(
            "{kind}: the restored state summed to {}, not {expected} (checkpoint of {bytes} bytes, restore {restore_us} µs, {:?})",
            done.output, done.report.checkpoint
        ));
    }
    #[allow(clippy::cast_precision_loss)]
    let bytes_per_key = bytes as f64 / BIG_KEYS as f64;
    Ok(StateFigures {
        operator: op,
        keys: BIG_KEYS,
        pauses_us: pauses,
        bytes,
        bytes_per_key,
        restore_us,
    })
}
