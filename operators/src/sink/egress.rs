//! [`Egress`]: a bounded receiver the service reads the pipeline's output from.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;
use weir_runtime::operator::{Counting, Io, Operator, Step};

/// The receiving end of a pipeline ending in [`FlowExt::egress`](crate::FlowExt::egress).
///
/// `recv` yields elements in order and `None` once the pipeline has ended and the
/// buffer is empty. It is also a [`Stream`]. Dropping it makes the sink finish: the
/// pipeline completes and elements still in flight are counted as abandoned.
#[derive(Debug)]
pub struct Egress<T> {
    rx: mpsc::Receiver<T>,
}

impl<T> Egress<T> {
    /// The next element, waiting for one; `None` when the pipeline has ended.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }

    /// The next element if one is buffered now.
    pub fn try_recv(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    /// Elements buffered now.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// True when nothing is buffered now.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl<T> Stream for Egress<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }
}

type Reserve<T> =
    Pin<Box<dyn Future<Output = Result<mpsc::OwnedPermit<T>, mpsc::error::SendError<()>>> + Send>>;

/// The sink behind an [`Egress`]: moves elements into the egress buffer as space
/// frees up, and stops taking input while it is full.
pub struct EgressSink<T> {
    tx: mpsc::Sender<T>,
    capacity: usize,
    reserving: Option<Reserve<T>>,
}

impl<T> std::fmt::Debug for EgressSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressSink")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> EgressSink<T> {
    pub(crate) fn channel(capacity: usize) -> (Self, Egress<T>) {
        // tokio panics on a zero-sized channel; `validate` reports the zero instead.
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            EgressSink {
                tx,
                capacity,
                reserving: None,
            },
            Egress { rx },
        )
    }
}

