//! [`WindowOp`]: keyed windows as a one-output stage, on event time or on
//! processing time.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, Sleep};
use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Counting, Io, Operator, Step};
use weir_supervisor::dead_letter::DeadLetter;
use weir_supervisor::{ErrorClass, Failure};

use super::engine::{Admit, KeyedWindows};
use super::spec::{Aggregate, EventTime, WindowResult, Windows, millis};
use crate::checkpoint::{age, tokio_before};

/// The version of [`WindowOp`]'s snapshot.
const STATE_VERSION: u32 = 1;

/// A window operator's clock in a snapshot, its instants as ages.
#[derive(Serialize, Deserialize)]
enum SavedClock {
    /// Event time: the largest timestamp seen and how long ago the last element
    /// arrived (for the idle rule).
    Event {
        max_ts: Option<u64>,
        silent: Duration,
    },
    /// Processing time: the stage's time (since its first step) at the snapshot.
    Processing { elapsed: Option<Duration> },
}

/// The key function of a keyed window operator.
pub(crate) type KeyFn<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// Where the time of an element comes from.
pub(crate) enum Clock<T> {
    /// From the element, with a watermark.
    Event {
        time: EventTime<T>,
        max_ts: Option<u64>,
        last_arrival: Instant,
    },
    /// The tokio clock: milliseconds since the stage's first step.
    Processing { origin: Option<Instant> },
}

/// A timer on the tokio clock that wakes the stage.
#[derive(Default)]
pub(crate) struct Timer {
    sleep: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer")
            .field("at", &self.sleep.as_ref().map(|(at, _)| *at))
            .finish()
    }
}

impl Timer {
    /// Registers a wake-up at `at`; true if `at` has come already.
    pub(crate) fn arm(&mut self, at: Instant, cx: &mut Context<'_>) -> bool {
        if Instant::now() >= at {
            self.sleep = None;
            return true;
        }
        match &mut self.sleep {
            Some((when, sleep)) if *when == at => {
                let _ = sleep.as_mut().poll(cx);
            }
            slot => {
                let mut sleep = Box::pin(tokio::time::sleep_until(at));
                let _ = sleep.as_mut().poll(cx);
                *slot = Some((at, sleep));
            }
        }
        false
    }

    /// Forgets the wake-up.
    pub(crate) fn disarm(&mut self) {
        self.sleep = None;
    }

    /// True once the armed wake-up has come (and disarms it).
    pub(crate) fn fired(&mut self, cx: &mut Context<'_>) -> bool {
        let ready = match &mut self.sleep {
            Some((_, sleep)) => sleep.as_mut().poll(cx) == Poll::Ready(()),
            None => false,
        };
        if ready {
            self.sleep = None;
        }
        ready
    }
}

/// Keyed windows with an aggregate, as a stage with one output. Created by
/// [`WindowExt::event_time_windows`](super::WindowExt::event_time_windows) and
/// [`WindowExt::processing_time_windows`](super::WindowExt::processing_time_windows).
///
/// Each element is completed when it is folded into its windows (its
/// contribution is then state: open windows, see
/// [`state_entries`](Operator::state_entries)); late and overflowing elements are
/// counted as filtered and sent to the [`EventTime::late_to`] sink if there is
/// one. Results wait while downstream has no room; no input is taken meanwhile.
///
/// Checkpointable: the open windows with their accumulators and the results
/// not emitted yet, by the key group of their key; the watermark, the largest
/// timestamp seen and the counters of [`WindowMetrics`](super::WindowMetrics).
/// Processing time is stored as the stage's time at the snapshot and goes on
/// from there at the restore (the time the pipeline was down does not count);
/// so is the idle time of the event-time idle rule.
pub struct WindowOp<T, K, A, R> {
    engine: KeyedWindows<T, K, A, R>,
    key: KeyFn<T, K>,
    clock: Clock<T>,
    timer: Timer,
    kind: &'static str,
}

impl<T, K, A, R> fmt::Debug for WindowOp<T, K, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowOp")
            .field("kind", &self.kind)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl<T, K, A, R> WindowOp<T, K, A, R>
where
    K: std::hash::Hash + Eq + Clone,
{
    pub(crate) fn event(
        windows: Windows,
        time: EventTime<T>,
        key: KeyFn<T, K>,
        agg: Aggregate<T, A, R>,
    ) -> Self {
        WindowOp {
            engine: KeyedWindows::new(windows, agg),
            key,
            clock: Clock::Event {
                time,
                max_ts: None,
                last_arrival: Instant::now(),
            },
            timer: Timer::default(),
            kind: "event_time_windows",
        }
    }

    pub(crate) fn processing(windows: Windows, key: KeyFn<T, K>, agg: Aggregate<T, A, R>) -> Self {
        WindowOp {
            engine: KeyedWindows::new(windows, agg),
            key,
            clock: Clock::Processing { origin: None },
            timer: Timer::default(),
            kind: "processing_time_windows",
        }
    }
}

