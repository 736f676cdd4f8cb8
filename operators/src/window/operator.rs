//! [`WindowOp`]: keyed windows as a one-output stage, on event time or on
//! processing time.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use weir_runtime::operator::{Counting, Io, Operator, Step};
use weir_supervisor::dead_letter::DeadLetter;
use weir_supervisor::{ErrorClass, Failure};

use super::engine::{Admit, KeyedWindows};
use super::spec::{Aggregate, EventTime, WindowResult, Windows, millis};

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

impl<T, K, A, R> Operator for WindowOp<T, K, A, R>
where
    T: Send + 'static,
    K: std::hash::Hash + Eq + Clone + Send + 'static,
    A: Send + 'static,
    R: Send + 'static,
{
    type In = T;
    type Out = WindowResult<K, R>;

    fn kind(&self) -> &'static str {
        self.kind
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
