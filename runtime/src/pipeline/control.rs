//! Operator controls on a running pipeline's stages: pause and resume a source,
//! reset a circuit breaker, resize a pool. They change how the pipeline runs,
//! never what it owes: nothing is dropped, duplicated or reordered by them.

use std::future::Future;
use std::sync::atomic::Ordering::SeqCst;

use super::running::PipelineController;
use crate::observe::BreakerState;
use crate::reconfig::{Applied, ReconfigError};
use crate::stage::message::Control;
use crate::stage::shared::StageShared;

/// Why a control was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The pipeline has no stage of that name.
    #[error("pipeline `{pipeline}` has no stage `{stage}`")]
    NoSuchStage {
        /// The pipeline.
        pipeline: String,
        /// The name asked for.
        stage: String,
    },
    /// Pausing and resuming apply to sources only.
    #[error("stage `{stage}` is not a source: only sources can be paused")]
    NotASource {
        /// The stage.
        stage: String,
    },
    /// The stage was built without a circuit breaker.
    #[error("stage `{stage}` has no circuit breaker")]
    NoBreaker {
        /// The stage.
        stage: String,
    },
    /// The stage is no resizable pool's dispatch (see
    /// [`Pool::resizable`](crate::Pool::resizable)).
    #[error("stage `{stage}` is not a resizable pool (see Pool::resizable)")]
    NotResizable {
        /// The stage.
        stage: String,
    },
    /// Every stage of the pipeline has stopped.
    #[error("pipeline `{pipeline}` has finished")]
    Finished {
        /// The pipeline.
        pipeline: String,
    },
    /// The pool refused the size (outside `1..=max_replicas`), or its dispatch
    /// stopped.
    #[error(transparent)]
    Resize(ReconfigError),
}

/// What the controls can act on in a pipeline, by stage name (see
/// [`PipelineController::controllable`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Controllable {
    /// Sources: [`pause_source`](PipelineController::pause_source) and
    /// [`resume_source`](PipelineController::resume_source).
    pub sources: Vec<String>,
    /// Stages built with a circuit breaker:
    /// [`reset_breaker`](PipelineController::reset_breaker).
    pub breakers: Vec<String>,
    /// Resizable pools' dispatch stages:
    /// [`resize_pool`](PipelineController::resize_pool).
    pub pools: Vec<String>,
    /// Whether the pipeline checkpoints:
    /// [`checkpoint`](PipelineController::checkpoint).
    pub checkpoints: bool,
}

impl PipelineController {
    /// The stages each control applies to, in stage order.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::PipelineController;
    ///
    /// fn describe(controller: &PipelineController) -> String {
    ///     let c = controller.controllable();
    ///     format!("sources {:?}, breakers {:?}, pools {:?}", c.sources, c.breakers, c.pools)
    /// }
    /// ```
    pub fn controllable(&self) -> Controllable {
        let topology = self.shared.topology.get();
        let has_breaker = |i: usize| {
            topology
                .and_then(|t| t.nodes.get(i))
                .and_then(|n| n.supervision)
                .is_some_and(|sup| sup.breaker)
        };
        let mut c = Controllable {
            checkpoints: self.shared.checkpoints.is_some(),
            ..Controllable::default()
        };
        for s in &self.shared.stages {
            if s.is_source {
                c.sources.push(s.name.clone());
            }
            if has_breaker(s.index) {
                c.breakers.push(s.name.clone());
            }
            if s.resizer.get().is_some() {
                c.pools.push(s.name.clone());
            }
        }
        c
    }

    fn stage_named(&self, stage: &str) -> Result<&StageShared, ControlError> {
        if self.shared.is_finished() {
            return Err(ControlError::Finished {
                pipeline: self.shared.name.clone(),
            });
        }
        self.shared
            .stages
            .iter()
            .find(|s| s.name == stage)
            .map(|s| &**s)
            .ok_or_else(|| ControlError::NoSuchStage {
                pipeline: self.shared.name.clone(),
                stage: stage.to_owned(),
            })
    }

    fn source_named(&self, stage: &str) -> Result<&StageShared, ControlError> {
        let s = self.stage_named(stage)?;
        if s.is_source {
            Ok(s)
        } else {
            Err(ControlError::NotASource {
                stage: stage.to_owned(),
            })
        }
    }