impl<T, K, A, R> WindowOp<T, K, A, R>
where
    T: Send + 'static,
    K: std::hash::Hash + Eq + Clone + Send + 'static,
    A: Send + 'static,
    R: Send + 'static,
{
    fn flush(&mut self, io: &mut Io<'_, T, WindowResult<K, R>>) {
        while io.has_room() {
            match self.engine.pop_ready() {
                Some(r) => io.push(r),
                None => break,
            }
        }
    }

    /// Milliseconds of processing time now (processing clock).
    fn now_ms(origin: &mut Option<Instant>) -> u64 {
        let origin = *origin.get_or_insert_with(Instant::now);
        millis(Instant::now() - origin)
    }

    /// Folds `x` in, or sends it to the side output. `Err` fails the stage.
    #[inline]
    fn take(&mut self, io: &mut Io<'_, T, WindowResult<K, R>>, x: T) -> Result<(), Failure> {
        let key = (self.key)(&x);
        let ts = match &mut self.clock {
            Clock::Event { time, .. } => (time.timestamp)(&x),
            Clock::Processing { origin } => Self::now_ms(origin),
        };
        let admit = self
            .engine
            .insert(key, ts, &x)
            .map_err(|m| Failure::error(ErrorClass::ResourceExhausted, m))?;
        match (admit, &mut self.clock) {
            (
                Admit::Added,
                Clock::Event {
                    time,
                    max_ts,
                    last_arrival,
                },
            ) => {
                let max = max_ts.map_or(ts, |m| m.max(ts));
                *max_ts = Some(max);
                if time.idle.is_some() {
                    *last_arrival = Instant::now();
                }
                self.engine.advance(max.saturating_sub(time.bound));
                io.complete(1);
            }
            (Admit::Added, Clock::Processing { .. }) => io.complete(1),
            (why, clock) => {
                if let Clock::Event {
                    time:
                        EventTime {
                            late: Some(sink), ..
                        },
                    ..
                } = clock
                {
                    let reason = if why == Admit::Late {
                        "late: beyond the allowed lateness"
                    } else {
                        "window state bound reached (drop element)"
                    };
                    let failure = Failure::error(ErrorClass::Permanent, reason);
                    // Nothing was taken from `io` since `x`.
                    let index = io.next_index().saturating_sub(1);
                    let letter = DeadLetter::new(x, self.kind, "", &failure, 0, index);
                    // Refused by a full sink: counted all the same (metrics, filtered).
                    let _ = sink.offer(letter);
                }
                io.filter();
            }
        }
        Ok(())
    }

    /// Advances the watermark with time where the clock says so, and sets the timer
    /// for the next time it would.
    fn tick(&mut self, cx: &mut Context<'_>) {
        loop {
            let at = match &mut self.clock {
                Clock::Processing { origin } => {
                    let now = Self::now_ms(origin);
                    self.engine.advance(now);
                    let base = origin.unwrap_or_else(Instant::now);
                    self.engine
                        .next_timer()
                        .map(|t| base + Duration::from_millis(t))
                }
                Clock::Event {
                    time,
                    max_ts: Some(max),
                    last_arrival,
                } => {
                    let Some(idle) = time.idle else { return };
                    let silent = Instant::now() - *last_arrival;
                    if silent >= idle {
                        let wm = max
                            .saturating_add(millis(silent))
                            .saturating_sub(time.bound);
                        self.engine.advance(wm);
                    }
                    // When the idle watermark reaches the next timer.
                    self.engine.next_timer().map(|t| {
                        let ahead = t.saturating_add(time.bound).saturating_sub(*max);
                        *last_arrival + Duration::from_millis(ahead).max(idle)
                    })
                }
                Clock::Event { max_ts: None, .. } => None,
            };
            match at {
                Some(at) => {
                    if !self.timer.arm(at, cx) {
                        return;
                    }
                }
                None => {
                    self.timer.disarm();
                    return;
                }
            }
        }
    }
}

impl<T, K, A, R> Checkpointable for WindowOp<T, K, A, R>
where
    K: std::hash::Hash + Eq + Clone + Serialize + DeserializeOwned,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        let now = Instant::now();
        let clock = match &self.clock {
            Clock::Event {
                max_ts,
                last_arrival,
                ..
            } => SavedClock::Event {
                max_ts: *max_ts,
                silent: age(now.into_std(), last_arrival.into_std()),
            },
            Clock::Processing { origin } => SavedClock::Processing {
                elapsed: origin.map(|o| age(now.into_std(), o.into_std())),
            },
        };
        self.engine.snapshot(STATE_VERSION, &clock)
    }

    /// Several stored clocks (a snapshot merged from replicas) restore as the
    /// earliest: the smallest timestamp and silence, the longest processing time.
    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        let clocks: Vec<SavedClock> = self.engine.restore(snapshot, STATE_VERSION, ctx)?;
        let now = Instant::now();
        self.timer.disarm();
        match &mut self.clock {
            Clock::Event {
                max_ts,
                last_arrival,
                ..
            } => {
                let mut saved = clocks.iter().filter_map(|c| match c {
                    SavedClock::Event { max_ts, silent } => Some((*max_ts, *silent)),
                    SavedClock::Processing { .. } => None,
                });
                let Some(first) = saved.next() else {
                    return Err(StateError::Shape(
                        "no event-time clock in the snapshot".into(),
                    ));
                };
                let (ts, silent) = saved.fold(first, |(m, s), (m2, s2)| {
                    let m = match (m, m2) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    (m, s.min(s2))
                });
                *max_ts = ts;
                *last_arrival = tokio_before(now, silent);
            }
            Clock::Processing { origin } => {
                let mut elapsed = None;
                for c in &clocks {
                    match c {
                        SavedClock::Processing { elapsed: e } => elapsed = elapsed.max(*e),
                        SavedClock::Event { .. } => {
                            return Err(StateError::Shape(
                                "an event-time clock in a processing-time snapshot".into(),
                            ));
                        }
                    }
                }
                *origin = elapsed.map(|e| tokio_before(now, e));
            }
        }
        Ok(())
    }
}

