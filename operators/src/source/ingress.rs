//! [`Ingress`]: a bounded handle a service pushes elements into.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use weir_runtime::memory::BufferCharge;
use weir_runtime::operator::{Io, Operator, Step};

use super::admission::Gate;

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
/// drops the ingress buffer and counts it at the source). Once the pipeline
/// stops, every send is refused and hands its element back, even one that was
/// waiting for room (or an [`IngressSink`] that was ready) when it stopped.
///
/// Under a runtime [memory budget](weir_runtime::memory) the buffer is charged
/// too: an element is accepted only while the budget is not exhausted (`send`
/// waits for room, `try_send` returns `Full`), and released when the source
/// takes it in.
#[derive(Debug)]
pub struct Ingress<T> {
    tx: mpsc::Sender<T>,
    gate: Arc<Gate>,
    charge: Charge<T>,
}

/// The buffer's charge to the runtime's memory budget, set when the pipeline
/// starts under one.
type Charge<T> = Arc<OnceLock<BufferCharge<T>>>;

impl<T> Clone for Ingress<T> {
    fn clone(&self) -> Self {
        Ingress {
            tx: self.tx.clone(),
            gate: Arc::clone(&self.gate),
            charge: Arc::clone(&self.charge),
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
        push(&self.tx, &self.gate, self.charge.get(), element).await
    }

    /// Sends every element of `elements` at once, waiting until there is room for
    /// all of them: either all are accepted (in order) or, if the pipeline no
    /// longer accepts elements, none is and they are handed back. Cancelling the
    /// wait (dropping the future, a timeout) admits none. More elements than the
    /// ingress capacity can never fit: they are handed back at once.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the elements if the pipeline no longer accepts elements
    /// or they cannot fit.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let (ingress, flow) = Pipeline::ingress::<u32>(8);
    /// let running = flow.collect().run(&rt)?;
    /// futures::executor::block_on(ingress.send_all(vec![1, 2, 3]))?;
    /// assert_eq!(futures::executor::block_on(ingress.send_all(vec![0; 9])).unwrap_err().0.len(), 9);
    /// drop(ingress);
    /// assert_eq!(running.wait()?.output, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn send_all(&self, elements: Vec<T>) -> Result<(), SendError<Vec<T>>> {
        if elements.is_empty() {
            return Ok(());
        }
        let Ok(permits) = self.tx.reserve_many(elements.len()).await else {
            return Err(SendError(elements));
        };
        let charged = match self.charge.get() {
            Some(c) => {
                let bytes = elements.iter().map(|x| c.size_of(x)).sum();
                std::future::poll_fn(|cx| c.poll_charge(bytes, cx)).await;
                Some((c, bytes))
            }
            None => None,
        };
        let Some(_pass) = self.gate.enter() else {
            if let Some((c, bytes)) = charged {
                c.release(bytes);
            }
            return Err(SendError(elements));
        };
        for (permit, x) in permits.zip(elements) {
            permit.send(x);
        }
        Ok(())
    }

