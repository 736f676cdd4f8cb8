//! [`MergeHub`]: a source that producers attach to while the pipeline runs.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use weir_runtime::Flow;
use weir_runtime::memory::BufferCharge;
use weir_runtime::operator::{Io, Operator, Step};

use crate::source::admission::Gate;
use crate::source::{SendError, TrySendError, push, try_push};

/// The error of [`MergeHub::attach`]: the hub was closed, or its pipeline has
/// ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the merge hub is closed")]
pub struct HubClosed;

struct Shared<T> {
    /// The hub's own sender: it keeps the stream open while no producer is
    /// attached. `None` once closed.
    open: Mutex<Option<mpsc::Sender<T>>>,
    handles: AtomicUsize,
    producers: AtomicUsize,
    accepted: AtomicU64,
    /// What a producer passes to push, and the source closes when it stops
    /// (see `source/admission.rs`).
    gate: Arc<Gate>,
    /// The buffer's charge to the runtime's memory budget, under one.
    charge: Arc<OnceLock<BufferCharge<T>>>,
}

impl<T> Shared<T> {
    fn close(&self) {
        let sender = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(sender);
    }
}

/// The handle of a merge hub: producers attach to it while the pipeline runs.
///
/// Cloneable, `Send` and `Sync`. The source stays open while the hub is open,
/// even with no producer attached; it completes once the hub is closed
/// ([`close`](Self::close), or every handle dropped) **and** every [`Producer`]
/// is dropped. Each producer's elements keep their order; the hub's buffer is
/// shared, and producers waiting for room are served first come, first served.
///
/// # Examples
///
/// Producers on other threads attach after the pipeline has started:
///
/// ```
/// use weir_operators::hub::MergeHub;
/// use weir_operators::FlowExt;
///
/// let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
/// let (hub, flow) = MergeHub::<(u32, u32)>::source(8);
/// let running = flow.collect().run(&rt)?;
/// let threads: Vec<_> = (0..3)
///     .map(|p| {
///         let producer = hub.attach().unwrap();
///         std::thread::spawn(move || {
///             for i in 0..100 {
///                 futures::executor::block_on(producer.send((p, i))).unwrap();
///             }
///         })
///     })
///     .collect();
/// hub.close(); // no new producers; ends once the three are done
/// threads.into_iter().for_each(|t| t.join().unwrap());
/// let done = running.wait()?;
/// assert_eq!(done.output.len(), 300);
/// for p in 0..3 {
///     let mine: Vec<u32> = done.output.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
///     assert_eq!(mine, (0..100).collect::<Vec<_>>()); // each producer's order
/// }
/// assert_eq!(hub.accepted(), 300);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MergeHub<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for MergeHub<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeHub")
            .field("open", &self.is_open())
            .field("producers", &self.producers())
            .field("accepted", &self.accepted())
            .finish()
    }
}

impl<T> Clone for MergeHub<T> {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Relaxed);
        MergeHub {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for MergeHub<T> {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Relaxed) == 1 {
            self.shared.close();
        }
    }
}

impl<T: Send + 'static> MergeHub<T> {
    /// A source fed by the producers attached to the returned hub. `capacity` is
    /// the buffer all producers share: `send` waits while it is full.
    ///
    /// Choosing a capacity: the burst the producers together may hand over
    /// without waiting; the pipeline behind it adds its own edge capacities. A
    /// capacity of 0 is rejected when the pipeline is built.
    pub fn source(capacity: usize) -> (MergeHub<T>, Flow<T>) {
        // tokio panics on a zero-sized channel; `validate` reports the zero instead.
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let hub = MergeHub {
            shared: Arc::new(Shared {
                open: Mutex::new(Some(tx)),
                handles: AtomicUsize::new(1),
                producers: AtomicUsize::new(0),
                accepted: AtomicU64::new(0),
                gate: Arc::new(Gate::new()),
                charge: Arc::default(),
            }),
        };
        let source = MergeHubSource {
            gate: Arc::clone(&hub.shared.gate),
            charge: Arc::clone(&hub.shared.charge),
            rx,
            capacity,
            closed: false,
            drained: 0,
        };
        (hub, Flow::from_source(source))
    }
}

impl<T> MergeHub<T> {
    /// Attaches a new producer.
    ///
    /// # Errors
    ///
    /// [`HubClosed`] once the hub was closed or its pipeline has ended.
    pub fn attach(&self) -> Result<Producer<T>, HubClosed> {
        let open = self
            .shared
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &*open {
            Some(tx) if !tx.is_closed() => {
                self.shared.producers.fetch_add(1, Relaxed);
                Ok(Producer {
                    tx: tx.clone(),
                    shared: Arc::clone(&self.shared),
                    sent: AtomicU64::new(0),
                })
            }
            _ => Err(HubClosed),
        }
    }