impl<T, K, A, R> Operator for WindowOp<T, K, A, R>
where
    T: Send + 'static,
    K: std::hash::Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    type In = T;
    type Out = WindowResult<K, R>;

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn fusable(&self) -> bool {
        true
    }

    fn validate(&self) -> Result<(), String> {
        self.engine.validate()
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    /// Each element is folded into state and completed in the step that takes it;
    /// a failure destroys only that element's contribution (see the module docs).
    fn retry_safe(&self) -> bool {
        true
    }

    fn state_entries(&self) -> usize {
        self.engine.open_windows() + self.engine.ready_len()
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }

    fn step(&mut self, io: &mut Io<'_, T, WindowResult<K, R>>, cx: &mut Context<'_>) -> Step {
        let _ = self.timer.fired(cx);
        if let Clock::Processing { origin } = &mut self.clock {
            // Windows whose end has come fire before new elements go in.
            let now = Self::now_ms(origin);
            self.engine.advance(now);
        }
        loop {
            if self.engine.ready_len() > 0 {
                self.flush(io);
                if self.engine.ready_len() > 0 {
                    return Step::Continue;
                }
            }
            let Some(x) = io.pop() else { break };
            if let Err(failure) = self.take(io, x) {
                return Step::Failed(failure);
            }
        }
        if io.input_exhausted() {
            // The end of the input is the end of time: every window fires.
            self.timer.disarm();
            self.engine.advance(u64::MAX);
            self.flush(io);
            return if self.engine.ready_len() == 0 {
                Step::Finished
            } else {
                Step::Continue
            };
        }
        self.tick(cx);
        self.flush(io);
        Step::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_resumes, run_resumed, run_whole};

    fn key(x: &(u64, u64)) -> u64 {
        x.0
    }

    fn sums() -> Aggregate<(u64, u64), u64, u64> {
        Aggregate::new(|| 0, |s: &mut u64, x: &(u64, u64)| *s += x.1, |s| *s)
    }

    type Op = WindowOp<(u64, u64), u64, u64, u64>;

    fn event_time() -> Op {
        let ms = Duration::from_millis;
        let time = EventTime::new(|x: &(u64, u64)| x.1).out_of_orderness(ms(4));
        let windows = Windows::tumbling(ms(10)).allowed_lateness(ms(6));
        WindowOp::event(windows, time, Arc::new(key), sums())
    }

    #[test]
    fn a_restored_event_time_window_fires_as_the_uninterrupted_one() {
        // Out of order: some elements late within the lateness (a second
        // firing), some beyond it (filtered).
        let input: Vec<(u64, u64)> = (0..90_u64)
            .map(|i| (i % 3, i * 2 + 10 + (i * 5 % 13) - (i % 4) * 3))
            .collect();
        let whole = run_whole(event_time(), input.clone());
        assert!(whole.iter().any(|r| r.firing > 0), "late firings happen");
        assert_resumes(&event_time, &input, &[0, 1, 20, 45, 89, 90]);
    }

    #[test]
    fn the_watermark_survives_a_restore() {
        // After the snapshot, an element whose window the restored watermark
        // has closed is late, as it is in the uninterrupted run.
        let input = vec![(1, 5), (1, 40), (1, 6), (2, 7)];
        let resumed_at = |k| {
            let (out, _) = run_resumed(&event_time, &input, k, &Default::default());
            out
        };
        let whole = run_whole(event_time(), input.clone());
        assert_eq!(whole.len(), 2, "{whole:?}");
        assert_eq!(resumed_at(2), whole);
    }

    #[test]
    fn a_restored_processing_time_window_keeps_its_open_windows() {
        let make = || {
            let windows = Windows::tumbling(Duration::from_secs(3600));
            WindowOp::processing(windows, Arc::new(key), sums())
        };
        let input: Vec<(u64, u64)> = (0..40_u64).map(|i| (i % 4, i)).collect();
        assert_resumes(&make, &input, &[0, 1, 21, 40]);
    }
}
