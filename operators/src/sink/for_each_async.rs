//! [`ForEachAsync`]: a sink that awaits a future per element.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::FutureExt;
use weir_runtime::operator::{Counting, ElementSupervision, Io, Operator, Step};

use crate::attempts::Attempts;

/// Awaits an async function for each element, one at a time and in order; an
/// element is delivered when its future completes. While a future is pending the
/// sink takes no more input, so a slow sink backpressures the whole pipeline.
/// Created by [`FlowExt::for_each_async`](crate::FlowExt::for_each_async).
///
/// Under [`Flow::supervise`](weir_runtime::Flow::supervise) the element being
/// delivered keeps a copy: a failed delivery (a panic, or the policy's
/// `element_timeout`) is retried after the policy's backoff, dead-lettered or
/// skipped, before the next element is taken.
pub struct ForEachAsync<F, T, Fut> {
    f: F,
    current: Option<Pin<Box<Fut>>>,
    /// Present when the stage is supervised.
    supervised: Option<Attempts<T, ()>>,
    _type: PhantomData<fn(T)>,
}

impl<F, T, Fut> ForEachAsync<F, T, Fut> {
    pub(crate) fn new(f: F) -> Self {
        ForEachAsync {
            f,
            current: None,
            supervised: None,
            _type: PhantomData,
        }
    }
}

impl<F, T, Fut> std::fmt::Debug for ForEachAsync<F, T, Fut> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForEachAsync")
            .field("busy", &self.current.is_some())
            .finish()
    }
}

impl<F, T, Fut> Operator for ForEachAsync<F, T, Fut>
where
    F: FnMut(T) -> Fut + Send + 'static,
    T: Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "for_each_async"
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn held(&self) -> usize {
        usize::from(self.current.is_some()) + self.supervised.as_ref().map_or(0, Attempts::held)
    }

    fn supervise_elements(&mut self, setup: ElementSupervision<T>) -> bool {
        self.supervised = Some(Attempts::new(setup));
        true
    }

    fn step(&mut self, io: &mut Io<'_, T, Infallible>, cx: &mut Context<'_>) -> Step {
        if let Some(attempts) = &mut self.supervised {
            let f = &mut self.f;
            let mut call = |x| f(x).map(Ok);
            loop {
                let mut progress = false;
                if attempts.is_empty() {
                    let index = io.next_index();
                    if let Some(x) = io.pop() {
                        attempts.start(&mut call, x, index, io);
                        progress = true;
                    }
                }
                progress |= attempts.poll(&mut call, io, cx);
                let window = attempts.len();
                while attempts.pop_ready().is_some() {
                    io.complete(1);
                }
                progress |= attempts.len() != window;
                if !progress {
                    break;
                }
            }
            return if attempts.is_empty() {
                io.finish_when_drained()
            } else {
                Step::Continue
            };
        }
        loop {
            // Taken out while it is polled: if the user's future panics, its
            // element is not held any more, so it is counted as failed.
            if let Some(mut fut) = self.current.take() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(()) => io.complete(1),
                    Poll::Pending => {
                        self.current = Some(fut);
                        return Step::Continue;
                    }
                }
            }
            match io.pop() {
                Some(x) => self.current = Some(Box::pin((self.f)(x))),
                None => return io.finish_when_drained(),
            }
        }
    }
}
