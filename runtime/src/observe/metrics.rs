//! Publishing a pipeline's counters through the `metrics` facade.
//!
//! A sampler task on the pipeline's timer arbiter reads every stage's counters at
//! a fixed interval (and once more when the pipeline has finished) and sets the
//! corresponding counters (`absolute`) and gauges. Stages record nothing per
//! element: the only per-batch work is the two histograms, recorded by the stage
//! when it sends a batch and when it finishes a step. weir only emits; which
//! recorder (Prometheus, StatsD, …) receives the values is the application's
//! choice, and without one every handle is a no-op.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Label};

use super::health::verdict;
use crate::pipeline::PipelineStats;
use crate::pipeline::shared::PipelineShared;
use crate::stage::shared::StageShared;

/// How often the sampler publishes by default.
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(1);

fn labels(pipeline: &str, stage: &StageShared) -> Vec<Label> {
    vec![
        Label::new("pipeline", pipeline.to_owned()),
        Label::new("stage", stage.name.clone()),
        Label::new("kind", stage.kind),
    ]
}

/// The histograms a stage records itself, per batch and per step.
#[derive(Debug, Clone)]
pub(crate) struct StageHistograms {
    /// `weir_stage_batch_size`: elements per batch sent downstream.
    pub(crate) batch_size: Histogram,
    /// `weir_stage_step_seconds`: time the operator spent in one step.
    pub(crate) step_seconds: Histogram,
}

impl StageHistograms {
    pub(crate) fn new(pipeline: &str, stage: &StageShared) -> Self {
        let labels = labels(pipeline, stage);
        StageHistograms {
            batch_size: metrics::histogram!("weir_stage_batch_size", labels.clone()),
            step_seconds: metrics::histogram!("weir_stage_step_seconds", labels),
        }
    }
}

/// The sampled counters and gauges of one stage.
#[derive(Debug)]
struct StageHandles {
    received: Counter,
    emitted: Counter,
    completed: Counter,
    filtered: Counter,
    failed: Counter,
    dead_lettered: Counter,
    retries: Counter,
    restarts: Counter,
    state_lost: Counter,
    batches: Counter,
    blocked_millis: Counter,
    in_flight: Gauge,
    mailbox: Gauge,
    credit: Gauge,
    breaker: Gauge,
    stalled: Gauge,
}

impl StageHandles {
    fn new(pipeline: &str, stage: &StageShared) -> Self {
        let l = labels(pipeline, stage);
        StageHandles {
            received: metrics::counter!("weir_stage_received_total", l.clone()),
            emitted: metrics::counter!("weir_stage_emitted_total", l.clone()),
            completed: metrics::counter!("weir_stage_completed_total", l.clone()),
            filtered: metrics::counter!("weir_stage_filtered_total", l.clone()),
            failed: metrics::counter!("weir_stage_failed_total", l.clone()),
            dead_lettered: metrics::counter!("weir_stage_dead_lettered_total", l.clone()),
            retries: metrics::counter!("weir_stage_retries_total", l.clone()),
            restarts: metrics::counter!("weir_stage_restarts_total", l.clone()),
            state_lost: metrics::counter!("weir_stage_state_lost_total", l.clone()),
            batches: metrics::counter!("weir_stage_batches_total", l.clone()),
            blocked_millis: metrics::counter!("weir_stage_blocked_milliseconds_total", l.clone()),
            in_flight: metrics::gauge!("weir_stage_in_flight", l.clone()),
            mailbox: metrics::gauge!("weir_stage_mailbox", l.clone()),
            credit: metrics::gauge!("weir_stage_credit", l.clone()),
            breaker: metrics::gauge!("weir_stage_breaker_state", l.clone()),
            stalled: metrics::gauge!("weir_stage_stalled", l),
        }
    }
}

/// Publishes one pipeline's stats.
#[derive(Debug)]
pub(crate) struct Sampler {
    /// Held while reading and publishing, so that a periodic sample that read
    /// earlier counts can never overwrite the final one.
    lock: std::sync::Mutex<()>,
    stages: Vec<StageHandles>,
    uptime: Gauge,
    health: Gauge,
}