    /// Sends an element if there is room now.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] with the element when the buffer is full (the
    /// pipeline is backpressuring), [`TrySendError::Closed`] when it no longer
    /// accepts elements.
    pub fn try_send(&self, element: T) -> Result<(), TrySendError<T>> {
        try_push(&self.tx, &self.gate, self.charge.get(), element)
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

/// Takes a slot in `tx` (waiting for room), charges the memory budget if there
/// is one (waiting while it is exhausted), then pushes `element` through
/// `gate`: what [`Ingress::send`] and `MergeHub`'s producers do.
pub(crate) async fn push<T>(
    tx: &mpsc::Sender<T>,
    gate: &Gate,
    charge: Option<&BufferCharge<T>>,
    element: T,
) -> Result<(), SendError<T>> {
    let Ok(permit) = tx.reserve().await else {
        return Err(SendError(element));
    };
    // No await between the charge and the push: a cancelled send charges nothing.
    let bytes = match charge {
        Some(c) => {
            let bytes = c.size_of(&element);
            std::future::poll_fn(|cx| c.poll_charge(bytes, cx)).await;
            bytes
        }
        None => 0,
    };
    let Some(_pass) = gate.enter() else {
        if let Some(c) = charge {
            c.release(bytes);
        }
        return Err(SendError(element));
    };
    permit.send(element);
    Ok(())
}

/// [`push`] if there is room now, in the buffer and in the memory budget: what
/// [`Ingress::try_send`] and `MergeHub`'s producers do.
pub(crate) fn try_push<T>(
    tx: &mpsc::Sender<T>,
    gate: &Gate,
    charge: Option<&BufferCharge<T>>,
    element: T,
) -> Result<(), TrySendError<T>> {
    let permit = match tx.try_reserve() {
        Ok(permit) => permit,
        Err(mpsc::error::TrySendError::Full(())) => return Err(TrySendError::Full(element)),
        Err(mpsc::error::TrySendError::Closed(())) => return Err(TrySendError::Closed(element)),
    };
    let bytes = match charge {
        Some(c) => {
            let bytes = c.size_of(&element);
            if !c.try_charge(bytes) {
                // The budget is exhausted: backpressure, as a full buffer.
                return Err(TrySendError::Full(element));
            }
            bytes
        }
        None => 0,
    };
    let Some(_pass) = gate.enter() else {
        if let Some(c) = charge {
            c.release(bytes);
        }
        return Err(TrySendError::Closed(element));
    };
    permit.send(element);
    Ok(())
}

impl<T: Send + 'static> Ingress<T> {
    /// This handle as a [`futures::Sink`]: `poll_ready` waits for room in the
    /// ingress buffer (backpressure), `start_send` hands the element over (it is
    /// then accepted; once the pipeline has stopped it fails with
    /// [`IngressClosed`], even after a successful `poll_ready`), and `close`
    /// drops the handle — the pipeline's source ends once every clone is
    /// closed or dropped. With `SinkExt::send_all` a stream feeds a pipeline at
    /// the pipeline's pace.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{SinkExt, StreamExt};
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let (ingress, flow) = Pipeline::ingress::<u32>(4);
    /// let running = flow.map(|x| x * 10).collect().run(&rt)?;
    /// futures::executor::block_on(async {
    ///     let mut sink = ingress.into_sink();
    ///     let mut numbers = futures::stream::iter(1..=6).map(Ok);
    ///     sink.send_all(&mut numbers).await?;
    ///     sink.close().await
    /// })?;
    /// assert_eq!(running.wait()?.output, [10, 20, 30, 40, 50, 60]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_sink(self) -> IngressSink<T> {
        IngressSink {
            tx: Some(self.tx),
            gate: self.gate,
            charge: self.charge,
            permit: None,
            reserving: None,
        }
    }
}

impl<T> IngressSink<T> {
    /// Ready once the memory budget, if there is one, is not exhausted.
    fn poll_budget(&self, cx: &mut Context<'_>) -> Poll<Result<(), IngressClosed>> {
        match self.charge.get() {
            Some(c) => c.poll_room(cx).map(Ok),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// The error of an [`IngressSink`]: the pipeline no longer accepts elements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline's ingress is closed")]
pub struct IngressClosed;

type Reserving<T> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<mpsc::OwnedPermit<T>, mpsc::error::SendError<()>>>
            + Send,
    >,
>;

/// An [`Ingress`] as a [`futures::Sink`] ([`Ingress::into_sink`]).
pub struct IngressSink<T> {
    tx: Option<mpsc::Sender<T>>,
    gate: Arc<Gate>,
    charge: Charge<T>,
    permit: Option<mpsc::OwnedPermit<T>>,
    reserving: Option<Reserving<T>>,
}

impl<T> std::fmt::Debug for IngressSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressSink")
            .field("open", &self.tx.is_some())
            .field("ready", &self.permit.is_some())
            .finish()
    }
}

impl<T: Send + 'static> futures::Sink<T> for IngressSink<T> {
    type Error = IngressClosed;

