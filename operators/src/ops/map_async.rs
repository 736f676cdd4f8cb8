//! [`MapAsync`]: an async function per element, several at once, order kept.

use std::future::Future;
use std::task::{Context, Poll};

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use weir_runtime::operator::{Io, Operator, Step};

/// Runs an async function on each element with up to `concurrency` futures in flight
/// and emits their results in input order. Created by
/// [`FlowExt::map_async`](crate::FlowExt::map_async).
///
/// The futures run on the stage's arbiter (a tokio current-thread runtime with time
/// and I/O), so they may use tokio timers and sockets.
pub struct MapAsync<F, T, Fut: Future> {
    f: F,
    _type: std::marker::PhantomData<fn(T)>,
    concurrency: usize,
    in_flight: FuturesOrdered<Fut>,
}

impl<F, T, Fut: Future> MapAsync<F, T, Fut> {
    pub(crate) fn new(concurrency: usize, f: F) -> Self {
        MapAsync {
            f,
            concurrency,
            in_flight: FuturesOrdered::new(),
            _type: std::marker::PhantomData,
        }
    }
}

impl<F, T, Fut: Future> std::fmt::Debug for MapAsync<F, T, Fut> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapAsync")
            .field("concurrency", &self.concurrency)
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

impl<F, T, Fut> Operator for MapAsync<F, T, Fut>
where
    F: FnMut(T) -> Fut + Send + 'static,
    T: Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    type In = T;
    type Out = Fut::Output;

    fn kind(&self) -> &'static str {
        "map_async"
    }

    fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            Err("map_async with concurrency 0 could never run a future".into())
        } else {
            Ok(())
        }
    }

    fn held(&self) -> usize {
        self.in_flight.len()
    }

    fn step(&mut self, io: &mut Io<'_, T, Fut::Output>, cx: &mut Context<'_>) -> Step {
        loop {
            let mut progress = false;
            while self.in_flight.len() < self.concurrency {
                let Some(x) = io.pop() else { break };
                self.in_flight.push_back((self.f)(x));
                progress = true;
            }
            while io.has_room() && !self.in_flight.is_empty() {
                match self.in_flight.poll_next_unpin(cx) {
                    Poll::Ready(Some(y)) => {
                        io.push(y);
                        progress = true;
                    }
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
            if !progress {
                break;
            }
        }
        if io.input_exhausted() && self.in_flight.is_empty() {
            Step::Finished
        } else {
            Step::Continue
        }
    }
}
