//! [`SupervisionPolicy`]: everything the supervisor needs to know about one stage.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    Action, BackoffConfig, BreakerConfig, ClassActions, ConfigError, RestartIntensity, RestartType,
};
use crate::ErrorClass;

/// How one stage is supervised: the action per error class, retries and their
/// backoff, restarts and their limits, an optional circuit breaker and watchdog
/// timeouts.
///
/// Build it in code from [`Default`] with the builder methods (each named after the
/// field it sets), or load it per stage from TOML with
/// [`PolicyConfig`](super::PolicyConfig). The TOML key of each field is given in its
/// documentation; durations are integers in milliseconds there.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_supervisor::ErrorClass;
/// use weir_supervisor::policy::{
///     Action, BackoffConfig, BreakerConfig, RestartType, SupervisionPolicy, Trip,
/// };
///
/// let policy = SupervisionPolicy::default()
///     .max_attempts(5)
///     .action(ErrorClass::Permanent, Action::Skip)
///     .backoff(BackoffConfig::new(Duration::from_millis(20), Duration::from_secs(2)))
///     .restart(RestartType::Permanent)
///     .breaker(BreakerConfig::new(Trip::Consecutive(10), Duration::from_secs(30)))
///     .element_timeout(Duration::from_secs(1));
/// assert!(policy.validate().is_ok());
/// assert_eq!(policy.decide(ErrorClass::Transient, 4), Action::Retry);
/// assert_eq!(policy.decide(ErrorClass::Transient, 5), Action::DeadLetter);
/// assert_eq!(policy.decide(ErrorClass::Permanent, 1), Action::Skip);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct SupervisionPolicy {
    /// The action per error class and for exhausted elements (`[actions]`).
    pub actions: ClassActions,
    /// How many times one element may be processed in all, first try included,
    /// across retries and restarts (`max_attempts`); at least 1, default 3.
    ///
    /// Choose it from how many transient faults in a row you still call bad luck;
    /// with backoff, the time an element can spend retrying is about the sum of the
    /// first `max_attempts - 1` delays.
    pub max_attempts: u32,
    /// The delay before each retry of an element (`[backoff]`); default 50 ms doubling
    /// up to 5 s with 10 % jitter.
    pub backoff: BackoffConfig,
    /// Whether the stage is restarted at all (`restart`); default transient.
    pub restart: RestartType,
    /// How many restarts are allowed before the failure escalates (`[intensity]`);
    /// default 10 within 60 s.
    pub intensity: RestartIntensity,
    /// The delay before each restart (`[restart_backoff]`); default 100 ms doubling up
    /// to 10 s with 10 % jitter, the first restart in a quiet window being immediate.
    pub restart_backoff: BackoffConfig,
    /// The stage's circuit breaker (`[breaker]`); none by default.
    pub breaker: Option<BreakerConfig>,
    /// A stage that holds input but completes no element for this long is reported
    /// as stalled (`stall_timeout_ms`); none by default.
    ///
    /// Choose it well above the slowest legitimate element plus the largest backoff
    /// delay, or healthy retries will be reported as stalls.
    pub stall_timeout: Option<Duration>,
    /// What the stall watchdog does with a stalled stage (`on_stall`): report it
    /// (the default), restart it, or fail the pipeline. See [`StallAction`].
    pub on_stall: StallAction,
    /// An asynchronous operator call that takes longer than this fails with
    /// [`ErrorClass::Timeout`] (`element_timeout_ms`); none by default.
    ///
    /// Choose it from the operator's tail latency (a few times its p99).
    pub element_timeout: Option<Duration>,
    /// What a stage does when its dead-letter queue refuses a letter because it is
    /// full (`dead_letters_full`): escalate (the default) or backpressure.
    pub dead_letters_full: WhenDeadLettersFull,
    /// How often a backpressuring stage offers a refused letter again
    /// (`dead_letters_retry_ms`); default 100 ms.
    pub dead_letters_retry: Duration,
}

