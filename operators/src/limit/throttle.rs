//! [`ThrottleStage`]: `throttle` and `throttle_by_key`.

use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Context;

use governor::Quota;
use tokio::time::Instant;
use weir_runtime::operator::{ElementSupervision, Io, Operator, Step};
use weir_runtime::{ErrorClass, Failure};

use super::config::{Throttle, ThrottleMode};
use super::quotas::{Decision, Quotas};
use super::reject::{After, Rejecter};

/// Holds elements to a rate, per key. Created by
/// [`LimitExt::throttle`](super::LimitExt::throttle) (one key) and
/// [`LimitExt::throttle_by_key`](super::LimitExt::throttle_by_key).
///
/// - **Order**: kept. In shaping mode an element that must wait blocks the ones
///   behind it, whatever their key (use enforcing mode, or `partition_by_key`
///   with a throttle per branch, when keys must not wait for each other).
/// - **Time**: tokio's clock of the stage's arbiter (virtual under paused time);
///   waits are tokio timers, no spinning.
/// - **State**: one quota per tracked key, at most `max_keys`; created when the
///   stage first runs and fresh again after a restart from a factory.
/// - **Bounds**: holds at most one element of its own (one waiting for a
///   supervision retry); a shaping wait leaves the element in the stage's queue,
///   so the input edge's capacity is all that accumulates.
pub struct ThrottleStage<T, K, F> {
    kind: &'static str,
    config: Throttle,
    quota: Result<Quota, String>,
    key: F,
    quotas: Option<Quotas<K>>,
    /// A shaping wait: the timer and when it started.
    wait: Option<(Pin<Box<tokio::time::Sleep>>, Instant)>,
    rejecter: Rejecter<T>,
}

impl<T, K, F> ThrottleStage<T, K, F> {
    pub(crate) fn new(kind: &'static str, config: Throttle, key: F) -> Self {
        ThrottleStage {
            kind,
            quota: config.quota(),
            config,
            key,
            quotas: None,
            wait: None,
            rejecter: Rejecter::default(),
        }
    }
}

impl<T, K, F> ThrottleStage<T, K, F> {
    /// Changes the rate and burst between two steps (hot reconfiguration). The
    /// quotas are rebuilt on the next step, on the stage's clock; a shaping wait is
    /// dropped so that the waiting element (still first in the queue) is decided
    /// again at the new rate. Invalid values change nothing.
    pub(crate) fn set_rate(&mut self, rate: super::config::Rate, burst: u32) -> Result<(), String> {
        let mut config = self.config.clone();
        config.rate = rate;
        config.burst = burst;
        let quota = config.quota()?;
        self.config = config;
        self.quota = Ok(quota);
        self.quotas = None;
        self.wait = None;
        Ok(())
    }
}

impl<T, K, F> std::fmt::Debug for ThrottleStage<T, K, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottleStage")
            .field("kind", &self.kind)
            .field("config", &self.config)
            .field("waiting", &self.wait.is_some())
            .finish_non_exhaustive()
    }
}

impl<T, K, F> ThrottleStage<T, K, F>
where
    K: Hash + Eq + Clone,
    F: FnMut(&T) -> K,
{
    /// Decides one element. `Stop` ends the step (a wait, a held retry, a
    /// failure).
    fn handle(
        &mut self,
        io: &mut Io<'_, T, T>,
        x: T,
        index: u64,
        attempt: u32,
        cx: &mut Context<'_>,
    ) -> After {
        let key = (self.key)(&x);
        let now = Instant::now();
        let stats = self.config.stats.inner();
        let Some(quotas) = self.quotas.as_mut() else {
            return After::Stop;
        };
        let decision = quotas.check(&key, now, stats);
        stats.keys.store(quotas.len() as u64, Relaxed);
        let (until, reason) = match decision {
            Decision::Admit => {
                stats.admitted.fetch_add(1, Relaxed);
                io.push(x);
                return After::Next;
            }
            Decision::NotUntil(at) => (at, "rate limit exceeded"),
            Decision::Full(at) => (at, "quota table full"),
        };
        match self.config.mode {
            ThrottleMode::Shape => {
                stats.delayed.fetch_add(1, Relaxed);
                io.unpop(x);
                let mut timer = Box::pin(tokio::time::sleep_until(until));
                let _ = timer.as_mut().poll(cx);
                self.wait = Some((timer, now));
                After::Stop
            }
            ThrottleMode::Enforce => {
                stats.rejected.fetch_add(1, Relaxed);
                let rate = self.config.rate;
                let message = match decision {
                    Decision::Full(_) => format!(
                        "{reason}: {} keys tracked, none idle for another {:?}",
                        quotas.len(),
                        until - now
                    ),
                    _ => format!(
                        "{reason}: {} per {:?} with burst {}; next admission in {:?}",
                        rate.count(),
                        rate.period(),
                        self.config.burst,
                        until - now
                    ),
                };
                let failure = Failure::error(ErrorClass::ResourceExhausted, message);
                self.rejecter.reject(io, x, index, attempt, failure, cx)
            }
        }
    }
}

impl<T, K, F> Operator for ThrottleStage<T, K, F>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + Send + 'static,
    F: FnMut(&T) -> K + Send + 'static,
{
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn validate(&self) -> Result<(), String> {
        self.quota.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    /// An enforcing throttle hands the elements it turns away to the stage's
    /// supervision through [`Io::element_failed`].
    fn supervise_elements(&mut self, _setup: ElementSupervision<T>) -> bool {
        true
    }

    fn held(&self) -> usize {
        self.rejecter.held()
    }

    fn step(&mut self, io: &mut Io<'_, T, T>, cx: &mut Context<'_>) -> Step {
        if self.quotas.is_none() {
            // Created here, on the arbiter, so that the quotas start on the
            // clock the stage's timers run on.
            let Ok(quota) = self.quota else {
                return Step::Failed(Failure::error(
                    ErrorClass::Permanent,
                    "invalid throttle arguments",
                ));
            };
            self.quotas = Some(Quotas::new(
                quota,
                self.config.max_keys,
                self.config.when_full,
            ));
        }
        if let Some((timer, since)) = &mut self.wait {
            if timer.as_mut().poll(cx).is_pending() {
                return Step::Continue;
            }
            let waited = Instant::now().saturating_duration_since(*since);
            let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
            self.config
                .stats
                .inner()
                .waited_nanos
                .fetch_add(nanos, Relaxed);
            self.wait = None;
        }
        if self.rejecter.is_holding() {
            let Some(due) = self.rejecter.due(cx) else {
                return Step::Continue;
            };
            if self.handle(io, due.element, due.index, due.attempt, cx) == After::Stop {
                return Step::Continue;
            }
        }
        while io.has_room() {
            let index = io.next_index();
            let Some(x) = io.pop() else { break };
            if self.handle(io, x, index, 1, cx) == After::Stop {
                return Step::Continue;
            }
        }
        io.finish_when_drained()
    }
}
