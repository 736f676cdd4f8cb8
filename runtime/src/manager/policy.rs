//! [`RestartPolicy`] (whether, how often and how soon a managed pipeline is
//! rebuilt) and [`OnEscalation`] (what the manager does when one gives up).

use std::time::Duration;

use weir_supervisor::policy::{BackoffConfig, ConfigError, RestartIntensity, RestartType};

/// How [`PipelineManager`](super::PipelineManager) keeps one pipeline alive: the
/// pipeline's Erlang/OTP child spec.
///
/// The [`RestartType`] means, for a whole pipeline:
///
/// | type | after a failed run | after a run that ended on its own |
/// |---|---|---|
/// | `permanent` | rebuilt and run again | rebuilt and run again |
/// | `transient` (default) | rebuilt and run again | ends for good |
/// | `temporary` | ends for good (failed) | ends for good |
///
/// A run *fails* when a stage fails it (the run's
/// [`PipelineError::StageFailed`](crate::PipelineError::StageFailed)) or when the
/// factory cannot build the next run. A run *ends on its own* when its sources
/// ended and everything drained, or someone shut it down or aborted it through
/// its [`PipelineController`](crate::PipelineController) directly. A pipeline
/// stopped through the manager ([`stop`](super::PipelineManager::stop),
/// [`shutdown_all`](super::PipelineManager::shutdown_all)) or whose runtime
/// went away is never restarted.
///
/// Every restart counts against the [`RestartIntensity`] (permanent restarts
/// after a normal end too, as in OTP); the restart that would exceed it is
/// refused and the pipeline **escalates** (see [`OnEscalation`]). Before each
/// restart the manager waits [`Backoff::delay`](weir_supervisor::policy::Backoff::delay)
/// of the number of earlier restarts in the window: the first restart after a
/// quiet period is immediate, the next ones wait `initial`, `initial *
/// multiplier`, … up to `max`. Timing follows tokio's clock (paused time in
/// tests).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_runtime::manager::RestartPolicy;
/// use weir_supervisor::policy::{BackoffConfig, RestartIntensity, RestartType};
///
/// // At most 5 restarts a minute, 1 s doubling to 30 s between them.
/// let policy = RestartPolicy::transient()
///     .intensity(RestartIntensity::new(5, Duration::from_secs(60)))
///     .backoff(BackoffConfig::new(Duration::from_secs(1), Duration::from_secs(30)));
/// assert_eq!(policy.restart, RestartType::Transient);
/// assert!(policy.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartPolicy {
    /// Which ends of a run restart the pipeline.
    pub restart: RestartType,
    /// How many restarts within what window before the pipeline escalates
    /// (default 10 within 60 s).
    pub intensity: RestartIntensity,
    /// How long to wait before a restart (default 50 ms doubling to 5 s, 10 %
    /// jitter).
    pub backoff: BackoffConfig,
}

impl RestartPolicy {
    /// A policy of restart type `restart`, with the default intensity and backoff.
    pub fn new(restart: RestartType) -> Self {
        RestartPolicy {
            restart,
            intensity: RestartIntensity::default(),
            backoff: BackoffConfig::default(),
        }
    }

    /// Restarted after every end of a run (see the table above).
    pub fn permanent() -> Self {
        RestartPolicy::new(RestartType::Permanent)
    }

    /// Restarted after a failed run only. The default.
    pub fn transient() -> Self {
        RestartPolicy::new(RestartType::Transient)
    }

    /// Never restarted: what [`PipelineManager::start`](super::PipelineManager::start)
    /// uses.
    pub fn temporary() -> Self {
        RestartPolicy::new(RestartType::Temporary)
    }

    /// Sets the restart intensity. Size `within` to cover a few backoff delays,
    /// so that a crash loop slowed by backoff still trips it.
    pub fn intensity(mut self, intensity: RestartIntensity) -> Self {
        self.intensity = intensity;
        self
    }

    /// Sets the backoff between restarts. Keep `max` below the time a service
    /// can be without the pipeline before it should act on its own.
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = backoff;
        self
    }

    /// Checks the intensity and the backoff.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of [`RestartIntensity::validate`] or
    /// [`BackoffConfig::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_runtime::manager::RestartPolicy;
    /// use weir_supervisor::policy::RestartIntensity;
    ///
    /// let policy = RestartPolicy::permanent().intensity(RestartIntensity::new(3, Duration::ZERO));
    /// assert_eq!(policy.validate().unwrap_err().to_string(), "within_ms: must be greater than 0");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.intensity.validate()?;
        self.backoff.validate()
    }

    /// Whether a run that ended this way (`failed` or on its own) is followed by
    /// another.
    pub(crate) fn restarts_after(&self, failed: bool) -> bool {
        match self.restart {
            RestartType::Permanent => true,
            RestartType::Transient => failed,
            RestartType::Temporary => false,
        }
    }
}

impl Default for RestartPolicy {
    /// [`transient`](Self::transient).
    fn default() -> Self {
        RestartPolicy::transient()
    }
}

/// What a [`PipelineManager`](super::PipelineManager) does when one of its
/// pipelines escalates (needed a restart past its intensity).
///
/// Either way the escalating pipeline is marked
/// [`Escalated`](super::PipelineState::Escalated), ends for good, and a
/// [`ManagerEvent::Escalated`](super::ManagerEvent::Escalated) is published
/// first. OTP's answer — the supervisor itself dies, and its own supervisor
/// decides — is [`StopAll`](Self::StopAll) plus the service exiting on the event.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_runtime::manager::{OnEscalation, PipelineManager};
///
/// let manager = PipelineManager::new()
///     .on_escalation(OnEscalation::StopAll { deadline: Duration::from_secs(10) });
/// assert_eq!(manager.escalation(), OnEscalation::StopAll { deadline: Duration::from_secs(10) });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnEscalation {
    /// The other pipelines keep running; the service decides what to do from the
    /// event. The default: one broken feed does not take the others down.
    #[default]
    KeepOthers,
    /// Every other pipeline is stopped as by
    /// [`stop`](super::PipelineManager::stop): it drains within `deadline` and
    /// is not restarted.
    StopAll {
        /// The drain deadline each pipeline gets.
        deadline: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_ends_restart() {
        let table = [
            (RestartPolicy::permanent(), true, true),
            (RestartPolicy::transient(), true, false),
            (RestartPolicy::temporary(), false, false),
        ];
        for (policy, after_failure, after_end) in table {
            assert_eq!(policy.restarts_after(true), after_failure, "{policy:?}");
            assert_eq!(policy.restarts_after(false), after_end, "{policy:?}");
        }
        assert_eq!(RestartPolicy::default(), RestartPolicy::transient());
    }

    #[test]
    fn a_bad_backoff_is_rejected() {
        let policy = RestartPolicy::transient().backoff(BackoffConfig::default().jitter(2.0));
        assert_eq!(policy.validate().unwrap_err().key(), Some("jitter"));
    }
}
