//! [`TestSink`]: a sink that takes only what the test requests and reports every
//! element, the end and an early stop to its [`SinkProbe`].

use std::convert::Infallible;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::Duration;

use tokio::sync::mpsc;
use weir::operator::{Counting, Io, Operator, Step};
use weir::{Flow, Graph, Outlet, OutputReceiver, Runnable};

/// How long a [`SinkProbe`] waits for an expected event unless told otherwise
/// ([`SinkProbe::with_timeout`]): 3 s. Under the paused clock it costs no real
/// time; on a real clock it only costs anything when the test fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// What a [`TestSink`] reports to its probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkEvent<T> {
    /// An element the sink took (within the requested demand).
    Next(T),
    /// The stream ended: every element before it was delivered.
    Complete,
    /// The sink was stopped before its input ended: a stage failed (the error is
    /// in the pipeline's result) or the pipeline was aborted.
    Error,
}

#[derive(Debug)]
struct Demand {
    requested: u64,
    waker: Option<Waker>,
}

fn lock(demand: &Mutex<Demand>) -> MutexGuard<'_, Demand> {
    demand
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Constructors of probed sinks.
#[derive(Debug, Clone, Copy)]
pub struct TestSink;

impl TestSink {
    /// Ends `flow` with a probed sink. The extension method
    /// [`test_sink`](crate::TestkitExt::test_sink) does the same.
    ///
    /// The sink takes elements only while the test's [requests](SinkProbe::request)
    /// allow; until then they wait in its input queue and backpressure the
    /// pipeline, so a probe that requests nothing is a stalled sink.
    pub fn probe<T: Send + 'static>(flow: Flow<T>) -> (Runnable<()>, SinkProbe<T>) {
        let (sink, probe) = Self::operator();
        (flow.to(sink, OutputReceiver::ready(())), probe)
    }

    /// Ends `from`, an outlet of a graph, with a probed sink.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir::prelude::*;
    /// use weir_testkit::prelude::*;
    ///
    /// run(|rt| async move {
    ///     let mut g = Graph::new();
    ///     let numbers = g.source(Pipeline::from_iter(0..4_u32));
    ///     let [evens, odds] = g.partition(numbers, |x: &u32| (*x % 2) as usize);
    ///     let mut even = TestSink::attach(&mut g, evens);
    ///     let mut odd = TestSink::attach(&mut g, odds);
    ///     let running = g.run(&rt).unwrap();
    ///     even.request(10);
    ///     odd.request(10);
    ///     assert_eq!(even.expect_next_n(2).await, [0, 2]);
    ///     assert_eq!(odd.expect_next_n(2).await, [1, 3]);
    ///     even.expect_complete().await;
    ///     odd.expect_complete().await;
    ///     assert_conserved(&running.await.unwrap().report);
    /// });
    /// ```
    pub fn attach<T: Send + 'static>(graph: &mut Graph, from: Outlet<T>) -> SinkProbe<T> {
        let (sink, probe) = Self::operator();
        graph.sink(from, |f| f.to(sink, OutputReceiver::ready(())));
        probe
    }

    fn operator<T: Send + 'static>() -> (ProbeSink<T>, SinkProbe<T>) {
        let demand = Arc::new(Mutex::new(Demand {
            requested: 0,
            waker: None,
        }));
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = ProbeSink {
            demand: Arc::clone(&demand),
            events: tx,
            ended: false,
        };
        let probe = SinkProbe {
            demand,
            events: rx,
            timeout: DEFAULT_TIMEOUT,
        };
        (sink, probe)
    }
}

/// The test's side of a [`TestSink`]: grants demand and asserts what arrives.
///
/// Every `expect_*` waits at most the probe's timeout and panics with a message
/// saying what was expected and what came (or that nothing did).
///
/// Dropping the probe cancels the sink, as dropping an
/// [`Egress`](weir::prelude::Egress) does: the pipeline ends, and what the sink had
/// not taken is counted as abandoned.
#[derive(Debug)]
pub struct SinkProbe<T> {
    demand: Arc<Mutex<Demand>>,
    events: mpsc::UnboundedReceiver<SinkEvent<T>>,
    timeout: Duration,
}

