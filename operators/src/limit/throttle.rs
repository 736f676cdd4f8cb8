//! [`ThrottleStage`]: `throttle` and `throttle_by_key`.

use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Context;

use governor::Quota;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{ElementSupervision, Io, Operator, Step};
use weir_runtime::{ErrorClass, Failure};

use super::config::{Throttle, ThrottleMode};
use super::quotas::{Decision, Quotas, SavedQuota};
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
/// - **Checkpoints**: each key's quota (its GCRA theoretical arrival time) is
///   stored by key group as how far ahead of the snapshot it was, and its last
///   admission as how long before; both are re-anchored at the restore, so the
///   time the pipeline was down does not refill a quota. The counters of
///   [`ThrottleStats`](super::ThrottleStats) are restored too. A snapshot taken
///   while an element waits for a supervision retry fails (that element is not
///   a serde type here); the checkpoint after it succeeds.
pub struct ThrottleStage<T, K, F> {
    kind: &'static str,
    config: Throttle,
    quota: Result<Quota, String>,
    key: F,
    quotas: Option<Quotas<K>>,
    /// Quotas restored from a checkpoint, loaded when the quotas are created
    /// (on the stage's clock, in its first step).
    restored: Option<Vec<(K, SavedQuota)>>,
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
            restored: None,
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

impl<T, K: Hash + Eq + Clone, F> ThrottleStage<T, K, F> {
    /// Creates the quotas if there are none yet (with those restored from a
    /// checkpoint, if any). Called in a step, on the arbiter, so that the quotas
    /// start on the clock the stage's timers run on.
    fn ensure_quotas(&mut self) -> Result<(), Failure> {
        if self.quotas.is_some() {
            return Ok(());
        }
        let Ok(quota) = self.quota else {
            return Err(Failure::error(
                ErrorClass::Permanent,
                "invalid throttle arguments",
            ));
        };
        let mut quotas = Quotas::new(quota, self.config.max_keys, self.config.when_full);
        if let Some(saved) = self.restored.take() {
            quotas.load(saved, Instant::now());
        }
        self.quotas = Some(quotas);
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

/// The version of [`ThrottleStage`]'s snapshot.
const STATE_VERSION: u32 = 1;

/// The counters a throttle's checkpoint keeps.
fn tallies(stats: &super::config::StatsInner) -> [&std::sync::atomic::AtomicU64; 6] {
    [
        &stats.admitted,
        &stats.delayed,
        &stats.rejected,
        &stats.idle_evicted,
        &stats.evicted,
        &stats.waited_nanos,
    ]
}

impl<T, K, F> Checkpointable for ThrottleStage<T, K, F>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned,
{
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        if self.rejecter.is_holding() {
            return Err(StateError::Encode(format!(
                "{}: an element waits for its supervision retry; the next checkpoint will hold",
                self.kind
            )));
        }
        let counts = tallies(self.config.stats.inner()).map(|a| a.load(Relaxed));
        match (&self.quotas, &self.restored) {
            (Some(quotas), _) => {
                let saved = quotas.save(Instant::now());
                crate::checkpoint::mixed(STATE_VERSION, &counts, saved.iter().map(|(k, q)| (*k, q)))
            }
            (None, Some(saved)) => {
                crate::checkpoint::mixed(STATE_VERSION, &counts, saved.iter().map(|(k, q)| (k, q)))
            }
            (None, None) => crate::checkpoint::mixed(
                STATE_VERSION,
                &counts,
                std::iter::empty::<(&K, &SavedQuota)>(),
            ),
        }
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        let (counts, saved): crate::checkpoint::Mixed<[u64; 6], K, SavedQuota> =
            crate::checkpoint::decode_mixed(snapshot, STATE_VERSION, ctx)?;
        for c in counts {
            for (counter, value) in tallies(self.config.stats.inner()).into_iter().zip(c) {
                counter.fetch_max(value, Relaxed);
            }
        }
        self.restored = Some(saved);
        self.quotas = None;
        self.wait = None;
        Ok(())
    }
}

impl<T, K, F> Operator for ThrottleStage<T, K, F>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
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

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }

    fn step(&mut self, io: &mut Io<'_, T, T>, cx: &mut Context<'_>) -> Step {
        if let Err(failure) = self.ensure_quotas() {
            return Step::Failed(failure);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weir_runtime::checkpoint::{key_group_of, replica_of_group};

    use super::*;
    use crate::limit::Rate;
    use crate::test_support::replica;

    type Stage = ThrottleStage<u32, u32, fn(&u32) -> u32>;

    fn stage() -> Stage {
        let config = Throttle::shape(Rate::new(1, Duration::from_millis(100))).burst(2);
        ThrottleStage::new("throttle_by_key", config, |x: &u32| x % 50)
    }

    fn decide(s: &mut Stage, keys: impl IntoIterator<Item = u32>) -> Vec<Decision> {
        let stats = super::super::config::StatsInner::default();
        let quotas = s.quotas.as_mut().unwrap();
        keys.into_iter()
            .map(|k| quotas.check(&k, Instant::now(), &stats))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn restored_quotas_go_on_from_the_snapshot() {
        let mut s = stage();
        s.ensure_quotas().unwrap();
        let _ = decide(&mut s, (0..70).map(|i| i % 50));
        tokio::time::advance(Duration::from_millis(30)).await;
        let snapshot = s.snapshot(1).unwrap();
        let want = decide(&mut s, 0..50);
        assert!(want.contains(&Decision::Admit) && want.iter().any(|d| d != &Decision::Admit));

        // Down for an hour: the quotas are where they were, not refilled.
        tokio::time::advance(Duration::from_secs(3600)).await;
        let mut r = stage();
        r.restore(&snapshot, &RestoreContext::default()).unwrap();
        r.ensure_quotas().unwrap();
        let shift = |d: &Decision| match d {
            Decision::NotUntil(t) => Decision::NotUntil(*t + Duration::from_secs(3600)),
            other => other.clone(),
        };
        assert_eq!(
            decide(&mut r, 0..50),
            want.iter().map(shift).collect::<Vec<_>>()
        );

        for n in [2, 8] {
            let mut keys = 0;
            for i in 0..n {
                let mut part = stage();
                part.restore(&snapshot, &replica(i, n)).unwrap();
                part.ensure_quotas().unwrap();
                let quotas = part.quotas.as_ref().unwrap();
                for k in 0..50_u32 {
                    if replica_of_group(key_group_of(&k), n) != i {
                        continue;
                    }
                    keys += 1;
                }
                assert!(quotas.len() <= keys);
                assert!(
                    quotas
                        .keys()
                        .all(|k| replica_of_group(key_group_of(k), n) == i)
                );
            }
            assert_eq!(keys, 50);
        }
        let mut other = snapshot.clone();
        crate::test_support::assert_refuses_other_versions(&mut stage(), &mut other);
    }
}
