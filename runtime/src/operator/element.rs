//! Element-level supervision for operators that finish elements after the step that
//! took them (async operators): [`ElementSupervision`] and [`Verdict`].
//!
//! A synchronous operator fails *inside* a step, on the element it just took, so the
//! stage can retry that element itself (see [`Operator::retry_safe`]). An async
//! operator such as `map_async` has several elements in flight and learns of a
//! failure later, when a future resolves: only the operator knows which element it
//! was. Such an operator opts in with [`Operator::supervise_elements`]: it keeps a
//! copy of every element in flight, and when one fails it hands the copy to
//! [`Io::element_failed`](super::Io::element_failed). The stage applies its policy
//! exactly as for a synchronous failure (events, breaker, retry with backoff,
//! dead letters, skip, restart intensity, escalation) and returns a [`Verdict`].
//!
//! [`Operator::retry_safe`]: super::Operator::retry_safe
//! [`Operator::supervise_elements`]: super::Operator::supervise_elements

use std::fmt;
use std::time::Duration;

use weir_supervisor::Failure;

/// What a supervised stage gives an async operator that handles its elements'
/// failures: a way to copy an element before user code consumes it, and the
/// policy's per-attempt timeout.
///
/// # Examples
///
/// ```
/// use weir_runtime::operator::ElementSupervision;
///
/// fn retryable<T>(setup: &ElementSupervision<T>, element: &T) -> T {
///     setup.copy(element)
/// }
/// # let _ = retryable::<u8>;
/// ```
pub struct ElementSupervision<T> {
    clone: fn(&T) -> T,
    timeout: Option<Duration>,
}

impl<T> ElementSupervision<T> {
    pub(crate) fn new(clone: fn(&T) -> T, timeout: Option<Duration>) -> Self {
        ElementSupervision { clone, timeout }
    }

    /// A copy of `element`, kept so that the element can be retried or
    /// dead-lettered after user code consumed the original.
    pub fn copy(&self, element: &T) -> T {
        (self.clone)(element)
    }

    /// How long one attempt on one element may take before it fails with
    /// [`ErrorClass::Timeout`](weir_supervisor::ErrorClass::Timeout): the policy's
    /// `element_timeout`, if it has one.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

impl<T> Clone for ElementSupervision<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ElementSupervision<T> {}

impl<T> fmt::Debug for ElementSupervision<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElementSupervision")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The stage's decision on an element that failed in an async operator; returned by
/// [`Io::element_failed`](super::Io::element_failed).
#[must_use]
pub enum Verdict<T> {
    /// Try the element again after `delay` (zero: at once), keeping its place in
    /// the output order. The next failure of it is attempt `attempt + 1`.
    Retry {
        /// The element handed back for the next attempt.
        element: T,
        /// How long to wait before the next attempt (the policy's backoff).
        delay: Duration,
    },
    /// The element was dead-lettered or skipped; the stage has counted it. The
    /// operator forgets it and produces nothing for it.
    Settled,
    /// The failure escalated: the stage fails when the step returns. The operator
    /// forgets the element (it is counted as failed).
    Escalated,
}

impl<T> fmt::Debug for Verdict<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Retry { delay, .. } => f
                .debug_struct("Retry")
                .field("delay", delay)
                .finish_non_exhaustive(),
            Verdict::Settled => f.write_str("Settled"),
            Verdict::Escalated => f.write_str("Escalated"),
        }
    }
}

/// The stage side of [`Io::element_failed`](super::Io::element_failed).
pub(crate) trait ElementJudge<T> {
    /// Applies the policy to `element`, which failed its `attempt`-th attempt.
    fn judge(&mut self, failure: Failure, element: T, index: u64, attempt: u32) -> Verdict<T>;
}
