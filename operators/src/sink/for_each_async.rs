//! [`ForEachAsync`]: a sink that awaits a future per element.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use weir_runtime::operator::{Counting, ElementSupervision, Io, Operator, Step};

use crate::attempts::{Attempts, Order};

/// Awaits an async function for each element, with up to `concurrency` futures in
/// flight; an element is delivered when its future completes. While
/// `concurrency` futures are pending the sink takes no more input, so a slow sink
/// backpressures the whole pipeline. Created by
/// [`FlowExt::for_each_async`](crate::FlowExt::for_each_async) (one at a time, in
/// order) and
/// [`FlowExt::for_each_async_concurrent`](crate::FlowExt::for_each_async_concurrent)
/// (up to `n` at once, delivered in completion order).
///
/// Under [`Flow::supervise`](weir_runtime::Flow::supervise) each element being
/// delivered keeps a copy: a failed delivery (a panic, or the policy's
/// `element_timeout`) is retried after the policy's backoff, dead-lettered or
/// skipped, while the other deliveries go on (with one at a time: before the next
/// element is taken).
pub struct ForEachAsync<F, T, Fut> {
    f: F,
    kind: &'static str,
    concurrency: usize,
    in_flight: FuturesUnordered<Fut>,
    /// Present when the stage is supervised.
    supervised: Option<Attempts<T, ()>>,
    _type: PhantomData<fn(T)>,
}

impl<F, T, Fut> ForEachAsync<F, T, Fut> {
    pub(crate) fn new(f: F) -> Self {
        Self::concurrent("for_each_async", 1, f)
    }

    /// A sink with up to `concurrency` deliveries in flight.
    pub(crate) fn concurrent(kind: &'static str, concurrency: usize, f: F) -> Self {
        ForEachAsync {
            f,
            kind,
            concurrency,
            in_flight: FuturesUnordered::new(),
            supervised: None,
            _type: PhantomData,
        }
    }
}

impl<F, T, Fut> std::fmt::Debug for ForEachAsync<F, T, Fut> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForEachAsync")
            .field("kind", &self.kind)
            .field("concurrency", &self.concurrency)
            .field("in_flight", &self.in_flight.len())
            .field("supervised", &self.supervised)
            .finish()
    }
}

