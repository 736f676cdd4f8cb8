//! [`Supervision`]: what a stage does when user code fails on an element.
//!
//! A supervised stage keeps a copy of each element until its operator has processed
//! it, so that a failing element can be tried again after a backoff delay, sent to
//! the dead letters, or skipped, while the rest of the batch waits in order. The
//! decision comes from a [`SupervisionPolicy`](weir_supervisor::policy::SupervisionPolicy);
//! the building blocks live in `weir-supervisor`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Instant;

use std::sync::Arc;
use weir_supervisor::ErrorClass;

use weir_supervisor::dead_letter::{DeadLetter, DeadLetterSink, MemoryDlq};
use weir_supervisor::policy::{
    Action, Backoff, CircuitBreaker, IntensityWindow, OpenBehavior, SupervisionPolicy,
};

/// How a stage handles failures of user code: a policy, and where dead letters go.
///
/// Attach it with [`Flow::supervise`](crate::Flow::supervise) before the stage it
/// applies to. Supervised stages need `Clone` elements: the stage copies each
/// element before user code consumes it, so that a failing one can be retried or
/// dead-lettered.
///
/// What stages apply: per-class actions, retries with seeded backoff and jitter up
/// to `max_attempts`, `on_exhausted`, dead letters into any
/// [`DeadLetterSink`] (a bounded [`MemoryDlq`], a durable file), skip, escalation,
/// and restarts limited by the restart intensity (a restart keeps the stage's
/// queue, credit and pending elements; an operator added with
/// [`Flow::via_factory`](crate::Flow::via_factory) is rebuilt fresh, others resume
/// with their instance after `restart_backoff`); a circuit breaker per stage
/// (while open the stage either takes no input until the cooldown ends, or diverts
/// what arrives to the dead letters); `stall_timeout` (see
/// [`Runnable::stall_timeout`](crate::Runnable::stall_timeout)).
///
/// Synchronous operators that are [`retry_safe`](crate::operator::Operator::retry_safe)
/// are supervised by the stage, which copies the queue before each step. Async
/// operators (`map_async`, `try_map_async`, `for_each_async`) keep a copy of each
/// element in flight and retry a failed one in place, keeping the output order
/// (see [`Operator::supervise_elements`](crate::operator::Operator::supervise_elements));
/// the policy's `element_timeout` bounds each of their attempts, and is a build
/// error on a synchronous operator.
///
/// # Examples
///
/// ```
/// use weir_runtime::Supervision;
/// use weir_supervisor::dead_letter::MemoryDlq;
/// use weir_supervisor::policy::SupervisionPolicy;
///
/// let dead_letters = MemoryDlq::<u64>::new(100);
/// let supervision = Supervision::new(SupervisionPolicy::default().max_attempts(5))
///     .dead_letters(dead_letters.clone())
///     .seed(7);
/// # drop(supervision);
/// ```
#[must_use = "a Supervision does nothing until passed to Flow::supervise"]
pub struct Supervision<T> {
    pub(crate) policy: SupervisionPolicy,
    pub(crate) dead_letters: Option<Arc<dyn DeadLetterSink<T>>>,
    pub(crate) seed: u64,
}

impl<T> Supervision<T> {
    /// Supervision with `policy` and no dead-letter queue.
    pub fn new(policy: SupervisionPolicy) -> Self {
        Supervision {
            policy,
            dead_letters: None,
            seed: 0x5eed,
        }
    }

    /// Where dead-lettered elements go. Required when the policy can dead-letter
    /// (the default `on_exhausted` does). A full queue escalates: the pipeline fails
    /// rather than drop an element.
    pub fn dead_letters(self, dlq: MemoryDlq<T>) -> Self
    where
        T: Send + 'static,
    {
        self.dead_letters_to(dlq)
    }

    /// Where dead-lettered elements go, for any [`DeadLetterSink`]: a durable file
    /// with [`SharedFileDlq`](weir_supervisor::dead_letter::SharedFileDlq), which a
    /// later run can replay. A sink that refuses a letter (full, I/O error)
    /// escalates, as a full [`MemoryDlq`] does.
    pub fn dead_letters_to(mut self, sink: impl DeadLetterSink<T>) -> Self {
        self.dead_letters = Some(Arc::new(sink));
        self
    }

    /// Seed of the backoff jitter, for reproducible runs. The stage index is mixed
    /// in, so stages with the same seed still spread their retries.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks what the stage can apply; `elementwise` says whether its operator
    /// handles its elements' failures itself (an async operator). The message names
    /// the key.
    pub(crate) fn check(&self, elementwise: bool) -> Result<(), String> {
        check_policy(&self.policy, elementwise, self.dead_letters.is_some())
    }
}

