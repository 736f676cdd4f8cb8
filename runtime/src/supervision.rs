//! [`Supervision`]: what a stage does when user code fails on an element.
//!
//! A supervised stage keeps a copy of each element until its operator has processed
//! it, so that a failing element can be tried again after a backoff delay, sent to
//! the dead letters, or skipped, while the rest of the batch waits in order. The
//! decision comes from a [`SupervisionPolicy`](weir_supervisor::policy::SupervisionPolicy);
//! the building blocks live in `weir-supervisor`.

use std::collections::VecDeque;
use std::ops::Range;
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

/// Copies the elements `range` of a queue onto the end of a vector: one indirect
/// call per copy, with the element clones inlined (it is instantiated where
/// `T: Clone` is known) and a `memcpy` for `Copy` types.
pub(crate) type CopyQueue<T> = fn(&VecDeque<T>, Range<usize>, &mut Vec<T>);

/// [`CopyQueue`] for a `Clone` element type.
fn copy_queue<T: Clone>(queue: &VecDeque<T>, range: Range<usize>, into: &mut Vec<T>) {
    let (front, back) = queue.as_slices();
    let split = front.len();
    if range.start < split {
        into.extend_from_slice(&front[range.start..range.end.min(split)]);
    }
    if range.end > split {
        into.extend_from_slice(&back[range.start.saturating_sub(split)..range.end - split]);
    }
}

/// The copies a supervised stage keeps during one step, so that it can retry (or
/// dead-letter) the element user code consumed and panicked on.
///
/// Only the element taken last when the step fails is ever needed, so the copies
/// are taken lazily, by the [`Io`](crate::operator::Io) call that is about to hand
/// elements to user code, and only of the elements that call may take: a step that
/// takes nothing copies nothing, a `map_batch` copies the elements it maps, not the
/// whole queue, and a loop that lends its elements to user code by reference
/// (`filter_batch`) copies nothing; it keeps the element it was looking at when user
/// code panicked ([`rescue`](Self::rescue)).
pub(crate) struct Keep<T> {
    copy: CopyQueue<T>,
    /// Copies of the elements `from..from + copies.len()` of the queue as it was when
    /// the step began.
    copies: Vec<T>,
    from: usize,
    /// An element handed to user code by reference that user code panicked on, with
    /// its index in the queue as it was when the step began.
    rescued: Option<(usize, T)>,
}

#[cfg(test)]
impl<T: Clone> Keep<T> {
    /// The copies of a stage whose elements are `T`.
    pub(crate) fn cloning() -> Self {
        Keep::new(copy_queue::<T>)
    }
}

impl<T> Keep<T> {
    fn new(copy: CopyQueue<T>) -> Self {
        Keep {
            copy,
            copies: Vec::new(),
            from: 0,
            rescued: None,
        }
    }

    /// Forgets the copies of the last step.
    pub(crate) fn begin(&mut self) {
        self.copies.clear();
        self.from = 0;
        self.rescued = None;
    }

    /// Makes sure the next `n` elements of `queue` are copied; `taken` elements of
    /// the queue as it was when the step began have been taken from it so far.
    #[inline]
    pub(crate) fn ensure(&mut self, queue: &VecDeque<T>, taken: usize, n: usize) {
        let n = n.min(queue.len());
        let end = self.from + self.copies.len();
        if taken >= self.from && taken + n <= end {
            return;
        }
        if taken < self.from || taken > end {
            // Elements were taken without copies (lent by reference): none of the
            // copies before them can be the one that fails now.
            self.copies.clear();
            self.from = taken;
        }
        let have = self.from + self.copies.len() - taken;
        (self.copy)(queue, have..n, &mut self.copies);
    }

    /// Keeps `element`, the `index`-th of the queue as it was when the step began,
    /// which user code panicked on while it had it by reference.
    pub(crate) fn rescue(&mut self, index: usize, element: T) {
        self.rescued = Some((index, element));
    }

    /// The copy of the `k`-th element of the queue as it was when the step began.
    pub(crate) fn take(&mut self, k: usize) -> Option<T> {
        if let Some((index, _)) = &self.rescued
            && *index == k
        {
            return self.rescued.take().map(|(_, element)| element);
        }
        let i = k.checked_sub(self.from)?;
        (i < self.copies.len()).then(|| self.copies.swap_remove(i))
    }
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
    /// The operator handles its elements' failures itself (an async operator):
    /// the stage takes no snapshots and judges what the operator reports.
    pub(crate) elementwise: bool,
    pub(crate) backoff: Backoff,
    pub(crate) restart_backoff: Backoff,
    pub(crate) window: IntensityWindow,
    /// Failed attempts of the element at the head of the queue.
    pub(crate) attempt: u32,
    /// Copies of the elements user code takes in the current step.
    pub(crate) keep: Keep<T>,
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
            elementwise,
            attempt: 0,
            keep: Keep::new(cloner),
            resume: None,
            breaker: policy_breaker,
            last_failure: None,
            restart_pending: false,
            pending_letters: VecDeque::new(),
            letter_timer: None,
        }
    }

    /// The copy of the `k`-th element of the queue as it was before the step.
    pub(crate) fn take_copy(&mut self, k: usize) -> Option<T> {
        self.keep.take(k)
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
