//! [`Collect`]: a sink that gathers every element into a `Vec`.

use std::convert::Infallible;
use std::task::Context;

use weir_runtime::OutputSender;
use weir_runtime::operator::{Counting, Io, Operator, Step};

/// Gathers every element, in order, into a `Vec` returned as the pipeline's output.
/// Memory grows with the stream: use it for bounded streams and tests. Created by
/// [`FlowExt::collect`](crate::FlowExt::collect).
#[derive(Debug)]
pub struct Collect<T> {
    items: Vec<T>,
    output: OutputSender<Vec<T>>,
}

impl<T> Collect<T> {
    pub(crate) fn new(output: OutputSender<Vec<T>>) -> Self {
        Collect {
            items: Vec::new(),
            output,
        }
    }
}

impl<T: Send + 'static> Operator for Collect<T> {
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "collect"
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn step(&mut self, io: &mut Io<'_, T, Infallible>, _cx: &mut Context<'_>) -> Step {
        let items = &mut self.items;
        io.consume_all(|x| items.push(x));
        io.finish_when_drained()
    }

    fn on_stop(&mut self) {
        self.output.send(std::mem::take(&mut self.items));
    }
}
