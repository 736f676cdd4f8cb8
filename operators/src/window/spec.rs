//! What a window operator is made of: the window shape ([`Windows`]), the
//! aggregate ([`Aggregate`]), the event-time rules ([`EventTime`]), what it emits
//! ([`WindowResult`]) and its counters ([`WindowMetrics`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use weir_supervisor::dead_letter::DeadLetterSink;

/// A window: the half-open time range `[start, end)`, in the unit of the
/// timestamps (milliseconds for event time; milliseconds since the stage started
/// for processing time).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Window {
    /// First instant in the window.
    pub start: u64,
    /// First instant after the window.
    pub end: u64,
}

/// One firing of one window of one key: what a window operator emits.
///
/// A window fires once when the watermark reaches its end; with allowed lateness,
/// each late element added to it afterwards fires it again with the updated
/// value (`firing` counts up from 0).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct WindowResult<K, R> {
    /// The key the window belongs to.
    pub key: K,
    /// The window's range.
    pub window: Window,
    /// The aggregate's output.
    pub value: R,
    /// 0 for the firing at the watermark, 1, 2, … for late updates.
    pub firing: u32,
}

/// The shape of the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Tumbling { size: u64 },
    Sliding { size: u64, slide: u64 },
    Session { gap: u64 },
}

/// What a window operator does when opening a window would exceed its
/// [`max_windows`](Windows::max_windows).
///
/// Not the edge [`Overflow`](weir_runtime::junction::Overflow) of `buffer` and
/// feedback edges: a window's bound is on state, not on waiting elements.
/// [`max_windows`](Windows::max_windows) also takes the edge words that mean the
/// same here (see [`IntoWindowOverflow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WindowOverflow {
    /// Fire and close the window that ends first, early (counted as `evicted`).
    #[default]
    EmitEarliest,
    /// Send the element that would open the window to the side output, like a late
    /// element (counted as `overflowed`).
    DropElement,
    /// Fail the stage (error class `ResourceExhausted`).
    Fail,
}

/// What [`Windows::max_windows`] takes: a [`WindowOverflow`], or an edge
/// [`Overflow`](weir_runtime::junction::Overflow) where it has a window meaning —
/// `Fail` is [`WindowOverflow::Fail`], `DropNewest` (the arriving element is
/// refused) is [`WindowOverflow::DropElement`]. `Backpressure` and `DropOldest`
/// have none (the bound is on state, which neither waits nor is dropped): the
/// pipeline is rejected when built, naming the stage.
pub trait IntoWindowOverflow: private::Sealed {
    /// The window policy, or the edge word handed back when it has none.
    ///
    /// # Errors
    ///
    /// The edge word, when it means nothing for a window.
    fn into_window_overflow(self) -> Result<WindowOverflow, weir_runtime::junction::Overflow>;
}

mod private {
    pub trait Sealed {}
    impl Sealed for super::WindowOverflow {}
    impl Sealed for weir_runtime::junction::Overflow {}
}

impl IntoWindowOverflow for WindowOverflow {
    fn into_window_overflow(self) -> Result<WindowOverflow, weir_runtime::junction::Overflow> {
        Ok(self)
    }
}

impl IntoWindowOverflow for weir_runtime::junction::Overflow {
    fn into_window_overflow(self) -> Result<WindowOverflow, weir_runtime::junction::Overflow> {
        use weir_runtime::junction::Overflow;
        match self {
            Overflow::Fail => Ok(WindowOverflow::Fail),
            Overflow::DropNewest => Ok(WindowOverflow::DropElement),
            Overflow::Backpressure | Overflow::DropOldest => Err(self),
        }
    }
}

/// Shape, lateness and state bound of a window operator.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_operators::window::{WindowOverflow, Windows};
///
/// let windows = Windows::tumbling(Duration::from_secs(60))
///     .allowed_lateness(Duration::from_secs(5))
///     .max_windows(10_000, WindowOverflow::EmitEarliest);
/// let metrics = windows.metrics();
/// assert_eq!(metrics.open(), 0);
/// ```
#[derive(Clone)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct Windows {
    pub(crate) shape: Shape,
    pub(crate) lateness: u64,
    pub(crate) max_windows: usize,
    pub(crate) overflow: WindowOverflow,
    /// An edge overflow word with no window meaning, reported when built.
    pub(crate) overflow_refused: Option<weir_runtime::junction::Overflow>,
    pub(crate) metrics: WindowMetrics,
}

