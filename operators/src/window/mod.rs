//! Windows: keyed aggregates over event time (watermarks, lateness, a side output
//! for late elements) and processing time.
//!
//! # Time
//!
//! - **Event time** ([`EventTime`]): each element's timestamp (milliseconds) comes
//!   from an extractor. The watermark `W` is the largest timestamp seen minus the
//!   out-of-orderness bound; after an idle timeout with no input it advances with
//!   processing time; at the end of the input it reaches the end of time.
//! - **Processing time**: an element's time is the tokio clock when the stage takes
//!   it (milliseconds since the stage's first step), and the watermark is the
//!   clock, so a timer fires windows without input and paused time drives them.
//!
//! # Windows and lateness
//!
//! A window `[start, end)` of a key fires when `W >= end` and is closed (its state
//! dropped) when `W >= end + allowed_lateness`. An element that belongs only to
//! closed windows is *late*: it goes to the side output (an outlet of the junction
//! version, a dead-letter sink in the flow version) and is counted
//! ([`WindowMetrics::late`]). A late element within the allowed lateness fires its
//! window again with the updated value.
//!
//! # State, bounds and failure
//!
//! At most [`Windows::max_windows`] windows are open at once (all keys); an
//! element that would open one more triggers the [`WindowOverflow`] policy, counted.
//! Elements are completed when folded into their windows, so an open window is
//! *state*, not held elements: the flow versions report it as
//! [`Operator::state_entries`](weir_runtime::operator::Operator::state_entries),
//! and a supervised restart (the operator is rebuilt from a factory) loses it and
//! adds it to the stage's `state_lost`. A panic in `add` or `output` happens after
//! the accumulator may have changed: supervise window stages with a restart
//! policy, not bare retries.
//!
//! # Checkpoints
//!
//! Every window operator is checkpointable. Keyed windows store their open
//! windows (accumulators, firings) and the results not emitted yet by the key
//! group of their key, so a stage restored as one of several replicas takes
//! exactly its keys; the watermark, the largest timestamp seen and the
//! [`WindowMetrics`] counters are stored beside them. Instants are stored as
//! ages at the snapshot and re-anchored at the restore: processing time and
//! the idle rule go on from where they were, not counting the time the
//! pipeline was down. Keys, accumulators and results (and the elements of
//! `count_windows` and `grouped_within`) are therefore serde types.

mod count;
mod engine;
mod grouped;
mod junction;
mod operator;
mod spec;
mod timers;

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_runtime::Flow;

pub use count::CountWindows;
pub use engine::{Admit, KeyedWindows};
pub use grouped::GroupedWithin;
pub use junction::{GraphWindowExt, WindowJunction, WindowOutlets, WindowOutput};
pub use operator::WindowOp;
pub use spec::{
    Aggregate, EventTime, IntoWindowOverflow, Window, WindowMetrics, WindowOverflow, WindowResult,
    Windows,
};

