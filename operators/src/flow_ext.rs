//! [`FlowExt`]: the operators, as methods on a [`Flow`].

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_runtime::{Flow, OutputReceiver, Runnable, output};

use crate::hub;

use crate::ops::{Chunks, Filter, FilterMap, FlatMap, Inspect, MapAsync, MapCloning, Take, TryMap};
use crate::sink::{Collect, Egress, EgressSink, Fold, ForEach, ForEachAsync};

/// The operators, as methods on a [`Flow`]. In the prelude.
///
/// The elements are `Clone`, as timely-dataflow's `Data` is: a supervised stage
/// keeps a copy of each element until its operator has processed it, so that a
/// failing one can be retried or dead-lettered, whether the supervision comes
/// from the code ([`Flow::supervise`]) or from a policy file applied to the whole
/// pipeline ([`Runnable::policies`]). Nothing is copied unless the stage is
/// supervised. Elements that cannot be cloned (a reply channel) can still flow
/// through the operators' types with [`Flow::via`] (for example
/// `flow.via(ops::Map::new(f))`), unsupervised.
pub trait FlowExt<T: Clone + Send + 'static>: Sized {
    /// Applies `f` to every element.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(1..4).map(|x| x * 10).collect().run(&rt)?.wait()?;
    /// assert_eq!(done.output, [10, 20, 30]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn map<U, F>(self, f: F) -> Flow<U>
    where
        F: FnMut(T) -> U + Send + 'static,
        U: Send + 'static;

    /// Applies a fallible function: `Err(failure)` fails the element with the
    /// failure's [`ErrorClass`](weir_runtime::ErrorClass), which a supervised stage's
    /// policy acts on (retry a transient error, dead-letter a permanent one, …).
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// use weir_runtime::{ErrorClass, Failure};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(["1", "2"])
    ///     .try_map(|s| s.parse::<u32>().map_err(|e| Failure::with_source(ErrorClass::Permanent, e)))
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn try_map<U, F>(self, f: F) -> Flow<U>
    where
        F: FnMut(T) -> Result<U, weir_runtime::Failure> + Send + 'static,
        U: Send + 'static;

    /// Keeps the elements for which `predicate` is true; the others count as
    /// filtered.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(1..7).filter(|x| x % 3 == 0).collect().run(&rt)?.wait()?;
    /// assert_eq!(done.output, [3, 6]);
    /// assert_eq!(done.report.filtered(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn filter<F>(self, predicate: F) -> Flow<T>
    where
        F: FnMut(&T) -> bool + Send + 'static;

    /// Maps and filters in one step: `None` counts as filtered.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(["1", "x", "3"])
    ///     .filter_map(|s| s.parse::<u32>().ok())
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, [1, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn filter_map<U, F>(self, f: F) -> Flow<U>
    where
        F: FnMut(T) -> Option<U> + Send + 'static,
        U: Send + 'static;

    /// Expands each element into zero or more, drained lazily as downstream has room.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(1..4_u32)
    ///     .flat_map(|n| std::iter::repeat(n).take(n as usize))
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, [1, 2, 2, 3, 3, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn flat_map<I, F>(self, f: F) -> Flow<I::Item>
    where
        F: FnMut(T) -> I + Send + 'static,
        I: IntoIterator + 'static,
        I::IntoIter: Send + 'static,
        I::Item: Send + 'static;

    /// Calls `f` with a reference to each element and passes it on.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let seen = Arc::new(AtomicU64::new(0));
    /// let counter = Arc::clone(&seen);
    /// Pipeline::from_iter(0..5)
    ///     .inspect(move |_| { counter.fetch_add(1, Ordering::Relaxed); })
    ///     .for_each(drop)
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(seen.load(Ordering::Relaxed), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn inspect<F>(self, f: F) -> Flow<T>
    where
        F: FnMut(&T) + Send + 'static;

    /// Runs an async function per element with up to `concurrency` futures in
    /// flight; results keep the input order.
    ///
    /// Choosing `concurrency`: the number of calls the service behind `f` should see
    /// at once. Elements in flight count against nothing else, so this is also the
    /// extra memory the stage holds.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(1..6_u64)
    ///     .map_async(3, |x| async move {
    ///         // later elements finish first; the output order is still the input order
    ///         tokio::time::sleep(std::time::Duration::from_millis(10 - 2 * x)).await;
    ///         x * 2
    ///     })
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, [2, 4, 6, 8, 10]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn map_async<U, Fut, F>(self, concurrency: usize, f: F) -> Flow<U>
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: Future<Output = U> + Send + 'static,
        U: Send + 'static;

    /// [`map_async`](Self::map_async) for fallible calls: the future returns
    /// `Result<U, Failure>`, and `Err(failure)` fails the element with the
    /// failure's class. Under [`supervise`](weir_runtime::Flow::supervise) a failed
    /// element is retried in place after the policy's backoff (the others go on,
    /// the output keeps the input order), dead-lettered or skipped; the policy's
    /// `element_timeout` bounds each attempt. Supervising needs `T: Clone`.
    ///
    /// # Examples
    ///
    /// A flaky service: every first call fails, every retry succeeds.
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// use std::collections::HashSet;
    /// use std::time::Duration;
    /// use weir_runtime::{ErrorClass, Failure, Supervision};
    /// use weir_supervisor::dead_letter::MemoryDlq;
    /// use weir_supervisor::policy::{BackoffConfig, SupervisionPolicy};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let policy = SupervisionPolicy::default()
    ///     .max_attempts(3)
    ///     .backoff(BackoffConfig::new(Duration::from_millis(1), Duration::from_millis(5)))
    ///     .element_timeout(Duration::from_secs(5));
    /// let mut seen = HashSet::new();
    /// let done = Pipeline::from_iter(0..5_u32)
    ///     .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(100)))
    ///     .try_map_async(2, move |x| {
    ///         let first = seen.insert(x);
    ///         async move {
    ///             if first {
    ///                 Err(Failure::error(ErrorClass::Transient, "connection reset"))
    ///             } else {
    ///                 Ok(x * 10)
    ///             }
    ///         }
    ///     })
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, [0, 10, 20, 30, 40]);
    /// assert_eq!(done.report.retries(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn try_map_async<U, Fut, F>(self, concurrency: usize, f: F) -> Flow<U>
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: Future<Output = Result<U, weir_runtime::Failure>> + Send + 'static,
        U: Send + 'static;

    /// [`map_async`](Self::map_async) that emits each result as soon as its future
    /// finishes, in completion order: a slow call does not hold back the results
    /// behind it. At most `concurrency` futures are in flight; when one finishes the
    /// next element starts. Every input gives one output (the report's
    /// `completed = produced` holds). Under
    /// [`supervise`](weir_runtime::Flow::supervise) a failed element (a panic, or
    /// the policy's `element_timeout`) is retried in place after the policy's
    /// backoff, dead-lettered or skipped, as for `map_async`; supervising needs
    /// `T: Clone`.
    ///
    /// Choosing `concurrency`: as for [`map_async`](Self::map_async).
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(1..6_u64)
    ///     .map_async_unordered(3, |x| async move { x * 2 })
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// let mut output = done.output;
    /// output.sort_unstable(); // completion order: sort to compare
    /// assert_eq!(output, [2, 4, 6, 8, 10]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn map_async_unordered<U, Fut, F>(self, concurrency: usize, f: F) -> Flow<U>
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: Future<Output = U> + Send + 'static,
        U: Send + 'static;

    /// [`try_map_async`](Self::try_map_async) that emits results in completion
    /// order, like [`map_async_unordered`](Self::map_async_unordered). A failed
    /// element under supervision is retried in place and emitted when an attempt
    /// succeeds.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// use weir_runtime::{ErrorClass, Failure};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(["1", "2", "3"])
    ///     .try_map_async_unordered(2, |s| async move {
    ///         s.parse::<u32>().map_err(|e| Failure::with_source(ErrorClass::Permanent, e))
    ///     })
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output.iter().sum::<u32>(), 6);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn try_map_async_unordered<U, Fut, F>(self, concurrency: usize, f: F) -> Flow<U>
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: Future<Output = Result<U, weir_runtime::Failure>> + Send + 'static,
        U: Send + 'static;

    /// Groups elements into vectors of `size`; the last may be shorter.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(1..6).chunks(2).collect().run(&rt)?.wait()?;
    /// assert_eq!(done.output, [vec![1, 2], vec![3, 4], vec![5]]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// State (the partial chunk) is checkpointed; `T` must be a serde type.
    fn chunks(self, size: usize) -> Flow<Vec<T>>
    where
        T: Serialize + DeserializeOwned;

    /// Passes the first `n` elements, then ends the stream and cancels upstream.
    /// The count passed is checkpointed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(0..).take(3).collect().run(&rt)?.wait()?;
    /// assert_eq!(done.output, [0, 1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn take(self, n: u64) -> Flow<T>;

    /// Ends the pipeline with a function called for every element.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(0..3).for_each(|x| println!("{x}")).run(&rt)?.wait()?;
    /// assert_eq!(done.report.delivered(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn for_each<F>(self, f: F) -> Runnable<()>
    where
        F: FnMut(T) + Send + 'static;

    /// Ends the pipeline with an async function awaited for each element, one at a
    /// time, in order. For several at once see
    /// [`for_each_async_concurrent`](Self::for_each_async_concurrent).
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(0..3)
    ///     .for_each_async(|x| async move { tokio::task::yield_now().await; drop(x) })
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.report.delivered(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn for_each_async<F, Fut>(self, f: F) -> Runnable<()>
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static;

    /// Ends the pipeline with an async function and up to `concurrency` futures in
    /// flight: an element is delivered when its future completes, in completion
    /// order; when one completes, the next element starts. With `concurrency`
    /// futures pending the sink takes no more input, so the pipeline
    /// backpressures. Under [`supervise`](weir_runtime::Flow::supervise) a failed
    /// delivery (a panic, or the policy's `element_timeout`) is retried after the
    /// policy's backoff, dead-lettered or skipped, while the others go on.
    ///
    /// Choosing `concurrency`: the number of writes the service behind `f` should
    /// see at once; it is also the number of elements the sink holds beyond its
    /// input queue. `0` is rejected when the pipeline is built.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let total = Arc::new(AtomicU64::new(0));
    /// let t = Arc::clone(&total);
    /// let done = Pipeline::from_iter(1..=10_u64)
    ///     .for_each_async_concurrent(4, move |x| {
    ///         let t = Arc::clone(&t);
    ///         async move {
    ///             tokio::task::yield_now().await; // a write to a service
    ///             t.fetch_add(x, Ordering::Relaxed);
    ///         }
    ///     })
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.report.delivered(), 10);
    /// assert_eq!(total.load(Ordering::Relaxed), 55);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn for_each_async_concurrent<F, Fut>(self, concurrency: usize, f: F) -> Runnable<()>
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static;

    /// Ends the pipeline by gathering every element into a `Vec`, the pipeline's
    /// output.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(0..3).collect().run(&rt)?.wait()?;
    /// assert_eq!(done.output, [0, 1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// State (what is gathered so far) is checkpointed; `T` must be a serde type.
    /// For elements that are not, gather them with
    /// [`for_each`](Self::for_each) into a collection of your own.
    fn collect(self) -> Runnable<Vec<T>>
    where
        T: Serialize + DeserializeOwned;

    /// Ends the pipeline by folding every element into an accumulator, the
    /// pipeline's output.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(1..=4_u64).fold(0, |acc, x| acc + x).run(&rt)?.wait()?;
    /// assert_eq!(done.output, 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// State (the accumulator) is checkpointed; `A` must be a serde type.
    fn fold<A, F>(self, init: A, f: F) -> Runnable<A>
    where
        F: FnMut(A, T) -> A + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static;

    /// Ends the pipeline in a bounded [`Egress`] receiver the service reads from.
    /// The pipeline holds at most `capacity` elements in it; when it is full the
    /// pipeline backpressures.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let (runnable, mut egress) = Pipeline::from_iter(0..3).map(|x| x + 1).egress(8);
    /// let running = runnable.run(&rt)?;
    /// let mut got = Vec::new();
    /// while let Some(x) = futures::executor::block_on(egress.recv()) {
    ///     got.push(x);
    /// }
    /// assert_eq!(got, [1, 2, 3]);
    /// running.wait()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn egress(self, capacity: usize) -> (Runnable<()>, Egress<T>);

    /// Ends the pipeline in a [`BroadcastHub`](hub::BroadcastHub): subscribers
    /// join and leave while it runs, each with its own bounded buffer and lag
    /// policy; `when_alone` says what happens while nobody is subscribed. See
    /// [`hub`] for the rules.
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir_operators::{FlowExt, Pipeline};
    /// use weir_operators::hub::NoSubscriber;
    /// use weir_runtime::junction::LagPolicy;
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let (runnable, hub) = Pipeline::from_iter(0..3).broadcast_hub(NoSubscriber::Wait);
    /// let mut sub = hub.subscribe(8, LagPolicy::Block)?; // before the run: sees all
    /// let running = runnable.run(&rt)?;
    /// let got: Vec<i32> = futures::executor::block_on(futures::StreamExt::collect(&mut sub));
    /// assert_eq!(got, [0, 1, 2]);
    /// running.wait()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn broadcast_hub(self, when_alone: hub::NoSubscriber) -> (Runnable<()>, hub::BroadcastHub<T>)
    where
        T: Clone;
}