impl fmt::Debug for Windows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Windows")
            .field("shape", &self.shape)
            .field("lateness", &self.lateness)
            .field("max_windows", &self.max_windows)
            .field("overflow", &self.overflow)
            .finish_non_exhaustive()
    }
}

/// Whole milliseconds of `d`, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Windows {
    fn of(shape: Shape) -> Self {
        Windows {
            shape,
            lateness: 0,
            max_windows: 100_000,
            overflow: WindowOverflow::default(),
            overflow_refused: None,
            metrics: WindowMetrics::default(),
        }
    }

    /// Fixed, non-overlapping windows of `size` (whole milliseconds), aligned to 0.
    pub fn tumbling(size: Duration) -> Self {
        Self::of(Shape::Tumbling { size: millis(size) })
    }

    /// Windows of `size` starting every `slide` (whole milliseconds), aligned to 0:
    /// an element belongs to `size / slide` windows (rounded up).
    pub fn sliding(size: Duration, slide: Duration) -> Self {
        Self::of(Shape::Sliding {
            size: millis(size),
            slide: millis(slide),
        })
    }

    /// Session windows: an element opens `[t, t + gap)`, and windows of a key that
    /// overlap merge. The aggregate needs a [`merge`](Aggregate::merge) function.
    pub fn session(gap: Duration) -> Self {
        Self::of(Shape::Session { gap: millis(gap) })
    }

    /// How long after a window fired it stays open for late elements (event time
    /// only; default 0). Each late element within it fires the window again.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = millis(lateness);
        self
    }

    /// The most windows (over all keys) open at once (default 100 000), and what to
    /// do when an element would open one more: a [`WindowOverflow`], or the edge
    /// [`Overflow`](weir_runtime::junction::Overflow) `Fail` or `DropNewest` (see
    /// [`IntoWindowOverflow`]).
    pub fn max_windows(mut self, max: usize, overflow: impl IntoWindowOverflow) -> Self {
        self.max_windows = max;
        match overflow.into_window_overflow() {
            Ok(policy) => {
                self.overflow = policy;
                self.overflow_refused = None;
            }
            Err(word) => self.overflow_refused = Some(word),
        }
        self
    }

    /// The counters of the operators built from this (clones share them).
    pub fn metrics(&self) -> WindowMetrics {
        self.metrics.clone()
    }

    pub(crate) fn validate(&self, mergeable: bool) -> Result<(), String> {
        if let Some(word) = self.overflow_refused {
            return Err(format!(
                "max_windows with Overflow::{word:?}: a window's state bound cannot \
                 wait for room or drop state; use WindowOverflow::EmitEarliest, \
                 DropElement (Overflow::DropNewest) or Fail"
            ));
        }
        match self.shape {
            Shape::Tumbling { size: 0 } => {
                return Err("tumbling window size must be at least 1 ms".into());
            }
            Shape::Sliding { size, slide } => {
                if size == 0 || slide == 0 {
                    return Err("sliding window size and slide must be at least 1 ms".into());
                }
                if slide > size {
                    return Err(format!(
                        "sliding window slide {slide} ms is larger than its size {size} ms"
                    ));
                }
            }
            Shape::Session { gap } => {
                if gap == 0 {
                    return Err("session gap must be at least 1 ms".into());
                }
                if !mergeable {
                    return Err("session windows need an aggregate with a merge function".into());
                }
            }
            Shape::Tumbling { .. } => {}
        }
        let per_element = match self.shape {
            Shape::Sliding { size, slide } => size.div_ceil(slide) as usize,
            _ => 1,
        };
        if self.max_windows < per_element {
            return Err(format!(
                "max_windows {} is less than the {per_element} windows one element belongs to",
                self.max_windows
            ));
        }
        Ok(())
    }
}

type InitFn<A> = Arc<dyn Fn() -> A + Send + Sync>;
type AddFn<T, A> = Arc<dyn Fn(&mut A, &T) + Send + Sync>;
type OutFn<A, R> = Arc<dyn Fn(&A) -> R + Send + Sync>;
type MergeFn<A> = Arc<dyn Fn(&mut A, A) + Send + Sync>;

