//! [`Running`]: the handle of a started pipeline, and its cloneable
//! [`PipelineController`].

use crate::observe::{Health, HealthPolicy, verdict};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::events::Events;
use super::output::OutputReceiver;
use super::report::{Outcome, Report};
use super::shared::{Done, PipelineShared};
use super::stats::PipelineStats;
use crate::error::PipelineError;

/// What a pipeline that ended without failing hands back.
#[derive(Debug)]
pub struct Completion<R> {
    /// The sink's result (`Vec<T>` for `collect`, `()` for `for_each`).
    pub output: R,
    /// Final counts per stage.
    pub report: Report,
}

/// A running pipeline.
///
/// Await it (or call [`join`](Self::join) or [`wait`](Self::wait)) for its
/// [`Completion`]; stop it early with [`shutdown`](Self::shutdown) or
/// [`abort`](Self::abort); watch it with [`stats`](Self::stats). Dropping the handle
/// does not stop the pipeline; use a [`PipelineController`] to control it from
/// elsewhere.
#[must_use = "dropping a Running detaches the pipeline: await it, join it or keep its controller"]
pub struct Running<R> {
    controller: PipelineController,
    done: oneshot::Receiver<Done>,
    output: OutputReceiver<R>,
}

impl<R> std::fmt::Debug for Running<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("pipeline", &self.controller.name())
            .finish_non_exhaustive()
    }
}

/// Controls a running pipeline from anywhere: cloneable, `Send` and `Sync`.
#[derive(Debug, Clone)]
pub struct PipelineController {
    pub(crate) shared: Arc<PipelineShared>,
}

impl PipelineController {
    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A live snapshot of every stage.
    pub fn stats(&self) -> PipelineStats {
        PipelineStats::snapshot(&self.shared)
    }

    /// The health verdict under the default [`HealthPolicy`] (see
    /// [`health_with`](Self::health_with)).
    pub fn health(&self) -> Health {
        self.health_with(&HealthPolicy::default())
    }

    /// The health verdict: [`Health::Failing`] when the pipeline failed;
    /// [`Health::Degraded`] when a circuit breaker is open or half-open, a stage is
    /// stalled, more than `policy.max_restarts` restarts happened within
    /// `policy.window`, or a merge input ended on a failure; otherwise
    /// [`Health::Healthy`]. Each reason names the stage.
    pub fn health_with(&self, policy: &HealthPolicy) -> Health {
        let stats = self.stats();
        verdict(&stats, policy, self.shared.recent_restarts(policy.window))
    }

    /// True once every stage has stopped.
    pub fn is_finished(&self) -> bool {
        self.shared.is_finished()
    }

    /// Starts a graceful shutdown: the sources stop taking in elements (an ingress
    /// stops accepting but still emits what it already accepted), everything in
    /// flight drains to the sinks, and the pipeline completes with
    /// [`Outcome::Drained`]. Whatever has not drained when `deadline` passes is
    /// abandoned ([`Outcome::DeadlineExceeded`]).
    ///
    /// Choose the deadline from the slowest sink: capacity of the path × the sink's
    /// time per element is the longest a full pipeline can take to drain.
    pub fn shutdown(&self, deadline: Duration) {
        self.shared.shutdown();
        let shared = Arc::clone(&self.shared);
        self.shared.timer_arbiter.spawn(async move {
            actix_rt::time::sleep(deadline).await;
            shared.deadline_exceeded();
        });
    }

    /// Stops every stage now. Elements in flight are abandoned and counted, per
    /// stage, in the report.
    pub fn abort(&self) {
        self.shared.abort();
    }

    /// Takes a checkpoint now: barrier `n` is injected at every source, and the
    /// future resolves once checkpoint `n` is durable in the checkpoint directory
    /// (or failed). The pipeline does not stop for it.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::NotEnabled`](crate::checkpoint::CheckpointError::NotEnabled)
    /// for a pipeline without a checkpoint config; otherwise why checkpoint `n`
    /// failed (a state that does not serialize, a write error, the pipeline ending
    /// first).
    pub fn checkpoint(
        &self,
    ) -> impl Future<
        Output = Result<crate::checkpoint::CheckpointInfo, crate::checkpoint::CheckpointError>,
    > + Send
    + 'static {
        let rx = match &self.shared.checkpoints {
            Some(c) => {
                let (tx, rx) = oneshot::channel();
                c.trigger(&self.shared, Some(tx), false);
                Some(rx)
            }
            None => None,
        };
        async move {
            let Some(rx) = rx else {
                return Err(crate::checkpoint::CheckpointError::NotEnabled);
            };
            rx.await
                .unwrap_or(Err(crate::checkpoint::CheckpointError::Ended {
                    checkpoint: 0,
                    reason: "the pipeline was dropped".into(),
                }))
        }
    }

    /// Subscribes to the pipeline's supervision events from now on. Subscribe on the
    /// [`Runnable`](crate::Runnable) to see them all. Once the pipeline has ended
    /// the subscription yields nothing but [`EventError::Ended`](crate::EventError::Ended).
    pub fn subscribe(&self) -> Events {
        match self.shared.subscribe() {
            Some(rx) => Events::new(rx),
            None => {
                let (tx, rx) = tokio::sync::broadcast::channel(1);
                drop(tx);
                Events::new(rx)
            }
        }
    }
}