    /// Pauses source `stage`: from its next pass it takes nothing in (an ingress
    /// stops taking from its channel, so its senders wait; a file source stops
    /// reading) until [`resume_source`](Self::resume_source). What it already
    /// produced flows on to the sinks, checkpoint barriers still pass it, and a
    /// [`shutdown`](Self::shutdown) still ends it. Returns whether it was running
    /// (false: it was paused already).
    ///
    /// The stall watchdog does not take the pause for a stall: the stages
    /// downstream drain and then hold nothing, and the paused source holds what
    /// it was given (an ingress's channel) on purpose.
    ///
    /// # Errors
    ///
    /// [`ControlError::NoSuchStage`], [`ControlError::NotASource`], or
    /// [`ControlError::Finished`] once the pipeline has ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::{ControlError, PipelineController};
    ///
    /// /// Holds the intake while a downstream system is in maintenance.
    /// fn hold(controller: &PipelineController) -> Result<(), ControlError> {
    ///     if controller.pause_source("ingest")? {
    ///         println!("ingest paused; in flight: {}", controller.stats().stages[0].in_flight);
    ///     }
    ///     Ok(())
    /// }
    ///
    /// fn release(controller: &PipelineController) -> Result<bool, ControlError> {
    ///     controller.resume_source("ingest")
    /// }
    /// ```
    pub fn pause_source(&self, stage: &str) -> Result<bool, ControlError> {
        let s = self.source_named(stage)?;
        let was_running = !s.paused.swap(true, SeqCst);
        self.shared.control(s.index, Control::Pause);
        Ok(was_running)
    }

    /// Resumes source `stage` after [`pause_source`](Self::pause_source). Returns
    /// whether it was paused.
    ///
    /// # Errors
    ///
    /// As [`pause_source`](Self::pause_source).
    pub fn resume_source(&self, stage: &str) -> Result<bool, ControlError> {
        let s = self.source_named(stage)?;
        let was_paused = s.paused.swap(false, SeqCst);
        // Wakes the source, whose next pass sees the flag cleared.
        self.shared.control(s.index, Control::Resume);
        Ok(was_paused)
    }

    /// Closes stage `stage`'s circuit breaker now, its failure counts cleared: an
    /// open breaker's stage takes input again on its next pass instead of at the
    /// end of the cooldown, a half-open one stops probing. The close is published
    /// as [`SupervisionEvent::BreakerClosed`](crate::SupervisionEvent::BreakerClosed)
    /// like any other. Returns the state the breaker was in (a closed one is left
    /// alone). Whether the stage has a breaker is as it was built.
    ///
    /// # Errors
    ///
    /// [`ControlError::NoSuchStage`], [`ControlError::NoBreaker`] for a stage
    /// without a breaker, [`ControlError::Finished`].
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::observe::BreakerState;
    /// use weir_runtime::{ControlError, PipelineController};
    ///
    /// /// The downstream service is back: stop waiting for the cooldown.
    /// fn service_is_back(controller: &PipelineController) -> Result<(), ControlError> {
    ///     if controller.reset_breaker("call-api")? == BreakerState::Open {
    ///         println!("breaker of call-api closed by hand");
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn reset_breaker(&self, stage: &str) -> Result<BreakerState, ControlError> {
        let s = self.stage_named(stage)?;
        if !self.controllable().breakers.contains(&s.name) {
            return Err(ControlError::NoBreaker {
                stage: stage.to_owned(),
            });
        }
        let was = BreakerState::load(&s.breaker);
        if was != BreakerState::Closed {
            self.shared.control(s.index, Control::ResetBreaker);
        }
        Ok(was)
    }

    /// Sets how many replicas of a resizable pool take elements (see
    /// [`Pool::resizable`](crate::Pool::resizable): growing takes effect at the
    /// next dispatch, shrinking lets the others finish what they have). `stage`
    /// is the pool's dispatch stage (`<pool>.dispatch`) or the pool's name. The
    /// pool's `ConfigHandle` sees the new size as if it had set it.
    ///
    /// # Errors
    ///
    /// [`ControlError::NoSuchStage`], [`ControlError::NotResizable`] for a stage
    /// that is no resizable pool, [`ControlError::Finished`], and
    /// [`ControlError::Resize`] for a size outside `1..=max_replicas` (the size in
    /// force is kept).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::{ControlError, PipelineController};
    ///
    /// /// Grows pool `parsers` (built `Pool::new(2).name("parsers").resizable(8, &handle)`).
    /// async fn grow(controller: &PipelineController) -> Result<u64, ControlError> {
    ///     let applied = controller.resize_pool("parsers", 6).await?;
    ///     Ok(applied.generation)
    /// }
    /// ```
    pub fn resize_pool(
        &self,
        stage: &str,
        replicas: usize,
    ) -> impl Future<Output = Result<Applied, ControlError>> + Send + 'static {
        let resized = self.resizer(stage).map(|r| (r.0)(replicas));
        async move { resized?.await.map_err(ControlError::Resize) }
    }

    fn resizer(&self, stage: &str) -> Result<&crate::stage::shared::Resizer, ControlError> {
        let missing = match self.stage_named(stage) {
            Ok(s) => {
                return s.resizer.get().ok_or_else(|| ControlError::NotResizable {
                    stage: stage.to_owned(),
                });
            }
            Err(missing @ ControlError::NoSuchStage { .. }) => missing,
            Err(other) => return Err(other),
        };
        // The pool's name: its dispatch is the node of that group with a resizer.
        let topology = self.shared.topology.get();
        self.shared
            .stages
            .iter()
            .filter(|s| {
                topology
                    .and_then(|t| t.nodes.get(s.index))
                    .is_some_and(|n| n.group.as_deref() == Some(stage))
            })
            .find_map(|s| s.resizer.get())
            .ok_or(missing)
    }
}
