//! [`Inspect`]: looks at each element and passes it on.

use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};

/// Calls a function with a reference to each element, then passes the element on.
/// Created by [`FlowExt::inspect`](crate::FlowExt::inspect).
pub struct Inspect<F, T> {
    f: F,
    _type: std::marker::PhantomData<fn(T) -> T>,
}

impl<F, T> Inspect<F, T> {
    pub(crate) fn new(f: F) -> Self {
        Inspect {
            f,
            _type: std::marker::PhantomData,
        }
    }
}

impl<F, T> std::fmt::Debug for Inspect<F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inspect")
    }
}

impl<F, T> Operator for Inspect<F, T>
where
    F: FnMut(&T) + Send + 'static,
    T: Send + 'static,
{
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "inspect"
    }

    #[inline]
    fn step(&mut self, io: &mut Io<'_, T, T>, _cx: &mut Context<'_>) -> Step {
        let f = &mut self.f;
        io.map_batch(|x| {
            f(&x);
            x
        });
        io.finish_when_drained()
    }
}
