//! [`WindowJunction`]: event-time windows as a junction with two outputs, results
//! and late elements; built with [`GraphWindowExt::event_time_windows`].

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::junction::{Junction, Ports, Routing};
use weir_runtime::{ErrorClass, Failure, Graph, Outlet};

use super::engine::{Admit, KeyedWindows};
use super::operator::KeyFn;
use super::spec::{Aggregate, EventTime, WindowResult, Windows, millis};
use crate::checkpoint::{age, before};
use crate::ops::FilterMap;

/// The version of [`WindowJunction`]'s snapshot.
const STATE_VERSION: u32 = 1;

/// What a [`WindowJunction`] routes: a result to output 0, a late (or
/// overflowing) element to output 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowOutput<K, R, T> {
    /// A window fired (output 0).
    Result(WindowResult<K, R>),
    /// An element beyond the allowed lateness, or refused by the state bound
    /// under [`WindowOverflow::DropElement`](super::WindowOverflow::DropElement) (output 1).
    Late(T),
}

/// Keyed event-time windows with a side output for late elements.
///
/// Output 0 carries results, output 1 late elements. Each element taken is
/// either folded into its windows (the junction counts it completed; its
/// contribution is then state) or pushed to output 1. Backpressure: no input is
/// taken while results wait for room on output 0, or while output 1 has no room
/// (an element might be late). Completion: at the end of the input the watermark
/// jumps to the end of time; every window fires, then both outputs end. The idle
/// rule uses the junction's clock (`std::time::Instant`, real time). A panic in
/// user code — or the state bound under [`WindowOverflow::Fail`](super::WindowOverflow::Fail)
/// (a `ResourceExhausted` error, as in the linear window) — fails the pipeline: a junction is not supervised, so there is no restart
/// and no state is lost silently (the pipeline fails).
///
/// Checkpointable, as [`WindowOp`](super::WindowOp) (it has one input, so it
/// aligns checkpoint barriers trivially): open windows and waiting results by
/// key group, the watermark, the largest timestamp, the counters, and the idle
/// time as an age re-anchored at the restore.
pub struct WindowJunction<T, K, A, R> {
    engine: KeyedWindows<T, K, A, R>,
    key: KeyFn<T, K>,
    time: EventTime<T>,
    max_ts: Option<u64>,
    last_arrival: Instant,
}

impl<T, K, A, R> fmt::Debug for WindowJunction<T, K, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowJunction")
            .field("engine", &self.engine)
            .field("max_ts", &self.max_ts)
            .finish_non_exhaustive()
    }
}

impl<T, K: Hash + Eq + Clone, A, R> WindowJunction<T, K, A, R> {
    /// A window junction; see [`GraphWindowExt::event_time_windows`].
    pub fn new(
        windows: Windows,
        time: EventTime<T>,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
        agg: Aggregate<T, A, R>,
    ) -> Self {
        WindowJunction {
            engine: KeyedWindows::new(windows, agg),
            key: Arc::new(key),
            time,
            max_ts: None,
            last_arrival: Instant::now(),
        }
    }

    /// Windows open now.
    pub fn open_windows(&self) -> usize {
        self.engine.open_windows()
    }
}

type Out<K, R, T> = WindowOutput<K, R, T>;

impl<T, K, A, R> WindowJunction<T, K, A, R>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + Send + 'static,
    A: Send + 'static,
    R: Send + 'static,
{
    fn flush(&mut self, ports: &mut Ports<'_, T, Out<K, R, T>>) {
        while ports.room(0) > 0 || !ports.is_open(0) {
            match self.engine.pop_ready() {
                Some(r) => ports.push(0, WindowOutput::Result(r)),
                None => break,
            }
        }
    }

    fn idle(&mut self, ports: &mut Ports<'_, T, Out<K, R, T>>) {
        let (Some(idle), Some(max)) = (self.time.idle, self.max_ts) else {
            return;
        };
        let silent = ports.now().saturating_duration_since(self.last_arrival);
        if silent >= idle {
            let wm = max
                .saturating_add(millis(silent))
                .saturating_sub(self.time.bound);
            self.engine.advance(wm);
        }
        if let Some(t) = self.engine.next_timer() {
            let ahead = t.saturating_add(self.time.bound).saturating_sub(max);
            ports.wake_at(self.last_arrival + Duration::from_millis(ahead).max(idle));
        }
    }
}

