//! [`Fold`]: a sink that folds every element into an accumulator.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::task::Context;

use weir_runtime::OutputSender;
use weir_runtime::operator::{Counting, Io, Operator, Step};

/// Folds every element into an accumulator returned as the pipeline's output.
/// Created by [`FlowExt::fold`](crate::FlowExt::fold).
pub struct Fold<F, T, A> {
    acc: Option<A>,
    f: F,
    output: OutputSender<A>,
    _type: PhantomData<fn(T)>,
}

impl<F, T, A> Fold<F, T, A> {
    pub(crate) fn new(init: A, f: F, output: OutputSender<A>) -> Self {
        Fold {
            acc: Some(init),
            f,
            output,
            _type: PhantomData,
        }
    }
}

impl<F, T, A> std::fmt::Debug for Fold<F, T, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fold")
    }
}

impl<F, T, A> Operator for Fold<F, T, A>
where
    F: FnMut(A, T) -> A + Send + 'static,
    T: Send + 'static,
    A: Send + 'static,
{
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "fold"
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    #[inline]
    fn step(&mut self, io: &mut Io<'_, T, Infallible>, _cx: &mut Context<'_>) -> Step {
        // The accumulator is only absent after `on_stop`.
        // The accumulator lives in a local during the loop (a register for small
        // types). If `f` panics it is lost with the element: the stage has failed and
        // its state is gone, as it would be on a restart.
        let mut acc = self.acc.take();
        let f = &mut self.f;
        io.consume_all(|x| acc = acc.take().map(|a| f(a, x)));
        self.acc = acc;
        io.finish_when_drained()
    }

    fn on_stop(&mut self) {
        if let Some(acc) = self.acc.take() {
            self.output.send(acc);
        }
    }
}