/// Window operators as [`Flow`] methods.
pub trait WindowExt<T: Send + 'static> {
    /// Keyed event-time windows: one [`WindowResult`] per window firing. Late
    /// elements go to [`EventTime::late_to`]'s sink (counted as filtered on the
    /// stage and in [`WindowMetrics::late`]). For late elements on their own
    /// outlet, use [`GraphWindowExt::event_time_windows`].
    ///
    /// The stage is rebuilt fresh when its supervision restarts it (open windows
    /// are lost and counted in `state_lost`).
    ///
    /// State is checkpointed; `K`, `A` (the accumulator) and `R` must be serde
    /// types.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_operators::window::{Aggregate, EventTime, WindowExt, Windows};
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// // (timestamp ms, value), up to 5 ms out of order.
    /// let events = [(1_u64, 1_u64), (7, 2), (4, 3), (12, 4), (9, 5), (25, 6)];
    /// let done = Pipeline::from_iter(events)
    ///     .event_time_windows(
    ///         Windows::tumbling(Duration::from_millis(10)),
    ///         EventTime::new(|e: &(u64, u64)| e.0).out_of_orderness(Duration::from_millis(5)),
    ///         |_| (),
    ///         Aggregate::new(|| 0, |s: &mut u64, e: &(u64, u64)| *s += e.1, |s| *s),
    ///     )
    ///     .map(|r| (r.window.start, r.value))
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, [(0, 11), (10, 4), (20, 6)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn event_time_windows<K, A, R>(
        self,
        windows: Windows,
        time: EventTime<T>,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
        agg: Aggregate<T, A, R>,
    ) -> Flow<WindowResult<K, R>>
    where
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Keyed processing-time windows on the tokio clock: an element's time is
    /// when the stage takes it (milliseconds since the stage's first step), and a
    /// timer fires each window when the clock reaches its end, input or not. No
    /// element is ever late. At the end of the input every open window fires.
    ///
    /// State is checkpointed; `K`, `A` and `R` must be serde types. The stage's
    /// time goes on at a restore from where it was at the snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_operators::window::{Aggregate, WindowExt, Windows};
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(0..10_u64)
    ///     .processing_time_windows(Windows::tumbling(Duration::from_secs(3600)), |x| x % 2, Aggregate::count())
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// let total: u64 = done.output.iter().map(|r| r.value).sum();
    /// assert_eq!(total, 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn processing_time_windows<K, A, R>(
        self,
        windows: Windows,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
        agg: Aggregate<T, A, R>,
    ) -> Flow<WindowResult<K, R>>
    where
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Windows of `size` consecutive elements, one every `slide` elements
    /// (`slide == size`: tumbling); see [`CountWindows`]. Not keyed.
    ///
    /// State (the elements of the open windows) is checkpointed; `T` must be a
    /// serde type.
    ///
    /// # Examples
    ///
    /// A moving average over 3 elements:
    ///
    /// ```
    /// use weir_operators::window::WindowExt;
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter([3.0, 6.0, 9.0, 12.0_f64])
    ///     .count_windows(3, 1)
    ///     .map(|w| w.iter().sum::<f64>() / w.len() as f64)
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, [6.0, 9.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn count_windows(self, size: usize, slide: usize) -> Flow<Vec<T>>
    where
        T: Clone + Serialize + DeserializeOwned;

    /// Batches of `n` elements, or of what arrived within `within` of a batch's
    /// first element, whichever is first; see [`GroupedWithin`].
    ///
    /// State (the batch being filled and the time left to its deadline) is
    /// checkpointed; `T` must be a serde type.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_operators::window::WindowExt;
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(0..7_u32)
    ///     .grouped_within(3, Duration::from_secs(60))
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn grouped_within(self, n: usize, within: Duration) -> Flow<Vec<T>>
    where
        T: Serialize + DeserializeOwned;
}

impl<T: Send + 'static> WindowExt<T> for Flow<T> {
    fn event_time_windows<K, A, R>(
        self,
        windows: Windows,
        time: EventTime<T>,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
        agg: Aggregate<T, A, R>,
    ) -> Flow<WindowResult<K, R>>
    where
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let key: operator::KeyFn<T, K> = Arc::new(key);
        self.via_factory(move || {
            WindowOp::event(windows.clone(), time.clone(), Arc::clone(&key), agg.clone())
        })
    }

    fn processing_time_windows<K, A, R>(
        self,
        windows: Windows,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
        agg: Aggregate<T, A, R>,
    ) -> Flow<WindowResult<K, R>>
    where
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let key: operator::KeyFn<T, K> = Arc::new(key);
        self.via_factory(move || {
            WindowOp::processing(windows.clone(), Arc::clone(&key), agg.clone())
        })
    }

    fn count_windows(self, size: usize, slide: usize) -> Flow<Vec<T>>
    where
        T: Clone + Serialize + DeserializeOwned,
    {
        self.via(CountWindows::new(size, slide))
    }

    fn grouped_within(self, n: usize, within: Duration) -> Flow<Vec<T>>
    where
        T: Serialize + DeserializeOwned,
    {
        self.via(GroupedWithin::new(n, within))
    }
}
