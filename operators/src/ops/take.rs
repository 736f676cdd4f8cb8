//! [`Take`]: the first `n` elements, then end the stream.

use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};

/// Passes the first `n` elements, then ends the stream downstream and cancels
/// upstream. Elements already in flight behind the `n`-th are counted as abandoned
/// at this stage. Created by [`FlowExt::take`](crate::FlowExt::take).
#[derive(Debug)]
pub struct Take<T> {
    remaining: u64,
    _type: std::marker::PhantomData<fn(T) -> T>,
}

impl<T> Take<T> {
    pub(crate) fn new(n: u64) -> Self {
        Take {
            remaining: n,
            _type: std::marker::PhantomData,
        }
    }
}

impl<T: Send + 'static> Operator for Take<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "take"
    }

    fn step(&mut self, io: &mut Io<'_, T, T>, _cx: &mut Context<'_>) -> Step {
        while self.remaining > 0 && io.has_room() {
            let Some(x) = io.pop() else { break };
            io.push(x);
            self.remaining -= 1;
        }
        if self.remaining == 0 {
            Step::Finished
        } else {
            io.finish_when_drained()
        }
    }
}