impl<T, K, A, R> Checkpointable for WindowJunction<T, K, A, R>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        let silent = age(Instant::now(), self.last_arrival);
        self.engine.snapshot(STATE_VERSION, &(self.max_ts, silent))
    }

    /// Several stored clocks (a snapshot merged from replicas) restore as the
    /// earliest: the smallest timestamp and silence.
    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        let clocks: Vec<(Option<u64>, Duration)> =
            self.engine.restore(snapshot, STATE_VERSION, ctx)?;
        self.max_ts = clocks.iter().filter_map(|c| c.0).min();
        let silent = clocks.iter().map(|c| c.1).min().unwrap_or_default();
        self.last_arrival = before(Instant::now(), silent);
        Ok(())
    }
}

impl<T, K, A, R> Junction for WindowJunction<T, K, A, R>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    type In = T;
    type Out = WindowOutput<K, R, T>;

    fn kind(&self) -> &'static str {
        "event_time_windows"
    }

    fn validate(&self, inputs: usize, outputs: usize) -> Result<(), String> {
        if inputs != 1 || outputs != 2 {
            return Err(format!(
                "a window junction has 1 input and 2 outputs, not {inputs} and {outputs}"
            ));
        }
        self.engine.validate()
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }

    /// One input: a checkpoint barrier needs no alignment here.
    fn not_checkpointable(&self) -> Option<String> {
        None
    }

    fn route(&mut self, ports: &mut Ports<'_, T, Out<K, R, T>>) -> Routing {
        loop {
            self.flush(ports);
            if self.engine.ready_len() > 0 {
                return Routing::Continue;
            }
            if ports.room(1) == 0 && ports.is_open(1) {
                break;
            }
            let Some(x) = ports.pop(0) else { break };
            let ts = (self.time.timestamp)(&x);
            let key = (self.key)(&x);
            match self.engine.insert(key, ts, &x) {
                Ok(Admit::Added) => {
                    let max = self.max_ts.map_or(ts, |m| m.max(ts));
                    self.max_ts = Some(max);
                    self.last_arrival = ports.now();
                    self.engine.advance(max.saturating_sub(self.time.bound));
                }
                Ok(Admit::Late | Admit::Overflow) => ports.push(1, WindowOutput::Late(x)),
                // The state bound under `WindowOverflow::Fail`: the same typed error
                // as the linear window; the element, taken and not committed, counts
                // as failed.
                Err(message) => {
                    ports.fail(Failure::error(ErrorClass::ResourceExhausted, message));
                }
            }
            ports.commit();
        }
        if ports.is_exhausted(0) {
            self.engine.advance(u64::MAX);
            self.flush(ports);
            return if self.engine.ready_len() == 0 {
                Routing::Finished
            } else {
                Routing::Continue
            };
        }
        self.idle(ports);
        self.flush(ports);
        Routing::Continue
    }
}

/// The two outputs of [`GraphWindowExt::event_time_windows`].
#[derive(Debug)]
pub struct WindowOutlets<K, R, T> {
    /// Window results.
    pub results: Outlet<WindowResult<K, R>>,
    /// Late elements (and elements refused by the state bound).
    pub late: Outlet<T>,
}

/// Window operators on a [`Graph`]: the versions with a side output.
pub trait GraphWindowExt {
    /// Keyed event-time windows after `from`, with late elements on their own
    /// outlet; see [`WindowJunction`] for the semantics.
    ///
    /// State is checkpointed; `K`, `A` (the accumulator) and `R` must be serde
    /// types.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_operators::window::{Aggregate, EventTime, GraphWindowExt, Windows};
    /// use weir_operators::{FlowExt, Pipeline};
    /// use weir_runtime::{Graph, Runtime};
    ///
    /// let rt = Runtime::builder().arbiters(1).build()?;
    /// let mut g = Graph::new();
    /// // (timestamp ms, key); 3 arrives after the watermark passed its window.
    /// let src = g.source(Pipeline::from_iter([(1_u64, 'a'), (12, 'a'), (3, 'a'), (15, 'b')]));
    /// let out = g.event_time_windows(
    ///     src,
    ///     Windows::tumbling(Duration::from_millis(10)),
    ///     EventTime::new(|e: &(u64, char)| e.0),
    ///     |e| e.1,
    ///     Aggregate::count(),
    /// );
    /// let results = g.sink(out.results, |f| f.collect());
    /// let late = g.sink(out.late, |f| f.collect());
    /// g.run(&rt)?.wait()?;
    /// let counts: Vec<_> = futures::executor::block_on(results).unwrap().into_iter().map(|r| (r.key, r.window.start, r.value)).collect();
    /// assert_eq!(counts, [('a', 0, 1), ('a', 10, 1), ('b', 10, 1)]);
    /// assert_eq!(futures::executor::block_on(late).unwrap(), [(3, 'a')]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn event_time_windows<T, K, A, R>(
        &mut self,
        from: Outlet<T>,
        windows: Windows,
        time: EventTime<T>,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
        agg: Aggregate<T, A, R>,
    ) -> WindowOutlets<K, R, T>
    where
        T: Send + 'static,
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;
}