/// Checks what a stage can apply of `policy`: `elementwise` says whether its
/// operator handles its elements' failures itself (an async operator),
/// `dead_letters` whether it has a dead-letter queue. The message names the key.
pub(crate) fn check_policy(
    policy: &SupervisionPolicy,
    elementwise: bool,
    dead_letters: bool,
) -> Result<(), String> {
    policy
        .validate()
        .map_err(|e| format!("supervision policy: {e}"))?;
    if policy.element_timeout.is_some() && !elementwise {
        return Err(
            "supervision policy: element_timeout applies to async operators \
             (map_async, for_each_async), whose elements can hang; this stage runs \
             user code synchronously"
                .into(),
        );
    }
    let keys = dead_letter_keys(policy);
    if !keys.is_empty() && !dead_letters {
        let keys = keys
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "supervision policy dead-letters elements ({keys} = \"dead_letter\"; \
             `permanent` and `on_exhausted` do by default) but the stage has no \
             dead-letter queue: give it one in code (Supervision::dead_letters) or \
             choose another action"
        ));
    }
    Ok(())
}

/// The keys of `policy` that send elements to the dead letters.
fn dead_letter_keys(policy: &SupervisionPolicy) -> Vec<&'static str> {
    let a = &policy.actions;
    let mut keys: Vec<&str> = [
        ("actions.panic", a.panic),
        ("actions.transient", a.transient),
        ("actions.permanent", a.permanent),
        ("actions.timeout", a.timeout),
        ("actions.resource_exhausted", a.resource_exhausted),
        ("actions.on_exhausted", a.on_exhausted),
    ]
    .into_iter()
    .filter(|(_, action)| *action == Action::DeadLetter)
    .map(|(key, _)| key)
    .collect();
    if policy
        .breaker
        .as_ref()
        .is_some_and(|b| b.when_open == OpenBehavior::DeadLetter)
    {
        keys.push("breaker.when_open");
    }
    keys
}

/// Whether `policy` can drop an element (dead-letter or skip it, or divert it
/// while the breaker is open) instead of processing it again or escalating.
pub(crate) fn policy_may_drop(policy: &SupervisionPolicy) -> bool {
    let a = &policy.actions;
    [
        a.panic,
        a.transient,
        a.permanent,
        a.timeout,
        a.resource_exhausted,
        a.on_exhausted,
    ]
    .into_iter()
    .any(|action| matches!(action, Action::DeadLetter | Action::Skip))
        || policy
            .breaker
            .as_ref()
            .is_some_and(|b| b.when_open == OpenBehavior::DeadLetter)
}

/// The default policy and no dead-letter queue: what a stage gets in code when a
/// policy file decides its policy (see [`Runnable::policies`](crate::Runnable::policies));
/// add the queue with [`dead_letters`](Supervision::dead_letters).
///
/// ```
/// use weir_runtime::Supervision;
/// use weir_supervisor::dead_letter::MemoryDlq;
///
/// let dlq = MemoryDlq::<String>::new(1_000);
/// let supervision = Supervision::default().dead_letters(dlq.clone());
/// # drop(supervision);
/// ```
impl<T> Default for Supervision<T> {
    fn default() -> Self {
        Supervision::new(SupervisionPolicy::default())
    }
}

impl<T> Clone for Supervision<T> {
    fn clone(&self) -> Self {
        Supervision {
            policy: self.policy.clone(),
            dead_letters: self.dead_letters.clone(),
            seed: self.seed,
        }
    }
}

impl<T> std::fmt::Debug for Supervision<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervision")
            .field("policy", &self.policy)
            .field("dead_letters", &self.dead_letters.is_some())
            .field("seed", &self.seed)
            .finish()
    }
}

impl<T> From<SupervisionPolicy> for Supervision<T> {
    fn from(policy: SupervisionPolicy) -> Self {
        Supervision::new(policy)
    }
}

/// Copies a whole queue into a vector: one indirect call per step, with the
/// element clones inlined (it is instantiated where `T: Clone` is known).
pub(crate) type CopyQueue<T> = fn(&VecDeque<T>, &mut Vec<T>);

/// [`CopyQueue`] for a `Clone` element type.
fn copy_queue<T: Clone>(queue: &VecDeque<T>, into: &mut Vec<T>) {
    into.extend(queue.iter().cloned());
}

/// How a supervised stage copies its elements, captured where `T: Clone` is known
/// (`Flow::supervise`) for stages whose element type has no `Clone` bound.
pub(crate) struct Copies<T> {
    /// The whole queue before a step (synchronous operators).
    pub(crate) queue: CopyQueue<T>,
    /// One element (async operators keep a copy of each element in flight).
    pub(crate) one: fn(&T) -> T,
}

