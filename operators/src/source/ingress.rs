//! [`Ingress`]: a bounded handle a service pushes elements into.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use weir_runtime::operator::{Io, Operator, Step};

/// The error of [`Ingress::send`]: the pipeline no longer accepts elements. The
/// element is handed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline's ingress is closed")]
pub struct SendError<T>(pub T);

/// The error of [`Ingress::try_send`]. The element is handed back either way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError<T> {
    /// The ingress buffer is full: the pipeline is applying backpressure.
    #[error("the pipeline's ingress is full")]
    Full(T),
    /// The pipeline no longer accepts elements (shut down, aborted or failed).
    #[error("the pipeline's ingress is closed")]
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The element that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(x) | TrySendError::Closed(x) => x,
        }
    }
}

/// A bounded entry point into a pipeline, for a service that produces elements
/// itself (request handlers, a socket reader).
///
/// Cloneable; `Send` and `Sync`. The pipeline's source ends when every clone is
/// dropped. Created with [`Pipeline::ingress`](crate::Pipeline::ingress).
///
/// An element is *accepted* once `send` or `try_send` returns `Ok`; from then on the
/// pipeline accounts for it: delivered, filtered, failed, or abandoned (an abort
/// drops the ingress buffer and counts it at the source).
#[derive(Debug)]
pub struct Ingress<T> {
    tx: mpsc::Sender<T>,
}

impl<T> Clone for Ingress<T> {
    fn clone(&self) -> Self {
        Ingress {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Send + 'static> Ingress<T> {
    /// Sends an element, waiting while the ingress buffer is full.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the element if the pipeline no longer accepts elements.
    pub async fn send(&self, element: T) -> Result<(), SendError<T>> {
        self.tx
            .send(element)
            .await
            .map_err(|mpsc::error::SendError(x)| SendError(x))
    }

    /// Sends an element if there is room now.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] with the element when the buffer is full (the
    /// pipeline is backpressuring), [`TrySendError::Closed`] when it no longer
    /// accepts elements.
    pub fn try_send(&self, element: T) -> Result<(), TrySendError<T>> {
        self.tx.try_send(element).map_err(|e| match e {
            mpsc::error::TrySendError::Full(x) => TrySendError::Full(x),
            mpsc::error::TrySendError::Closed(x) => TrySendError::Closed(x),
        })
    }

    /// True once the pipeline no longer accepts elements.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Free places in the ingress buffer right now.
    pub fn available(&self) -> usize {
        self.tx.capacity()
    }
}

/// The source behind an [`Ingress`].
#[derive(Debug)]
pub struct IngressSource<T> {
    rx: mpsc::Receiver<T>,
    capacity: usize,
    closed: bool,
}

impl<T: Send + 'static> IngressSource<T> {
    pub(crate) fn channel(capacity: usize) -> (Ingress<T>, Self) {
        // tokio panics on a zero-sized channel; `validate` reports the zero instead.
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Ingress { tx },
            IngressSource {
                rx,
                capacity,
                closed: false,
            },
        )
    }
}

impl<T: Send + 'static> Operator for IngressSource<T> {
    type In = Infallible;
    type Out = T;

    fn kind(&self) -> &'static str {
        "ingress"
    }

    fn validate(&self) -> Result<(), String> {
        if self.capacity == 0 {
            Err("ingress capacity 0: the buffer needs room for at least one element".into())
        } else {
            Ok(())
        }
    }

    fn held(&self) -> usize {
        self.rx.len()
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, T>, cx: &mut Context<'_>) -> Step {
        if io.input_ended() && !self.closed {
            // Shutdown: accept nothing new, but emit what was already accepted.
            self.rx.close();
            self.closed = true;
        }
        let room = io.room();
        match self.rx.poll_recv_many(cx, io.output(), room) {
            Poll::Ready(0) => Step::Finished,
            Poll::Ready(_) | Poll::Pending => Step::Continue,
        }
    }

    fn on_stop(&mut self) {
        // From here on senders get their element back; what is buffered is final
        // and counted as abandoned at the source.
        self.rx.close();
    }
}
