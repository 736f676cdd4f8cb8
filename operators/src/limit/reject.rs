//! Rejecting an element through the stage's supervision, and holding it while the
//! policy's retry delay runs.
//!
//! The limit stages that turn elements away (`validate`, `max_element_bytes`, an
//! enforcing `throttle`) do not keep dead-letter queues of their own: they report
//! the element as failed with [`Io::element_failed`], and the stage's supervision
//! applies its policy exactly as for any failing element — a dead letter with the
//! reason (counted as `dead_lettered` in the report, published as
//! `ElementDeadLettered`), a skip, a retry after backoff, or escalation. Without
//! supervision the verdict is escalation: the pipeline fails with the reason.

use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use weir_runtime::Failure;
use weir_runtime::operator::{Io, Verdict};

/// An element the policy said to try again, waiting for its delay.
struct Held<T> {
    element: T,
    index: u64,
    attempt: u32,
    timer: Pin<Box<tokio::time::Sleep>>,
}

/// An element whose retry delay has passed: try it again as attempt `attempt`.
pub(crate) struct Due<T> {
    pub(crate) element: T,
    pub(crate) index: u64,
    pub(crate) attempt: u32,
}

/// What a stage does after rejecting an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// The element was dead-lettered or skipped: go on with the next one.
    Next,
    /// The element is held for a retry, or the stage is failing: stop this step.
    Stop,
}

/// The rejection side of a limit stage: at most one element held for a retry
/// (the stage takes nothing else meanwhile, so the input order is kept).
pub(crate) struct Rejecter<T> {
    held: Option<Held<T>>,
}

impl<T> Default for Rejecter<T> {
    fn default() -> Self {
        Rejecter { held: None }
    }
}

impl<T> std::fmt::Debug for Rejecter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rejecter")
            .field("holding", &self.held.is_some())
            .finish()
    }
}

impl<T> Rejecter<T> {
    /// Elements held for a retry (0 or 1), for [`Operator::held`](weir_runtime::operator::Operator::held).
    pub(crate) fn held(&self) -> usize {
        usize::from(self.held.is_some())
    }

    /// True while an element waits for its retry.
    pub(crate) fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// Hands `element` (the `attempt`-th try of input `index`) to the stage's
    /// supervision with `failure`.
    pub(crate) fn reject<Out>(
        &mut self,
        io: &mut Io<'_, T, Out>,
        element: T,
        index: u64,
        attempt: u32,
        failure: Failure,
        cx: &mut Context<'_>,
    ) -> After {
        match io.element_failed(element, index, attempt, failure) {
            Verdict::Settled => After::Next,
            Verdict::Escalated => After::Stop,
            Verdict::Retry { element, delay } => {
                let mut timer = Box::pin(tokio::time::sleep(delay.max(Duration::ZERO)));
                // Registers the waker: the stage is stepped again when it fires.
                let _ = timer.as_mut().poll(cx);
                self.held = Some(Held {
                    element,
                    index,
                    attempt: attempt + 1,
                    timer,
                });
                After::Stop
            }
        }
    }

    /// The held element, once its retry delay has passed; `None` if there is none
    /// or it is not due yet (the waker is registered).
    pub(crate) fn due(&mut self, cx: &mut Context<'_>) -> Option<Due<T>> {
        let held = self.held.as_mut()?;
        if held.timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        let Held {
            element,
            index,
            attempt,
            ..
        } = self.held.take()?;
        Some(Due {
            element,
            index,
            attempt,
        })
    }
}
