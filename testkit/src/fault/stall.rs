//! [`Stall`]: a stage that stops taking input after `n` elements.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};

use weir::operator::{Io, Operator, Step};

#[derive(Debug, Default)]
struct Gate {
    released: bool,
    waker: Option<Waker>,
}

fn lock(gate: &Mutex<Gate>) -> MutexGuard<'_, Gate> {
    gate.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A one-to-one pass-through stage that passes `after` elements and then takes
/// nothing more (its input queue fills and upstream is backpressured) until its
/// [`StallHandle`] is released. Just before a sink it makes a stalled sink.
///
/// Added with [`stall_after`](crate::TestkitExt::stall_after).
#[derive(Debug)]
pub struct Stall<T> {
    after: u64,
    passed: u64,
    gate: Arc<Mutex<Gate>>,
    _t: PhantomData<fn(T) -> T>,
}

/// Releases a [`Stall`]: from then on it passes everything. Dropping the handle
/// does not release it.
#[derive(Debug, Clone)]
pub struct StallHandle {
    gate: Arc<Mutex<Gate>>,
}

impl StallHandle {
    /// Lets the stalled stage go on.
    pub fn release(&self) {
        let waker = {
            let mut gate = lock(&self.gate);
            gate.released = true;
            gate.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// True once released.
    pub fn is_released(&self) -> bool {
        lock(&self.gate).released
    }
}

impl<T> Stall<T> {
    /// A stage stalling after `after` elements, and its release handle.
    pub fn new(after: u64) -> (Self, StallHandle) {
        let gate = Arc::new(Mutex::new(Gate::default()));
        let stall = Stall {
            after,
            passed: 0,
            gate: Arc::clone(&gate),
            _t: PhantomData,
        };
        (stall, StallHandle { gate })
    }
}

impl<T: Send + 'static> Operator for Stall<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "stall"
    }

    fn step(&mut self, io: &mut Io<'_, T, T>, cx: &mut Context<'_>) -> Step {
        while io.has_room() && io.input_len() > 0 {
            if self.passed >= self.after {
                let mut gate = lock(&self.gate);
                if !gate.released {
                    gate.waker = Some(cx.waker().clone());
                    return Step::Continue;
                }
            }
            if let Some(x) = io.pop() {
                io.push(x);
                self.passed += 1;
            }
        }
        io.finish_when_drained()
    }
}
