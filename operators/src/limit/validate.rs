//! [`Validate`]: `validate` and `max_element_bytes`, which turn invalid or
//! oversized elements away through the stage's supervision.

use std::task::Context;

use weir_runtime::operator::{ElementSupervision, Io, Operator, Step};
use weir_runtime::{ErrorClass, Failure};

use super::reject::{After, Rejecter};

/// Checks each element with a function returning `Err(reason)` for the ones to
/// turn away; accepted elements pass unchanged, in order. Created by
/// [`LimitExt::validate`](super::LimitExt::validate) and
/// [`LimitExt::max_element_bytes`](super::LimitExt::max_element_bytes).
///
/// A rejected element fails with [`ErrorClass::Permanent`] and the reason as the
/// message, handed to the stage's supervision: with
/// [`rejections_to`](super::rejections_to) (or any policy whose permanent action
/// is `dead_letter`) it lands in the dead letters and is counted as
/// `dead_lettered`; without supervision the first rejected element fails the
/// pipeline with the reason. The check runs before any later stage sees the
/// element, so nothing downstream ever holds an invalid or oversized one.
pub struct Validate<T, F> {
    kind: &'static str,
    check: F,
    /// An argument error found when the stage was created, reported at build.
    invalid: Option<String>,
    /// The size limit it enforces, for `max_element_bytes`.
    max_bytes: Option<u64>,
    rejecter: Rejecter<T>,
}

impl<T, F> Validate<T, F> {
    pub(crate) fn new(kind: &'static str, check: F, invalid: Option<String>) -> Self {
        Validate {
            kind,
            check,
            invalid,
            max_bytes: None,
            rejecter: Rejecter::default(),
        }
    }

    /// Says that the check bounds elements to `bytes` (for a memory budget).
    pub(crate) fn bounding(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }
}

impl<T, F> std::fmt::Debug for Validate<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validate")
            .field("kind", &self.kind)
            .field("rejecter", &self.rejecter)
            .finish_non_exhaustive()
    }
}

impl<T, F> Validate<T, F>
where
    F: FnMut(&T) -> Result<(), String>,
{
    fn judge(
        &mut self,
        io: &mut Io<'_, T, T>,
        x: T,
        index: u64,
        attempt: u32,
        cx: &mut Context<'_>,
    ) -> After {
        match (self.check)(&x) {
            Ok(()) => {
                io.push(x);
                After::Next
            }
            Err(reason) => {
                let failure = Failure::error(ErrorClass::Permanent, reason);
                self.rejecter.reject(io, x, index, attempt, failure, cx)
            }
        }
    }
}

impl<T, F> Operator for Validate<T, F>
where
    T: Send + 'static,
    F: FnMut(&T) -> Result<(), String> + Send + 'static,
{
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn max_element_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    fn fusable(&self) -> bool {
        true
    }

    fn validate(&self) -> Result<(), String> {
        self.invalid.clone().map_or(Ok(()), Err)
    }

    /// Rejected elements go to the stage's supervision through
    /// [`Io::element_failed`]; the operator never needs a copy of an element.
    fn supervise_elements(&mut self, _setup: ElementSupervision<T>) -> bool {
        true
    }

    fn held(&self) -> usize {
        self.rejecter.held()
    }

    fn step(&mut self, io: &mut Io<'_, T, T>, cx: &mut Context<'_>) -> Step {
        if self.rejecter.is_holding() {
            let Some(due) = self.rejecter.due(cx) else {
                return Step::Continue;
            };
            if self.judge(io, due.element, due.index, due.attempt, cx) == After::Stop {
                return Step::Continue;
            }
        }
        while io.has_room() {
            let index = io.next_index();
            let Some(x) = io.pop() else { break };
            if self.judge(io, x, index, 1, cx) == After::Stop {
                return Step::Continue;
            }
        }
        io.finish_when_drained()
    }
}
