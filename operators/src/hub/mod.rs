//! Dynamic hubs: consumers and producers that attach to a running pipeline.
//!
//! A [`BroadcastHub`] is the many-consumer version of an
//! [`Egress`](crate::sink::Egress): a sink
//! ([`FlowExt::broadcast_hub`](crate::FlowExt::broadcast_hub)) that every
//! [`Subscriber`] receives from, subscribed and unsubscribed at any time while the
//! pipeline runs, each with its own bounded buffer and
//! [`LagPolicy`](weir_runtime::junction::LagPolicy). A [`MergeHub`] is the many-producer
//! version of an [`Ingress`](crate::source::Ingress): a source that [`Producer`]s
//! attach to at run time.
//!
//! # Broadcast hub rules
//!
//! - **What a subscriber sees.** Every element published after it subscribed, in
//!   publication order, minus what its lag policy dropped. An element is published
//!   to every subscriber at one instant (under one lock), so two subscribers never
//!   disagree about order.
//! - **Buffer and lag.** A subscriber's buffer holds `capacity` elements, plus what
//!   its policy lets wait beyond them, exactly as a broadcast branch's credit:
//!   `Block`: `capacity`, and the hub (so the pipeline) waits while it is full;
//!   `DropNewest { buffer }` / `DropOldest { buffer }`: `capacity + buffer`, then
//!   the new / oldest element is dropped for it; `Detach { max_lag, max_wait }`:
//!   `capacity + max_lag`, then (or once elements have waited beyond `capacity`
//!   for `max_wait` without a read) what waits beyond `capacity` is dropped and so
//!   is every element until its buffer is empty. Drop policies never slow the
//!   hub. Every drop is counted per subscriber: `offered = received + dropped +
//!   buffered` ([`SubscriberStats`]).
//! - **No subscriber.** [`NoSubscriber::Wait`] (the default, Akka's choice)
//!   backpressures until the first one subscribes; [`NoSubscriber::Drop`] drops
//!   the element, counted as `filtered` in the report.
//! - **Counting.** The sink counts each element once: `completed` if it entered at
//!   least one subscriber's buffer, `filtered` if none took it (no subscriber under
//!   `NoSubscriber::Drop`, or every subscriber's policy dropped it). What happens to
//!   each copy afterwards is in that subscriber's own counts.
//! - **Completion.** When the input ends, [`HubEnd::Completed`]: every subscriber
//!   drains its buffer, then `recv` returns `None`. Subscribing after the end
//!   gives a subscriber that ends at once. When every [`BroadcastHub`] handle and
//!   every subscriber is gone, nobody can receive again: the sink finishes like a
//!   dropped `Egress` (the pipeline completes, its source is cancelled, queued
//!   input is abandoned).
//! - **Failure, abort.** If the pipeline stops before its input ended, the end is
//!   [`HubEnd::Stopped`]: subscribers still drain what is in their buffers (it was
//!   counted as delivered), then `recv` returns `None`.
//!
//! # Merge hub rules
//!
//! Each producer's elements keep their order; producers are interleaved in the
//! order their sends were accepted (waiting senders are served first come, first
//! served). `send` waits while the hub's buffer is full. The source completes once
//! the hub is closed ([`MergeHub::close`], or every `MergeHub` handle dropped) and
//! every producer is gone. An accepted element is never lost: it is emitted, or,
//! after an abort, counted as abandoned at the source.
//!
//! # Checkpoints
//!
//! Hubs are dynamic: producers and subscribers attach and detach at any time,
//! outside the stream, so no checkpoint barrier can be consistent across them.
//! Both hub stages say so ([`Operator::not_checkpointable`](weir_runtime::operator::Operator::not_checkpointable)),
//! and building a checkpointed pipeline with a hub is a
//! `BuildError::NotCheckpointable`.
//!
//! # Examples
//!
//! ```
//! use weir_operators::hub::{MergeHub, NoSubscriber};
//! use weir_operators::FlowExt;
//! use weir_runtime::junction::LagPolicy;
//! use futures::executor::block_on;
//!
//! let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
//! let (merge, flow) = MergeHub::<u32>::source(16);
//! let (runnable, hub) = flow.map(|x| x * 10).broadcast_hub(NoSubscriber::Wait);
//! let running = runnable.run(&rt)?;
//!
//! let mut a = hub.subscribe(8, LagPolicy::Block)?;
//! let mut b = hub.subscribe(8, LagPolicy::Block)?;
//! let producer = merge.attach()?;
//! block_on(producer.send(1))?;
//! block_on(producer.send(2))?;
//! drop(producer);
//! merge.close(); // no more producers: the stream ends once they are gone
//!
//! assert_eq!(block_on(futures::StreamExt::collect::<Vec<_>>(&mut a)), [10, 20]);
//! assert_eq!(block_on(b.recv()), Some(10));
//! running.wait()?.report.check_conservation()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod broadcast;
mod merge;
mod state;
mod subscriber;
#[cfg(test)]
mod tests;

pub use broadcast::{BroadcastHub, BroadcastHubSink};
pub use merge::{HubClosed, MergeHub, MergeHubSource, Producer};
pub use subscriber::{SubscribeError, Subscriber};

/// The lock `state` is written against (loom's in its model,
/// `models/tests/hub_attach.rs`).
mod sync {
    pub(crate) use std::sync::{Mutex, MutexGuard, PoisonError};
}

/// What a [`BroadcastHub`] does with an element while nobody is subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoSubscriber {
    /// Backpressure: take no input until the first subscriber arrives. Nothing is
    /// lost, and the pipeline behind the hub fills up and waits.
    #[default]
    Wait,
    /// Take input and drop it, counted as `filtered` in the hub's stage report
    /// (and in [`HubStats::unclaimed`]). For live feeds where a late subscriber
    /// only wants what comes next.
    Drop,
}

/// How a [`BroadcastHub`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubEnd {
    /// The input ended and every element was published.
    Completed,
    /// The pipeline stopped before its input ended: aborted, failed, or past a
    /// shutdown deadline. Subscribers still read what their buffers hold.
    Stopped,
}

/// A subscriber's counts, from [`Subscriber::stats`].
///
/// `offered = received + dropped + buffered` always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriberStats {
    /// Elements published since it subscribed.
    pub offered: u64,
    /// Elements it has read.
    pub received: u64,
    /// Elements its lag policy dropped.
    pub dropped: u64,
    /// Elements in its buffer now.
    pub buffered: usize,
    /// Times it was detached (`LagPolicy::Detach`).
    pub detachments: u64,
    /// Whether it is detached now.
    pub detached: bool,
}

/// A broadcast hub's counts, from [`BroadcastHub::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubStats {
    /// Subscribers now.
    pub subscribers: usize,
    /// Elements that entered at least one subscriber's buffer (the sink's
    /// `completed`).
    pub delivered: u64,
    /// Elements no subscriber took (the sink's `filtered`).
    pub unclaimed: u64,
    /// How the hub ended, once it has.
    pub end: Option<HubEnd>,
}
