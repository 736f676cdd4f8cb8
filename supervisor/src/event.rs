//! [`SupervisionEvent`]: what happens to stages, as a typed stream users subscribe to.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::ErrorClass;

/// Something that happened to a stage of a running pipeline.
///
/// Events are published by the stage on its arbiter, in the order they happen for
/// that stage; a failure is published before the stage (and the pipeline) stops.
/// They are observability, not data: a subscriber that falls far behind is told
/// how many it missed instead of slowing the pipeline down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SupervisionEvent {
    /// A stage's actor started on its arbiter.
    StageStarted {
        /// Pipeline name.
        pipeline: String,
        /// Stage name.
        stage: String,
    },
    /// User code in a stage panicked or returned an error.
    StageFailed {
        /// Pipeline name.
        pipeline: String,
        /// Stage name.
        stage: String,
        /// The class of the failure.
        class: ErrorClass,
        /// The failure's message.
        error: String,
        /// Position, in the stage's input stream (0-based), of the element being
        /// processed, when the operator processes elements one after another.
        element_index: Option<u64>,
        /// Which attempt at this element failed (1 for the first).
        attempt: u32,
        /// When it happened.
        #[serde(serialize_with = "serialize_millis")]
        at: SystemTime,
    },
    /// A failed element will be tried again after `delay`.
    ElementRetried {
        /// Pipeline name.
        pipeline: String,
        /// Stage name.
        stage: String,
        /// Position of the element in the stage's input stream (0-based).
        element_index: u64,
        /// The attempt that failed (1 for the first).
        attempt: u32,
        /// How long the stage waits before the next attempt.
        #[serde(serialize_with = "serialize_duration_ms")]
        delay: Duration,
    },
    /// A failed element was sent to the dead letters.
    ElementDeadLettered {
        /// Pipeline name.
        pipeline: String,
        /// Stage name.
        stage: String,
        /// Position of the element in the stage's input stream (0-based).
        element_index: u64,
        /// How many times it was tried.
        attempts: u32,
        /// The class of the last failure.
        class: ErrorClass,
        /// The last failure's message.
        error: String,
    },
    /// A failed element was dropped on the policy's request (counted as failed).
    ElementSkipped {
        /// Pipeline name.
        pipeline: String,
        /// Stage name.
        stage: String,
        /// Position of the element in the stage's input stream (0-based).
        element_index: u64,
        /// How many times it was tried.
        attempts: u32,
    },
    /// A stage was restarted after a failure; its queue, credit and pending
    /// elements were kept, and the element that failed is tried again.
    StageRestarted {
        /// Pipeline name.
        pipeline: String,
        /// Stage name.
        stage: String,
        /// Restarts of this stage within the current intensity window, this one
        /// included.
        restarts: u32,
        /// How long the stage waited before resuming.
        #[serde(serialize_with = "serialize_duration_ms")]
        delay: Duration,
    },
    /// A failure went beyond what the stage's policy handles (too many restarts,
    /// an escalating class): the pipeline fails.
    Escalated {
        /// Pipeline name.
        pipeline: String,
        /// Stage name.
        stage: String,
        /// Why.
        reason: String,
    },
    /// The stage's circuit breaker opened: the stage takes no input (or diverts it
    /// to the dead letters) until the cooldown ends.
    BreakerOpened {
        /// Pipeline name.
        pipeline: String,
        /// Stage name.
        stage: String,
        /// How long it stays open before a probe.
        #[serde(serialize_with = "serialize_duration_ms")]
        cooldown: Duration,
    },
    /// The cooldown ended: the next element is a probe.
    BreakerHalfOpened {
        /// Pipeline name.
        pipeline: String,
        /// Stage name.
        stage: String,
    },
    /// Probes succeeded: the breaker closed and elements flow again.
    BreakerClosed {
        /// Pipeline name.
        pipeline: String,
        /// Stage name.
        stage: String,
    },
    /// A stage holds input it could process (it has credit, or is a sink) but has
    /// made no progress for its stall timeout: it is stuck, not backpressured.
    /// Published once per stall; `stats()` shows `stalled` until it moves again.
    StageStalled {
        /// Pipeline name.
        pipeline: String,
        /// Stage name.
        stage: String,
        /// How long it has made no progress.
        #[serde(serialize_with = "serialize_duration_ms")]
        idle_for: Duration,
    },
    /// A stage stopped.
    StageStopped {
        /// Pipeline name.
        pipeline: String,
        /// Stage name.
        stage: String,
        /// Why.
        reason: StopReason,
        /// How long the stage ran.
        #[serde(serialize_with = "serialize_duration_ms")]
        ran_for: Duration,
    },
}

/// Why a stage stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// Its input ended (or it finished early, like `take`) and everything was sent.
    Completed,
    /// The stage after it wanted nothing more.
    Cancelled,
    /// The pipeline was aborted (by the user, a failure elsewhere, or a shutdown
    /// deadline).
    Aborted,
    /// The stage itself failed.
    Failed,
    /// Its arbiter went away with the runtime.
    RuntimeStopped,
}

impl SupervisionEvent {
    /// The stage the event is about.
    pub fn stage(&self) -> &str {
        match self {
            SupervisionEvent::StageStarted { stage, .. }
            | SupervisionEvent::StageFailed { stage, .. }
            | SupervisionEvent::ElementRetried { stage, .. }
            | SupervisionEvent::ElementDeadLettered { stage, .. }
            | SupervisionEvent::ElementSkipped { stage, .. }
            | SupervisionEvent::StageRestarted { stage, .. }
            | SupervisionEvent::Escalated { stage, .. }
            | SupervisionEvent::BreakerOpened { stage, .. }
            | SupervisionEvent::BreakerHalfOpened { stage, .. }
            | SupervisionEvent::BreakerClosed { stage, .. }
            | SupervisionEvent::StageStalled { stage, .. }
            | SupervisionEvent::StageStopped { stage, .. } => stage,
        }
    }
}

fn serialize_millis<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    s.serialize_u64(ms)
}

fn serialize_duration_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}
