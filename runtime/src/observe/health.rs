//! The health verdict of a pipeline, derived from its stats: circuit breakers,
//! stalls, restart rate, failures.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::pipeline::PipelineStats;

/// The state of a stage's circuit breaker, as seen in stats and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Elements flow (also: the stage has no breaker).
    #[default]
    Closed,
    /// The cooldown ended; the next element is a probe.
    HalfOpen,
    /// The stage takes no input (or diverts it to the dead letters) until the
    /// cooldown ends.
    Open,
}

impl BreakerState {
    /// The value of the `weir_stage_breaker_state` gauge: 0 closed, 1 half-open,
    /// 2 open.
    pub fn as_gauge(self) -> f64 {
        f64::from(self as u8)
    }

    pub(crate) fn load(cell: &AtomicU8) -> Self {
        match cell.load(Relaxed) {
            1 => BreakerState::HalfOpen,
            2 => BreakerState::Open,
            _ => BreakerState::Closed,
        }
    }

    pub(crate) fn store(self, cell: &AtomicU8) {
        cell.store(self as u8, Relaxed);
    }
}

/// A pipeline's health verdict (healthy, degraded or failing, with the reasons).
///
/// # Examples
///
/// ```
/// use weir_runtime::observe::Health;
///
/// let health = Health::Degraded(vec!["stage `parse`: circuit breaker open".into()]);
/// assert!(!health.is_healthy());
/// assert_eq!(health.reasons().len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reasons", rename_all = "snake_case")]
pub enum Health {
    /// Every stage flows.
    Healthy,
    /// The pipeline works but something is wrong: a breaker is open or probing, a
    /// stage is stalled, stages restart often, or a merge input ended on a failure.
    Degraded(Vec<String>),
    /// The pipeline failed, or stopped with stages lost.
    Failing(Vec<String>),
}

impl Health {
    /// True for [`Health::Healthy`].
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }

    /// Why it is not healthy (empty when healthy).
    pub fn reasons(&self) -> &[String] {
        match self {
            Health::Healthy => &[],
            Health::Degraded(r) | Health::Failing(r) => r,
        }
    }

    /// The value of the `weir_pipeline_health` gauge: 0 healthy, 1 degraded,
    /// 2 failing.
    pub fn as_gauge(&self) -> f64 {
        match self {
            Health::Healthy => 0.0,
            Health::Degraded(_) => 1.0,
            Health::Failing(_) => 2.0,
        }
    }
}

/// When restarts make a pipeline [`Degraded`](Health::Degraded).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_runtime::observe::HealthPolicy;
///
/// let policy = HealthPolicy::default().max_restarts(3, Duration::from_secs(10));
/// # drop(policy);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct HealthPolicy {
    /// More restarts than this within `window` (over the whole pipeline) is
    /// degraded. Default 5.
    pub max_restarts: usize,
    /// The restart-rate window. Default 60 s.
    pub window: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            max_restarts: 5,
            window: Duration::from_secs(60),
        }
    }
}

impl HealthPolicy {
    /// Degraded when more than `max` restarts happen within `window`.
    pub fn max_restarts(mut self, max: usize, window: Duration) -> Self {
        self.max_restarts = max;
        self.window = window;
        self
    }
}

/// Recent restart times of a pipeline, for the restart rate (at most
/// [`RESTART_HISTORY`] kept).
#[derive(Debug, Default)]
pub(crate) struct RestartHistory {
    times: Mutex<VecDeque<Instant>>,
}

/// Restart times kept per pipeline.
pub(crate) const RESTART_HISTORY: usize = 1024;

impl RestartHistory {
    pub(crate) fn record(&self, at: Instant) {
        let mut times = self.times.lock().unwrap_or_else(|e| e.into_inner());
        if times.len() == RESTART_HISTORY {
            times.pop_front();
        }
        times.push_back(at);
    }

    /// Restarts since `since`.
    pub(crate) fn since(&self, since: Instant) -> usize {
        let times = self.times.lock().unwrap_or_else(|e| e.into_inner());
        times.iter().rev().take_while(|&&t| t >= since).count()
    }
}

/// The health verdict of `stats` under `policy`, given the restarts within the
/// policy's window: [`Failing`](Health::Failing) when the pipeline failed;
/// [`Degraded`](Health::Degraded) when a breaker is open or half-open, a stage is
/// stalled, more than `policy.max_restarts` restarts happened within
/// `policy.window`, or a merge input ended on a failure; otherwise
/// [`Healthy`](Health::Healthy). Each reason names the stage.
pub(crate) fn verdict(
    stats: &PipelineStats,
    policy: &HealthPolicy,
    recent_restarts: usize,
) -> Health {
    {
        let this = stats;
        if let Some(failure) = &this.failure {
            return Health::Failing(vec![failure.clone()]);
        }
        let mut reasons = Vec::new();
        for s in &this.stages {
            match s.breaker {
                BreakerState::Open => {
                    reasons.push(format!("stage `{}`: circuit breaker open", s.name));
                }
                BreakerState::HalfOpen => {
                    reasons.push(format!("stage `{}`: circuit breaker half-open", s.name));
                }
                BreakerState::Closed => {}
            }
            if s.stalled {
                reasons.push(format!("stage `{}`: stalled", s.name));
            }
        }
        if recent_restarts > policy.max_restarts {
            reasons.push(format!(
                "{recent_restarts} restarts in the last {:?} (more than {})",
                policy.window, policy.max_restarts
            ));
        }
        for c in &this.contained {
            reasons.push(format!(
                "stage `{}` failed and its merge input ended: {}",
                c.stage, c.error
            ));
        }
        if reasons.is_empty() {
            Health::Healthy
        } else {
            Health::Degraded(reasons)
        }
    }
}
