//! [`Slowed`]: a user's operator made slow.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;
use weir::operator::{Counting, ElementSupervision, Io, Operator, Step};

/// Wraps an operator so that after each step it rests `per_element` for every
/// input element the step took, before it is stepped again: the operator does the
/// same work, slower, and the stage's input queue backpressures upstream
/// meanwhile. A step that finishes the operator is not followed by a rest. Everything else (kind, counting, validation, supervision, held
/// elements, state, restarts) is the inner operator's.
///
/// # Examples
///
/// ```
/// use std::task::Context;
/// use std::time::Duration;
/// use weir::operator::{Io, Operator, Step};
/// use weir::prelude::*;
/// use weir_testkit::fault::Slowed;
/// use weir_testkit::time::run_paused;
///
/// /// The user's operator under test.
/// struct AddOne;
/// impl Operator for AddOne {
///     type In = u32;
///     type Out = u32;
///     fn kind(&self) -> &'static str { "add_one" }
///     fn step(&mut self, io: &mut Io<'_, u32, u32>, _: &mut Context<'_>) -> Step {
///         io.map_batch(|x| x + 1);
///         io.finish_when_drained()
///     }
/// }
///
/// let elapsed = run_paused(|rt| async move {
///     let start = tokio::time::Instant::now();
///     let done = Pipeline::from_iter(0..10_u32)
///         .via(Slowed::new(AddOne, Duration::from_millis(100)))
///         .capacity(2)
///         .collect()
///         .run(&rt)
///         .unwrap()
///         .await
///         .unwrap();
///     assert_eq!(done.output, (1..=10).collect::<Vec<_>>());
///     start.elapsed()
/// });
/// // Ten elements at 100 ms each, in virtual time (the last step has no rest).
/// assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
/// ```
#[derive(Debug)]
pub struct Slowed<Op> {
    inner: Op,
    per_element: Duration,
    rest: Option<Pin<Box<Sleep>>>,
}

impl<Op> Slowed<Op> {
    /// Wraps `inner`, resting `per_element` for each element it takes.
    pub fn new(inner: Op, per_element: Duration) -> Self {
        Slowed {
            inner,
            per_element,
            rest: None,
        }
    }

    /// The wrapped operator.
    pub fn into_inner(self) -> Op {
        self.inner
    }
}

impl<Op: Operator> Operator for Slowed<Op> {
    type In = Op::In;
    type Out = Op::Out;

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn step(&mut self, io: &mut Io<'_, Op::In, Op::Out>, cx: &mut Context<'_>) -> Step {
        if let Some(rest) = &mut self.rest {
            if rest.as_mut().poll(cx) == Poll::Pending {
                return Step::Continue;
            }
            self.rest = None;
        }
        let before = io.input_len();
        let step = self.inner.step(io, cx);
        let taken = before.saturating_sub(io.input_len());
        if taken > 0 && matches!(step, Step::Continue) {
            let factor = u32::try_from(taken).unwrap_or(u32::MAX);
            let mut rest = Box::pin(tokio::time::sleep(self.per_element.saturating_mul(factor)));
            // Registers the waker: the stage steps again when the rest is over.
            if rest.as_mut().poll(cx) == Poll::Pending {
                self.rest = Some(rest);
            }
        }
        step
    }

    fn validate(&self) -> Result<(), String> {
        self.inner.validate()
    }

    fn retry_safe(&self) -> bool {
        self.inner.retry_safe()
    }

    fn supervise_elements(&mut self, setup: ElementSupervision<Op::In>) -> bool {
        self.inner.supervise_elements(setup)
    }

    fn restart(&mut self) -> bool {
        self.inner.restart()
    }

    fn counting(&self) -> Counting {
        self.inner.counting()
    }

    fn state_entries(&self) -> usize {
        self.inner.state_entries()
    }

    fn may_filter(&self) -> bool {
        self.inner.may_filter()
    }

    fn held(&self) -> usize {
        self.inner.held()
    }

    fn on_stop(&mut self) {
        self.inner.on_stop();
    }
}