    /// Closes the hub to new producers. The source completes once every attached
    /// producer is dropped (and what they sent is emitted).
    pub fn close(&self) {
        self.shared.close();
    }

    /// True until the hub is closed, and while its pipeline runs.
    pub fn is_open(&self) -> bool {
        let open = self
            .shared
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    /// Producers attached now.
    pub fn producers(&self) -> usize {
        self.shared.producers.load(Relaxed)
    }

    /// Elements accepted from all producers so far. After the pipeline has ended
    /// it equals the source's `input` in the report.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Relaxed)
    }
}

/// A producer attached to a [`MergeHub`]. Cloning attaches another producer;
/// dropping detaches it.
///
/// An element is *accepted* once `send` or `try_send` returns `Ok`; from then on
/// the pipeline accounts for it (emitted, or abandoned at the source after an
/// abort).
pub struct Producer<T> {
    tx: mpsc::Sender<T>,
    shared: Arc<Shared<T>>,
    sent: AtomicU64,
}

impl<T> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("sent", &self.sent.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T> Clone for Producer<T> {
    fn clone(&self) -> Self {
        self.shared.producers.fetch_add(1, Relaxed);
        Producer {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
            sent: AtomicU64::new(0),
        }
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.shared.producers.fetch_sub(1, Relaxed);
    }
}

impl<T: Send + 'static> Producer<T> {
    /// Sends an element, waiting while the hub's buffer is full.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the element once the pipeline no longer accepts
    /// elements (shut down, aborted, failed, or completed downstream).
    pub async fn send(&self, element: T) -> Result<(), SendError<T>> {
        push(
            &self.tx,
            &self.shared.gate,
            self.shared.charge.get(),
            element,
        )
        .await?;
        self.accepted();
        Ok(())
    }

    /// Sends an element if there is room now.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] with the element when the buffer is full,
    /// [`TrySendError::Closed`] when the pipeline no longer accepts elements.
    pub fn try_send(&self, element: T) -> Result<(), TrySendError<T>> {
        try_push(
            &self.tx,
            &self.shared.gate,
            self.shared.charge.get(),
            element,
        )?;
        self.accepted();
        Ok(())
    }

    fn accepted(&self) {
        self.sent.fetch_add(1, Relaxed);
        self.shared.accepted.fetch_add(1, Relaxed);
    }

    /// Elements this producer has had accepted.
    pub fn sent(&self) -> u64 {
        self.sent.load(Relaxed)
    }

    /// True once the pipeline no longer accepts elements.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The source behind a [`MergeHub`].
#[derive(Debug)]
pub struct MergeHubSource<T> {
    gate: Arc<Gate>,
    charge: Arc<OnceLock<BufferCharge<T>>>,
    rx: mpsc::Receiver<T>,
    capacity: usize,
    closed: bool,
    /// Accepted elements taken out of the buffer when the source stopped.
    drained: usize,
}

impl<T: Send + 'static> Operator for MergeHubSource<T> {
    type In = Infallible;
    type Out = T;

    fn kind(&self) -> &'static str {
        "merge_hub"
    }

    /// Producers attach and detach while the hub runs, outside the stream: they
    /// have no checkpoint barriers and no positions to resume from.
    fn not_checkpointable(&self) -> Option<String> {
        Some(
            "a merge hub's producers attach and detach at any time, outside the stream, \
             so they carry no checkpoint barriers and cannot be resumed"
                .into(),
        )
    }

    fn validate(&self) -> Result<(), String> {
        if self.capacity == 0 {
            Err("merge hub capacity 0: the buffer needs room for at least one element".into())
        } else {
            Ok(())
        }
    }

    fn held(&self) -> usize {
        self.drained + self.rx.len()
    }

    fn charge_buffer(&mut self, charge: BufferCharge<T>) -> bool {
        let _ = self.charge.set(charge);
        true
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
            // Every sender is gone (the hub closed, every producer dropped) and
            // the buffer is empty.
            Poll::Ready(0) => Step::Finished,
            Poll::Ready(_) | Poll::Pending => Step::Continue,
        }
    }

    fn on_stop(&mut self) {
        // From here on producers get their element back, even one that had
        // taken its slot; once the gate is closed, what is buffered is final
        // and counted as abandoned at the source.
        self.rx.close();
        self.gate.close();
        if let Some(c) = self.charge.get() {
            // What is left leaves the memory budget (still counted as held).
            while let Ok(x) = self.rx.try_recv() {
                self.drained += 1;
                c.release(c.size_of(&x));
            }
        }
    }
}

/// A merge hub's source stage on its own, for the tests.
#[cfg(test)]
pub(crate) fn merge_source_for_test() -> MergeHubSource<u32> {
    let (_tx, rx) = mpsc::channel(1);
    MergeHubSource {
        gate: Arc::new(Gate::new()),
        charge: Arc::default(),
        rx,
        capacity: 1,
        closed: false,
        drained: 0,
    }
}