impl<T: Send + 'static> Operator for EgressSink<T> {
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "egress"
    }

    fn validate(&self) -> Result<(), String> {
        if self.capacity == 0 {
            Err("egress capacity 0: the buffer needs room for at least one element".into())
        } else {
            Ok(())
        }
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn step(&mut self, io: &mut Io<'_, T, Infallible>, cx: &mut Context<'_>) -> Step {
        while io.input_len() > 0 {
            if let Some(reserve) = &mut self.reserving {
                match reserve.as_mut().poll(cx) {
                    Poll::Ready(Ok(permit)) => {
                        self.reserving = None;
                        if let Some(x) = io.pop() {
                            permit.send(x);
                            io.complete(1);
                        }
                        continue;
                    }
                    // The receiver is gone: nobody will read more.
                    Poll::Ready(Err(_)) => return Step::Finished,
                    Poll::Pending => return Step::Continue,
                }
            }
            match self.tx.try_reserve() {
                Ok(permit) => {
                    if let Some(x) = io.pop() {
                        permit.send(x);
                        io.complete(1);
                    }
                }
                Err(mpsc::error::TrySendError::Full(())) => {
                    self.reserving = Some(Box::pin(self.tx.clone().reserve_owned()));
                }
                Err(mpsc::error::TrySendError::Closed(())) => return Step::Finished,
            }
        }
        io.finish_when_drained()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::executor::block_on;
    use weir_runtime::{BuildError, Outcome};

    use crate::test_support::{eventually, rt};
    use crate::{FlowExt, Pipeline};

    #[test]
    fn delivers_every_element_in_order() {
        let rt = rt();
        let (runnable, mut egress) = Pipeline::from_iter(0..50_u32).map(|x| x + 1).egress(4);
        let running = runnable.default_capacity(3).max_batch(2).run(&rt).unwrap();
        let mut got = Vec::new();
        while let Some(x) = block_on(egress.recv()) {
            got.push(x);
        }
        assert_eq!(got, (1..=50).collect::<Vec<_>>());
        let done = running.wait().unwrap();
        let r = &done.report;
        r.check_conservation().unwrap();
        assert_eq!(r.outcome, Outcome::Completed);
        let sink = r.stage("egress#2").unwrap();
        assert!(sink.is_sink);
        assert_eq!((sink.input, sink.completed, sink.abandoned), (50, 50, 0));
    }

    /// An unread egress holds at most its capacity, and the pipeline behind it
    /// stops pulling from its source.
    #[test]
    fn backpressures_when_not_read() {
        let rt = rt();
        let (runnable, mut egress) = Pipeline::from_iter(0..100_u32).egress(4);
        let running = runnable.default_capacity(3).max_batch(2).run(&rt).unwrap();
        eventually(|| egress.len() == 4);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(egress.len(), 4);
        let stats = running.stats();
        assert!(!stats.finished);
        // Egress buffer + the sink's input capacity.
        let emitted = stats.stage("iter#0").unwrap().emitted;
        assert!(emitted <= 4 + 3, "source emitted {emitted}");

        let mut got = Vec::new();
        while let Some(x) = block_on(egress.recv()) {
            assert!(egress.len() <= 4);
            got.push(x);
        }
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        let done = running.wait().unwrap();
        done.report.check_conservation().unwrap();
        assert!(done.report.stage("egress#1").unwrap().peak_occupancy <= 3);
    }

    /// Dropping the receiver early makes the sink finish: the pipeline completes,
    /// cancels its (endless) source, and counts what was left in flight.
    #[test]
    fn dropping_the_receiver_completes_the_pipeline() {
        let rt = rt();
        let (runnable, mut egress) = Pipeline::from_iter(0_u64..).egress(2);
        let running = runnable.default_capacity(3).max_batch(2).run(&rt).unwrap();
        for expected in 0..5 {
            assert_eq!(block_on(egress.recv()), Some(expected));
        }
        drop(egress);
        let done = running.wait().unwrap();
        let r = &done.report;
        r.check_conservation().unwrap();
        assert_eq!(r.outcome, Outcome::Completed);
        let sink = r.stage("egress#1").unwrap();
        assert!(sink.completed >= 5);
        assert!(
            sink.abandoned >= 1,
            "the sink found the receiver gone with input queued"
        );
        assert_eq!(sink.input, sink.completed + sink.abandoned);
        assert_eq!(r.admitted(), r.delivered() + r.abandoned());
    }

    #[test]
    fn dropping_the_receiver_before_anything_is_read() {
        let rt = rt();
        let (runnable, egress) = Pipeline::from_iter(0_u32..).map(|x| x * 2).egress(1);
        let running = runnable.default_capacity(3).max_batch(2).run(&rt).unwrap();
        drop(egress);
        let done = running.wait().unwrap();
        done.report.check_conservation().unwrap();
    }

    #[test]
    fn buffered_elements_can_be_read_after_completion() {
        let rt = rt();
        let (runnable, mut egress) = Pipeline::from_iter(0..10_u32).egress(16);
        let done = runnable.run(&rt).unwrap().wait().unwrap();
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.delivered(), 10);
        assert_eq!(egress.len(), 10);
        assert!(!egress.is_empty());
        assert_eq!(egress.try_recv(), Some(0));
        // The receiver is also a Stream; it ends once the pipeline has.
        let rest: Vec<u32> = block_on(futures::StreamExt::collect(&mut egress));
        assert_eq!(rest, (1..10).collect::<Vec<_>>());
        assert!(egress.is_empty());
        assert_eq!(egress.try_recv(), None);
        assert_eq!(block_on(egress.recv()), None);
    }

    #[test]
    fn empty_input_ends_the_receiver() {
        let rt = rt();
        let (runnable, mut egress) = Pipeline::from_iter(0..0_u32).egress(2);
        let running = runnable.run(&rt).unwrap();
        assert_eq!(block_on(egress.recv()), None);
        running.wait().unwrap().report.check_conservation().unwrap();
    }

    #[test]
    fn zero_capacity_is_rejected_at_build_time() {
        let rt = rt();
        let (runnable, _egress) = Pipeline::from_iter(0..3_u32).map(|x| x).egress(0);
        let err = runnable.run(&rt).unwrap_err();
        assert!(
            matches!(&err, BuildError::InvalidArgument { stage, .. } if stage == "egress#2"),
            "{err:?}"
        );
    }
}