    fn poll_ready(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), IngressClosed>> {
        if self.permit.is_some() {
            return self.poll_budget(cx);
        }
        if self.reserving.is_none() {
            let Some(tx) = self.tx.clone() else {
                return Poll::Ready(Err(IngressClosed));
            };
            self.reserving = Some(Box::pin(tx.reserve_owned()));
        }
        let Some(reserving) = self.reserving.as_mut() else {
            return Poll::Ready(Err(IngressClosed));
        };
        match reserving.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.reserving = None;
                match result {
                    Ok(permit) => {
                        self.permit = Some(permit);
                        self.poll_budget(cx)
                    }
                    Err(_) => Poll::Ready(Err(IngressClosed)),
                }
            }
        }
    }

    fn start_send(mut self: std::pin::Pin<&mut Self>, item: T) -> Result<(), IngressClosed> {
        // `Sink` requires a successful `poll_ready` first; without one, it fails.
        let permit = self.permit.take().ok_or(IngressClosed)?;
        // Ready means the budget was not exhausted: the element is charged
        // whatever its size (a sink may take the budget past its limit by one).
        let charge = self.charge.get().cloned();
        let bytes = charge.as_ref().map_or(0, |c| {
            let bytes = c.size_of(&item);
            c.charge(bytes);
            bytes
        });
        // Ready before the pipeline stopped, sending after: refused.
        let Some(_pass) = self.gate.enter() else {
            if let Some(c) = &charge {
                c.release(bytes);
            }
            return Err(IngressClosed);
        };
        drop(permit.send(item));
        Ok(())
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Result<(), IngressClosed>> {
        // An element sent is in the ingress buffer: accepted, nothing to flush.
        Poll::Ready(Ok(()))
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Result<(), IngressClosed>> {
        self.permit = None;
        self.reserving = None;
        self.tx = None;
        Poll::Ready(Ok(()))
    }
}

/// The source behind an [`Ingress`].
///
/// Not replayable: it keeps no checkpoint position. In a checkpointed pipeline it
/// is allowed, but elements accepted and not yet covered by a completed
/// checkpoint are lost in a crash (at most once); after a restore it takes new
/// elements only.
#[derive(Debug)]
pub struct IngressSource<T> {
    rx: mpsc::Receiver<T>,
    gate: Arc<Gate>,
    charge: Charge<T>,
    capacity: usize,
    closed: bool,
    /// Accepted elements taken out of the channel when the source stopped.
    drained: usize,
}

impl<T: Send + 'static> IngressSource<T> {
    pub(crate) fn channel(capacity: usize) -> (Ingress<T>, Self) {
        // tokio panics on a zero-sized channel; `validate` reports the zero instead.
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let gate = Arc::new(Gate::new());
        let charge = Charge::default();
        (
            Ingress {
                tx,
                gate: Arc::clone(&gate),
                charge: Arc::clone(&charge),
            },
            IngressSource {
                rx,
                gate,
                charge,
                capacity,
                closed: false,
                drained: 0,
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
        self.drained + self.rx.len()
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, T>, cx: &mut Context<'_>) -> Step {
        if io.input_ended() && !self.closed {
            // Shutdown: accept nothing new, but emit what was already accepted.
            self.rx.close();
            self.closed = true;
        }
        let room = io.room();
        let before = io.output().len();
        let polled = self.rx.poll_recv_many(cx, io.output(), room);
        if let Some(c) = self.charge.get() {
            // Out of the buffer: from here they are charged on the edge.
            let bytes = io.output()[before..].iter().map(|x| c.size_of(x)).sum();
            c.hand_over(bytes);
        }
        match polled {
            Poll::Ready(0) => Step::Finished,
            Poll::Ready(_) | Poll::Pending => Step::Continue,
        }
    }

    fn charge_buffer(&mut self, charge: BufferCharge<T>) -> bool {
        let _ = self.charge.set(charge);
        true
    }

    fn on_stop(&mut self) {
        // From here on senders get their element back, even one that took its
        // slot before (see `admission`). Once the gate is closed every element
        // a sender was told was accepted is in the channel: count what is left
        // as abandoned at the source.
        self.rx.close();
        self.gate.close();
        while let Ok(x) = self.rx.try_recv() {
            self.drained += 1;
            if let Some(c) = self.charge.get() {
                c.release(c.size_of(&x));
            }
        }
    }
}

#[cfg(test)]
mod tests;
