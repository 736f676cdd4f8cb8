//! [`NatsFlowExt`]: the NATS stages on a flow of deliveries.

use std::future::Future;

use bytes::Bytes;
use weir_operators::ops::FilterMap;
use weir_runtime::{Flow, OutputReceiver, Runnable};
use weir_supervisor::Failure;

use crate::{Commit, Delivery, Nats, Publish};

/// Stages for flows of [`Delivery`]: filtering that acknowledges, and the
/// committing and publishing sinks.
///
/// # Examples
///
/// ```
/// use weir_nats::{Delivery, NatsFlowExt};
/// use weir_operators::{FlowExt, Pipeline};
///
/// let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
/// let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
/// let count = seen.clone();
/// Pipeline::from_iter(0..10_u64)
///     .map(Delivery::detached)
///     .filter_acked(|x| x % 2 == 0)
///     .commit(move |d| {
///         count.fetch_add(d.payload, std::sync::atomic::Ordering::Relaxed);
///         async { Ok(()) }
///     })
///     .run(&rt)?
///     .wait()?
///     .report
///     .check_conservation()?;
/// assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 20);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait NatsFlowExt<T: Send + 'static> {
    /// Keeps the deliveries whose payload satisfies `predicate`; the others are
    /// filtered, which counts as done for their acknowledgement.
    fn filter_acked<P>(self, predicate: P) -> Flow<Delivery<T>>
    where
        P: FnMut(&T) -> bool + Send + 'static;

    /// Ends the flow with a [`Commit`] sink running `f` for each delivery.
    fn commit<F, Fut>(self, f: F) -> Runnable<()>
    where
        F: FnMut(&Delivery<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Failure>> + Send + 'static;

    /// Ends the flow with a configured [`Commit`] sink.
    fn commit_with<F, Fut>(self, sink: Commit<T, F>) -> Runnable<()>
    where
        F: FnMut(&Delivery<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Failure>> + Send + 'static;

    /// Ends the flow with a [`Publish`] sink: `f` gives each delivery's subject
    /// and payload.
    fn publish<F>(self, nats: Nats, f: F) -> Runnable<()>
    where
        F: FnMut(&Delivery<T>) -> (String, Bytes) + Send + 'static;

    /// Ends the flow with a configured [`Publish`] sink.
    fn publish_with<F>(self, sink: Publish<T, F>) -> Runnable<()>
    where
        F: FnMut(&Delivery<T>) -> (String, Bytes) + Send + 'static;
}

impl<T: Send + 'static> NatsFlowExt<T> for Flow<Delivery<T>> {
    fn filter_acked<P>(self, mut predicate: P) -> Flow<Delivery<T>>
    where
        P: FnMut(&T) -> bool + Send + 'static,
    {
        self.via(FilterMap::new(move |d: Delivery<T>| {
            if predicate(&d.payload) {
                Some(d)
            } else {
                d.ack.filtered();
                None
            }
        }))
    }

    fn commit<F, Fut>(self, f: F) -> Runnable<()>
    where
        F: FnMut(&Delivery<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Failure>> + Send + 'static,
    {
        self.commit_with(Commit::new(f))
    }

    fn commit_with<F, Fut>(self, sink: Commit<T, F>) -> Runnable<()>
    where
        F: FnMut(&Delivery<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Failure>> + Send + 'static,
    {
        self.to(sink, OutputReceiver::ready(()))
    }

    fn publish<F>(self, nats: Nats, f: F) -> Runnable<()>
    where
        F: FnMut(&Delivery<T>) -> (String, Bytes) + Send + 'static,
    {
        self.publish_with(Publish::new(nats, f))
    }

    fn publish_with<F>(self, sink: Publish<T, F>) -> Runnable<()>
    where
        F: FnMut(&Delivery<T>) -> (String, Bytes) + Send + 'static,
    {
        self.to(sink, OutputReceiver::ready(()))
    }
}
