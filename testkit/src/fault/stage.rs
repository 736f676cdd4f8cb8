//! [`Inject`]: a pass-through stage that fails where its [`Fault`] says.

use std::marker::PhantomData;
use std::task::Context;

use weir::operator::{Io, Operator, Step};

use weir::Failure;

use super::plan::{Fault, FaultKind};

/// A one-to-one pass-through stage that fails the elements its [`Fault`] picks:
/// the element is lost (counted as failed) and the stage fails, unless the stage is
/// supervised, in which case the policy decides (the operator is retry-safe: a
/// retry is a new attempt, so an `*_at(n)` fault does not fire again).
///
/// Added with [`inject`](crate::TestkitExt::inject); arguments are checked when
/// the pipeline is built (a probability outside `[0, 1]` or an element 0 is a
/// [`BuildError`](weir::BuildError) naming the stage).
#[derive(Debug)]
pub struct Inject<T> {
    fault: Fault,
    /// The fault fired on the element at the front of the queue, in a step that
    /// had passed others: it strikes in the next step, after they were sent.
    armed: Option<FaultKind>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Inject<T> {
    /// A stage injecting `fault`.
    pub fn new(fault: Fault) -> Self {
        Inject {
            fault,
            armed: None,
            _t: PhantomData,
        }
    }
}

impl<T: Send + 'static> Operator for Inject<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "inject"
    }

    fn validate(&self) -> Result<(), String> {
        self.fault.validate()
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn step(&mut self, io: &mut Io<'_, T, T>, cx: &mut Context<'_>) -> Step {
        if let Some(kind) = self.armed.take()
            && let Some(x) = io.pop()
        {
            // The element is dropped here: the stage counts it as failed.
            drop(x);
            let message = format!("injected fault at attempt {}", self.fault.attempts());
            match kind {
                FaultKind::Panic => panic!("{message}"),
                FaultKind::Error(class) => return Step::Failed(Failure::error(class, message)),
            }
        }
        let mut passed = 0;
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            if let Some(kind) = self.fault.next_attempt() {
                // Strike in a step of its own, so that the elements before this one
                // leave the stage first and the count of completed ones is exact.
                io.unpop(x);
                self.armed = Some(kind);
                if passed == 0 {
                    return self.step(io, cx);
                }
                cx.waker().wake_by_ref();
                return Step::Continue;
            }
            io.push(x);
            passed += 1;
        }
        io.finish_when_drained()
    }
}
