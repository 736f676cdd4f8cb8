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