/// A fold over a window's elements: a fresh accumulator, how an element is added,
/// and what the window emits; sessions also need how two accumulators merge.
///
/// # Examples
///
/// ```
/// use weir_operators::window::Aggregate;
///
/// // The mean of the values in a window.
/// let mean = Aggregate::new(
///     || (0.0_f64, 0_u64),
///     |acc: &mut (f64, u64), x: &f64| {
///         acc.0 += x;
///         acc.1 += 1;
///     },
///     |acc| acc.0 / acc.1 as f64,
/// )
/// .merge(|a, b| {
///     a.0 += b.0;
///     a.1 += b.1;
/// });
/// # let _ = mean;
/// ```
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct Aggregate<T, A, R> {
    pub(crate) init: InitFn<A>,
    pub(crate) add: AddFn<T, A>,
    pub(crate) output: OutFn<A, R>,
    pub(crate) merge: Option<MergeFn<A>>,
}

impl<T, A, R> Clone for Aggregate<T, A, R> {
    fn clone(&self) -> Self {
        Aggregate {
            init: Arc::clone(&self.init),
            add: Arc::clone(&self.add),
            output: Arc::clone(&self.output),
            merge: self.merge.clone(),
        }
    }
}

impl<T, A, R> fmt::Debug for Aggregate<T, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregate")
            .field("mergeable", &self.merge.is_some())
            .finish_non_exhaustive()
    }
}

impl<T, A, R> Aggregate<T, A, R> {
    /// An aggregate from `init` (a fresh accumulator), `add` (fold one element in)
    /// and `output` (what the window emits).
    pub fn new(
        init: impl Fn() -> A + Send + Sync + 'static,
        add: impl Fn(&mut A, &T) + Send + Sync + 'static,
        output: impl Fn(&A) -> R + Send + Sync + 'static,
    ) -> Self {
        Aggregate {
            init: Arc::new(init),
            add: Arc::new(add),
            output: Arc::new(output),
            merge: None,
        }
    }

    /// How two accumulators combine (required by session windows).
    pub fn merge(mut self, merge: impl Fn(&mut A, A) + Send + Sync + 'static) -> Self {
        self.merge = Some(Arc::new(merge));
        self
    }
}

impl<T> Aggregate<T, u64, u64> {
    /// Counts the elements of each window.
    pub fn count() -> Self {
        Aggregate::new(|| 0, |n, _| *n += 1, |n| *n).merge(|a, b| *a += b)
    }
}

/// The event-time rules of a window operator: where an element's timestamp is,
/// how far out of order elements may come, and when an idle input lets the
/// watermark advance.
///
/// The watermark is the largest timestamp seen minus the out-of-orderness bound.
/// After `idle_timeout` of processing time with no element, it advances with
/// processing time: largest timestamp + time since the last element − bound. At
/// the end of the input it jumps to the end of time, firing every window.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_operators::window::EventTime;
///
/// let time = EventTime::new(|e: &(u64, &str)| e.0)
///     .out_of_orderness(Duration::from_millis(500))
///     .idle_timeout(Duration::from_secs(10));
/// # let _ = time;
/// ```
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct EventTime<T> {
    pub(crate) timestamp: Arc<dyn Fn(&T) -> u64 + Send + Sync>,
    pub(crate) bound: u64,
    pub(crate) idle: Option<Duration>,
    pub(crate) late: Option<Arc<dyn DeadLetterSink<T>>>,
}

impl<T> Clone for EventTime<T> {
    fn clone(&self) -> Self {
        EventTime {
            timestamp: Arc::clone(&self.timestamp),
            bound: self.bound,
            idle: self.idle,
            late: self.late.clone(),
        }
    }
}

impl<T> fmt::Debug for EventTime<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventTime")
            .field("bound", &self.bound)
            .field("idle", &self.idle)
            .field("late_sink", &self.late.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> EventTime<T> {
    /// Event time read from each element by `timestamp` (milliseconds), in order
    /// (no out-of-orderness allowed) and with no idle timeout.
    pub fn new(timestamp: impl Fn(&T) -> u64 + Send + Sync + 'static) -> Self {
        EventTime {
            timestamp: Arc::new(timestamp),
            bound: 0,
            idle: None,
            late: None,
        }
    }

    /// How far behind the largest timestamp seen an element may be and still be on
    /// time (whole milliseconds).
    pub fn out_of_orderness(mut self, bound: Duration) -> Self {
        self.bound = millis(bound);
        self
    }

    /// After this long with no element, the watermark advances with processing
    /// time (the tokio clock, so paused time drives it).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self
    }

    /// Where the flow version ([`WindowExt::event_time_windows`](super::WindowExt::event_time_windows))
    /// sends late elements, as dead letters. Without it they are counted
    /// (`late` in [`WindowMetrics`], `filtered` on the stage) and dropped.
    pub fn late_to(mut self, sink: impl DeadLetterSink<T>) -> Self {
        self.late = Some(Arc::new(sink));
        self
    }
}

