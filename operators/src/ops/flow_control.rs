//! [`FlowControlExt`]: flow control for slow consumers on any edge — an explicit
//! buffer with an overflow strategy, and Akka's `conflate` and `batch`.

use weir_runtime::Flow;
use weir_runtime::junction::Overflow;

use super::{Batch, Buffer, Conflate};

/// Flow control for slow consumers, as methods on a [`Flow`]. In the prelude.
pub trait FlowControlExt<T: Clone + Send + 'static>: Sized {
    /// An explicit buffer of `capacity` elements on this edge, with an
    /// [`Overflow`] policy for an element that does not fit: `Backpressure`
    /// (upstream waits: `capacity` elements of slack), `DropNewest` (the arriving
    /// element is dropped), `DropOldest` (the oldest buffered one is dropped) or
    /// `Fail` (the stage fails with a `ResourceExhausted` error naming it and the
    /// limit). Order is kept. Every drop is counted exactly, as `filtered` on the
    /// buffer stage (the report conserves); to dead-letter drops instead use
    /// [`buffer_dead_lettering`](Self::buffer_dead_lettering).
    ///
    /// A dropping (or failing) buffer keeps taking input while downstream is
    /// stalled, provided the next stage's capacity and the batch limit are 2 or
    /// more: it keeps one place of that edge free so its stage keeps running (see
    /// [`Buffer`]).
    ///
    /// Choosing a capacity: the burst the consumer may fall behind by before the
    /// policy applies; it is `capacity` elements of memory beyond the edges.
    /// `0` is rejected when the pipeline is built.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline, ops::FlowControlExt};
    /// use weir_runtime::junction::Overflow;
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(0..100_u32)
    ///     .buffer(16, Overflow::DropOldest)
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// // A fast sink: nothing had to be dropped, and the report says so.
    /// assert_eq!(done.output.len() as u64 + done.report.filtered(), 100);
    /// done.report.check_conservation()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn buffer(self, capacity: usize, overflow: Overflow) -> Flow<T>;

    /// [`buffer`](Self::buffer) whose dropped elements (and, with
    /// `Overflow::Fail`, the element that did not fit) go to `dead_letters` as
    /// letters of class `ResourceExhausted` naming the stage, counted as
    /// `dead_lettered` on it instead of `filtered`. A queue that refuses a letter
    /// fails the pipeline, as for any supervised stage. The stage is supervised
    /// with a policy that dead-letters `ResourceExhausted` and has no circuit
    /// breaker (drops are not faults to trip on); the elements must be `Clone`
    /// because a supervised stage may keep copies.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline, ops::FlowControlExt};
    /// use weir_runtime::junction::Overflow;
    /// use weir_supervisor::dead_letter::MemoryDlq;
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let dlq = MemoryDlq::new(1000);
    /// let done = Pipeline::from_iter(0..100_u32)
    ///     .buffer_dead_lettering(8, Overflow::DropNewest, dlq.clone())
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output.len() + dlq.len(), 100);
    /// assert_eq!(done.report.dead_lettered(), dlq.len() as u64);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn buffer_dead_lettering(
        self,
        capacity: usize,
        overflow: Overflow,
        dead_letters: weir_supervisor::dead_letter::MemoryDlq<T>,
    ) -> Flow<T>
    where
        T: Clone;

    /// While downstream has no room, folds arriving elements into one summary:
    /// `seed` starts a summary from an element, `aggregate` adds one to it; the
    /// summary is sent as soon as there is room (Akka's `conflateWithSeed`). With
    /// room, every element is its own summary. Never makes upstream wait (given a
    /// next-stage capacity and batch limit of 2 or more, see
    /// [`Conflate`](crate::ops::Conflate)). Elements folded into a summary after its
    /// seed are counted as `filtered` (combined) on the stage.
    ///
    /// # Examples
    ///
    /// Keep only the latest reading while the consumer is busy:
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline, ops::FlowControlExt};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(0..1000_u32)
    ///     .conflate(|x| x, |_older, newer| newer)
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output.last(), Some(&999));
    /// assert_eq!(done.output.len() as u64 + done.report.filtered(), 1000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn conflate<S, Seed, Agg>(self, seed: Seed, aggregate: Agg) -> Flow<S>
    where
        Seed: FnMut(T) -> S + Send + 'static,
        Agg: FnMut(S, T) -> S + Send + 'static,
        S: Send + 'static;

    /// Like [`conflate`](Self::conflate), but a summary holds at most `max`
    /// elements: once it is full, upstream waits until it is sent (Akka's
    /// `batch`). Elements folded in after the seed count as `filtered`.
    ///
    /// Choosing `max`: the most elements one downstream call should carry (a
    /// bulk insert's size). `0` is rejected when the pipeline is built.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline, ops::FlowControlExt};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(0..100_u32)
    ///     .batch(10, |x| vec![x], |mut rows, x| { rows.push(x); rows })
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert!(done.output.iter().all(|rows| rows.len() <= 10));
    /// assert_eq!(done.output.concat(), (0..100).collect::<Vec<_>>());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn batch<S, Seed, Agg>(self, max: usize, seed: Seed, aggregate: Agg) -> Flow<S>
    where
        Seed: FnMut(T) -> S + Send + 'static,
        Agg: FnMut(S, T) -> S + Send + 'static,
        S: Send + 'static;
}

impl<T: Clone + Send + 'static> FlowControlExt<T> for Flow<T> {
    fn buffer(self, capacity: usize, overflow: Overflow) -> Flow<T> {
        self.cloneable().via(Buffer::new(capacity, overflow))
    }

    fn buffer_dead_lettering(
        self,
        capacity: usize,
        overflow: Overflow,
        dead_letters: weir_supervisor::dead_letter::MemoryDlq<T>,
    ) -> Flow<T>
    where
        T: Clone,
    {
        use weir_supervisor::policy::{Action, SupervisionPolicy};
        let policy = SupervisionPolicy::default()
            .action(
                weir_runtime::ErrorClass::ResourceExhausted,
                Action::DeadLetter,
            )
            .without_breaker();
        self.supervise(weir_runtime::Supervision::new(policy).dead_letters(dead_letters))
            .via(Buffer::new(capacity, overflow))
    }

    fn conflate<S, Seed, Agg>(self, seed: Seed, aggregate: Agg) -> Flow<S>
    where
        Seed: FnMut(T) -> S + Send + 'static,
        Agg: FnMut(S, T) -> S + Send + 'static,
        S: Send + 'static,
    {
        self.cloneable().via(Conflate::new(seed, aggregate))
    }

    fn batch<S, Seed, Agg>(self, max: usize, seed: Seed, aggregate: Agg) -> Flow<S>
    where
        Seed: FnMut(T) -> S + Send + 'static,
        Agg: FnMut(S, T) -> S + Send + 'static,
        S: Send + 'static,
    {
        self.cloneable().via(Batch::new(max, seed, aggregate))
    }
}