/// What the stall watchdog does with a stage that holds input it could process
/// but makes no progress for its `stall_timeout` (in TOML `on_stall = "report"`,
/// `"restart"` or `"fail"`).
///
/// A stage stuck in synchronous user code (a blocking call, a loop) is seen from
/// outside its thread; a Rust thread cannot be interrupted, so what `restart` and
/// `fail` can do differs by where the stage is stuck:
///
/// | | stuck in a step (sync user code) | idle with input (nothing completes) |
/// |---|---|---|
/// | `report` | `StageStalled` event, `stalled` in stats, `degraded` health | the same |
/// | `restart` | reported at once; when the call returns, the stage is restarted (a fresh operator, counted against the restart intensity) before its next element; the element that was stuck keeps its result | restarted now, counted against the intensity; a stage holding elements in flight escalates instead, as a restart would lose them |
/// | `fail` | reported, and the pipeline fails at once naming the stage; the stuck stage stops when its call returns | the pipeline fails naming the stage |
///
/// `restart` needs a supervised stage (the restart intensity is its policy's);
/// for others, and for junctions, which have no operator to rebuild, it reports.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_supervisor::policy::{StallAction, SupervisionPolicy};
///
/// let policy = SupervisionPolicy::default()
///     .stall_timeout(Duration::from_secs(30))
///     .on_stall(StallAction::Restart);
/// assert_eq!(policy.on_stall, StallAction::Restart);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StallAction {
    /// Report the stall (the default).
    #[default]
    Report,
    /// Restart the stage, within its restart intensity.
    Restart,
    /// Fail the pipeline, naming the stage.
    Fail,
}

/// What a stage does when its dead-letter queue is full. Never a silent drop.
///
/// # Examples
///
/// ```
/// use weir_supervisor::policy::{SupervisionPolicy, WhenDeadLettersFull};
///
/// let policy =
///     SupervisionPolicy::default().when_dead_letters_full(WhenDeadLettersFull::Backpressure);
/// assert_eq!(policy.dead_letters_full, WhenDeadLettersFull::Backpressure);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenDeadLettersFull {
    /// Fail the pipeline with an error saying the dead-letter queue is full.
    #[default]
    Escalate,
    /// Keep the letter and take no more input until the queue accepts it (someone
    /// drains it), offering it again every `dead_letters_retry`.
    Backpressure,
}

impl Default for SupervisionPolicy {
    fn default() -> Self {
        SupervisionPolicy {
            actions: ClassActions::default(),
            max_attempts: 3,
            backoff: BackoffConfig::default(),
            restart: RestartType::default(),
            intensity: RestartIntensity::default(),
            restart_backoff: BackoffConfig::new(
                Duration::from_millis(100),
                Duration::from_secs(10),
            ),
            breaker: None,
            stall_timeout: None,
            on_stall: StallAction::Report,
            element_timeout: None,
            dead_letters_full: WhenDeadLettersFull::Escalate,
            dead_letters_retry: Duration::from_millis(100),
        }
    }
}

impl SupervisionPolicy {
    /// Sets the actions for every error class.
    pub fn actions(mut self, actions: ClassActions) -> Self {
        self.actions = actions;
        self
    }

    /// Sets the action for one error class.
    pub fn action(mut self, class: ErrorClass, action: Action) -> Self {
        self.actions = self.actions.set(class, action);
        self
    }

    /// Sets the action for an element that has used up its attempts.
    pub fn on_exhausted(mut self, action: Action) -> Self {
        self.actions = self.actions.on_exhausted(action);
        self
    }

    /// Sets how many times one element may be processed in all.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the delay schedule for element retries.
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets whether the stage is restarted.
    pub fn restart(mut self, restart: RestartType) -> Self {
        self.restart = restart;
        self
    }

    /// Sets the restart intensity.
    pub fn intensity(mut self, intensity: RestartIntensity) -> Self {
        self.intensity = intensity;
        self
    }

    /// Sets the delay schedule for restarts.
    pub fn restart_backoff(mut self, restart_backoff: BackoffConfig) -> Self {
        self.restart_backoff = restart_backoff;
        self
    }

    /// Gives the stage a circuit breaker.
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Removes the stage's circuit breaker.
    pub fn without_breaker(mut self) -> Self {
        self.breaker = None;
        self
    }

