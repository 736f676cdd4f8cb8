//! [`BroadcastHub`]: the handle subscribers come from, and the sink behind it.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Waker};

use tokio::time::Instant;
use weir_runtime::junction::LagPolicy;
use weir_runtime::memory::HeldCharge;
use weir_runtime::operator::{Counting, Io, Operator, Step};

use super::state::{Charge, Shared};
use super::{HubEnd, HubStats, NoSubscriber, SubscribeError, Subscriber};

/// The handle of a broadcast hub: subscribe to the pipeline's output while it
/// runs. Created with [`FlowExt::broadcast_hub`](crate::FlowExt::broadcast_hub).
///
/// Cloneable, `Send` and `Sync`. The rules (lag policies, counting, completion)
/// are in the [module docs](super). While a handle or a subscriber is alive the
/// hub keeps running; when all are gone the sink finishes.
///
/// # Examples
///
/// A subscriber that joins late receives only what is published after it
/// subscribed:
///
/// ```
/// use weir_operators::hub::NoSubscriber;
/// use weir_operators::{FlowExt, Pipeline};
/// use weir_runtime::junction::LagPolicy;
/// use futures::executor::block_on;
///
/// let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
/// let (ingress, flow) = Pipeline::ingress::<u32>(4);
/// let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
/// let running = runnable.run(&rt)?;
/// let mut early = hub.subscribe(4, LagPolicy::Block)?;
/// block_on(ingress.send(1))?;
/// assert_eq!(block_on(early.recv()), Some(1));
///
/// let mut late = hub.subscribe(4, LagPolicy::Block)?;
/// block_on(ingress.send(2))?;
/// drop(ingress);
/// assert_eq!(block_on(late.recv()), Some(2));
/// assert_eq!(block_on(late.recv()), None); // the input ended
/// assert_eq!(block_on(early.recv()), Some(2));
/// assert_eq!(hub.stats().delivered, 2);
/// running.wait()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BroadcastHub<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for BroadcastHub<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastHub")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T> Clone for BroadcastHub<T> {
    fn clone(&self) -> Self {
        self.shared.lock().handles += 1;
        BroadcastHub {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for BroadcastHub<T> {
    fn drop(&mut self) {
        let waker = {
            let mut st = self.shared.lock();
            st.handles -= 1;
            if st.orphaned() {
                st.take_sink_waker()
            } else {
                None
            }
        };
        // The sink finishes: nobody can subscribe any more.
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> BroadcastHub<T> {
    /// Subscribes to every element published from now on.
    ///
    /// `capacity` is the subscriber's own buffer; `policy` says what happens when
    /// it is full (see the [module docs](super)): `LagPolicy::Block` makes the hub
    /// wait for this subscriber, the others drop for it alone and count the drops.
    /// Choosing a capacity: the burst this subscriber may fall behind by without
    /// slowing the hub (`Block`) or losing elements (the others). The subscriber
    /// starts receiving at once; after the hub has ended it is empty and ends at
    /// once.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::ZeroCapacity`] when `capacity` is 0.
    pub fn subscribe(
        &self,
        capacity: usize,
        policy: LagPolicy,
    ) -> Result<Subscriber<T>, SubscribeError> {
        if capacity == 0 {
            return Err(SubscribeError::ZeroCapacity);
        }
        let (id, waker) = {
            let mut st = self.shared.lock();
            (st.add(capacity, policy), st.take_sink_waker())
        };
        // The sink may be waiting for a first subscriber.
        if let Some(w) = waker {
            w.wake();
        }
        Ok(Subscriber::new(id, Arc::clone(&self.shared)))
    }

    /// The number of subscribers now.
    pub fn subscribers(&self) -> usize {
        self.shared.lock().subscribers()
    }

    /// The hub's counts now.
    pub fn stats(&self) -> HubStats {
        let st = self.shared.lock();
        HubStats {
            subscribers: st.subscribers(),
            delivered: st.delivered,
            unclaimed: st.unclaimed,
            end: st.end,
        }
    }

    /// How the hub ended; `None` while it runs.
    pub fn end(&self) -> Option<HubEnd> {
        self.shared.lock().end
    }
}

/// The sink behind a [`BroadcastHub`]: publishes each element to every
/// subscriber, and takes no input while a `Block` subscriber is full (or, under
/// [`NoSubscriber::Wait`], while nobody is subscribed).
pub struct BroadcastHubSink<T> {
    shared: Arc<Shared<T>>,
    copies: Vec<T>,
    wake: Vec<Waker>,
    completed: bool,
}

impl<T> std::fmt::Debug for BroadcastHubSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastHubSink")
            .field("completed", &self.completed)
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + 'static> BroadcastHubSink<T> {
    pub(crate) fn new(when_alone: NoSubscriber) -> (Self, BroadcastHub<T>) {
        let shared = Arc::new(Shared::new(when_alone));
        (
            BroadcastHubSink {
                shared: Arc::clone(&shared),
                copies: Vec::new(),
                wake: Vec::new(),
                completed: false,
            },
            BroadcastHub { shared },
        )
    }

    fn publish(&mut self, io: &mut Io<'_, T, Infallible>, cx: &Context<'_>) -> Step {
        let mut st = self.shared.lock();
        let now = Instant::now();
        if st.orphaned() {
            // Nobody can receive again (like a dropped `Egress`).
            return Step::Finished;
        }
        while io.input_len() > 0 {
            if !st.ready(now) {
                break;
            }
            let Some(x) = io.pop() else { break };
            if st.publish(x, now, &mut self.copies, &mut self.wake) {
                io.complete(1);
            } else {
                io.filter();
            }
        }
        if io.input_exhausted() {
            self.completed = true;
            st.finish(HubEnd::Completed, &mut self.wake);
            return Step::Finished;
        }
        // Woken by a read from a full `Block` subscriber, a new subscriber, an
        // unsubscription or the last handle going away; new input wakes the stage
        // anyway.
        st.park(cx.waker());
        Step::Continue
    }
}

impl<T: Clone + Send + 'static> Operator for BroadcastHubSink<T> {
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "broadcast_hub"
    }

    /// Subscribers attach and detach while the hub runs, outside the stream: a
    /// checkpoint barrier cannot reach a subscriber that attaches after it, and a
    /// restore cannot bring back the subscribers of the checkpoint.
    fn not_checkpointable(&self) -> Option<String> {
        Some(
            "a broadcast hub's subscribers attach and detach at any time, outside the \
             stream, so no checkpoint barrier is consistent across them"
                .into(),
        )
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    /// Every subscriber's buffer is charged, each copy of an element apart,
    /// until the subscriber reads it, its lag policy drops it, or it leaves.
    fn charge_held(&mut self, charge: HeldCharge<T>) -> bool {
        self.shared.lock().set_charge(Arc::new(charge));
        true
    }

    fn step(&mut self, io: &mut Io<'_, T, Infallible>, cx: &mut Context<'_>) -> Step {
        let step = self.publish(io, cx);
        // Subscribers are woken once the lock is released.
        for waker in self.wake.drain(..) {
            waker.wake();
        }
        step
    }

    fn on_stop(&mut self) {
        // A stop that is not the input's end: subscribers drain, then end.
        let mut wake = Vec::new();
        self.shared.lock().finish(HubEnd::Stopped, &mut wake);
        wake.into_iter().for_each(Waker::wake);
    }
}

/// Subscriber buffers charge the sink stage's share of the memory budget.
impl<T> Charge<T> for HeldCharge<T> {
    fn size_of(&self, element: &T) -> u64 {
        HeldCharge::size_of(self, element)
    }

    fn charge(&self, bytes: u64) {
        HeldCharge::charge(self, 1, bytes);
    }

    fn release(&self, bytes: u64) {
        HeldCharge::release(self, 1, bytes);
    }
}
