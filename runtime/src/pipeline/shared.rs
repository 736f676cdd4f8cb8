//! State a pipeline's stages share with its handle: the stage counters, the first
//! failure, the outcome flags, and the completion channel.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use actix_rt::ArbiterHandle;
use tokio::sync::{broadcast, oneshot};
use weir_supervisor::policy::RestartStrategy;
use weir_supervisor::{Failure, SupervisionEvent};

use super::report::{ContainedFailure, Outcome, Report, StageReport};
use crate::observe::metrics::Sampler;
use crate::observe::{BreakerState, RestartHistory};
use crate::stage::fused::ControlTx;
use crate::stage::message::Control;
use crate::stage::shared::StageShared;

/// Every supervision event is also a structured `tracing` event (target
/// `weir::supervision`): stage-level events at info (warn for failures and
/// escalations), element-level ones (retries, dead letters, skips) at debug, so
/// that info never logs per element.
fn trace_event(event: &SupervisionEvent) {
    use SupervisionEvent as E;
    match event {
        E::StageFailed {
            pipeline,
            stage,
            class,
            error,
            element_index,
            attempt,
            ..
        } => tracing::warn!(
            target: "weir::supervision",
            pipeline = %pipeline, stage = %stage, class = %class, error = %error,
            element_index = ?element_index, attempt, "stage failed"
        ),
        E::Escalated {
            pipeline,
            stage,
            reason,
        } => tracing::warn!(
            target: "weir::supervision",
            pipeline = %pipeline, stage = %stage, reason = %reason, "escalated"
        ),
        E::ElementRetried { .. } | E::ElementDeadLettered { .. } | E::ElementSkipped { .. } => {
            tracing::debug!(target: "weir::supervision", event = ?event, "element supervised");
        }
        _ => tracing::info!(
            target: "weir::supervision",
            stage = %event.stage(), event = ?event, "supervision event"
        ),
    }
}

/// What the last stage to stop sends to the pipeline's handle.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) report: Report,
    pub(crate) failure: Option<Failure>,
    /// Some stage was dropped with its arbiter instead of stopping.
    pub(crate) runtime_lost: bool,
}

/// How the pipeline is being brought to an end, if it is.
#[derive(Debug, Default)]
pub(crate) struct EndState {
    /// First failure, with the index of the stage it happened in.
    pub(crate) failure: Option<(usize, Failure)>,
    pub(crate) aborted: bool,
    /// Delivered count when a graceful shutdown was requested.
    pub(crate) shutdown_from: Option<u64>,
    pub(crate) deadline_exceeded: bool,
    pub(crate) runtime_lost: bool,
    /// Failures that ended only a merge input, with their stage indices.
    pub(crate) contained: Vec<(usize, Failure)>,
    /// The first failure as text (`stage `name`: error`), kept after the report
    /// has taken the failure.
    pub(crate) failure_text: Option<String>,
}

/// Shared by every stage of one pipeline and by its handles.
#[derive(Debug)]
pub(crate) struct PipelineShared {
    pub(crate) name: String,
    pub(crate) stages: Vec<Arc<StageShared>>,
    /// Arbiter used for the pipeline's timers (shutdown deadline).
    pub(crate) timer_arbiter: ArbiterHandle,
    /// After how long without progress a stage holding input is reported stalled.
    pub(crate) stall_timeout: Option<std::time::Duration>,
    /// Which stages restart with one that restarts (a policy file reloaded while
    /// the pipeline runs may change it).
    strategy: Mutex<RestartStrategy>,
    /// For each stage, the stages downstream of it along the graph's edges
    /// (feedback edges left out), in index order: what `RestForOne` restarts with
    /// it.
    downstream: Vec<Vec<usize>>,
    live: AtomicUsize,
    controls: OnceLock<Vec<ControlTx>>,
    end: Mutex<EndState>,
    done: Mutex<Option<oneshot::Sender<Done>>>,
    /// Dropped when the pipeline completes, which ends every subscription.
    events: Mutex<Option<broadcast::Sender<SupervisionEvent>>>,
    started: Instant,
    /// Recent restart times, for the health verdict's restart rate.
    restart_history: RestartHistory,
    /// Publishes the stages' counters through the `metrics` facade.
    pub(crate) sampler: OnceLock<Sampler>,
    /// Registered with the stall monitor (see `stage::monitor`).
    pub(crate) monitored: std::sync::atomic::AtomicBool,
    /// The smallest stall timeout a stage used, in nanoseconds: the monitor scans
    /// at a quarter of it.
    pub(crate) min_stall_limit: std::sync::atomic::AtomicU64,
    /// The checkpoint coordinator, for a checkpointed pipeline.
    pub(crate) checkpoints: Option<crate::checkpoint::Coordinator>,
    /// The graph as built, recorded at launch (see `pipeline::topology`).
    pub(crate) topology: OnceLock<super::topology::Topology>,
    /// The runtime's memory budget, with this pipeline's sizers, if there is one.
    pub(crate) memory: Option<crate::memory::PipelineMemory>,
}