impl<T> Clone for Copies<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Copies<T> {}

impl<T: Clone> Copies<T> {
    pub(crate) fn of() -> Self {
        Copies {
            queue: copy_queue::<T>,
            one: T::clone,
        }
    }
}

/// The per-stage state of a supervised stage.
pub(crate) struct StageSupervisor<T> {
    pub(crate) policy: SupervisionPolicy,
    pub(crate) dead_letters: Option<Arc<dyn DeadLetterSink<T>>>,
    cloner: CopyQueue<T>,
    /// The operator handles its elements' failures itself (an async operator):
    /// the stage takes no snapshots and judges what the operator reports.
    pub(crate) elementwise: bool,
    pub(crate) backoff: Backoff,
    pub(crate) restart_backoff: Backoff,
    pub(crate) window: IntensityWindow,
    /// Failed attempts of the element at the head of the queue.
    pub(crate) attempt: u32,
    /// Copies of the queue taken before the current step.
    snapshot: Vec<T>,
    /// While set, the stage processes nothing: it waits before a retry or restart,
    /// or for an open breaker's cooldown.
    pub(crate) resume: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The stage's circuit breaker, if the policy has one.
    pub(crate) breaker: Option<CircuitBreaker>,
    /// Class and message of the last failure, for elements diverted while open.
    pub(crate) last_failure: Option<(ErrorClass, String)>,
    /// The policy restarted the stage: rebuild the operator before the retry.
    pub(crate) restart_pending: bool,
    /// Letters a full dead-letter queue refused, in order, when the policy
    /// backpressures (`WhenDeadLettersFull::Backpressure`).
    pub(crate) pending_letters: VecDeque<DeadLetter<T>>,
    /// When to offer the first pending letter again.
    pub(crate) letter_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StageSupervisor<T> {
    /// Whether the policy can drop an element (dead-letter or skip it, or divert it
    /// while the breaker is open) instead of processing it again or escalating.
    pub(crate) fn may_drop(&self) -> bool {
        policy_may_drop(&self.policy)
    }

    pub(crate) fn new(
        supervision: Supervision<T>,
        cloner: CopyQueue<T>,
        stage: usize,
        elementwise: bool,
    ) -> Self {
        let seed = supervision.seed ^ (stage as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let policy = supervision.policy;
        let policy_breaker = policy.breaker.map(CircuitBreaker::new);
        StageSupervisor {
            backoff: Backoff::new(policy.backoff, seed),
            restart_backoff: Backoff::new(policy.restart_backoff, seed.rotate_left(17)),
            window: IntensityWindow::new(policy.intensity),
            policy,
            dead_letters: supervision.dead_letters,
            cloner,
            elementwise,
            attempt: 0,
            snapshot: Vec::new(),
            resume: None,
            breaker: policy_breaker,
            last_failure: None,
            restart_pending: false,
            pending_letters: VecDeque::new(),
            letter_timer: None,
        }
    }

    /// Copies the queue before a step (not for an elementwise stage, whose
    /// operator keeps its own copies).
    pub(crate) fn snapshot(&mut self, queue: &VecDeque<T>) {
        if self.elementwise {
            return;
        }
        self.snapshot.clear();
        (self.cloner)(queue, &mut self.snapshot);
    }

    /// The copy of the `k`-th element of the queue as it was before the step.
    pub(crate) fn take_copy(&mut self, k: usize) -> Option<T> {
        (k < self.snapshot.len()).then(|| self.snapshot.swap_remove(k))
    }

    /// Waits `delay` before processing anything more.
    pub(crate) fn pause(&mut self, delay: std::time::Duration) {
        // A zero delay resumes at once: a timer would still wait for the next tick.
        self.resume = (!delay.is_zero()).then(|| Box::pin(tokio::time::sleep(delay)));
    }

    /// Waits until `at` (an open breaker's cooldown) before processing anything.
    pub(crate) fn pause_until(&mut self, at: Instant) {
        let at = tokio::time::Instant::from_std(at);
        self.resume = Some(Box::pin(tokio::time::sleep_until(at)));
    }

    /// Restarts allowed by the intensity window; false means escalate.
    pub(crate) fn allow_restart(&mut self, now: Instant) -> bool {
        self.window.allow(now)
    }
}

impl<T> std::fmt::Debug for StageSupervisor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageSupervisor")
            .field("attempt", &self.attempt)
            .field("paused", &self.resume.is_some())
            .finish_non_exhaustive()
    }
}