impl Sampler {
    pub(crate) fn new(pipeline: &PipelineShared) -> Self {
        let name = Label::new("pipeline", pipeline.name.clone());
        Sampler {
            lock: std::sync::Mutex::new(()),
            stages: pipeline
                .stages
                .iter()
                .map(|s| StageHandles::new(&pipeline.name, s))
                .collect(),
            uptime: metrics::gauge!("weir_pipeline_uptime_seconds", vec![name.clone()]),
            health: metrics::gauge!("weir_pipeline_health", vec![name]),
        }
    }

    /// Reads the pipeline's counters and publishes them.
    pub(crate) fn sample(&self, pipeline: &PipelineShared) {
        let _serial = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let stats = PipelineStats::snapshot(pipeline);
        for ((h, s), shared) in self.stages.iter().zip(&stats.stages).zip(&pipeline.stages) {
            h.received.absolute(s.received);
            h.emitted.absolute(s.emitted);
            h.completed.absolute(s.completed);
            h.filtered.absolute(s.filtered);
            h.failed.absolute(s.failed);
            h.dead_lettered.absolute(s.dead_lettered);
            h.retries.absolute(s.retries);
            h.restarts.absolute(s.restarts);
            h.state_lost.absolute(s.state_lost);
            h.batches.absolute(s.batches);
            h.blocked_millis.absolute(shared.blocked_millis());
            h.in_flight.set(s.in_flight as f64);
            h.mailbox.set(s.mailbox as f64);
            h.credit.set(s.credit as f64);
            h.breaker.set(s.breaker.as_gauge());
            h.stalled.set(if s.stalled { 1.0 } else { 0.0 });
        }
        self.uptime.set(stats.uptime.as_secs_f64());
        let policy = super::HealthPolicy::default();
        let recent = pipeline.recent_restarts(policy.window);
        self.health.set(verdict(&stats, &policy, recent).as_gauge());
    }
}

/// Registers `pipeline`'s metrics; must run before its first stage starts, since
/// the last stage to stop publishes the final sample through it.
pub(crate) fn install_sampler(pipeline: &PipelineShared) {
    let _ = pipeline.sampler.set(Sampler::new(pipeline));
}

/// Starts the sampler of `pipeline` (installed by [`install_sampler`]) on its
/// timer arbiter, every `interval` while the pipeline runs.
pub(crate) fn spawn_sampler(pipeline: Arc<PipelineShared>, interval: Duration) {
    let arbiter = pipeline.timer_arbiter.clone();
    arbiter.spawn(async move {
        while !pipeline.is_finished() {
            if let Some(sampler) = pipeline.sampler.get() {
                sampler.sample(&pipeline);
            }
            tokio::time::sleep(interval).await;
        }
    });
}

/// A checkpoint completed: `weir_checkpoints_completed_total`,
/// `weir_checkpoint_duration_seconds`, `weir_checkpoint_alignment_seconds` and
/// `weir_checkpoint_bytes` (histograms) and `weir_checkpoint_last_id` (gauge), per
/// pipeline.
pub(crate) fn checkpoint_completed(pipeline: &str, info: &crate::checkpoint::CheckpointInfo) {
    let labels = vec![Label::new("pipeline", pipeline.to_owned())];
    metrics::counter!("weir_checkpoints_completed_total", labels.clone()).increment(1);
    metrics::histogram!("weir_checkpoint_duration_seconds", labels.clone())
        .record(info.duration.as_secs_f64());
    metrics::histogram!("weir_checkpoint_alignment_seconds", labels.clone())
        .record(info.alignment.as_secs_f64());
    metrics::histogram!("weir_checkpoint_bytes", labels.clone()).record(info.bytes as f64);
    metrics::gauge!("weir_checkpoint_last_id", labels).set(info.id as f64);
}

/// A checkpoint failed: `weir_checkpoints_failed_total`, per pipeline.
pub(crate) fn checkpoint_failed(pipeline: &str) {
    let labels = vec![Label::new("pipeline", pipeline.to_owned())];
    metrics::counter!("weir_checkpoints_failed_total", labels).increment(1);
}
