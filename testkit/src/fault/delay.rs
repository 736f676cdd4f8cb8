//! [`DelayEach`]: a slow stage, one element per period.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;
use weir::operator::{Io, Operator, Step};

/// A one-to-one pass-through stage that takes `period` per element (on tokio's
/// clock): elements wait in its input queue meanwhile, so upstream is
/// backpressured exactly as by a slow user stage.
///
/// Added with [`delay_each`](crate::TestkitExt::delay_each).
#[derive(Debug)]
pub struct DelayEach<T> {
    period: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> DelayEach<T> {
    /// A stage passing one element per `period`.
    pub fn new(period: Duration) -> Self {
        DelayEach {
            period,
            sleep: None,
            _t: PhantomData,
        }
    }
}

impl<T: Send + 'static> Operator for DelayEach<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "delay_each"
    }

    fn step(&mut self, io: &mut Io<'_, T, T>, cx: &mut Context<'_>) -> Step {
        while io.has_room() && io.input_len() > 0 {
            let period = self.period;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(period)));
            if sleep.as_mut().poll(cx) == Poll::Pending {
                return Step::Continue;
            }
            self.sleep = None;
            if let Some(x) = io.pop() {
                io.push(x);
            }
        }
        io.finish_when_drained()
    }
}