#[derive(Debug, Default)]
struct Counters {
    open: AtomicU64,
    peak_open: AtomicU64,
    fired: AtomicU64,
    late: AtomicU64,
    evicted: AtomicU64,
    overflowed: AtomicU64,
}

/// Live counters of a window operator, shared by its clones and restarts.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_operators::window::Windows;
///
/// let metrics = Windows::tumbling(Duration::from_secs(1)).metrics();
/// assert_eq!((metrics.late(), metrics.fired()), (0, 0));
/// ```
#[derive(Debug, Clone, Default)]
pub struct WindowMetrics(Arc<Counters>);

impl WindowMetrics {
    /// Windows open now (the state size).
    pub fn open(&self) -> u64 {
        self.0.open.load(Relaxed)
    }

    /// The most windows ever open at once.
    pub fn peak_open(&self) -> u64 {
        self.0.peak_open.load(Relaxed)
    }

    /// Window results emitted (late updates and early evictions included).
    pub fn fired(&self) -> u64 {
        self.0.fired.load(Relaxed)
    }

    /// Elements beyond the allowed lateness, sent to the side output.
    pub fn late(&self) -> u64 {
        self.0.late.load(Relaxed)
    }

    /// Windows fired early because the state bound was reached
    /// ([`WindowOverflow::EmitEarliest`]).
    pub fn evicted(&self) -> u64 {
        self.0.evicted.load(Relaxed)
    }

    /// Elements sent to the side output because the state bound was reached
    /// ([`WindowOverflow::DropElement`]).
    pub fn overflowed(&self) -> u64 {
        self.0.overflowed.load(Relaxed)
    }

    pub(crate) fn set_open(&self, open: usize) {
        let open = open as u64;
        self.0.open.store(open, Relaxed);
        // A read first: the read-modify-write only when the peak moves.
        if open > self.0.peak_open.load(Relaxed) {
            self.0.peak_open.fetch_max(open, Relaxed);
        }
    }

    pub(crate) fn add_fired(&self, n: u64) {
        self.0.fired.fetch_add(n, Relaxed);
    }

    pub(crate) fn add_late(&self) {
        self.0.late.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_evicted(&self) {
        self.0.evicted.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_overflowed(&self) {
        self.0.overflowed.fetch_add(1, Relaxed);
    }

    /// The counters a checkpoint keeps: peak, fired, late, evicted, overflowed.
    pub(crate) fn tallies(&self) -> [u64; 5] {
        let c = &self.0;
        [&c.peak_open, &c.fired, &c.late, &c.evicted, &c.overflowed].map(|a| a.load(Relaxed))
    }

    /// Raises the counters to `tallies` (see [`tallies`](Self::tallies)): a
    /// restored stage goes on counting from where the snapshot was; counters
    /// shared by several replicas take the largest value stored.
    pub(crate) fn restore_tallies(&self, tallies: [u64; 5]) {
        let c = &self.0;
        let counters = [&c.peak_open, &c.fired, &c.late, &c.evicted, &c.overflowed];
        for (counter, value) in counters.into_iter().zip(tallies) {
            counter.fetch_max(value, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weir_runtime::junction::Overflow;

    use super::{WindowOverflow, Windows};

    #[test]
    fn edge_overflow_words_map_onto_window_policies_or_are_refused() {
        let w = Windows::tumbling(Duration::from_secs(1));
        let fail = w.clone().max_windows(3, Overflow::Fail);
        assert_eq!(fail.overflow, WindowOverflow::Fail);
        let drop_new = w.clone().max_windows(3, Overflow::DropNewest);
        assert_eq!(drop_new.overflow, WindowOverflow::DropElement);
        assert!(drop_new.validate(false).is_ok());
        for word in [Overflow::Backpressure, Overflow::DropOldest] {
            let refused = w.clone().max_windows(3, word);
            let err = refused.validate(false).unwrap_err();
            assert!(err.contains(&format!("{word:?}")), "{err}");
            // A later valid choice replaces the refused one.
            let fixed = refused.max_windows(3, WindowOverflow::EmitEarliest);
            assert!(fixed.validate(false).is_ok());
        }
    }
}
