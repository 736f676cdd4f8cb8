//! [`IterSource`]: a source that pulls from an iterator.

use std::convert::Infallible;
use std::iter::Fuse;
use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};

/// Emits the items of an iterator, pulling only as many as downstream has credit
/// for. Created by [`Pipeline::from_iter`](crate::Pipeline::from_iter). On shutdown
/// it stops pulling: items the iterator has not yielded were never admitted.
#[derive(Debug)]
pub struct IterSource<I> {
    iter: Fuse<I>,
}

impl<I: Iterator> IterSource<I> {
    pub(crate) fn new(iter: I) -> Self {
        IterSource { iter: iter.fuse() }
    }
}

impl<I> Operator for IterSource<I>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    type In = Infallible;
    type Out = I::Item;

    fn kind(&self) -> &'static str {
        "iter"
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, I::Item>, _cx: &mut Context<'_>) -> Step {
        if io.input_ended() {
            return Step::Finished;
        }
        let room = io.room();
        let out = io.output();
        let before = out.len();
        out.extend(self.iter.by_ref().take(room));
        if out.len() - before < room {
            Step::Finished
        } else {
            Step::Continue
        }
    }
}
