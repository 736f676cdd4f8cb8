//! [`DepthProbe`]: the stages' depth, sampled while the pipeline runs.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use weir::{PipelineController, PipelineStats};

/// The deepest each stage was seen, over the samples a [`DepthProbe`] took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepthReport {
    /// Samples taken.
    pub samples: u64,
    /// Per stage, in pipeline order: `(name, capacity, deepest)`, where a stage's
    /// depth is what it holds (queued, held by its operator, waiting for credit)
    /// plus what waits in its mailbox.
    pub stages: Vec<(String, usize, u64)>,
}

impl DepthReport {
    /// The deepest `stage` was seen, if it was sampled.
    pub fn max_depth(&self, stage: &str) -> Option<u64> {
        self.stages
            .iter()
            .find(|(name, ..)| name == stage)
            .map(|&(_, _, depth)| depth)
    }

    fn fold(&mut self, stats: &PipelineStats) {
        self.samples += 1;
        for s in &stats.stages {
            let depth = s.in_flight + s.mailbox;
            match self.stages.iter_mut().find(|(name, ..)| *name == s.name) {
                Some(entry) => entry.2 = entry.2.max(depth),
                None => self.stages.push((s.name.clone(), s.capacity, depth)),
            }
        }
    }
}

/// Samples a running pipeline's [stats](PipelineController::stats) on tokio's
/// clock and keeps the deepest each stage was, so that a test can assert that a
/// depth bound held *during* the run, not only at the end.
///
/// Start it inside the pipeline's System (for instance in
/// [`run`](crate::time::run) or [`run_paused`](crate::time::run_paused)); it
/// samples every `every` until the pipeline finishes, and once more at the end.
/// Sampling is a snapshot, so a peak between two samples can be missed: the
/// runtime's own `peak_occupancy` (checked by
/// [`assert_bounded`](super::assert_bounded)) sees every one.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir::prelude::*;
/// use weir_testkit::prelude::*;
///
/// run_paused(|rt| async move {
///     let running = Pipeline::from_iter(0..200_u32)
///         .map(|x| x + 1)
///         .name("inc")
///         .capacity(8)
///         .delay_each(Duration::from_millis(1))
///         .name("slow")
///         .capacity(4)
///         .collect()
///         .run(&rt)
///         .unwrap();
///     let depth = DepthProbe::start(running.controller(), Duration::from_millis(1));
///     let done = running.await.unwrap();
///     let seen = depth.report();
///     assert!(seen.samples > 10);
///     depth.assert_max_depth("slow", 4);
///     assert_eq!(done.output.len(), 200);
/// });
/// ```
#[derive(Debug, Clone)]
pub struct DepthProbe {
    report: Arc<Mutex<DepthReport>>,
    controller: PipelineController,
}

fn lock(report: &Mutex<DepthReport>) -> MutexGuard<'_, DepthReport> {
    report
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl DepthProbe {
    /// Starts sampling `controller`'s pipeline every `every`.
    ///
    /// # Panics
    ///
    /// If not called inside an actix System (or tokio runtime with a local set).
    pub fn start(controller: PipelineController, every: Duration) -> Self {
        let probe = DepthProbe {
            report: Arc::new(Mutex::new(DepthReport::default())),
            controller,
        };
        let sampler = probe.clone();
        actix_rt::spawn(async move {
            loop {
                sampler.sample();
                if sampler.controller.is_finished() {
                    break;
                }
                tokio::time::sleep(every).await;
            }
        });
        probe
    }

    /// Takes one sample now (on top of the periodic ones).
    pub fn sample(&self) {
        let stats = self.controller.stats();
        lock(&self.report).fold(&stats);
    }

    /// What has been seen so far.
    pub fn report(&self) -> DepthReport {
        lock(&self.report).clone()
    }

    /// Asserts that `stage` was sampled and never seen deeper than `bound`.
    ///
    /// # Panics
    ///
    /// If it was, naming the stage, the depth and the bound; or if the stage was
    /// never sampled.
    #[track_caller]
    pub fn assert_max_depth(&self, stage: &str, bound: u64) {
        let report = self.report();
        match report.max_depth(stage) {
            Some(depth) => assert!(
                depth <= bound,
                "stage `{stage}` reached depth {depth}, over the bound {bound} ({} samples)",
                report.samples
            ),
            None => panic!("stage `{stage}` was never sampled: {report:?}"),
        }
    }

    /// Asserts that no stage (sources aside) was ever seen deeper than its input
    /// capacity.
    ///
    /// # Panics
    ///
    /// Naming the first stage seen deeper than its capacity.
    #[track_caller]
    pub fn assert_within_capacity(&self) {
        let report = self.report();
        for (name, capacity, depth) in &report.stages {
            assert!(
                *capacity == 0 || *depth <= *capacity as u64,
                "stage `{name}` reached depth {depth}, over its capacity {capacity} ({} samples)",
                report.samples
            );
        }
    }
}
