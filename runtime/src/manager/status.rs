//! [`PipelineStatus`]: where a managed pipeline stands in its supervision.

use weir_supervisor::policy::RestartType;

/// Where a managed pipeline stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum PipelineState {
    /// A run is in progress.
    Running,
    /// A run ended and the manager waits out the backoff before the next.
    Restarting,
    /// Ended for good on its own, and its policy does not restart it.
    Completed,
    /// Ended for good by failing, and its policy does not restart it (a
    /// temporary pipeline, or one whose runtime went away).
    Failed,
    /// Failed for good: it needed a restart past its intensity.
    Escalated,
    /// Stopped through the manager.
    Stopped,
}

impl PipelineState {
    /// True once the pipeline has ended for good (no run, no restart to come).
    pub fn is_final(&self) -> bool {
        !matches!(self, PipelineState::Running | PipelineState::Restarting)
    }
}

/// A managed pipeline's supervision, from
/// [`PipelineManager::status`](super::PipelineManager::status).
///
/// # Examples
///
/// ```
/// use weir_runtime::manager::{PipelineManager, PipelineState};
///
/// fn restarting(manager: &PipelineManager) -> Vec<String> {
///     manager
///         .status()
///         .into_iter()
///         .filter(|(_, s)| s.state == PipelineState::Restarting || s.restarts > 0)
///         .map(|(name, s)| format!("{name}: {} restarts, last error {:?}", s.restarts, s.last_error))
///         .collect()
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PipelineStatus {
    /// Where it stands.
    pub state: PipelineState,
    /// Its restart type.
    pub restart: RestartType,
    /// How many times the manager restarted it.
    pub restarts: u32,
    /// The error of the last failed run, if any run failed.
    pub last_error: Option<String>,
}