impl<F, T, Fut> Operator for ForEachAsync<F, T, Fut>
where
    F: FnMut(T) -> Fut + Send + 'static,
    T: Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    type In = T;
    type Out = Infallible;

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

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn held(&self) -> usize {
        self.in_flight.len() + self.supervised.as_ref().map_or(0, Attempts::held)
    }

    fn supervise_elements(&mut self, setup: ElementSupervision<T>) -> bool {
        self.supervised = Some(Attempts::with_order(setup, Order::Completion));
        true
    }

    fn step(&mut self, io: &mut Io<'_, T, Infallible>, cx: &mut Context<'_>) -> Step {
        if let Some(attempts) = &mut self.supervised {
            let f = &mut self.f;
            let mut call = |x| f(x).map(Ok);
            loop {
                let mut progress = false;
                while attempts.len() < self.concurrency {
                    let index = io.next_index();
                    let Some(x) = io.pop() else { break };
                    attempts.start(&mut call, x, index, io);
                    progress = true;
                }
                progress |= attempts.poll(&mut call, io, cx);
                let window = attempts.len();
                while attempts.pop_ready().is_some() {
                    io.complete(1);
                }
                progress |= attempts.len() != window;
                if !progress {
                    break;
                }
            }
            return if attempts.is_empty() {
                io.finish_when_drained()
            } else {
                Step::Continue
            };
        }
        loop {
            let mut progress = false;
            while self.in_flight.len() < self.concurrency {
                let Some(x) = io.pop() else { break };
                self.in_flight.push((self.f)(x));
                progress = true;
            }
            // A future that panics is released by `FuturesUnordered`: its element
            // is not held any more, so it is counted as failed.
            while let Poll::Ready(Some(())) = self.in_flight.poll_next_unpin(cx) {
                io.complete(1);
                progress = true;
            }
            if !progress {
                break;
            }
        }
        if self.in_flight.is_empty() {
            io.finish_when_drained()
        } else {
            Step::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use weir_runtime::{BuildError, Supervision};
    use weir_supervisor::dead_letter::MemoryDlq;
    use weir_supervisor::policy::{BackoffConfig, SupervisionPolicy};

    use crate::test_support::{Gate, eventually, rt, run_small, run_to_failure};
    use crate::{FlowExt, Pipeline};

    /// Deliveries wait on a semaphore the test fills once `n` of them wait:
    /// exactly `n` ran at once, never more, and every element was delivered.
    #[test]
    fn concurrent_keeps_at_most_n_in_flight_and_delivers_all() {
        let rt = rt();
        let permits = Arc::new(tokio::sync::Semaphore::new(0));
        let current = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let sum = Arc::new(AtomicUsize::new(0));
        let (p, cur, mx, total) = (
            Arc::clone(&permits),
            Arc::clone(&current),
            Arc::clone(&max),
            Arc::clone(&sum),
        );
        let running = Pipeline::from_iter(0..100_usize)
            .for_each_async_concurrent(4, move |x| {
                let (p, cur, mx, total) = (
                    Arc::clone(&p),
                    Arc::clone(&cur),
                    Arc::clone(&mx),
                    Arc::clone(&total),
                );
                async move {
                    let now = cur.fetch_add(1, Ordering::SeqCst) + 1;
                    mx.fetch_max(now, Ordering::SeqCst);
                    p.acquire().await.unwrap().forget();
                    total.fetch_add(x, Ordering::SeqCst);
                    cur.fetch_sub(1, Ordering::SeqCst);
                }
            })
            .default_capacity(8)
            .run(&rt)
            .unwrap();
        eventually(|| current.load(Ordering::SeqCst) == 4);
        permits.add_permits(100);
        let done = running.wait().unwrap();
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.delivered(), 100);
        assert_eq!(sum.load(Ordering::SeqCst), (0..100).sum::<usize>());
        assert_eq!(max.load(Ordering::SeqCst), 4, "reached, never exceeded");
    }

    #[test]
    fn one_at_a_time_never_overlaps() {
        let current = Arc::new(AtomicUsize::new(0));
        let cur = Arc::clone(&current);
        let done = run_small(Pipeline::from_iter(0..20_u32).for_each_async(move |_| {
            let cur = Arc::clone(&cur);
            async move {
                assert_eq!(cur.fetch_add(1, Ordering::SeqCst), 0);
                tokio::task::yield_now().await;
                cur.fetch_sub(1, Ordering::SeqCst);
            }
        }));
        assert_eq!(done.report.delivered(), 20);
    }

    #[test]
    fn zero_concurrency_is_rejected_at_build_time() {
        let err = Pipeline::from_iter(0..3_u32)
            .for_each_async_concurrent(0, |_| async {})
            .run(&rt())
            .unwrap_err();
        assert!(
            matches!(&err, BuildError::InvalidArgument { stage, .. } if stage == "for_each_async_concurrent#1"),
            "{err:?}"
        );
    }

    /// A panicking delivery loses its element (failed); the others in flight are
    /// abandoned, and conservation holds.
    #[test]
    fn panic_in_a_delivery_fails_the_sink_and_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..20_u32)
                .for_each_async_concurrent(3, move |x| {
                    let g = g.clone();
                    async move {
                        tokio::task::yield_now().await;
                        if x == 6 {
                            g.boom("delivery panics on 6")
                        }
                    }
                })
                .default_capacity(3)
                .max_batch(2),
            &gate,
            "for_each_async_concurrent#1",
        );
        assert_eq!(
            report.stage("for_each_async_concurrent#1").unwrap().failed,
            1
        );
        assert_eq!(report.failed(), 1);
    }

    /// Supervised: a delivery that panics on its first attempt is retried while
    /// the others go on; every element is delivered once.
    #[test]
    fn concurrent_supervised_retries_failed_deliveries() {
        let rt = rt();
        let policy = SupervisionPolicy::default()
            .max_attempts(3)
            .backoff(BackoffConfig::new(Duration::ZERO, Duration::ZERO));
        let attempts = Arc::new(AtomicUsize::new(0));
        let delivered = Arc::new(AtomicUsize::new(0));
        let (a, d) = (Arc::clone(&attempts), Arc::clone(&delivered));
        let done = Pipeline::from_iter(0..30_u32)
            .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(10)))
            .for_each_async_concurrent(3, move |x| {
                let first = a.fetch_add(1, Ordering::SeqCst) % 7 == 0;
                let d = Arc::clone(&d);
                async move {
                    tokio::task::yield_now().await;
                    assert!(!first, "flaky delivery of {x}");
                    d.fetch_add(1, Ordering::SeqCst);
                }
            })
            .default_capacity(4)
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.delivered(), 30);
        assert_eq!(delivered.load(Ordering::SeqCst), 30);
        let retries = done.report.retries();
        assert_eq!(
            retries as usize + 30,
            attempts.load(Ordering::SeqCst),
            "each failed attempt retried once more"
        );
        assert!(retries > 0);
    }
}
