//! [`MapAsync`]: an async function per element, several at once, in input order
//! or in completion order.

use std::future::Future;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::StreamExt;
use futures::stream::{FuturesOrdered, FuturesUnordered};
use weir_runtime::Failure;
use weir_runtime::operator::{ElementSupervision, Io, Operator, Step};

use crate::attempts::{Attempts, Order};

/// The futures in flight of an unsupervised [`MapAsync`].
enum InFlight<Fut: Future> {
    /// Results leave in input order.
    Ordered(FuturesOrdered<Fut>),
    /// Results leave as their futures finish.
    Unordered(FuturesUnordered<Fut>),
}

impl<Fut: Future> InFlight<Fut> {
    fn new(order: Order) -> Self {
        match order {
            Order::Input => InFlight::Ordered(FuturesOrdered::new()),
            Order::Completion => InFlight::Unordered(FuturesUnordered::new()),
        }
    }

    fn len(&self) -> usize {
        match self {
            InFlight::Ordered(q) => q.len(),
            InFlight::Unordered(q) => q.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, fut: Fut) {
        match self {
            InFlight::Ordered(q) => q.push_back(fut),
            InFlight::Unordered(q) => q.push(fut),
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Fut::Output>> {
        match self {
            InFlight::Ordered(q) => q.poll_next_unpin(cx),
            InFlight::Unordered(q) => q.poll_next_unpin(cx),
        }
    }
}

/// Runs an async function on each element with up to `concurrency` futures in
/// flight. Created by [`FlowExt::map_async`](crate::FlowExt::map_async) and
/// [`FlowExt::try_map_async`](crate::FlowExt::try_map_async) (whose futures return
/// `Result<_, Failure>`), which emit results in input order, and by
/// [`FlowExt::map_async_unordered`](crate::FlowExt::map_async_unordered) and
/// [`FlowExt::try_map_async_unordered`](crate::FlowExt::try_map_async_unordered),
/// which emit each result as soon as its future finishes (a slow element does not
/// hold back the ones behind it; the window of `concurrency` futures is refilled as
/// any of them finishes).
///
/// The futures run on the stage's arbiter (a tokio current-thread runtime with time
/// and I/O), so they may use tokio timers and sockets.
///
/// Under [`Flow::supervise`](weir_runtime::Flow::supervise) each element in flight
/// keeps a copy of its input: a failed attempt (an `Err`, a panic in the function
/// or its future, or the policy's `element_timeout`) is judged by the stage's
/// policy and retried in place after its backoff, dead-lettered or skipped, while
/// the other elements go on; the ordered forms still emit in input order, the
/// unordered ones emit a retried element when it finally succeeds.
pub struct MapAsync<F, T, Fut: Future, O> {
    f: F,
    /// Turns a future's output into the element or its failure.
    lift: fn(Fut::Output) -> Result<O, Failure>,
    kind: &'static str,
    concurrency: usize,
    order: Order,
    in_flight: InFlight<Fut>,
    /// Present when the stage is supervised.
    supervised: Option<Attempts<T, O>>,
}

impl<F, T, Fut: Future, O> MapAsync<F, T, Fut, O> {
    pub(crate) fn new(
        kind: &'static str,
        concurrency: usize,
        f: F,
        lift: fn(Fut::Output) -> Result<O, Failure>,
    ) -> Self {
        Self::with_order(kind, concurrency, f, lift, Order::Input)
    }

    /// A map that emits results as their futures finish.
    pub(crate) fn unordered(
        kind: &'static str,
        concurrency: usize,
        f: F,
        lift: fn(Fut::Output) -> Result<O, Failure>,
    ) -> Self {
        Self::with_order(kind, concurrency, f, lift, Order::Completion)
    }

    fn with_order(
        kind: &'static str,
        concurrency: usize,
        f: F,
        lift: fn(Fut::Output) -> Result<O, Failure>,
        order: Order,
    ) -> Self {
        MapAsync {
            f,
            lift,
            kind,
            concurrency,
            order,
            in_flight: InFlight::new(order),
            supervised: None,
        }
    }
}

impl<F, T, Fut: Future, O> std::fmt::Debug for MapAsync<F, T, Fut, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapAsync")
            .field("kind", &self.kind)
            .field("concurrency", &self.concurrency)
            .field("order", &self.order)
            .field("in_flight", &self.in_flight.len())
            .field("supervised", &self.supervised)
            .finish()
    }
}

impl<F, T, Fut, O> Operator for MapAsync<F, T, Fut, O>
where
    F: FnMut(T) -> Fut + Send + 'static,
    T: Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
    O: Send + 'static,
{
    type In = T;
    type Out = O;

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            Err(format!(
                "{} with concurrency 0 could never run a future",
                self.kind
            ))
        } else {
            Ok(())
        }
    }

    fn supervise_elements(&mut self, setup: ElementSupervision<T>) -> bool {
        self.supervised = Some(Attempts::with_order(setup, self.order));
        true
    }

    fn held(&self) -> usize {
        self.in_flight.len() + self.supervised.as_ref().map_or(0, Attempts::held)
    }

    fn step(&mut self, io: &mut Io<'_, T, O>, cx: &mut Context<'_>) -> Step {
        if let Some(attempts) = &mut self.supervised {
            let lift = self.lift;
            let f = &mut self.f;
            let mut call = |x| f(x).map(lift);
            return step_supervised(attempts, self.concurrency, &mut call, io, cx);
        }
        loop {
            let mut progress = false;
            while self.in_flight.len() < self.concurrency {
                let Some(x) = io.pop() else { break };
                self.in_flight.push((self.f)(x));
                progress = true;
            }
            while io.has_room() && !self.in_flight.is_empty() {
                match self.in_flight.poll_next(cx) {
                    Poll::Ready(Some(y)) => match (self.lift)(y) {
                        Ok(y) => io.push(y),
                        // Not tied to an element of this step: the stage fails.
                        Err(failure) => return Step::Failed(failure),
                    },
                    Poll::Ready(None) | Poll::Pending => break,
                }
                progress = true;
            }
            if !progress {
                break;
            }
        }
        if io.input_exhausted() && self.in_flight.is_empty() {
            Step::Finished
        } else {
            Step::Continue
        }
    }
}

