//! [`Filter`]: keeps the elements a predicate accepts.

use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};

/// Keeps elements for which the predicate returns true; the others are counted as
/// filtered. Created by [`FlowExt::filter`](crate::FlowExt::filter). Order preserved.
pub struct Filter<F, T> {
    predicate: F,
    _type: std::marker::PhantomData<fn(T) -> T>,
}

impl<F, T> Filter<F, T> {
    pub(crate) fn new(predicate: F) -> Self {
        Filter {
            predicate,
            _type: std::marker::PhantomData,
        }
    }
}

impl<F, T> std::fmt::Debug for Filter<F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Filter")
    }
}

impl<F, T> Operator for Filter<F, T>
where
    F: FnMut(&T) -> bool + Send + 'static,
    T: Send + 'static,
{
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "filter"
    }

    #[inline]
    fn step(&mut self, io: &mut Io<'_, T, T>, _cx: &mut Context<'_>) -> Step {
        io.filter_batch(&mut self.predicate);
        io.finish_when_drained()
    }
}
