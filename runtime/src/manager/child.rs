//! The engine behind a managed pipeline: its slot in the manager ([`Child`]) and
//! the task that runs it, waits for each run's end and restarts it under its
//! [`RestartPolicy`] ([`supervise`]).

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};
use weir_supervisor::policy::{Backoff, IntensityWindow};

use super::event::ManagerEvent;
use super::policy::{OnEscalation, RestartPolicy};
use super::status::{PipelineState, PipelineStatus};
use super::{Ended, Inner, ManagedPipeline};
use crate::error::{BuildError, PipelineError};
use crate::pipeline::{Completion, PipelineController, Running};
use crate::runtime::Runtime;

/// Builds the next run of a pipeline.
pub(super) type Factory<P> = Arc<dyn Fn() -> Result<P, BuildError> + Send + Sync>;

/// What the manager keeps about one pipeline; shared with its supervising task.
#[derive(Debug)]
pub(super) struct Child {
    control: Mutex<Control>,
    /// How it ended for good; the condvar wakes blocking waiters.
    ended: Mutex<Option<Ended>>,
    ended_cv: Condvar,
    /// Turns true with `ended`, for async waiters.
    done: watch::Sender<bool>,
    /// Wakes the supervising task out of a backoff when a stop is asked for.
    wake: Notify,
}

#[derive(Debug)]
struct Control {
    /// The current (or last) run's controller.
    controller: PipelineController,
    status: PipelineStatus,
    /// Set once the manager was asked to stop the pipeline: the deadline given.
    stop: Option<Duration>,
}

