//! [`Io`]: the operator's view of its stage's queues for one step.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use weir_supervisor::Failure;

use super::Step;
use super::element::{ElementJudge, Verdict};
use crate::supervision::Keep;

/// Holds a draining iterator over the input queue; whatever the iterator has not
/// yielded when the guard drops (the loop stopped early, or user code panicked) is
/// moved to the spill buffer, which the stage puts back at the front of its queue.
/// So a panic loses exactly the element being processed, never the rest of a batch.
struct Rescue<'s, I: Iterator> {
    iter: I,
    spill: &'s mut Vec<I::Item>,
}

impl<I: Iterator> Drop for Rescue<'_, I> {
    fn drop(&mut self) {
        self.spill.extend(&mut self.iter);
    }
}

/// What inputs that produced no output count as in a bulk loop.
#[derive(Clone, Copy)]
enum Tally {
    Filtered,
    Completed,
}

/// Lends the input queue out as a `Vec` (whose `drain` compiles to a tight loop,
/// where `VecDeque`'s does not) and puts it back when dropped, even on unwind.
/// Converting a `VecDeque` built from a `Vec` back and forth costs nothing; a
/// wrapped-around queue is straightened once (a bounded memmove).
struct Lend<'q, T> {
    vec: Vec<T>,
    slot: &'q mut VecDeque<T>,
}

impl<'q, T> Lend<'q, T> {
    fn new(slot: &'q mut VecDeque<T>) -> Self {
        Lend {
            vec: Vec::from(std::mem::take(slot)),
            slot,
        }
    }
}

impl<T> Drop for Lend<'_, T> {
    fn drop(&mut self) {
        *self.slot = VecDeque::from(std::mem::take(&mut self.vec));
    }
}

/// The input queue, output buffer and room an operator works with during one
/// [`step`](super::Operator::step).
///
/// The room is the number of outputs downstream can take now (its credit, capped by
/// the pipeline's batch limit). Sinks have unlimited room.
pub struct Io<'a, In, Out> {
    input: &'a mut VecDeque<In>,
    spill: &'a mut Vec<In>,
    output: &'a mut Vec<Out>,
    input_ended: bool,
    limit: usize,
    pub(crate) filtered: u64,
    pub(crate) completed: u64,
    /// The stage's element supervision, for operators that opted in with
    /// [`Operator::supervise_elements`](super::Operator::supervise_elements).
    judge: Option<&'a mut dyn ElementJudge<In>>,
    /// Index (in the stage's input) of the element at the front of the queue when
    /// the step began, and the queue's length then.
    base_index: u64,
    queued_before: usize,
    /// A failure reported with no supervision to judge it: the stage fails with it.
    pub(crate) unjudged: Option<Failure>,
    /// A supervised stage's copies of the elements handed to user code by value,
    /// taken just before each bulk loop or first `pop` (see [`Keep`]).
    keep: Option<&'a mut Keep<In>>,
}

