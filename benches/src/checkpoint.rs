//! The checkpoint workloads of the comparison harness.
//!
//! `checkpoint_1s` and `checkpoint_100ms`: a keyed running sum (`key_by` +
//! `scan`, [`KEYS`] keys) from a replayable source into a folding sink, with a
//! checkpoint every second / every 100 ms (fsync on, in a temporary directory),
//! each next to the same pipeline with checkpoints off, in the same run.
//!
//! [`state_figures`]: with [`BIG_KEYS`] keys in one keyed fold, the longest pause
//! any stage makes for a snapshot, the checkpoint's size per key, and the time a
//! restore of it takes.

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

/// Figures of a checkpoint of a large keyed state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StateFigures {
    /// Keys in the state.
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

/// Feeds [`BIG_KEYS`] keys through an ingress into a keyed scan, takes
/// `checkpoints` checkpoints of the full state while the pipeline runs, aborts it
/// (so no final checkpoint replaces them), then starts it again to time the
/// restore of the last one.
///
/// # Errors
///
/// Fails when a pipeline cannot be built, or a checkpoint fails.
pub fn state_figures(checkpoints: usize) -> Result<StateFigures, String> {
    let rt = rt()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let build = |dir: &std::path::Path| {
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
    };
    let (ingress, runnable) = build(dir.path());
    let running = runnable.run(&rt).map_err(|e| e.to_string())?;
    futures::executor::block_on(async {
        for x in 0..BIG_KEYS {
            ingress
                .send(x)
                .await
                .map_err(|_| "the ingress closed".to_string())?;
        }
        Ok::<(), String>(())
    })?;
    // Every key is in the fold's state once its queue is empty.
    let started = std::time::Instant::now();
    let full = |stats: &weir::PipelineStats| {
        stats
            .stages
            .iter()
            .any(|s| s.kind == "keyed_scan" && s.received == BIG_KEYS && s.in_flight == 0)
    };
    while !full(&running.stats()) {
        if started.elapsed() > Duration::from_secs(60) {
            return Err("the keys did not arrive within 60 s".into());
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
    let expected = (0..BIG_KEYS).fold(0, sum_step);
    if done.output != expected {
        return Err(format!(
            "the restored state summed to {}, not {expected} (checkpoint of {bytes} bytes, restore {restore_us} µs, {:?})",
            done.output, done.report.checkpoint
        ));
    }
    #[allow(clippy::cast_precision_loss)]
    let bytes_per_key = bytes as f64 / BIG_KEYS as f64;
    Ok(StateFigures {
        keys: BIG_KEYS,
        pauses_us: pauses,
        bytes,
        bytes_per_key,
        restore_us,
    })
}
