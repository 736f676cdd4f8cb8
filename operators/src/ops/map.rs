//! [`Map`]: one output per input.

use std::marker::PhantomData;
use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};

/// Applies a function to every element. Created by
/// [`FlowExt::map`](crate::FlowExt::map). Order preserved.
pub struct Map<F, In, Out> {
    f: F,
    _types: PhantomData<fn(In) -> Out>,
}

impl<F, In, Out> Map<F, In, Out> {
    pub(crate) fn new(f: F) -> Self {
        Map {
            f,
            _types: PhantomData,
        }
    }
}

impl<F, In, Out> std::fmt::Debug for Map<F, In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Map")
    }
}

impl<F, In, Out> Operator for Map<F, In, Out>
where
    F: FnMut(In) -> Out + Send + 'static,
    In: Send + 'static,
    Out: Send + 'static,
{
    type In = In;
    type Out = Out;

    fn kind(&self) -> &'static str {
        "map"
    }

    #[inline]
    fn step(&mut self, io: &mut Io<'_, In, Out>, _cx: &mut Context<'_>) -> Step {
        io.map_batch(&mut self.f);
        io.finish_when_drained()
    }
}
