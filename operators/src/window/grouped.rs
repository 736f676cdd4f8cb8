//! [`GroupedWithin`]: batches of up to `n` elements or whatever came within a
//! duration, whichever is first.

use std::task::Context;
use std::time::Duration;

use tokio::time::Instant;
use weir_runtime::operator::{Counting, Io, Operator, Step};

use super::operator::Timer;

/// Emits a batch when it holds `n` elements, or when `within` has passed since
/// its first element (on the tokio clock, so paused time drives it), whichever
/// comes first; at the end of the input, the partial batch. Created by
/// [`WindowExt::grouped_within`](super::WindowExt::grouped_within).
///
/// The batch being filled is held (at most `n` elements; abandoned if the stage
/// is cancelled). A batch that is due waits for room downstream, and no input is
/// taken meanwhile.
#[derive(Debug)]
pub struct GroupedWithin<T> {
    n: usize,
    within: Duration,
    buf: Vec<T>,
    deadline: Option<Instant>,
    timer: Timer,
}

impl<T> GroupedWithin<T> {
    pub(crate) fn new(n: usize, within: Duration) -> Self {
        GroupedWithin {
            n,
            within,
            buf: Vec::new(),
            deadline: None,
            timer: Timer::default(),
        }
    }
}

impl<T: Send + 'static> Operator for GroupedWithin<T> {
    type In = T;
    type Out = Vec<T>;

    fn kind(&self) -> &'static str {
        "grouped_within"
    }

    fn validate(&self) -> Result<(), String> {
        if self.n == 0 {
            return Err("grouped_within(0, _): a batch holds at least one element".into());
        }
        if self.within.is_zero() {
            return Err("grouped_within(_, 0s): the duration must be positive".into());
        }
        Ok(())
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn held(&self) -> usize {
        self.buf.len()
    }

    fn step(&mut self, io: &mut Io<'_, T, Vec<T>>, cx: &mut Context<'_>) -> Step {
        loop {
            while io.has_room() {
                while self.buf.len() < self.n {
                    let Some(x) = io.pop() else { break };
                    if self.buf.is_empty() {
                        self.deadline = Some(Instant::now() + self.within);
                    }
                    self.buf.push(x);
                }
                let expired = self.deadline.is_some_and(|d| Instant::now() >= d);
                let last = io.input_exhausted() && !self.buf.is_empty();
                if !(self.buf.len() == self.n || expired || last) {
                    break;
                }
                let batch = std::mem::take(&mut self.buf);
                self.deadline = None;
                io.complete(batch.len());
                io.push(batch);
            }
            if io.input_exhausted() && self.buf.is_empty() {
                return Step::Finished;
            }
            match self.deadline {
                // The deadline passed while there was no room: wait for credit.
                Some(d) if self.timer.arm(d, cx) && io.has_room() => continue,
                Some(_) => return Step::Continue,
                None => {
                    self.timer.disarm();
                    return Step::Continue;
                }
            }
        }
    }
}
