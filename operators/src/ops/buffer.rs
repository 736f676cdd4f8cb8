//! [`Buffer`]: an explicit buffer of `n` elements with an overflow policy.

use std::collections::VecDeque;
use std::task::Context;

use weir_runtime::junction::Overflow;
use weir_runtime::operator::{ElementSupervision, Io, Operator, Step, Verdict};
use weir_runtime::{ErrorClass, Failure};

use super::slack::Slack;

/// Holds up to `capacity` elements between two stages and applies an
/// [`Overflow`] policy when another arrives. Created by
/// [`FlowControlExt::buffer`](crate::ops::FlowControlExt::buffer) and
/// [`FlowControlExt::buffer_dead_lettering`](crate::ops::FlowControlExt::buffer_dead_lettering).
///
/// Order is kept (minus what was dropped). Each element is counted once: sent on
/// (`completed`), held in the buffer (in flight, `abandoned` if the pipeline
/// stops), or dropped. A drop is counted as `filtered` on the buffer stage, or,
/// when the stage is supervised (see `buffer_dead_lettering`), handed to the
/// stage's policy as a `ResourceExhausted` failure: a dead letter (counted
/// `dead_lettered`), a skip (counted `failed`), or escalation. So the stage's
/// report conserves: `input = completed + filtered + failed + dead_lettered +
/// abandoned`.
///
/// With a drop or fail policy the buffer keeps taking input while downstream is
/// stalled, as long as the downstream edge and the batch limit have room for two
/// or more elements: it keeps one unit of the downstream edge's credit back so
/// that its stage is stepped whenever input arrives. With
/// [`Overflow::Backpressure`] a full buffer stops taking input and upstream waits.
pub struct Buffer<T> {
    capacity: usize,
    overflow: Overflow,
    /// The buffered elements with their index in the stage's input.
    queue: VecDeque<(u64, T)>,
    /// Drops go to the stage's supervision (a dead-letter policy).
    supervised: bool,
    slack: Slack,
}

impl<T> Buffer<T> {
    pub(crate) fn new(capacity: usize, overflow: Overflow) -> Self {
        Buffer {
            capacity,
            overflow,
            queue: VecDeque::new(),
            supervised: false,
            slack: Slack::default(),
        }
    }

    fn full(&self, why: &str) -> Failure {
        Failure::error(
            ErrorClass::ResourceExhausted,
            format!(
                "buffer full ({} elements, overflow {:?}): {why}",
                self.capacity, self.overflow
            ),
        )
    }

    /// Drops `x` (input `index`): counted as filtered, or judged by the stage's
    /// policy when supervised. Returns false when the step must stop (the policy
    /// escalated, or asked to try again: the element is put back).
    fn drop_element<Out>(&mut self, io: &mut Io<'_, T, Out>, x: T, index: u64, why: &str) -> bool {
        if !self.supervised {
            io.filter();
            return true;
        }
        let failure = self.full(why);
        match io.element_failed(x, index, 1, failure) {
            Verdict::Settled => true,
            Verdict::Escalated => false,
            // A policy that retries an overflowing element waits for room instead.
            Verdict::Retry { element, .. } => {
                io.unpop(element);
                false
            }
        }
    }

    /// Sends buffered elements while more than `keep` outputs fit.
    fn emit(&mut self, io: &mut Io<'_, T, T>, keep: usize) {
        while io.room() > keep {
            let Some((_, x)) = self.queue.pop_front() else {
                break;
            };
            io.push(x);
        }
    }
}

impl<T> std::fmt::Debug for Buffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("buffered", &self.queue.len())
            .field("supervised", &self.supervised)
            .finish()
    }
}

impl<T: Send + 'static> Operator for Buffer<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "buffer"
    }

    fn validate(&self) -> Result<(), String> {
        if self.capacity == 0 {
            Err("a buffer needs a capacity of at least 1".into())
        } else {
            Ok(())
        }
    }

    /// Supervision judges what does not fit (the buffer has no user code).
    fn supervise_elements(&mut self, _setup: ElementSupervision<T>) -> bool {
        self.supervised = true;
        true
    }

    fn held(&self) -> usize {
        self.queue.len()
    }

    fn step(&mut self, io: &mut Io<'_, T, T>, _cx: &mut Context<'_>) -> Step {
        let waits = self.overflow == Overflow::Backpressure;
        let keep = if waits { 0 } else { self.slack.keep(io) };
        self.emit(io, keep);
        loop {
            let index = io.next_index();
            let Some(x) = io.pop() else { break };
            if self.queue.is_empty() && io.room() > keep {
                io.push(x);
                continue;
            }
            if self.queue.len() < self.capacity {
                self.queue.push_back((index, x));
                continue;
            }
            match self.overflow {
                Overflow::Backpressure => {
                    io.unpop(x);
                    break;
                }
                Overflow::DropNewest => {
                    if !self.drop_element(io, x, index, "the new element was dropped") {
                        break;
                    }
                }
                Overflow::DropOldest => {
                    self.queue.push_back((index, x));
                    let Some((old_index, old)) = self.queue.pop_front() else {
                        break;
                    };
                    if !self.drop_element(io, old, old_index, "the oldest element was dropped") {
                        break;
                    }
                }
                Overflow::Fail => {
                    let failure = self.full("another element arrived (overflow policy Fail)");
                    match io.element_failed(x, index, 1, failure) {
                        Verdict::Settled => {}
                        Verdict::Escalated => break,
                        Verdict::Retry { element, .. } => {
                            io.unpop(element);
                            break;
                        }
                    }
                }
            }
        }
        if io.input_exhausted() {
            self.emit(io, 0);
        }
        if io.input_exhausted() && self.queue.is_empty() {
            Step::Finished
        } else {
            Step::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_runtime::BuildError;
    use weir_runtime::junction::Overflow;

    use crate::ops::FlowControlExt;
    use crate::test_support::{rt, run_small};
    use crate::{FlowExt, Pipeline};

    #[test]
    fn backpressure_loses_nothing_and_keeps_order() {
        let done = run_small(
            Pipeline::from_iter(0..200_u32)
                .buffer(4, Overflow::Backpressure)
                .collect(),
        );
        assert_eq!(done.output, (0..200).collect::<Vec<_>>());
        let b = done.report.stage("buffer#1").unwrap();
        assert_eq!((b.completed, b.filtered, b.failed), (200, 0, 0));
    }

    #[test]
    fn drops_are_counted_as_filtered_and_the_rest_keeps_its_order() {
        for policy in [Overflow::DropNewest, Overflow::DropOldest] {
            let done = run_small(Pipeline::from_iter(0..500_u32).buffer(2, policy).collect());
            let b = done.report.stage("buffer#1").unwrap();
            assert_eq!(b.filtered + done.output.len() as u64, 500);
            assert!(done.output.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn capacity_zero_is_rejected_at_build_time() {
        let err = Pipeline::from_iter(0..3_u32)
            .buffer(0, Overflow::DropNewest)
            .collect()
            .run(&rt())
            .unwrap_err();
        assert!(
            matches!(&err, BuildError::InvalidArgument { stage, .. } if stage == "buffer#1"),
            "{err:?}"
        );
    }
}
