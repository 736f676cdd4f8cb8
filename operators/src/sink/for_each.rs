//! [`ForEach`]: a sink that calls a function per element.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::task::Context;

use weir_runtime::operator::{Counting, Io, Operator, Step};

/// Calls a function with each element; an element is delivered when the call
/// returns. Created by [`FlowExt::for_each`](crate::FlowExt::for_each).
pub struct ForEach<F, T> {
    f: F,
    _type: PhantomData<fn(T)>,
}

impl<F, T> ForEach<F, T> {
    pub(crate) fn new(f: F) -> Self {
        ForEach {
            f,
            _type: PhantomData,
        }
    }
}

impl<F, T> std::fmt::Debug for ForEach<F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForEach")
    }
}

impl<F, T> Operator for ForEach<F, T>
where
    F: FnMut(T) + Send + 'static,
    T: Send + 'static,
{
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "for_each"
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    #[inline]
    fn step(&mut self, io: &mut Io<'_, T, Infallible>, _cx: &mut Context<'_>) -> Step {
        io.consume_all(&mut self.f);
        io.finish_when_drained()
    }
}