    /// Sets the stall timeout.
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = Some(timeout);
        self
    }

    /// Sets what the stall watchdog does with a stalled stage.
    pub fn on_stall(mut self, action: StallAction) -> Self {
        self.on_stall = action;
        self
    }

    /// Sets the per-element timeout of asynchronous operators.
    pub fn element_timeout(mut self, timeout: Duration) -> Self {
        self.element_timeout = Some(timeout);
        self
    }

    /// Sets what a stage does when its dead-letter queue is full.
    pub fn when_dead_letters_full(mut self, when_full: WhenDeadLettersFull) -> Self {
        self.dead_letters_full = when_full;
        self
    }

    /// Sets how often a backpressuring stage offers a refused letter again.
    pub fn dead_letters_retry(mut self, every: Duration) -> Self {
        self.dead_letters_retry = every;
        self
    }

    /// The action for the `attempt`-th failure of one element (1 for its first
    /// failure), all of this policy considered except the restart intensity.
    ///
    /// It is [`ClassActions::decide`] with this policy's `max_attempts`, and the
    /// stage's [`RestartType`]: under [`Temporary`](RestartType::Temporary) a
    /// [`Restart`](Action::Restart) becomes the
    /// [`on_exhausted`](ClassActions::on_exhausted) action; under
    /// [`Permanent`](RestartType::Permanent) an [`Escalate`](Action::Escalate)
    /// becomes a [`Restart`](Action::Restart) (the intensity still bounds it).
    ///
    /// When the answer is [`Restart`](Action::Restart), the runtime still asks the
    /// stage's [`IntensityWindow`](super::IntensityWindow); a refusal escalates.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::ErrorClass;
    /// use weir_supervisor::policy::{Action, RestartType, SupervisionPolicy};
    ///
    /// let policy = SupervisionPolicy::default();
    /// assert_eq!(policy.decide(ErrorClass::Panic, 1), Action::Restart);
    /// let temporary = policy.clone().restart(RestartType::Temporary);
    /// assert_eq!(temporary.decide(ErrorClass::Panic, 1), Action::DeadLetter);
    /// let escalating = policy.on_exhausted(Action::Escalate);
    /// assert_eq!(escalating.decide(ErrorClass::Transient, 3), Action::Escalate);
    /// let permanent = escalating.restart(RestartType::Permanent);
    /// assert_eq!(permanent.decide(ErrorClass::Transient, 3), Action::Restart);
    /// ```
    pub fn decide(&self, class: ErrorClass, attempt: u32) -> Action {
        let action = self.actions.decide(class, attempt, self.max_attempts);
        match action {
            Action::Restart if !self.restart.restarts_after_failure() => self.actions.exhausted(),
            Action::Escalate if self.restart.restarts_instead_of_escalating() => Action::Restart,
            action => action,
        }
    }

    /// Checks every value; the key of the first bad one is relative to the policy
    /// (`max_attempts`, `backoff.multiplier`, `breaker.probes`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the key and the reason.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_supervisor::policy::SupervisionPolicy;
    ///
    /// let err = SupervisionPolicy::default().max_attempts(0).validate().unwrap_err();
    /// assert_eq!(err.to_string(), "max_attempts: must be at least 1");
    /// let err = SupervisionPolicy::default()
    ///     .stall_timeout(Duration::ZERO)
    ///     .validate()
    ///     .unwrap_err();
    /// assert_eq!(err.key(), Some("stall_timeout_ms"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.actions.validate().map_err(|e| e.under("actions"))?;
        if self.max_attempts == 0 {
            return Err(ConfigError::invalid("max_attempts", "must be at least 1"));
        }
        self.backoff.validate().map_err(|e| e.under("backoff"))?;
        self.intensity
            .validate()
            .map_err(|e| e.under("intensity"))?;
        self.restart_backoff
            .validate()
            .map_err(|e| e.under("restart_backoff"))?;
        if let Some(breaker) = &self.breaker {
            breaker.validate().map_err(|e| e.under("breaker"))?;
        }
        if self.dead_letters_retry.is_zero() {
            return Err(ConfigError::invalid(
                "dead_letters_retry_ms",
                "must be greater than 0",
            ));
        }
        for (key, timeout) in [
            ("stall_timeout_ms", self.stall_timeout),
            ("element_timeout_ms", self.element_timeout),
        ] {
            if timeout.is_some_and(|t| t.is_zero()) {
                return Err(ConfigError::invalid(
                    key,
                    "must be greater than 0 (leave it out to disable)",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Trip;

    #[test]
    fn defaults_validate() {
        let policy = SupervisionPolicy::default();
        assert!(policy.validate().is_ok());
        assert_eq!(policy.max_attempts, 3);
        assert_eq!(policy.restart, RestartType::Transient);
        assert!(policy.breaker.is_none());
        assert_eq!(
            policy.restart_backoff.nominal(1),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn builder_sets_each_field() {
        let breaker = BreakerConfig::new(Trip::Consecutive(2), Duration::from_secs(1));
        let policy = SupervisionPolicy::default()
            .actions(ClassActions::default().set(ErrorClass::Timeout, Action::Skip))
            .on_exhausted(Action::Escalate)
            .max_attempts(7)
            .backoff(BackoffConfig::none())
            .restart(RestartType::Permanent)
            .intensity(RestartIntensity::new(1, Duration::from_secs(1)))
            .restart_backoff(BackoffConfig::none())
            .breaker(breaker)
            .stall_timeout(Duration::from_secs(30))
            .element_timeout(Duration::from_secs(2));
        assert_eq!(policy.actions.timeout, Action::Skip);
        assert_eq!(policy.actions.on_exhausted, Action::Escalate);
        assert_eq!(policy.max_attempts, 7);
        assert_eq!(policy.backoff, BackoffConfig::none());
        assert_eq!(policy.restart, RestartType::Permanent);
        assert_eq!(policy.intensity.max_restarts, 1);
        assert_eq!(policy.restart_backoff, BackoffConfig::none());
        assert_eq!(policy.breaker, Some(breaker));
        assert_eq!(policy.stall_timeout, Some(Duration::from_secs(30)));
        assert_eq!(policy.element_timeout, Some(Duration::from_secs(2)));
        assert!(policy.validate().is_ok());
        assert!(policy.without_breaker().breaker.is_none());
    }

    #[test]
    fn permanent_stages_restart_where_transient_ones_escalate() {
        let escalating = SupervisionPolicy::default().actions(
            ClassActions::default()
                .set(ErrorClass::Panic, Action::Escalate)
                .on_exhausted(Action::Escalate),
        );
        let transient = escalating.clone().restart(RestartType::Transient);
        let permanent = escalating.restart(RestartType::Permanent);
        assert_eq!(transient.decide(ErrorClass::Panic, 1), Action::Escalate);
        assert_eq!(permanent.decide(ErrorClass::Panic, 1), Action::Restart);
        // An exhausted element under `on_exhausted = "escalate"` too.
        assert_eq!(transient.decide(ErrorClass::Transient, 3), Action::Escalate);
        assert_eq!(permanent.decide(ErrorClass::Transient, 3), Action::Restart);
        // What does not escalate is the same for both.
        assert_eq!(permanent.decide(ErrorClass::Transient, 1), Action::Retry);
    }

    #[test]
    fn temporary_stages_never_restart() {
        let policy = SupervisionPolicy::default()
            .restart(RestartType::Temporary)
            .on_exhausted(Action::Skip);
        assert_eq!(policy.decide(ErrorClass::Panic, 1), Action::Skip);
        assert_eq!(policy.decide(ErrorClass::Transient, 1), Action::Retry);
        for kind in [RestartType::Permanent, RestartType::Transient] {
            let policy = SupervisionPolicy::default().restart(kind);
            assert_eq!(policy.decide(ErrorClass::Panic, 1), Action::Restart);
            assert_eq!(policy.decide(ErrorClass::Panic, 3), Action::DeadLetter);
        }
    }

    #[test]
    fn validation_names_nested_keys() {
        let base = SupervisionPolicy::default();
        let cases = [
            (
                base.clone().on_exhausted(Action::Restart),
                "actions.on_exhausted",
            ),
            (base.clone().max_attempts(0), "max_attempts"),
            (
                base.clone()
                    .backoff(BackoffConfig::default().multiplier(0.0)),
                "backoff.multiplier",
            ),
            (
                base.clone()
                    .intensity(RestartIntensity::new(1, Duration::ZERO)),
                "intensity.within_ms",
            ),
            (
                base.clone()
                    .restart_backoff(BackoffConfig::default().jitter(2.0)),
                "restart_backoff.jitter",
            ),
            (
                base.clone().breaker(BreakerConfig::default().probes(0)),
                "breaker.probes",
            ),
            (
                base.clone().element_timeout(Duration::ZERO),
                "element_timeout_ms",
            ),
        ];
        for (policy, key) in cases {
            assert_eq!(policy.validate().unwrap_err().key(), Some(key));
        }
    }
}