impl Child {
    pub(super) fn new(controller: PipelineController, policy: &RestartPolicy) -> Self {
        Child {
            control: Mutex::new(Control {
                controller,
                status: PipelineStatus {
                    state: PipelineState::Running,
                    restart: policy.restart,
                    restarts: 0,
                    last_error: None,
                },
                stop: None,
            }),
            ended: Mutex::new(None),
            ended_cv: Condvar::new(),
            done: watch::Sender::new(false),
            wake: Notify::new(),
        }
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn controller(&self) -> PipelineController {
        self.control().controller.clone()
    }

    pub(super) fn status(&self) -> PipelineStatus {
        self.control().status.clone()
    }

    /// Asks the pipeline to stop for good: the current run shuts down within
    /// `deadline`, a backoff in progress is cut short, no restart follows.
    pub(super) fn request_stop(&self, deadline: Duration) {
        let controller = {
            let mut control = self.control();
            if control.status.state.is_final() {
                return;
            }
            control.stop.get_or_insert(deadline);
            control.controller.clone()
        };
        if !controller.is_finished() {
            controller.shutdown(deadline);
        }
        // Stores a permit if the task is not waiting yet: the stop is never missed.
        self.wake.notify_one();
    }

    fn stop_requested(&self) -> bool {
        self.control().stop.is_some()
    }

    /// How it ended for good, waiting at most `timeout` (blocking).
    pub(super) fn wait(&self, timeout: Duration) -> Option<Ended> {
        let guard = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .ended_cv
            .wait_timeout_while(guard, timeout, |e| e.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.clone()
    }

    /// How it ended for good, waiting for it (async).
    pub(super) async fn join(&self) -> Ended {
        let mut done = self.done.subscribe();
        // The sender lives in `self`: `wait_for` cannot see it closed.
        let _ = done.wait_for(|d| *d).await;
        self.wait(Duration::ZERO)
            .expect("`done` turns true only after `ended` is set")
    }

    /// Records the end for good and wakes every waiter.
    fn finish(&self, ended: Ended, state: PipelineState) {
        {
            let mut control = self.control();
            control.status.state = state;
            if ended.error.is_some() {
                control.status.last_error.clone_from(&ended.error);
            }
        }
        *self.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(ended);
        self.ended_cv.notify_all();
        self.done.send_replace(true);
    }
}

/// How one run ended, and whether its runtime went away (then nothing restarts).
fn end_of<R>(result: Result<Completion<R>, PipelineError>, restarts: u32) -> (Ended, bool) {
    match result {
        Ok(done) => (
            Ended {
                report: Some(done.report),
                error: None,
                restarts,
            },
            false,
        ),
        Err(e) => {
            let lost = matches!(e, PipelineError::RuntimeStopped { .. });
            let ended = Ended {
                report: e.report().cloned(),
                error: Some(e.to_string()),
                restarts,
            };
            (ended, lost)
        }
    }
}

/// Builds a run from `factory` and starts it under `name`.
///
/// A plain function, so that the (possibly non-`Send`) pipeline never lives in
/// the supervising task's state.
pub(super) fn build<P: ManagedPipeline>(
    factory: &(dyn Fn() -> Result<P, BuildError> + Send + Sync),
    name: &str,
    runtime: &Runtime,
) -> Result<Running<P::Output>, BuildError> {
    factory()?.run_as(name, runtime)
}

/// A seed for the restart backoff's jitter: pipelines that fail together do not
/// restart in lockstep.
fn seed(name: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    hasher.finish()
}

/// Everything the supervising task of one pipeline needs.
pub(super) struct Supervisor<P: ManagedPipeline> {
    pub(super) name: String,
    pub(super) child: Arc<Child>,
    pub(super) policy: RestartPolicy,
    /// `None` for a pipeline started from a single `Runnable`/`Graph`: never
    /// restarted.
    pub(super) factory: Option<Factory<P>>,
    pub(super) runtime: Runtime,
    pub(super) events: broadcast::Sender<ManagerEvent>,
    pub(super) manager: Weak<Inner>,
}

impl<P: ManagedPipeline> Supervisor<P> {
    fn publish(&self, event: ManagerEvent) {
        // No subscriber is fine: events are for whoever listens.
        let _ = self.events.send(event);
    }

    /// Runs the pipeline to its end for good: waits for each run, decides, waits
    /// out the backoff (tokio's clock), rebuilds, and escalates past the
    /// intensity.
    pub(super) async fn run(self, first: Running<P::Output>) {
        let mut window = IntensityWindow::new(self.policy.intensity);
        let mut backoff = Backoff::new(self.policy.backoff, seed(&self.name));
        let mut restarts = 0_u32;
        // A run in progress, or a restart whose factory failed (a run that failed
        // at once).
        let mut run: Result<Running<P::Output>, Ended> = Ok(first);
        loop {
            let (ended, lost) = match run {
                Ok(running) => end_of(running.join().await, restarts),
                Err(ended) => (ended, false),
            };
            let failed = ended.error.is_some();
            if failed {
                self.child
                    .control()
                    .status
                    .last_error
                    .clone_from(&ended.error);
            }
            let Some(factory) = self.factory.as_ref() else {
                return self.end(ended, failed, lost);
            };
            if lost || self.child.stop_requested() || !self.policy.restarts_after(failed) {
                return self.end(ended, failed, lost);
            }
            let now = tokio::time::Instant::now().into_std();
            if !window.allow(now) {
                return self.escalate(ended, restarts);
            }
            let delay = backoff.delay(window.restarts(now).saturating_sub(1));
            self.child.control().status.state = PipelineState::Restarting;
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.child.wake.notified() => {}
            }
            if self.child.stop_requested() {
                return self.end(ended, failed, false);
            }
            restarts += 1;
            run = match build(&**factory, &self.name, &self.runtime) {
                Ok(running) => {
                    self.started(&running, restarts);
                    self.publish(ManagerEvent::PipelineRestarted {
                        pipeline: self.name.clone(),
                        restarts,
                        after: ended,
                        delay,
                    });
                    Ok(running)
                }
                Err(e) => {
                    self.child.control().status.restarts = restarts;
                    Err(Ended {
                        report: None,
                        error: Some(format!("the restart could not build the pipeline: {e}")),
                        restarts,
                    })
                }
            };
        }
    }

    /// A new run started: it becomes the current one; a stop asked for while it
    /// was being built applies to it at once.
    fn started(&self, running: &Running<P::Output>, restarts: u32) {
        let controller = running.controller();
        let stop = {
            let mut control = self.child.control();
            control.controller = controller.clone();
            control.status.restarts = restarts;
            control.status.state = PipelineState::Running;
            control.stop
        };
        if let Some(deadline) = stop {
            controller.shutdown(deadline);
        }
    }

    /// Ends for good without escalating.
    fn end(self, ended: Ended, failed: bool, lost: bool) {
        let state = if self.child.stop_requested() {
            PipelineState::Stopped
        } else if failed || lost {
            PipelineState::Failed
        } else {
            PipelineState::Completed
        };
        self.publish(ManagerEvent::PipelineEnded {
            pipeline: self.name.clone(),
            ended: ended.clone(),
        });
        self.child.finish(ended, state);
    }

    /// Past the intensity: publish, mark the pipeline escalated, then apply the
    /// manager's [`OnEscalation`].
    fn escalate(self, ended: Ended, restarts: u32) {
        tracing::warn!(
            target: "weir::supervision",
            pipeline = %self.name,
            restarts,
            error = ?ended.error,
            "pipeline escalated: restart intensity exceeded"
        );
        self.publish(ManagerEvent::Escalated {
            pipeline: self.name.clone(),
            restarts,
            last_error: ended.error.clone(),
            last: ended.clone(),
        });
        self.child.finish(ended, PipelineState::Escalated);
        let Some(manager) = self.manager.upgrade() else {
            return;
        };
        if let OnEscalation::StopAll { deadline } = manager.escalation() {
            for other in manager.pipelines.iter() {
                if other.key() != &self.name {
                    other.value().request_stop(deadline);
                }
            }
        }
    }
}
