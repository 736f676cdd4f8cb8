//! The channel through which a sink hands its result to [`Running::join`](crate::Running::join).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

/// Creates the channel a sink uses to hand over its result when it stops.
///
/// # Examples
///
/// ```
/// let (mut tx, rx) = weir_runtime::output::<u32>();
/// tx.send(7);
/// assert_eq!(futures::executor::block_on(rx), Some(7));
/// ```
pub fn output<R>() -> (OutputSender<R>, OutputReceiver<R>) {
    let (tx, rx) = oneshot::channel();
    (
        OutputSender { tx: Some(tx) },
        OutputReceiver {
            inner: Inner::Pending(rx),
        },
    )
}

/// The sink's end: send the result once, from [`Operator::on_stop`](crate::operator::Operator::on_stop).
#[derive(Debug)]
pub struct OutputSender<R> {
    tx: Option<oneshot::Sender<R>>,
}

impl<R> OutputSender<R> {
    /// Hands over the result. Later calls do nothing.
    pub fn send(&mut self, value: R) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(value);
        }
    }
}

/// The pipeline handle's end: resolves to the sink's result, or `None` if the sink
/// was dropped without handing one over.
#[derive(Debug)]
pub struct OutputReceiver<R> {
    inner: Inner<R>,
}

#[derive(Debug)]
enum Inner<R> {
    Ready(Option<R>),
    Pending(oneshot::Receiver<R>),
}

impl<R> OutputReceiver<R> {
    /// A receiver that already holds `value`, for sinks with nothing to hand over.
    pub fn ready(value: R) -> Self {
        OutputReceiver {
            inner: Inner::Ready(Some(value)),
        }
    }
}

impl<R> Future for OutputReceiver<R> {
    type Output = Option<R>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<R>> {
        match &mut self.inner {
            Inner::Ready(value) => Poll::Ready(value.take()),
            Inner::Pending(rx) => Pin::new(rx).poll(cx).map(Result::ok),
        }
    }
}

impl<R> Unpin for OutputReceiver<R> {}
