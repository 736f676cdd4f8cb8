//! [`FilterMap`]: maps and drops in one step.

use std::marker::PhantomData;
use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};

/// Applies a function returning `Option`; `None` counts as filtered. Created by
/// [`FlowExt::filter_map`](crate::FlowExt::filter_map). Order preserved.
pub struct FilterMap<F, In, Out> {
    f: F,
    _types: PhantomData<fn(In) -> Out>,
}

impl<F, In, Out> FilterMap<F, In, Out> {
    pub(crate) fn new(f: F) -> Self {
        FilterMap {
            f,
            _types: PhantomData,
        }
    }
}

impl<F, In, Out> std::fmt::Debug for FilterMap<F, In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FilterMap")
    }
}

impl<F, In, Out> Operator for FilterMap<F, In, Out>
where
    F: FnMut(In) -> Option<Out> + Send + 'static,
    In: Send + 'static,
    Out: Send + 'static,
{
    type In = In;
    type Out = Out;

    fn kind(&self) -> &'static str {
        "filter_map"
    }

    #[inline]
    fn step(&mut self, io: &mut Io<'_, In, Out>, _cx: &mut Context<'_>) -> Step {
        io.filter_map_batch(&mut self.f);
        io.finish_when_drained()
    }
}
