//! [`FromFactory`]: an operator rebuilt from its factory when its stage restarts.

use std::task::Context;

use super::{Counting, Io, Operator, Step};

/// Wraps the operator a factory builds, and builds a fresh one on
/// [`restart`](Operator::restart). Created by [`Flow::via_factory`](crate::Flow::via_factory).
pub(crate) struct FromFactory<F, Op> {
    factory: F,
    op: Op,
}

impl<F, Op> FromFactory<F, Op>
where
    F: Fn() -> Op,
{
    pub(crate) fn new(factory: F) -> Self {
        let op = factory();
        FromFactory { factory, op }
    }
}

impl<F, Op> Operator for FromFactory<F, Op>
where
    F: Fn() -> Op + Send + 'static,
    Op: Operator,
{
    type In = Op::In;
    type Out = Op::Out;

    fn kind(&self) -> &'static str {
        self.op.kind()
    }

    fn step(&mut self, io: &mut Io<'_, Self::In, Self::Out>, cx: &mut Context<'_>) -> Step {
        self.op.step(io, cx)
    }

    fn validate(&self) -> Result<(), String> {
        self.op.validate()
    }

    fn retry_safe(&self) -> bool {
        self.op.retry_safe()
    }

    fn restart(&mut self) -> bool {
        // Rebuilding would destroy what the operator holds (a partial chunk):
        // only an operator holding nothing is replaced.
        if self.op.held() > 0 {
            return false;
        }
        self.op = (self.factory)();
        true
    }

    fn counting(&self) -> Counting {
        self.op.counting()
    }

    fn held(&self) -> usize {
        self.op.held()
    }

    fn on_stop(&mut self) {
        self.op.on_stop();
    }
}