impl GraphWindowExt for Graph {
    fn event_time_windows<T, K, A, R>(
        &mut self,
        from: Outlet<T>,
        windows: Windows,
        time: EventTime<T>,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
        agg: Aggregate<T, A, R>,
    ) -> WindowOutlets<K, R, T>
    where
        T: Send + 'static,
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let junction = WindowJunction::new(windows, time, key, agg);
        let mut ports = self.junction(junction, 1, 2);
        let inlet = ports.inlets.remove(0);
        self.connect(from, inlet);
        // `self.junction(.., 1, 2)` returns exactly one inlet and two outlets.
        let late = ports.outlets.pop().expect("two outlets");
        let results = ports.outlets.pop().expect("two outlets");
        // Each port carries one variant only: these never filter.
        let results = self.flow(results, |f| {
            f.via(FilterMap::new(|o| match o {
                WindowOutput::Result(r) => Some(r),
                WindowOutput::Late(_) => None,
            }))
        });
        let late = self.flow(late, |f| {
            f.via(FilterMap::new(|o| match o {
                WindowOutput::Late(x) => Some(x),
                WindowOutput::Result(_) => None,
            }))
        });
        WindowOutlets { results, late }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type J = WindowJunction<(u64, u64), u64, u64, u64>;

    fn junction() -> J {
        let ms = Duration::from_millis;
        WindowJunction::new(
            Windows::tumbling(ms(10)),
            EventTime::new(|x: &(u64, u64)| x.1).out_of_orderness(ms(4)),
            |x: &(u64, u64)| x.0,
            Aggregate::new(|| 0, |s: &mut u64, x: &(u64, u64)| *s += x.1, |s| *s),
        )
    }

    /// What `route` does with an admitted element.
    fn admit(j: &mut J, x: (u64, u64)) {
        j.engine.insert(x.0, x.1, &x).unwrap();
        let max = j.max_ts.map_or(x.1, |m| m.max(x.1));
        j.max_ts = Some(max);
        j.engine.advance(max.saturating_sub(j.time.bound));
    }

    #[test]
    fn a_window_junction_restores_its_windows_watermark_and_clock() {
        let mut j = junction();
        assert_eq!(j.not_checkpointable(), None);
        for i in 0..30_u64 {
            admit(&mut j, (i % 4, i * 3));
        }
        let snapshot = j.snapshot(1).unwrap();
        let mut r = junction();
        r.restore(&snapshot, &RestoreContext::default()).unwrap();
        assert_eq!(r.max_ts, j.max_ts);
        assert_eq!(r.engine.watermark(), j.engine.watermark());
        assert_eq!(r.open_windows(), j.open_windows());
        for e in [&mut j, &mut r] {
            for i in 30..40_u64 {
                admit(e, (i % 4, i * 3));
            }
            e.engine.advance(u64::MAX);
        }
        let drain = |e: &mut J| std::iter::from_fn(|| e.engine.pop_ready()).collect::<Vec<_>>();
        let (a, b) = (drain(&mut j), drain(&mut r));
        assert!(!a.is_empty());
        assert_eq!(a, b);
        let mut other = snapshot.clone();
        other.version = 9;
        assert!(matches!(
            junction().restore(&other, &RestoreContext::default()),
            Err(StateError::Version { found: 9, .. })
        ));
    }
}