impl<In, Out> std::fmt::Debug for Io<'_, In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io")
            .field("queued", &self.input.len())
            .field("output", &self.output.len())
            .field("input_ended", &self.input_ended)
            .field("limit", &self.limit)
            .field("supervised", &self.judge.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a, In, Out> Io<'a, In, Out> {
    pub(crate) fn new(
        input: &'a mut VecDeque<In>,
        spill: &'a mut Vec<In>,
        output: &'a mut Vec<Out>,
        input_ended: bool,
        limit: usize,
    ) -> Self {
        let queued_before = input.len();
        Io {
            input,
            spill,
            output,
            input_ended,
            limit,
            filtered: 0,
            completed: 0,
            judge: None,
            base_index: 0,
            queued_before,
            unjudged: None,
            keep: None,
        }
    }

    /// Attaches a supervised stage's copies, which every loop that hands elements
    /// to user code keeps up to date.
    pub(crate) fn with_keep(mut self, keep: Option<&'a mut Keep<In>>) -> Self {
        self.keep = keep;
        self
    }

    /// Elements taken from the queue so far in this step.
    #[inline]
    fn taken(&self) -> usize {
        self.queued_before.saturating_sub(self.input.len())
    }

    /// Copies the next `n` queued elements before user code takes them, for a
    /// supervised stage.
    #[inline]
    fn keep(&mut self, n: usize) {
        let taken = self.taken();
        if let Some(keep) = self.keep.as_deref_mut() {
            keep.ensure(self.input, taken, n);
        }
    }

    /// Attaches the stage's element supervision and the index of the element at
    /// the front of the queue.
    pub(crate) fn with_judge(
        mut self,
        judge: Option<&'a mut dyn ElementJudge<In>>,
        base_index: u64,
    ) -> Self {
        self.judge = judge;
        self.base_index = base_index;
        self
    }

    /// The index, counted from 0 over everything this stage has taken from its
    /// input, of the element the next [`pop`](Self::pop) returns. Async operators
    /// record it with each element they hold, for [`element_failed`](Self::element_failed).
    pub fn next_index(&self) -> u64 {
        let taken = self.queued_before.saturating_sub(self.input.len()) as u64;
        self.base_index + taken
    }

    /// Reports that `element` (a copy kept by the operator; see
    /// [`Operator::supervise_elements`](super::Operator::supervise_elements))
    /// failed its `attempt`-th attempt (1 for the first failure), and returns the
    /// stage's decision. `index` is the element's [`next_index`](Self::next_index)
    /// when it was taken.
    ///
    /// Without supervision the verdict is [`Verdict::Escalated`]: the stage fails
    /// with `failure` when the step returns.
    pub fn element_failed(
        &mut self,
        element: In,
        index: u64,
        attempt: u32,
        failure: Failure,
    ) -> Verdict<In> {
        match self.judge.as_mut() {
            Some(judge) => judge.judge(failure, element, index, attempt),
            None => {
                self.unjudged.get_or_insert(failure);
                Verdict::Escalated
            }
        }
    }

    /// Maps as many queued inputs as there is room for, one output each. The fast
    /// path for one-to-one operators: it runs a tight loop over the queue instead of
    /// element-by-element [`pop`](Self::pop)/[`push`](Self::push).
    ///
    /// If `f` panics, the element it was given is lost (counted as failed) and the
    /// rest stay queued, in order.
    #[inline]
    pub fn map_batch(&mut self, f: impl FnMut(In) -> Out) {
        let n = self.room().min(self.input.len());
        if n == 0 {
            return;
        }
        self.keep(n);
        {
            let mut lend = Lend::new(&mut *self.input);
            let mut rescue = Rescue {
                iter: lend.vec.drain(..n),
                spill: &mut *self.spill,
            };
            self.output.extend((&mut rescue.iter).map(f));
        }
        self.requeue();
    }

    /// Like [`map_batch`](Self::map_batch) for functions that may drop an element:
    /// `None` is counted as filtered and takes no room.
    #[inline]
    pub fn filter_map_batch(&mut self, mut f: impl FnMut(In) -> Option<Out>) {
        let limit = self.limit;
        if self.output.len() >= limit || self.input.is_empty() {
            return;
        }
        let (queued, out_before) = (self.input.len(), self.output.len());
        self.keep(queued);
        let run = catch_unwind(AssertUnwindSafe(|| {
            let mut lend = Lend::new(&mut *self.input);
            let mut rescue = Rescue {
                iter: lend.vec.drain(..),
                spill: &mut *self.spill,
            };
            for x in &mut rescue.iter {
                if let Some(y) = f(x) {
                    self.output.push(y);
                    if self.output.len() >= limit {
                        break;
                    }
                }
            }
        }));
        self.settle(queued, out_before, run, Tally::Filtered);
    }

    /// Records what a bulk loop did, puts back what it did not get to, and re-raises
    /// a panic from user code once the counts are right. Inputs taken and not
    /// returned to the queue were processed; those that left no output were
    /// filtered (or, for sinks, completed). On a panic, the element being processed
    /// is neither: it is the failed one.
    fn settle(
        &mut self,
        queued: usize,
        out_before: usize,
        run: std::thread::Result<()>,
        tally: Tally,
    ) {
        let failed = usize::from(run.is_err());
        let processed = queued.saturating_sub(self.spill.len() + self.input.len() + failed);
        let unproductive = processed.saturating_sub(self.output.len() - out_before) as u64;
        match tally {
            Tally::Filtered => self.filtered += unproductive,
            Tally::Completed => self.completed += unproductive,
        }
        self.requeue();
        if let Err(payload) = run {
            resume_unwind(payload);
        }
    }

    /// Puts the inputs a bulk loop did not get to back at the front of the queue, in
    /// order, so that the operator sees the true queue before it decides whether it
    /// is drained.
    #[inline]
    fn requeue(&mut self) {
        while let Some(x) = self.spill.pop() {
            self.input.push_front(x);
        }
    }

    /// Hands every queued input to `f` and records each as completed; the fast path
    /// for sinks. If `f` panics, the element it was given is lost (counted as failed)
    /// and the rest stay queued.
    #[inline]
    pub fn consume_all(&mut self, mut f: impl FnMut(In)) {
        if self.input.is_empty() {
            return;
        }
        let (queued, out_before) = (self.input.len(), self.output.len());
        self.keep(queued);
        let run = catch_unwind(AssertUnwindSafe(|| {
            let mut lend = Lend::new(&mut *self.input);
            let mut rescue = Rescue {
                iter: lend.vec.drain(..),
                spill: &mut *self.spill,
            };
            for x in &mut rescue.iter {
                f(x);
            }
        }));
        self.settle(queued, out_before, run, Tally::Completed);
    }

    /// Takes the next input element, if one is queued.
    #[inline]
    pub fn pop(&mut self) -> Option<In> {
        if self.keep.is_some() {
            // The whole queue at the first pop, so that the pops after it copy nothing.
            self.keep(self.input.len());
        }
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

impl<In: Clone, Out> Io<'_, In, Out> {
    /// [`map_batch`](Self::map_batch) for elements that are `Clone`, the fast path
    /// of a supervised one-to-one operator: `f` gets a clone of each element, made
    /// in the loop that calls it, and the originals stay queued until the loop has
    /// processed them, so that the stage keeps no copy of the batch of its own. In
    /// an unsupervised stage it is [`map_batch`](Self::map_batch) itself.
    ///
    /// If `f` panics, the element it was given is lost (counted as failed) and the
    /// rest stay queued, in order.
    #[inline]
    pub fn map_batch_cloning(&mut self, mut f: impl FnMut(In) -> Out) {
        if self.keep.is_none() {
            return self.map_batch(f);
        }
        let n = self.room().min(self.input.len());
        if n == 0 {
            return;
        }
        let (taken, out_before) = (self.taken(), self.output.len());
        let mut queue = Vec::from(std::mem::take(&mut *self.input));
        let output = &mut *self.output;
        let run = catch_unwind(AssertUnwindSafe(|| {
            output.extend(queue[..n].iter().cloned().map(&mut f));
        }));
        // One output per element that `f` returned from (`extend` counts what it
        // wrote, even on unwind): those are done; after them is the failed one.
        let done = self.output.len() - out_before;
        if run.is_err() {
            let failed = queue.remove(done);
            if let Some(keep) = self.keep.as_deref_mut() {
                keep.rescue(taken + done, failed);
            }
        }
        queue.drain(..done);
        *self.input = VecDeque::from(queue);
        if let Err(payload) = run {
            resume_unwind(payload);
        }
    }
}

impl<T> Io<'_, T, T> {
    /// Keeps the queued inputs `predicate` accepts, as many as there is room for; the
    /// others are counted as filtered. If `predicate` panics, the element it was
    /// looking at is lost (counted as failed) and the rest stay queued.
    ///
    /// The loop filters the queue in place and hands it over as the output (no
    /// copy of the kept elements into another buffer), and is branch-free in the
    /// predicate's result: each element is swapped to the end of the kept ones
    /// and the count grows by the verdict, so an unpredictable predicate costs no
    /// branch mispredictions.
    #[inline]
    pub fn filter_batch(&mut self, mut predicate: impl FnMut(&T) -> bool) {
        let limit = self.limit;
        if self.output.len() >= limit || self.input.is_empty() {
            return;
        }
        let room = limit - self.output.len();
        let taken = self.taken();
        let mut queue = Vec::from(std::mem::take(&mut *self.input));
        let n = queue.len();
        // `queue[..kept]` kept, `queue[kept..read]` rejected, `queue[read..]` not
        // looked at yet.
        let (mut kept, mut read) = (0_usize, 0_usize);
        let run = catch_unwind(AssertUnwindSafe(|| {
            while read < n {
                let keep = predicate(&queue[read]);
                queue.swap(kept, read);
                kept += usize::from(keep);
                read += 1;
                if kept >= room {
                    break;
                }
            }
        }));
        // A panic left the element it was looking at at `read`: that one failed.
        let failed = usize::from(run.is_err());
        let rest = queue.split_off(read + failed);
        if failed == 1
            && let Some(keep) = self.keep.as_deref_mut()
            && let Some(element) = queue.pop()
        {
            // User code had it by reference: the element itself is the copy.
            keep.rescue(taken + read, element);
        }
        queue.truncate(kept);
        self.filtered += (read - kept) as u64;
        if self.output.is_empty() {
            *self.output = queue;
        } else {
            self.output.append(&mut queue);
        }
        *self.input = VecDeque::from(rest);
        if let Err(payload) = run {
            resume_unwind(payload);
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_keep;
