//! [`FromFactory`]: an operator rebuilt from its factory when its stage restarts.

use std::task::Context;

use super::{Counting, ElementSupervision, Io, Operator, Step};

/// Wraps the operator a factory builds, and builds a fresh one on
/// [`restart`](Operator::restart). Created by [`Flow::via_factory`](crate::Flow::via_factory).
pub(crate) struct FromFactory<F, Op: Operator> {
    factory: F,
    op: Op,
    /// Element supervision the operator accepted, handed to each rebuilt one.
    elements: Option<ElementSupervision<Op::In>>,
}

impl<F, Op> FromFactory<F, Op>
where
    F: Fn() -> Op,
    Op: Operator,
{
    pub(crate) fn new(factory: F) -> Self {
        let op = factory();
        FromFactory {
            factory,
            op,
            elements: None,
        }
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

    fn supervise_elements(&mut self, setup: ElementSupervision<Self::In>) -> bool {
        let accepted = self.op.supervise_elements(setup);
        self.elements = accepted.then_some(setup);
        accepted
    }

    fn restart(&mut self) -> bool {
        // Rebuilding would destroy what the operator holds (a partial chunk):
        // only an operator holding nothing is replaced.
        if self.op.held() > 0 {
            return false;
        }
        let mut fresh = (self.factory)();
        if let Some(setup) = self.elements
            && !fresh.supervise_elements(setup)
        {
            // A factory that builds a different kind of operator each time: keep
            // the one that handles its failures.
            return false;
        }
        self.op = fresh;
        true
    }

    fn counting(&self) -> Counting {
        self.op.counting()
    }

    fn fusable(&self) -> bool {
        self.op.fusable()
    }

    fn may_filter(&self) -> bool {
        self.op.may_filter()
    }

    fn state_entries(&self) -> usize {
        self.op.state_entries()
    }

    fn held(&self) -> usize {
        self.op.held()
    }

    fn on_stop(&mut self) {
        self.op.on_stop();
    }

    fn checkpoint(&mut self) -> Option<&mut dyn crate::checkpoint::Checkpointable> {
        self.op.checkpoint()
    }

    fn not_checkpointable(&self) -> Option<String> {
        self.op.not_checkpointable()
    }
}

impl<F, Op> crate::reconfig::Reconfigurable for FromFactory<F, Op>
where
    F: Fn() -> Op + Send + 'static,
    Op: crate::reconfig::Reconfigurable,
{
    type Config = Op::Config;

    fn reconfigure(&mut self, config: &Self::Config) -> Result<(), String> {
        self.op.reconfigure(config)
    }
}
