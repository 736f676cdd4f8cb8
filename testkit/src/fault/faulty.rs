//! [`Faulty`]: a user's operator that fails where a [`Fault`] says.

use std::task::Context;

use weir::Failure;
use weir::operator::{Counting, ElementSupervision, Io, Operator, Step};

use super::plan::{Fault, FaultKind};

/// Wraps a user's operator so that the elements `fault` picks fail *in that
/// operator's stage*: the wrapper hands the operator only the elements before the
/// chosen one, lets it process them, then fails the chosen one (a panic or an
/// error, counted as failed by the stage) before the operator sees it.
///
/// Attempts are the elements the operator takes, counted from 1; a supervised
/// retry of the failed element is a new attempt. Everything else (kind,
/// counting, validation, supervision, held elements, state, restarts) is the
/// inner operator's. The wrapped operator may see its input as exhausted while
/// the chosen element waits behind it (when upstream has ended): it must not
/// rely on being stepped again after saying it finished, which holds for the
/// built-in operators.
///
/// # Examples
///
/// ```
/// use std::task::Context;
/// use weir::operator::{Io, Operator, Step};
/// use weir::prelude::*;
/// use weir_testkit::fault::{Fault, Faulty};
///
/// /// The user's operator under test.
/// struct Parse;
/// impl Operator for Parse {
///     type In = &'static str;
///     type Out = u32;
///     fn kind(&self) -> &'static str { "parse" }
///     fn step(&mut self, io: &mut Io<'_, &'static str, u32>, _: &mut Context<'_>) -> Step {
///         io.map_batch(|s| s.len() as u32);
///         io.finish_when_drained()
///     }
/// }
///
/// let rt = Runtime::builder().arbiters(1).build()?;
/// let err = Pipeline::from_iter(["a", "bb", "ccc", "dddd"])
///     .via(Faulty::new(Parse, Fault::error_at(3)))
///     .name("parse")
///     .collect()
///     .run(&rt)?
///     .wait()
///     .unwrap_err();
/// let report = err.report().unwrap();
/// let parse = report.stage("parse").unwrap();
/// assert_eq!((parse.completed, parse.failed), (2, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Faulty<Op> {
    inner: Op,
    fault: Fault,
    /// The fault picked the element now at the front of the queue: it fails in
    /// the next step.
    armed: Option<FaultKind>,
}

impl<Op> Faulty<Op> {
    /// Wraps `inner`, failing the elements `fault` picks.
    pub fn new(inner: Op, fault: Fault) -> Self {
        Faulty {
            inner,
            fault,
            armed: None,
        }
    }

    /// Counts `n` attempts that passed.
    fn passed(&mut self, n: usize) {
        for _ in 0..n {
            // Only the attempts before the chosen one are counted here, so none
            // of them fires.
            let _ = self.fault.next_attempt();
        }
    }
}

impl<Op: Operator> Faulty<Op> {
    /// Runs the inner operator on the first `visible` queued elements only, the
    /// rest put back behind whatever it left. Returns its step and how many it
    /// took.
    fn step_on_front(
        &mut self,
        visible: usize,
        io: &mut Io<'_, Op::In, Op::Out>,
        cx: &mut Context<'_>,
    ) -> (Step, usize) {
        let mut front = Vec::with_capacity(io.input_len());
        while let Some(x) = io.pop() {
            front.push(x);
        }
        let hidden = front.split_off(visible.min(front.len()));
        for x in front.into_iter().rev() {
            io.unpop(x);
        }
        let step = self.inner.step(io, cx);
        let mut left = Vec::with_capacity(io.input_len());
        while let Some(x) = io.pop() {
            left.push(x);
        }
        let taken = visible.saturating_sub(left.len());
        for x in hidden.into_iter().rev().chain(left.into_iter().rev()) {
            io.unpop(x);
        }
        (step, taken)
    }
}

impl<Op: Operator> Operator for Faulty<Op> {
    type In = Op::In;
    type Out = Op::Out;

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn step(&mut self, io: &mut Io<'_, Op::In, Op::Out>, cx: &mut Context<'_>) -> Step {
        if let Some(kind) = self.armed.take()
            && let Some(x) = io.pop()
        {
            // The chosen element is dropped here: the stage counts it as failed.
            drop(x);
            let message = format!("injected fault at attempt {}", self.fault.attempts());
            match kind {
                FaultKind::Panic => panic!("{message}"),
                FaultKind::Error(class) => return Step::Failed(Failure::error(class, message)),
            }
        }
        // Which queued element, if any, the fault picks.
        let mut ahead = self.fault.clone();
        let chosen = (0..io.input_len()).find(|_| ahead.next_attempt().is_some());
        let Some(chosen) = chosen else {
            let before = io.input_len();
            let step = self.inner.step(io, cx);
            self.passed(before.saturating_sub(io.input_len()));
            return step;
        };
        let (step, taken) = if chosen == 0 {
            (Step::Continue, 0)
        } else {
            self.step_on_front(chosen, io, cx)
        };
        self.passed(taken);
        if taken < chosen || matches!(step, Step::Failed(_)) {
            // The operator has not reached the chosen element yet (it is out of
            // room, finished early like a `take`, or failed on its own): go on as
            // it says.
            return step;
        }
        self.armed = self.fault.next_attempt();
        debug_assert!(self.armed.is_some(), "the fault picked this attempt");
        cx.waker().wake_by_ref();
        Step::Continue
    }

    fn validate(&self) -> Result<(), String> {
        self.fault.validate()?;
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
