//! [`Io`]: the operator's view of its stage's queues for one step.

use std::collections::VecDeque;

use super::Step;

/// The input queue, output buffer and room an operator works with during one
/// [`step`](super::Operator::step).
///
/// The room is the number of outputs downstream can take now (its credit, capped by
/// the pipeline's batch limit). Sinks have unlimited room.
#[derive(Debug)]
pub struct Io<'a, In, Out> {
    input: &'a mut VecDeque<In>,
    output: &'a mut Vec<Out>,
    input_ended: bool,
    limit: usize,
    pub(crate) filtered: u64,
    pub(crate) completed: u64,
}

impl<'a, In, Out> Io<'a, In, Out> {
    pub(crate) fn new(
        input: &'a mut VecDeque<In>,
        output: &'a mut Vec<Out>,
        input_ended: bool,
        limit: usize,
    ) -> Self {
        Io {
            input,
            output,
            input_ended,
            limit,
            filtered: 0,
            completed: 0,
        }
    }

    /// Takes the next input element, if one is queued.
    #[inline]
    pub fn pop(&mut self) -> Option<In> {
        self.input.pop_front()
    }

    /// Puts an element taken with [`pop`](Self::pop) back at the front of the queue,
    /// so that it is processed first next time.
    #[inline]
    pub fn unpop(&mut self, element: In) {
        self.input.push_front(element);
    }

    /// Number of queued input elements.
    #[inline]
    pub fn input_len(&self) -> usize {
        self.input.len()
    }

    /// True once upstream has ended: nothing will arrive beyond what is queued. For a
    /// source it means the pipeline is shutting down and the source should finish.
    #[inline]
    pub fn input_ended(&self) -> bool {
        self.input_ended
    }

    /// True when the input has ended and the queue is empty.
    #[inline]
    pub fn input_exhausted(&self) -> bool {
        self.input_ended && self.input.is_empty()
    }

    /// Produces an output element.
    #[inline]
    pub fn push(&mut self, element: Out) {
        self.output.push(element);
    }

    /// The output buffer itself, for operators that fill it in bulk (for example a
    /// channel's `recv_many`). Do not remove elements from it.
    #[inline]
    pub fn output(&mut self) -> &mut Vec<Out> {
        self.output
    }

    /// How many more outputs fit in this step.
    #[inline]
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.output.len())
    }

    /// True while at least one more output fits in this step.
    #[inline]
    pub fn has_room(&self) -> bool {
        self.output.len() < self.limit
    }

    /// Records that one input element was dropped on purpose (a filter rejected it).
    #[inline]
    pub fn filter(&mut self) {
        self.filtered += 1;
    }

    /// Records that `n` input elements were completely processed, for operators with
    /// [`Counting::Custom`](super::Counting::Custom) (a chunk of `n` was emitted, a
    /// sink delivered `n`).
    #[inline]
    pub fn complete(&mut self, n: usize) {
        self.completed += n as u64;
    }

    /// [`Step::Finished`] if the input is exhausted, else [`Step::Continue`]; the
    /// usual last line of a stateless operator's `step`.
    #[inline]
    pub fn finish_when_drained(&self) -> Step {
        if self.input_exhausted() {
            Step::Finished
        } else {
            Step::Continue
        }
    }
}
