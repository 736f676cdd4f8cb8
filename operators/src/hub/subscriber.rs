//! [`Subscriber`]: one consumer of a broadcast hub, with its own bounded buffer.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures::Stream;
use tokio::time::Instant;
use weir_runtime::junction::LagPolicy;

use super::state::Shared;
use super::{HubEnd, SubscriberStats};

/// The error of [`BroadcastHub::subscribe`](super::BroadcastHub::subscribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// A subscriber needs room for at least one element.
    #[error("subscriber capacity 0: the buffer needs room for at least one element")]
    ZeroCapacity,
}

/// One consumer of a [`BroadcastHub`](super::BroadcastHub).
///
/// `recv` yields the elements published since it subscribed, in order, minus what
/// its lag policy dropped, and `None` once the hub has ended and its buffer is
/// empty. It is also a [`Stream`]. Dropping it (or [`unsubscribe`](Self::unsubscribe))
/// removes it from the hub at once: what its buffer held is dropped with it, and a
/// hub it was holding back moves on.
///
/// # Examples
///
/// A subscriber that reads nothing, under `DropNewest`: it keeps the first
/// `capacity + buffer` elements and counts the rest as dropped.
///
/// ```
/// use weir_operators::hub::NoSubscriber;
/// use weir_operators::{FlowExt, Pipeline};
/// use weir_runtime::junction::LagPolicy;
///
/// let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
/// let (runnable, hub) = Pipeline::from_iter(0..10).broadcast_hub(NoSubscriber::Wait);
/// let mut sub = hub.subscribe(2, LagPolicy::DropNewest { buffer: 1 })?;
/// runnable.run(&rt)?.wait()?;
/// let stats = sub.stats();
/// assert_eq!((stats.offered, stats.dropped, stats.buffered), (10, 7, 3));
/// assert_eq!(sub.try_recv(), Some(0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Subscriber<T> {
    id: u64,
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.id)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T> Subscriber<T> {
    pub(crate) fn new(id: u64, shared: Arc<Shared<T>>) -> Self {
        Subscriber { id, shared }
    }

    /// The next element, waiting for one; `None` once the hub has ended and the
    /// buffer is empty.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next element if one is buffered now.
    pub fn try_recv(&mut self) -> Option<T> {
        self.take(None).0.map(|(_, x)| x)
    }

    /// Polls for the next element: `Ready(Some(x))`, `Ready(None)` at the end, or
    /// `Pending` with `cx`'s waker registered.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.poll_recv_indexed(cx).map(|x| x.map(|(_, x)| x))
    }

    /// Like [`recv`](Self::recv), with the element's index among the elements
    /// offered to this subscriber (0 for the first published after it subscribed).
    /// A gap between the indices of two consecutive elements is exactly what the
    /// lag policy dropped between them, so a consumer can tell its own clients
    /// where and how much they missed.
    ///
    /// ```
    /// use weir_operators::hub::NoSubscriber;
    /// use weir_operators::{FlowExt, Pipeline};
    /// use weir_runtime::junction::LagPolicy;
    ///
    /// let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let (runnable, hub) = Pipeline::from_iter(10..20).broadcast_hub(NoSubscriber::Wait);
    /// let mut sub = hub.subscribe(2, LagPolicy::DropOldest { buffer: 0 })?;
    /// runnable.run(&rt)?.wait()?;
    /// // It kept the newest two: indices 8 and 9 of the ten offered.
    /// assert_eq!(sub.try_recv_indexed(), Some((8, 18)));
    /// assert_eq!(sub.try_recv_indexed(), Some((9, 19)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn recv_indexed(&mut self) -> Option<(u64, T)> {
        poll_fn(|cx| self.poll_recv_indexed(cx)).await
    }

    /// Like [`try_recv`](Self::try_recv), with the element's index (see
    /// [`recv_indexed`](Self::recv_indexed)).
    pub fn try_recv_indexed(&mut self) -> Option<(u64, T)> {
        self.take(None).0
    }

    /// Like [`poll_recv`](Self::poll_recv), with the element's index (see
    /// [`recv_indexed`](Self::recv_indexed)).
    pub fn poll_recv_indexed(&mut self, cx: &mut Context<'_>) -> Poll<Option<(u64, T)>> {
        match self.take(Some(cx.waker())) {
            (Some(x), _) => Poll::Ready(Some(x)),
            (None, true) => Poll::Ready(None),
            (None, false) => Poll::Pending,
        }
    }

    /// Takes the next element and its index; also says whether the hub has
    /// ended. Registers `waker` when there is nothing to take and the hub runs.
    fn take(&mut self, waker: Option<&Waker>) -> (Option<(u64, T)>, bool) {
        let (x, ended, sink) = {
            let mut st = self.shared.lock();
            let ended = st.end.is_some();
            let Some(slot) = st.slot(self.id) else {
                return (None, true);
            };
            // Popping from a full `Block` buffer may let the hub move again.
            let was_full = slot.policy == LagPolicy::Block && slot.queue.len() >= slot.capacity;
            let x = slot.pop(Instant::now());
            if x.is_none()
                && !ended
                && let Some(waker) = waker
            {
                slot.register(waker);
            }
            let sink = if x.is_some() && was_full {
                st.take_sink_waker()
            } else {
                None
            };
            (x, ended, sink)
        };
        if let Some(w) = sink {
            w.wake();
        }
        (x, ended)
    }

    /// Elements in the buffer now.
    pub fn len(&self) -> usize {
        self.with_slot(|slot| slot.queue.len())
    }

    /// True when nothing is buffered now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer's capacity, as subscribed.
    pub fn capacity(&self) -> usize {
        self.with_slot(|slot| slot.capacity)
    }

    /// The lag policy, as subscribed.
    pub fn policy(&self) -> LagPolicy {
        self.with_slot(|slot| slot.policy)
    }

    /// The counts now: offered (published since it subscribed), received, dropped,
    /// buffered, detachments. `offered = received + dropped + buffered`.
    pub fn stats(&self) -> SubscriberStats {
        self.with_slot(|slot| slot.stats())
    }

    /// How the hub ended; `None` while it runs. Elements may still be buffered.
    pub fn end(&self) -> Option<HubEnd> {
        self.shared.lock().end
    }

    /// Leaves the hub (as dropping does) and returns the final counts. What was
    /// still buffered is dropped.
    pub fn unsubscribe(self) -> SubscriberStats {
        self.stats()
    }

    fn with_slot<R>(&self, f: impl FnOnce(&mut super::state::Slot<T>) -> R) -> R {
        let mut st = self.shared.lock();
        // Cannot fail: a slot is removed only when its subscriber is dropped.
        let slot = st
            .slot(self.id)
            .expect("a subscriber's slot lives as long as the subscriber");
        slot.refresh(Instant::now());
        f(slot)
    }
}

impl<T> Drop for Subscriber<T> {
    fn drop(&mut self) {
        let (slot, waker) = {
            let mut st = self.shared.lock();
            let slot = st.remove(self.id);
            (slot, st.take_sink_waker())
        };
        // The buffer's elements are dropped outside the lock.
        drop(slot);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Stream for Subscriber<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_recv(cx)
    }
}
