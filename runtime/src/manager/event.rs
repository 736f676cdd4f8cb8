//! [`ManagerEvent`]: what the manager did to its pipelines, and [`ManagerEvents`],
//! a subscription to them.

use std::time::Duration;

use tokio::sync::broadcast;

use super::Ended;
use crate::pipeline::EventError;

/// How many events a subscriber may fall behind before it misses some.
pub(super) const MANAGER_EVENT_BUFFER: usize = 256;

/// Something the [`PipelineManager`](super::PipelineManager) did to one of its
/// pipelines: the supervision events one level above the stages'
/// [`SupervisionEvent`](crate::SupervisionEvent)s.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ManagerEvent {
    /// A run of `pipeline` ended and the manager rebuilt it from its factory and
    /// started it again, after waiting `delay`.
    PipelineRestarted {
        /// The pipeline.
        pipeline: String,
        /// Restarts so far, this one included (1 for the first).
        restarts: u32,
        /// How the previous run ended (its report, and its error if it failed).
        after: Ended,
        /// The backoff waited before this restart.
        delay: Duration,
    },
    /// `pipeline` needed a restart past its
    /// [`RestartIntensity`](weir_supervisor::policy::RestartIntensity): the
    /// manager gave up on it, marked it
    /// [`Escalated`](super::PipelineState::Escalated), and applies its
    /// [`OnEscalation`](super::OnEscalation) right after publishing this.
    Escalated {
        /// The pipeline.
        pipeline: String,
        /// The restarts it had in all.
        restarts: u32,
        /// The error of the last run, if it failed (a permanent pipeline can
        /// escalate by ending on its own too often).
        last_error: Option<String>,
        /// How the last run ended.
        last: Ended,
    },
    /// `pipeline` ended for good without escalating: its policy does not restart
    /// after this end, or the manager stopped it.
    PipelineEnded {
        /// The pipeline.
        pipeline: String,
        /// How its last run ended.
        ended: Ended,
    },
}

impl ManagerEvent {
    /// The pipeline the event is about.
    pub fn pipeline(&self) -> &str {
        match self {
            ManagerEvent::PipelineRestarted { pipeline, .. }
            | ManagerEvent::Escalated { pipeline, .. }
            | ManagerEvent::PipelineEnded { pipeline, .. } => pipeline,
        }
    }
}

/// A subscription to a manager's [`ManagerEvent`]s, from
/// [`PipelineManager::subscribe`](super::PipelineManager::subscribe): the events
/// from then on.
///
/// Events never slow the manager down: a subscriber that falls more than 256
/// events behind is told how many it missed ([`EventError::Lagged`]).
///
/// # Examples
///
/// ```
/// use weir_runtime::manager::{ManagerEvent, PipelineManager};
///
/// async fn watch(manager: PipelineManager) {
///     let mut events = manager.subscribe();
///     while let Ok(event) = events.recv().await {
///         if let ManagerEvent::Escalated { pipeline, last_error, .. } = event {
///             eprintln!("{pipeline} gave up: {last_error:?}");
///             std::process::exit(1);
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct ManagerEvents {
    rx: broadcast::Receiver<ManagerEvent>,
}

impl ManagerEvents {
    pub(super) fn new(rx: broadcast::Receiver<ManagerEvent>) -> Self {
        ManagerEvents { rx }
    }

    /// The next event, waiting for one.
    ///
    /// # Errors
    ///
    /// [`EventError::Ended`] once every clone of the manager is gone and every
    /// pipeline's supervision has ended; [`EventError::Lagged`] if events were
    /// skipped.
    pub async fn recv(&mut self) -> Result<ManagerEvent, EventError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Closed => EventError::Ended,
            broadcast::error::RecvError::Lagged(n) => EventError::Lagged(n),
        })
    }

    /// The next event if one is buffered now.
    pub fn try_recv(&mut self) -> Option<Result<ManagerEvent, EventError>> {
        match self.rx.try_recv() {
            Ok(event) => Some(Ok(event)),
            Err(broadcast::error::TryRecvError::Empty) => None,
            Err(broadcast::error::TryRecvError::Closed) => Some(Err(EventError::Ended)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(EventError::Lagged(n))),
        }
    }
}