impl PipelineShared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        stages: Vec<Arc<StageShared>>,
        timer_arbiter: ArbiterHandle,
        events: broadcast::Sender<SupervisionEvent>,
        stall_timeout: Option<std::time::Duration>,
        strategy: RestartStrategy,
        downstream: Vec<Vec<usize>>,
        checkpoints: Option<crate::checkpoint::Coordinator>,
        memory: Option<crate::memory::PipelineMemory>,
    ) -> (Arc<Self>, oneshot::Receiver<Done>) {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(PipelineShared {
            name,
            live: AtomicUsize::new(stages.len()),
            stages,
            timer_arbiter,
            stall_timeout,
            strategy: Mutex::new(strategy),
            downstream,
            controls: OnceLock::new(),
            end: Mutex::new(EndState::default()),
            done: Mutex::new(Some(tx)),
            events: Mutex::new(Some(events)),
            started: Instant::now(),
            restart_history: RestartHistory::default(),
            sampler: OnceLock::new(),
            monitored: std::sync::atomic::AtomicBool::new(false),
            min_stall_limit: std::sync::atomic::AtomicU64::new(u64::MAX),
            checkpoints,
            topology: OnceLock::new(),
            memory,
        });
        if let Some(c) = &shared.checkpoints {
            c.attach(&shared);
        }
        (shared, rx)
    }

    /// Stores the stages' control addresses once every stage is started. A stage
    /// that failed (or an abort that came) before this point found no addresses to
    /// broadcast to, so the abort is sent again here. The failure is recorded under
    /// the `end` lock before `fail` looks for addresses, and the addresses are
    /// stored before this looks at `end`: one of the two always sees the other.
    pub(crate) fn set_controls(&self, controls: Vec<ControlTx>) {
        let _ = self.controls.set(controls);
        let ending = {
            let end = self.end();
            end.failure.is_some() || end.aborted
        };
        if ending {
            self.broadcast(Control::Abort);
        }
    }

    fn end(&self) -> std::sync::MutexGuard<'_, EndState> {
        self.end.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.live.load(SeqCst) == 0
    }

    pub(crate) fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Records a stage failure (the first one wins) and aborts every stage.
    pub(crate) fn fail(&self, stage: usize, failure: Failure) {
        {
            let mut end = self.end();
            if end.failure.is_none() {
                end.failure_text = Some(format!("stage `{}`: {failure}", self.stages[stage].name));
                end.failure = Some((stage, failure));
            }
        }
        self.broadcast(Control::Abort);
    }

    /// Records a failure that ends only the merge input its stage's branch feeds;
    /// the pipeline goes on.
    pub(crate) fn contain(&self, stage: usize, failure: Failure) {
        self.end().contained.push((stage, failure));
    }

    /// Stops every stage now.
    pub(crate) fn abort(&self) {
        self.end().aborted = true;
        self.broadcast(Control::Abort);
    }

    /// Asks the sources to end their streams; what is in flight drains.
    pub(crate) fn shutdown(&self) {
        {
            let mut end = self.end();
            if end.shutdown_from.is_none() {
                end.shutdown_from = Some(self.delivered());
            }
        }
        self.broadcast(Control::Shutdown);
    }

    /// The graceful shutdown ran out of time: abort what is left.
    pub(crate) fn deadline_exceeded(&self) {
        if self.is_finished() {
            return;
        }
        self.end().deadline_exceeded = true;
        self.broadcast(Control::Abort);
    }

    /// Whether a supervised restart of a stateful stage stops the pipeline, to be
    /// restored from its last checkpoint ([`OnStateLoss::RollBack`]).
    ///
    /// [`OnStateLoss::RollBack`]: crate::checkpoint::OnStateLoss::RollBack
    pub(crate) fn rolls_back_state(&self) -> bool {
        self.checkpoints
            .as_ref()
            .is_some_and(|c| c.config().state_loss() == crate::checkpoint::OnStateLoss::RollBack)
    }

    /// Whether the pipeline checkpoints.
    pub(crate) fn checkpointed(&self) -> bool {
        self.checkpoints.is_some()
    }

    /// Whether the pipeline is failing, aborting or shutting down.
    pub(crate) fn is_ending(&self) -> bool {
        let end = self.end();
        end.failure.is_some() || end.aborted || end.shutdown_from.is_some()
    }

    /// Stage `stage` passed checkpoint barrier `id` with `snapshot`.
    pub(crate) fn checkpoint_ack(
        &self,
        stage: usize,
        id: u64,
        snapshot: crate::checkpoint::StageAck,
        timing: crate::checkpoint::AckTiming,
    ) {
        if let Some(c) = &self.checkpoints {
            c.ack(self, stage, id, snapshot, timing);
        }
    }

    /// The writer thread is done with checkpoint `id`.
    pub(crate) fn checkpoint_written(
        &self,
        id: u64,
        result: Result<(), crate::checkpoint::CheckpointError>,
        info: crate::checkpoint::CheckpointInfo,
        waiters: Vec<
            oneshot::Sender<
                Result<crate::checkpoint::CheckpointInfo, crate::checkpoint::CheckpointError>,
            >,
        >,
    ) {
        if let Some(c) = &self.checkpoints {
            c.written(self, id, result, info, waiters);
        }
    }

    /// Too many checkpoints in a row failed: the pipeline fails with the last
    /// error, charged to its first stage.
    pub(crate) fn checkpoints_gave_up(&self, err: &crate::checkpoint::CheckpointError) {
        let failure = Failure::error(
            weir_supervisor::ErrorClass::ResourceExhausted,
            format!("checkpoints keep failing: {err}"),
        );
        self.fail(0, failure);
    }

    /// Sends `msg` to stage `stage`.
    pub(crate) fn control(&self, stage: usize, msg: Control) {
        if let Some(controls) = self.controls.get() {
            // A control message, never elements (see `broadcast`).
            controls[stage].do_send(msg);
        }
    }

    /// Sends `msg` to every stage.
    pub(crate) fn broadcast_control(&self, msg: Control) {
        self.broadcast(msg);
    }

    /// The restart strategy in force.
    pub(crate) fn strategy(&self) -> RestartStrategy {
        *self.strategy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the restart strategy (a reloaded policy file).
    pub(crate) fn set_strategy(&self, strategy: RestartStrategy) {
        *self.strategy.lock().unwrap_or_else(PoisonError::into_inner) = strategy;
    }

    /// The siblings that restart with stage `failed` under the strategy in force,
    /// over the graph's topology: none (one for one), every other stage (one for
    /// all), or every stage downstream of it (rest for one).
    pub(crate) fn siblings(&self, failed: usize) -> Vec<usize> {
        match self.strategy() {
            RestartStrategy::OneForOne => Vec::new(),
            RestartStrategy::OneForAll => (0..self.stages.len()).filter(|&i| i != failed).collect(),
            RestartStrategy::RestForOne => self.downstream.get(failed).cloned().unwrap_or_default(),
        }
    }

    /// Stage `failed` restarted: restart the siblings the strategy names with it.
    pub(crate) fn restart_siblings(&self, failed: usize) {
        let Some(controls) = self.controls.get() else {
            return;
        };
        for index in self.siblings(failed) {
            // A control message, never elements: `do_send` so that a full
            // mailbox cannot refuse it (see `broadcast`).
            controls[index].do_send(Control::Restart);
        }
    }

    fn broadcast(&self, msg: Control) {
        if let Some(controls) = self.controls.get() {
            for control in controls {
                // Control messages are few and must not be refused: `do_send` is
                // right here (it never carries elements). A closed mailbox belongs to
                // a stage that already stopped.
                control.do_send(msg);
            }
        }
    }

    fn delivered(&self) -> u64 {
        self.stages
            .iter()
            .filter(|s| s.is_sink)
            .map(|s| s.completed.load(Relaxed))
            .sum()
    }

    /// Restarts within the last `window`, over every stage.
    pub(crate) fn recent_restarts(&self, window: std::time::Duration) -> usize {
        let since = Instant::now().checked_sub(window).unwrap_or(self.started);
        self.restart_history.since(since)
    }

    /// The first failure, as text (`stage `name`: error`), if the pipeline failed.
    pub(crate) fn failure_text(&self) -> Option<String> {
        self.end().failure_text.clone()
    }

    /// The failures that ended only a merge input so far.
    pub(crate) fn contained_failures(&self) -> Vec<ContainedFailure> {
        self.end()
            .contained
            .iter()
            .map(|(index, failure)| ContainedFailure {
                stage: self.stages[*index].name.clone(),
                error: failure.to_string(),
            })
            .collect()
    }

    /// Keeps what stats and health show from the events: breaker states, last
    /// errors, restart times.
    fn observe(&self, event: &SupervisionEvent) {
        let stage = |name: &str| self.stages.iter().find(|s| s.name == name);
        match event {
            SupervisionEvent::BreakerOpened { stage: name, .. } => {
                if let Some(s) = stage(name) {
                    BreakerState::Open.store(&s.breaker);
                }
            }
            SupervisionEvent::BreakerHalfOpened { stage: name, .. } => {
                if let Some(s) = stage(name) {
                    BreakerState::HalfOpen.store(&s.breaker);
                }
            }
            SupervisionEvent::BreakerClosed { stage: name, .. } => {
                if let Some(s) = stage(name) {
                    BreakerState::Closed.store(&s.breaker);
                }
            }
            SupervisionEvent::StageFailed {
                stage: name, error, ..
            } => {
                if let Some(s) = stage(name) {
                    *s.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.clone());
                }
            }
            SupervisionEvent::StageRestarted { .. } => self.restart_history.record(Instant::now()),
            _ => {}
        }
    }

    /// Publishes a supervision event to the subscribers, if any. Never blocks.
    pub(crate) fn publish(&self, event: SupervisionEvent) {
        self.observe(&event);
        trace_event(&event);
        if let Some(tx) = self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            // No subscriber is not an error.
            let _ = tx.send(event);
        }
    }

    /// A new subscription, seeing events from now on (nothing once completed).
    pub(crate) fn subscribe(&self) -> Option<broadcast::Receiver<SupervisionEvent>> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(broadcast::Sender::subscribe)
    }

    /// A stage's arbiter went away under it.
    pub(crate) fn runtime_lost(&self) {
        self.end().runtime_lost = true;
    }

    /// A stage's actor started: tells the subscribers.
    pub(crate) fn stage_started(&self, stage: &StageShared) {
        self.publish(SupervisionEvent::StageStarted {
            pipeline: self.name.clone(),
            stage: stage.name.clone(),
        });
    }

    /// A stage's actor stopped and recorded its final state: tells the subscribers,
    /// then counts it off (the last one completes the pipeline).
    pub(crate) fn stage_ended(
        &self,
        stage: &StageShared,
        reason: weir_supervisor::StopReason,
        ran_for: std::time::Duration,
    ) {
        self.publish(SupervisionEvent::StageStopped {
            pipeline: self.name.clone(),
            stage: stage.name.clone(),
            reason,
            ran_for,
        });
        if let Some(c) = &self.checkpoints {
            c.stopped(self, stage.index, reason);
        }
        self.stage_stopped();
    }

    /// Called by each stage once it has stopped; the last one completes the pipeline.
    fn stage_stopped(&self) {
        if self.live.fetch_sub(1, SeqCst) != 1 {
            return;
        }
        if let Some(c) = &self.checkpoints {
            // Every stage ended on its own: their final states are a consistent
            // checkpoint (written before the handle learns of the end).
            let consistent = {
                let end = self.end();
                end.failure.is_none() && !end.aborted && !end.deadline_exceeded && !end.runtime_lost
            };
            c.pipeline_ended(self, consistent);
        }
        let (report, failure) = self.final_report();
        let runtime_lost = self.end().runtime_lost;
        // The last sample, with the final counts, before anyone is told.
        if let Some(sampler) = self.sampler.get() {
            sampler.sample(self);
        }
        // Every stage has published its last event: end the subscriptions.
        self.events.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(tx) = self.done.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(Done {
                report,
                failure,
                runtime_lost,
            });
        }
    }

    fn final_report(&self) -> (Report, Option<Failure>) {
        let stages: Vec<StageReport> = self
            .stages
            .iter()
            .map(|s| StageReport::finalize(s))
            .collect();
        let delivered: u64 = stages
            .iter()
            .filter(|s| s.is_sink)
            .map(|s| s.completed)
            .sum();
        let mut end = self.end();
        let failure = end.failure.take();
        let drained = end.shutdown_from.map(|from| delivered.saturating_sub(from));
        let outcome = if let Some((index, failure)) = &failure {
            Outcome::Failed {
                stage: self.stages[*index].name.clone(),
                error: failure.to_string(),
            }
        } else if end.deadline_exceeded {
            Outcome::DeadlineExceeded {
                drained: drained.unwrap_or(0),
            }
        } else if end.aborted {
            Outcome::Aborted
        } else if let Some(drained) = drained {
            Outcome::Drained { drained }
        } else {
            Outcome::Completed
        };
        let contained = end
            .contained
            .iter()
            .map(|(index, failure)| ContainedFailure {
                stage: self.stages[*index].name.clone(),
                error: failure.to_string(),
            })
            .collect();
        let report = Report {
            pipeline: self.name.clone(),
            outcome,
            elapsed: self.uptime(),
            stages,
            contained,
            checkpoint: self
                .checkpoints
                .as_ref()
                .map(crate::checkpoint::Coordinator::stats),
        };
        (report, failure.map(|(_, f)| f))
    }
}