/// One step of a supervised async map: admit input up to the concurrency, drive
/// the attempts, emit what is ready in order.
fn step_supervised<T, O, F, Fut>(
    attempts: &mut Attempts<T, O>,
    concurrency: usize,
    call: &mut F,
    io: &mut Io<'_, T, O>,
    cx: &mut Context<'_>,
) -> Step
where
    T: Send + 'static,
    O: Send + 'static,
    F: FnMut(T) -> Fut,
    Fut: Future<Output = Result<O, Failure>> + Send + 'static,
{
    loop {
        let mut progress = false;
        while attempts.len() < concurrency {
            let index = io.next_index();
            let Some(x) = io.pop() else { break };
            attempts.start(call, x, index, io);
            progress = true;
        }
        progress |= attempts.poll(call, io, cx);
        let window = attempts.len();
        while io.has_room() {
            let Some(y) = attempts.pop_ready() else { break };
            io.push(y);
        }
        // Settled elements leave the window without output: room for more input.
        progress |= attempts.len() != window;
        if !progress {
            break;
        }
    }
    if io.input_exhausted() && attempts.is_empty() {
        Step::Finished
    } else {
        Step::Continue
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use futures::channel::oneshot;
    use futures::executor::block_on;
    use weir_runtime::{BuildError, ErrorClass, Failure, Supervision};
    use weir_supervisor::dead_letter::MemoryDlq;
    use weir_supervisor::policy::{BackoffConfig, SupervisionPolicy};

    use crate::test_support::{Gate, eventually, rt, run_small, run_to_failure};
    use crate::{FlowExt, Pipeline};

    /// Later elements finish first; the output keeps the input order.
    #[test]
    fn keeps_input_order_when_futures_finish_out_of_order() {
        let done = run_small(
            Pipeline::from_iter(0..24_u64)
                .map_async(4, |x| async move {
                    tokio::time::sleep(Duration::from_millis(4 - x % 4)).await;
                    format!("r{x}")
                })
                .collect(),
        );
        let expected: Vec<String> = (0..24).map(|x| format!("r{x}")).collect();
        assert_eq!(done.output, expected);
        let r = &done.report;
        r.check_conservation().unwrap();
        let ma = r.stage("map_async#1").unwrap();
        assert!(ma.one_to_one);
        assert_eq!((ma.input, ma.completed, ma.produced), (24, 24, 24));
        assert_eq!(ma.abandoned, 0);
        assert!(ma.largest_batch <= 2);
    }

    #[test]
    fn never_runs_more_than_concurrency_futures() {
        let rt = rt();
        let current = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let (cur, mx) = (Arc::clone(&current), Arc::clone(&max));
        let done = Pipeline::from_iter(0..30_u32)
            .map_async(3, move |x| {
                let (cur, mx) = (Arc::clone(&cur), Arc::clone(&mx));
                async move {
                    let now = cur.fetch_add(1, Ordering::SeqCst) + 1;
                    mx.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    cur.fetch_sub(1, Ordering::SeqCst);
                    x
                }
            })
            .collect()
            .default_capacity(8)
            .max_batch(2)
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(done.output, (0..30).collect::<Vec<_>>());
        done.report.check_conservation().unwrap();
        assert_eq!(current.load(Ordering::SeqCst), 0);
        assert_eq!(
            max.load(Ordering::SeqCst),
            3,
            "concurrency reached, not exceeded"
        );
    }

    #[test]
    fn concurrency_one_runs_one_at_a_time() {
        let current = Arc::new(AtomicUsize::new(0));
        let cur = Arc::clone(&current);
        let done = run_small(
            Pipeline::from_iter(0..10_u32)
                .map_async(1, move |x| {
                    let cur = Arc::clone(&cur);
                    async move {
                        assert_eq!(cur.fetch_add(1, Ordering::SeqCst), 0);
                        tokio::task::yield_now().await;
                        cur.fetch_sub(1, Ordering::SeqCst);
                        x * 2
                    }
                })
                .collect(),
        );
        assert_eq!(done.output, (0..10).map(|x| x * 2).collect::<Vec<_>>());
        done.report.check_conservation().unwrap();
    }

    #[test]
    fn empty_input() {
        let done = run_small(
            Pipeline::from_iter(0..0_u32)
                .map_async(2, |x| async move { x })
                .collect(),
        );
        assert!(done.output.is_empty());
        done.report.check_conservation().unwrap();
    }

    #[test]
    fn zero_concurrency_is_rejected_at_build_time() {
        let rt = rt();
        let err = Pipeline::from_iter(0..3_u32)
            .map_async(0, |x| async move { x })
            .collect()
            .run(&rt)
            .unwrap_err();
        assert!(
            matches!(&err, BuildError::InvalidArgument { stage, .. } if stage == "map_async#1"),
            "{err:?}"
        );
    }

    /// Futures in flight when the stream is cut short are counted (abandoned).
    #[test]
    fn futures_in_flight_when_cancelled_are_accounted() {
        let done = run_small(
            Pipeline::from_iter(0_u64..)
                .map_async(4, |x| async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    x
                })
                .take(5)
                .collect(),
        );
        assert_eq!(done.output, [0, 1, 2, 3, 4]);
        let r = &done.report;
        r.check_conservation().unwrap();
        let ma = r.stage("map_async#1").unwrap();
        assert_eq!(ma.input, ma.completed + ma.abandoned);
    }

    #[test]
    fn panic_in_future_fails_the_stage_and_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..20_u32)
                .map_async(3, move |x| {
                    let g = g.clone();
                    async move {
                        tokio::task::yield_now().await;
                        if x == 7 {
                            g.boom("future panics on 7")
                        }
                        x
                    }
                })
                .collect()
                .default_capacity(3)
                .max_batch(2),
            &gate,
            "map_async#1",
        );
        let ma = report.stage("map_async#1").unwrap();
        assert_eq!(ma.failed, 1);
        // The futures ahead of 7 in the window may not have finished when it
        // panicked: those were held, and are abandoned, not failed.
        assert!(ma.completed <= 7, "completed {}", ma.completed);
        assert_eq!(report.failed(), 1);
    }

    /// A released element that the test holds back until a chosen moment.
    type Held = Arc<Mutex<Vec<Option<oneshot::Sender<()>>>>>;

    /// `map_async_unordered(4, _)` over 0..4 whose futures finish only when the
    /// test releases them: the outputs come out in the release order.
    #[test]
    fn unordered_emits_in_completion_order() {
        let rt = rt();
        let held: Held = Arc::new(Mutex::new((0..4).map(|_| None).collect()));
        let h = Arc::clone(&held);
        let (runnable, mut egress) = Pipeline::from_iter(0..4_usize)
            .map_async_unordered(4, move |x| {
                let (tx, rx) = oneshot::channel::<()>();
                h.lock().unwrap()[x] = Some(tx);
                async move {
                    rx.await.unwrap();
                    x * 10
                }
            })
            .egress(8);
        let running = runnable.run(&rt).unwrap();
        eventually(|| held.lock().unwrap().iter().all(Option::is_some));
        for x in [2, 0, 3, 1] {
            let tx = held.lock().unwrap()[x].take().unwrap();
            tx.send(()).unwrap();
            assert_eq!(block_on(egress.recv()), Some(x * 10));
        }
        assert_eq!(block_on(egress.recv()), None);
        let done = running.wait().unwrap();
        done.report.check_conservation().unwrap();
        let stage = done.report.stage("map_async_unordered#1").unwrap();
        assert!(stage.one_to_one);
        assert_eq!((stage.input, stage.completed, stage.produced), (4, 4, 4));
    }

    /// Futures wait on a semaphore the test fills once `n` of them are waiting:
    /// exactly `n` ran at once, never more, and every element came out once.
    #[test]
    fn unordered_keeps_at_most_n_in_flight_and_conserves() {
        let rt = rt();
        let permits = Arc::new(tokio::sync::Semaphore::new(0));
        let current = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let (p, cur, mx) = (Arc::clone(&permits), Arc::clone(&current), Arc::clone(&max));
        let running = Pipeline::from_iter(0..200_u32)
            .map_async_unordered(3, move |x| {
                let (p, cur, mx) = (Arc::clone(&p), Arc::clone(&cur), Arc::clone(&mx));
                async move {
                    let now = cur.fetch_add(1, Ordering::SeqCst) + 1;
                    mx.fetch_max(now, Ordering::SeqCst);
                    p.acquire().await.unwrap().forget();
                    cur.fetch_sub(1, Ordering::SeqCst);
                    x
                }
            })
            .collect()
            .default_capacity(8)
            .max_batch(4)
            .run(&rt)
            .unwrap();
        eventually(|| current.load(Ordering::SeqCst) == 3);
        permits.add_permits(200);
        let done = running.wait().unwrap();
        let mut output = done.output;
        output.sort_unstable();
        assert_eq!(output, (0..200).collect::<Vec<_>>());
        assert_eq!(max.load(Ordering::SeqCst), 3, "reached, never exceeded");
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.delivered(), 200);
    }

    /// Supervised: every first attempt of a multiple of 5 fails; it is retried in
    /// place and still comes out, the others are not held back.
    #[test]
    fn unordered_supervised_retries_in_place() {
        let rt = rt();
        let policy = SupervisionPolicy::default()
            .max_attempts(3)
            .backoff(BackoffConfig::new(Duration::ZERO, Duration::ZERO));
        let mut seen = HashSet::new();
        let done = Pipeline::from_iter(0..50_u32)
            .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(10)))
            .try_map_async_unordered(4, move |x| {
                let first = seen.insert(x);
                async move {
                    tokio::task::yield_now().await;
                    if first && x % 5 == 0 {
                        Err(Failure::error(ErrorClass::Transient, "flaky"))
                    } else {
                        Ok(x)
                    }
                }
            })
            .collect()
            .default_capacity(4)
            .max_batch(2)
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        let mut output = done.output;
        output.sort_unstable();
        assert_eq!(output, (0..50).collect::<Vec<_>>());
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.retries(), 10);
        assert_eq!(done.report.dead_lettered(), 0);
    }

    #[test]
    fn unordered_zero_concurrency_is_rejected_at_build_time() {
        let err = Pipeline::from_iter(0..3_u32)
            .map_async_unordered(0, |x| async move { x })
            .collect()
            .run(&rt())
            .unwrap_err();
        assert!(
            matches!(&err, BuildError::InvalidArgument { stage, .. } if stage == "map_async_unordered#1"),
            "{err:?}"
        );
    }

    #[test]
    fn panic_in_function_fails_the_stage_and_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..20_u32)
                .map_async(3, move |x| {
                    if x == 5 {
                        g.boom("function panics on 5")
                    }
                    async move { x }
                })
                .collect()
                .default_capacity(3)
                .max_batch(2),
            &gate,
            "map_async#1",
        );
        assert_eq!(report.stage("map_async#1").unwrap().failed, 1);
        assert_eq!(report.failed(), 1);
    }
}
