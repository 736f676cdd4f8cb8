//! Supervision policy: what happens when a stage fails, as plain data and small state
//! machines with no runtime attached.
//!
//! Decisions are kept apart from timing: [`ClassActions`] and [`SupervisionPolicy`]
//! decide *what* to do, [`Backoff`] says *when*, [`IntensityWindow`] and
//! [`CircuitBreaker`] track *how often*. None of them reads the clock; every method
//! that needs the time takes an [`Instant`](std::time::Instant), so the runtime can
//! drive them from virtual time and tests are deterministic.
//!
//! # The model
//!
//! 1. **Class → action.** A failure has an [`ErrorClass`](crate::ErrorClass);
//!    [`ClassActions`] maps it to an [`Action`]: [`Retry`](Action::Retry) the element,
//!    [`Restart`](Action::Restart) the stage, [`DeadLetter`](Action::DeadLetter) or
//!    [`Skip`](Action::Skip) the element, or [`Escalate`](Action::Escalate) and fail the
//!    pipeline.
//! 2. **Attempts.** An element is processed at most `max_attempts` times, counting
//!    retries and restarts alike. The failure that uses up the last attempt gets the
//!    [`on_exhausted`](ClassActions::on_exhausted) action instead (dead letter by
//!    default, skip or escalate if asked). [`SupervisionPolicy::decide`] applies all of
//!    this for one failure.
//! 3. **Retry backoff.** Before retry `n` of an element the stage waits
//!    [`Backoff::delay(n)`](Backoff::delay): exponential with jitter, capped.
//! 4. **Restarts.** A restart replaces the stage by a fresh instance from its factory
//!    (the mailbox and pending elements stay). The [`RestartStrategy`] says which other
//!    stages restart with it; the [`RestartType`] says whether the stage restarts at
//!    all; the [`RestartIntensity`], tracked by an [`IntensityWindow`], caps restarts
//!    per time window, beyond which the failure escalates. Restarts wait
//!    `restart_backoff`, the first one in a quiet window being immediate.
//! 5. **Circuit breaker.** An optional [`CircuitBreaker`] per stage counts outcomes;
//!    when it trips, the stage stops calling its operator for a cooldown and either
//!    backpressures or diverts elements to dead letters ([`OpenBehavior`]), then lets
//!    one probe through. A rejection carries the instant to retry at, so the stage
//!    sets one timer instead of spinning.
//! 6. **Configuration.** [`PolicyConfig`] holds a strategy, a default policy and
//!    per-stage overrides, built in code or read from TOML with errors that name the
//!    key and the reason ([`ConfigError`]).
//!
//! # Examples
//!
//! What a stage supervisor does with one failure, step by step:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use weir_supervisor::ErrorClass;
//! use weir_supervisor::policy::{Action, Backoff, IntensityWindow, SupervisionPolicy};
//!
//! let policy = SupervisionPolicy::default();
//! let mut retry_backoff = Backoff::new(policy.backoff, 7);
//! let mut restart_backoff = Backoff::new(policy.restart_backoff, 8);
//! let mut restarts = IntensityWindow::new(policy.intensity);
//! let now = Instant::now();
//!
//! // The operator returned a transient error on the element's first try.
//! let attempt = 1;
//! match policy.decide(ErrorClass::Transient, attempt) {
//!     Action::Retry => {
//!         let wait = retry_backoff.delay(attempt);
//!         assert!(wait <= Duration::from_millis(50));
//!     }
//!     other => unreachable!("transient errors are retried by default, got {other}"),
//! }
//!
//! // Then it panicked: restart the stage, if the intensity allows it.
//! assert_eq!(policy.decide(ErrorClass::Panic, 2), Action::Restart);
//! if restarts.allow(now) {
//!     let earlier = restarts.restarts(now) - 1;
//!     assert_eq!(restart_backoff.delay(earlier), Duration::ZERO, "first restart: at once");
//! } else {
//!     // Escalate: fail the pipeline.
//! }
//!
//! // Third failure of the same element: attempts are used up.
//! assert_eq!(policy.decide(ErrorClass::Panic, 3), Action::DeadLetter);
//! ```

mod action;
mod backoff;
mod breaker;
mod config;
mod error;
mod instants;
mod intensity;
mod policy_config;
mod strategy;
mod toml_format;

pub use action::{Action, ClassActions};
pub use backoff::{Backoff, BackoffConfig};
pub use breaker::{
    BreakerConfig, BreakerState, CircuitBreaker, OpenBehavior, Permit, Transition, Trip,
};
pub use config::{StallAction, SupervisionPolicy, WhenDeadLettersFull};
pub use error::ConfigError;
pub use intensity::{IntensityWindow, RestartIntensity};
pub use policy_config::PolicyConfig;
pub use strategy::{RestartStrategy, RestartType};