impl<T: Debug> SinkProbe<T> {
    /// Sets how long each `expect_*` waits (default [`DEFAULT_TIMEOUT`]).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Grants the sink demand for `n` more elements.
    pub fn request(&self, n: u64) {
        let waker = {
            let mut d = lock(&self.demand);
            d.requested = d.requested.saturating_add(n);
            d.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Grants unlimited demand: the sink takes everything as it arrives.
    pub fn request_all(&self) {
        self.request(u64::MAX);
    }

    /// Waits for the next event.
    ///
    /// # Panics
    ///
    /// If none comes within the timeout, or the sink is gone without a word
    /// (its pipeline's System stopped).
    pub async fn next_event(&mut self) -> SinkEvent<T> {
        match tokio::time::timeout(self.timeout, self.events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("test sink: the sink is gone (its System stopped)"),
            Err(_) => panic!(
                "test sink: no event within {:?} (requested so far: {})",
                self.timeout,
                self.requested()
            ),
        }
    }

    /// Waits for the next element and returns it.
    ///
    /// # Panics
    ///
    /// If the stream ended or stopped instead, or nothing came within the timeout.
    pub async fn expect_element(&mut self) -> T {
        match self.next_event().await {
            SinkEvent::Next(x) => x,
            other => panic!("test sink: expected an element, got {other:?}"),
        }
    }

    /// Waits for the next element and asserts that it equals `expected`.
    ///
    /// # Panics
    ///
    /// If another element, the end or a stop came, or nothing within the timeout.
    pub async fn expect_next(&mut self, expected: T)
    where
        T: PartialEq,
    {
        match self.next_event().await {
            SinkEvent::Next(x) if x == expected => {}
            other => panic!("test sink: expected Next({expected:?}), got {other:?}"),
        }
    }

    /// Waits for the next `n` elements and returns them in arrival order.
    ///
    /// # Panics
    ///
    /// As [`expect_element`](Self::expect_element), saying how many had come.
    pub async fn expect_next_n(&mut self, n: usize) -> Vec<T> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match self.next_event().await {
                SinkEvent::Next(x) => got.push(x),
                other => panic!("test sink: expected {n} elements, got {other:?} after {got:?}"),
            }
        }
        got
    }

    /// Waits for the end of the stream.
    ///
    /// # Panics
    ///
    /// If an element or a stop came first, or nothing within the timeout.
    pub async fn expect_complete(&mut self) {
        match self.next_event().await {
            SinkEvent::Complete => {}
            other => panic!("test sink: expected Complete, got {other:?}"),
        }
    }

    /// Takes elements until the end of the stream and returns them.
    ///
    /// # Panics
    ///
    /// If the sink is stopped instead, or an event takes longer than the timeout.
    pub async fn expect_elements_until_complete(&mut self) -> Vec<T> {
        let mut got = Vec::new();
        loop {
            match self.next_event().await {
                SinkEvent::Next(x) => got.push(x),
                SinkEvent::Complete => return got,
                SinkEvent::Error => panic!(
                    "test sink: expected elements then Complete, the sink was stopped after {got:?}"
                ),
            }
        }
    }

    /// Waits for the sink to be stopped before its input ended: a stage of the
    /// pipeline failed (await the pipeline for the error) or it was aborted.
    ///
    /// # Panics
    ///
    /// If an element or the end came first, or nothing within the timeout.
    pub async fn expect_error(&mut self) {
        match self.next_event().await {
            SinkEvent::Error => {}
            other => panic!("test sink: expected the stream to fail, got {other:?}"),
        }
    }

    /// Asserts that no event arrives for `duration` (virtual time under the paused
    /// clock).
    ///
    /// # Panics
    ///
    /// If one does, naming it.
    pub async fn expect_no_message(&mut self, duration: Duration) {
        if let Ok(Some(event)) = tokio::time::timeout(duration, self.events.recv()).await {
            panic!("test sink: expected no message for {duration:?}, got {event:?}");
        }
    }

    /// Outstanding demand: requested and not yet used by the sink.
    pub fn requested(&self) -> u64 {
        lock(&self.demand).requested
    }
}

impl<T> Drop for SinkProbe<T> {
    fn drop(&mut self) {
        // Wakes the sink so that it sees the probe gone and finishes.
        self.events.close();
        let waker = lock(&self.demand).waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The sink operator behind a [`SinkProbe`].
struct ProbeSink<T> {
    demand: Arc<Mutex<Demand>>,
    events: mpsc::UnboundedSender<SinkEvent<T>>,
    /// The input ended and `Complete` was reported.
    ended: bool,
}

impl<T: Send + 'static> Operator for ProbeSink<T> {
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "test_sink"
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn step(&mut self, io: &mut Io<'_, T, Infallible>, cx: &mut Context<'_>) -> Step {
        if self.events.is_closed() {
            // The probe is gone: nobody takes more. What is queued is abandoned.
            return Step::Finished;
        }
        let mut d = lock(&self.demand);
        let mut delivered: u64 = 0;
        while delivered < d.requested {
            let Some(x) = io.pop() else { break };
            delivered += 1;
            // Sent to the probe, the element has reached the sink.
            let _ = self.events.send(SinkEvent::Next(x));
        }
        d.requested -= delivered;
        let remaining = d.requested;
        if io.input_len() > 0 && remaining == 0 {
            d.waker = Some(cx.waker().clone());
        }
        drop(d);
        io.complete(usize::try_from(delivered).unwrap_or(usize::MAX));
        if io.input_exhausted() {
            self.ended = true;
            let _ = self.events.send(SinkEvent::Complete);
            return Step::Finished;
        }
        Step::Continue
    }

    fn on_stop(&mut self) {
        if !self.ended {
            let _ = self.events.send(SinkEvent::Error);
        }
    }
}