impl<R: Send + 'static> Running<R> {
    pub(crate) fn new(
        shared: Arc<PipelineShared>,
        done: oneshot::Receiver<Done>,
        output: OutputReceiver<R>,
    ) -> Self {
        Running {
            controller: PipelineController { shared },
            done,
            output,
        }
    }

    /// A cloneable controller for this pipeline.
    pub fn controller(&self) -> PipelineController {
        self.controller.clone()
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        self.controller.name()
    }

    /// A live snapshot of every stage.
    pub fn stats(&self) -> PipelineStats {
        self.controller.stats()
    }

    /// Takes a checkpoint now (see [`PipelineController::checkpoint`]).
    ///
    /// # Errors
    ///
    /// As [`PipelineController::checkpoint`].
    pub fn checkpoint(
        &self,
    ) -> impl Future<
        Output = Result<crate::checkpoint::CheckpointInfo, crate::checkpoint::CheckpointError>,
    > + Send
    + 'static {
        self.controller.checkpoint()
    }

    /// The health verdict (see [`PipelineController::health`]).
    pub fn health(&self) -> Health {
        self.controller.health()
    }

    /// Subscribes to the pipeline's supervision events from now on (see
    /// [`PipelineController::subscribe`]).
    pub fn subscribe(&self) -> Events {
        self.controller.subscribe()
    }

    /// Waits for the pipeline to end.
    ///
    /// # Errors
    ///
    /// [`PipelineError::StageFailed`] if a stage failed (with the report), or
    /// [`PipelineError::RuntimeStopped`] if the runtime went away first.
    pub async fn join(self) -> Result<Completion<R>, PipelineError> {
        let name = self.controller.name().to_owned();
        let lost = || PipelineError::RuntimeStopped {
            pipeline: name.clone(),
        };
        let Done {
            report,
            failure,
            runtime_lost,
        } = self.done.await.map_err(|_| lost())?;
        if let Some(failure) = failure {
            let stage = match &report.outcome {
                Outcome::Failed { stage, .. } => stage.clone(),
                _ => String::new(),
            };
            return Err(PipelineError::StageFailed {
                stage,
                failure,
                report: Box::new(report),
            });
        }
        if runtime_lost {
            return Err(lost());
        }
        let output = self.output.await.ok_or_else(lost)?;
        Ok(Completion { output, report })
    }

    /// Blocks the current thread until the pipeline ends; for synchronous `main`s and
    /// tests. Inside async code, `.await` the handle instead.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join).
    ///
    /// # Panics
    ///
    /// If called on an actix arbiter thread, which would block the thread the
    /// pipeline may need to make progress.
    pub fn wait(self) -> Result<Completion<R>, PipelineError> {
        assert!(
            actix_rt::System::try_current().is_none(),
            "Running::wait blocks the thread; on an actix thread, .await the pipeline instead"
        );
        futures::executor::block_on(self.join())
    }

    /// Shuts down gracefully within `deadline` (see
    /// [`PipelineController::shutdown`]) and waits for the end.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join).
    pub async fn shutdown(self, deadline: Duration) -> Result<Completion<R>, PipelineError> {
        self.controller.shutdown(deadline);
        self.join().await
    }

    /// Stops every stage now and waits for the report of what was abandoned where.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join); a stage failure that happened before the abort is
    /// still reported as a failure.
    pub async fn abort(self) -> Result<Completion<R>, PipelineError> {
        self.controller.abort();
        self.join().await
    }
}

impl<R: Send + 'static> IntoFuture for Running<R> {
    type Output = Result<Completion<R>, PipelineError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.join())
    }
}