impl<T: Clone + Send + 'static> FlowExt<T> for Flow<T> {
    fn map<U, F>(self, f: F) -> Flow<U>
    where
        F: FnMut(T) -> U + Send + 'static,
        U: Send + 'static,
    {
        self.cloneable().via(MapCloning::new(f))
    }

    fn try_map<U, F>(self, f: F) -> Flow<U>
    where
        F: FnMut(T) -> Result<U, weir_runtime::Failure> + Send + 'static,
        U: Send + 'static,
    {
        self.cloneable().via(TryMap::new(f))
    }

    fn filter<F>(self, predicate: F) -> Flow<T>
    where
        F: FnMut(&T) -> bool + Send + 'static,
    {
        self.cloneable().via(Filter::new(predicate))
    }

    fn filter_map<U, F>(self, f: F) -> Flow<U>
    where
        F: FnMut(T) -> Option<U> + Send + 'static,
        U: Send + 'static,
    {
        self.cloneable().via(FilterMap::new(f))
    }

    fn flat_map<I, F>(self, f: F) -> Flow<I::Item>
    where
        F: FnMut(T) -> I + Send + 'static,
        I: IntoIterator + 'static,
        I::IntoIter: Send + 'static,
        I::Item: Send + 'static,
    {
        self.cloneable().via(FlatMap::new(f))
    }

    fn inspect<F>(self, f: F) -> Flow<T>
    where
        F: FnMut(&T) + Send + 'static,
    {
        self.cloneable().via(Inspect::new(f))
    }

    fn map_async<U, Fut, F>(self, concurrency: usize, f: F) -> Flow<U>
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: Future<Output = U> + Send + 'static,
        U: Send + 'static,
    {
        self.cloneable()
            .via(MapAsync::new("map_async", concurrency, f, Ok))
    }

    fn try_map_async<U, Fut, F>(self, concurrency: usize, f: F) -> Flow<U>
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: Future<Output = Result<U, weir_runtime::Failure>> + Send + 'static,
        U: Send + 'static,
    {
        self.cloneable()
            .via(MapAsync::new("try_map_async", concurrency, f, |r| r))
    }

    fn map_async_unordered<U, Fut, F>(self, concurrency: usize, f: F) -> Flow<U>
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: Future<Output = U> + Send + 'static,
        U: Send + 'static,
    {
        self.cloneable().via(MapAsync::unordered(
            "map_async_unordered",
            concurrency,
            f,
            Ok,
        ))
    }

    fn try_map_async_unordered<U, Fut, F>(self, concurrency: usize, f: F) -> Flow<U>
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: Future<Output = Result<U, weir_runtime::Failure>> + Send + 'static,
        U: Send + 'static,
    {
        self.cloneable().via(MapAsync::unordered(
            "try_map_async_unordered",
            concurrency,
            f,
            |r| r,
        ))
    }

    fn chunks(self, size: usize) -> Flow<Vec<T>>
    where
        T: Serialize + DeserializeOwned,
    {
        self.cloneable().via(Chunks::new(size))
    }

    fn take(self, n: u64) -> Flow<T> {
        self.cloneable().via(Take::new(n))
    }

    fn for_each<F>(self, f: F) -> Runnable<()>
    where
        F: FnMut(T) + Send + 'static,
    {
        self.cloneable()
            .to(ForEach::new(f), OutputReceiver::ready(()))
    }

    fn for_each_async<F, Fut>(self, f: F) -> Runnable<()>
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.cloneable()
            .to(ForEachAsync::new(f), OutputReceiver::ready(()))
    }

    fn for_each_async_concurrent<F, Fut>(self, concurrency: usize, f: F) -> Runnable<()>
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.cloneable().to(
            ForEachAsync::concurrent("for_each_async_concurrent", concurrency, f),
            OutputReceiver::ready(()),
        )
    }

    fn collect(self) -> Runnable<Vec<T>>
    where
        T: Serialize + DeserializeOwned,
    {
        let (tx, rx) = output();
        self.cloneable().to(Collect::new(tx), rx)
    }

    fn fold<A, F>(self, init: A, f: F) -> Runnable<A>
    where
        F: FnMut(A, T) -> A + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        let (tx, rx) = output();
        self.cloneable().to(Fold::new(init, f, tx), rx)
    }

    fn egress(self, capacity: usize) -> (Runnable<()>, Egress<T>) {
        let (sink, egress) = EgressSink::channel(capacity);
        (self.cloneable().to(sink, OutputReceiver::ready(())), egress)
    }

    fn broadcast_hub(self, when_alone: hub::NoSubscriber) -> (Runnable<()>, hub::BroadcastHub<T>)
    where
        T: Clone,
    {
        let (sink, hub) = hub::BroadcastHubSink::new(when_alone);
        (self.cloneable().to(sink, OutputReceiver::ready(())), hub)
    }
}
