//! [`PipelineStats`]: a live snapshot of a running pipeline.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::Serialize;

use super::shared::PipelineShared;

/// A snapshot of one stage while the pipeline runs. Each counter is read on its
/// own, so a snapshot taken while elements move is close to, not exactly, one
/// instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageStats {
    /// Stage name.
    pub name: String,
    /// Operator kind.
    pub kind: &'static str,
    /// Input capacity (0 for a source).
    pub capacity: usize,
    /// Elements that reached the stage (sources: taken in).
    pub received: u64,
    /// Outputs sent downstream.
    pub emitted: u64,
    /// Inputs fully processed (sinks: delivered).
    pub completed: u64,
    /// Inputs dropped on purpose.
    pub filtered: u64,
    /// Inputs destroyed by a failure.
    pub failed: u64,
    /// Inputs sent to the dead letters.
    pub dead_lettered: u64,
    /// Failed attempts tried again.
    pub retries: u64,
    /// Restarts of the stage.
    pub restarts: u64,
    /// State entries discarded by restarts so far (see `StageReport::state_lost`).
    pub state_lost: u64,
    /// Elements inside the stage: queued, held by the operator, or waiting for credit.
    pub in_flight: u64,
    /// Elements sent to the stage that are still in its mailbox.
    pub mailbox: u64,
    /// Credit the stage holds: how many more elements it may send downstream.
    pub credit: usize,
    /// Batches sent downstream.
    pub batches: u64,
    /// Largest occupancy of the input edge observed.
    pub peak_occupancy: usize,
    /// True while the stage holds input it could process but makes no progress
    /// (see [`Runnable::stall_timeout`](crate::Runnable::stall_timeout)).
    pub stalled: bool,
    /// The state of the stage's circuit breaker (`Closed` without one).
    pub breaker: crate::observe::BreakerState,
    /// True while the source is paused (see
    /// [`PipelineController::pause_source`](crate::PipelineController::pause_source)).
    pub paused: bool,
    /// The last failure of the stage's user code, as text.
    pub last_error: Option<String>,
    /// Time the stage spent with output waiting and no credit downstream.
    #[serde(serialize_with = "serialize_secs")]
    pub blocked: Duration,
    /// Per output port of a junction: what each branch was given, sent, dropped,
    /// and has buffered now. Empty for a stage with one output.
    pub outputs: Vec<crate::pipeline::report::PortCounts>,
    /// Generation of the config in force: 0 for the one the stage was built with,
    /// one more for each config applied at run time (see
    /// [`ConfigHandle`](crate::reconfig::ConfigHandle)).
    pub config_generation: u64,
    /// The config in force, as its `Debug` shows it, once one was applied at run
    /// time.
    pub config: Option<String>,
    /// Configs the stage rejected (the previous one stayed in force).
    pub config_rejected: u64,
    /// The index of the first stage of the fused group the stage runs in, if it
    /// runs fused with another (see
    /// [`TopologyNode::fused_group`](crate::TopologyNode::fused_group)).
    pub fused_group: Option<usize>,
}

/// A snapshot of a running pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineStats {
    /// Pipeline name.
    pub name: String,
    /// Time since it started.
    #[serde(serialize_with = "serialize_secs")]
    pub uptime: Duration,
    /// True once every stage has stopped.
    pub finished: bool,
    /// One entry per stage, from source to sink.
    pub stages: Vec<StageStats>,
    /// The failure that ends (or ended) the pipeline, as text.
    pub failure: Option<String>,
    /// Failures that ended only a merge input so far (see
    /// [`InputFailure::EndInput`](crate::junction::InputFailure::EndInput)).
    pub contained: Vec<crate::ContainedFailure>,
    /// Checkpoint figures, for a checkpointed pipeline.
    pub checkpoint: Option<crate::checkpoint::CheckpointStats>,
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl PipelineStats {
    pub(crate) fn snapshot(p: &PipelineShared) -> Self {
        let stages = p
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let held = s.held.load(Relaxed) as u64;
                StageStats {
                    name: s.name.clone(),
                    kind: s.kind,
                    capacity: s.capacity,
                    received: s.received.load(Relaxed) + if s.is_source { held } else { 0 },
                    emitted: s.emitted.load(Relaxed),
                    completed: s.completed.load(Relaxed),
                    filtered: s.filtered.load(Relaxed),
                    failed: s.failed.load(Relaxed),
                    dead_lettered: s.dead_lettered.load(Relaxed),
                    retries: s.retries.load(Relaxed),
                    restarts: s.restarts.load(Relaxed),
                    state_lost: s.state_lost.load(Relaxed),
                    in_flight: s.queued.load(Relaxed) as u64 + held + s.outbox.load(Relaxed) as u64,
                    mailbox: s.in_mailbox(),
                    credit: s.credit.load(Relaxed),
                    batches: s.batches.load(Relaxed),
                    peak_occupancy: s.peak_occupancy.load(Relaxed),
                    stalled: s.stalled.load(Relaxed),
                    breaker: crate::observe::BreakerState::load(&s.breaker),
                    paused: s.paused.load(Relaxed),
                    last_error: s.last_error(),
                    blocked: Duration::from_nanos(s.blocked_nanos.load(Relaxed)),
                    outputs: crate::pipeline::report::PortCounts::of(s),
                    config_generation: s.config_generation.load(Relaxed),
                    config: s.config(),
                    config_rejected: s.config_rejected.load(Relaxed),
                    fused_group: p
                        .topology
                        .get()
                        .and_then(|t| t.nodes.get(i))
                        .and_then(|n| n.fused_group),
                }
            })
            .collect();
        PipelineStats {
            name: p.name.clone(),
            uptime: p.uptime(),
            finished: p.is_finished(),
            stages,
            failure: p.failure_text(),
            contained: p.contained_failures(),
            checkpoint: p
                .checkpoints
                .as_ref()
                .map(crate::checkpoint::Coordinator::stats),
        }
    }

    /// The snapshot of the stage with this name.
    pub fn stage(&self, name: &str) -> Option<&StageStats> {
        self.stages.iter().find(|s| s.name == name)
    }
}
