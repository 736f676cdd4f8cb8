//! The service's pipeline: events from an [`Ingress`], counted per key into
//! [`Counts`] that the HTTP handlers read.
//!
//! ```text
//! ingress ─► (hold) ─► count (key_by(key).scan) ─► publish (into Counts)
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use weir::prelude::*;
use weir::supervisor::dead_letter::DeadLetterSink;

/// The pipeline's name (the `pipeline` label of its metrics, and of its report).
pub const PIPELINE: &str = "events";

/// One event, as `POST /events` takes it: `{"key": "checkout"}`. Other fields
/// are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What the event is counted under (1 to [`Limits::max_key_bytes`] bytes).
    pub key: String,
}

/// The figures the pipeline's last stage publishes: events counted, per key and
/// in all. Shared between the pipeline (which writes) and the HTTP handlers
/// (which read, see [`Counts::snapshot`]).
#[derive(Debug, Default)]
pub struct Counts {
    by_key: Mutex<BTreeMap<String, u64>>,
    total: AtomicU64,
    over_key_limit: AtomicU64,
}

impl Counts {
    /// Events counted so far (each accepted event once, once it has gone
    /// through the pipeline).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    /// Accepted events whose key was new when the pipeline already held
    /// [`Limits::max_keys`] keys: dead-lettered by the count stage, not
    /// counted.
    pub fn over_key_limit(&self) -> u64 {
        self.over_key_limit.load(Ordering::Acquire)
    }

    /// A copy of the counts per key.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.keys().clone()
    }

    fn keys(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        // A panic while the lock was held cannot leave the map half-updated
        // (one insert): the data is still good.
        self.by_key.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, key: String, count: u64) {
        self.keys().insert(key, count);
        self.total.fetch_add(1, Ordering::Release);
    }
}

/// The bounds on what the service keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Events the ingress holds before `POST /events` waits (its capacity).
    ///
    /// Choosing it: the burst of requests the service takes without waiting; the
    /// pipeline's edges add a few elements each on top. With a tiny capacity a
    /// slow pipeline turns requests away sooner (`503`) instead of queueing them.
    pub capacity: usize,
    /// The input capacity of each stage after the ingress, in events (the
    /// pipeline's `default_capacity`). The pipeline holds at most about
    /// `capacity + 3 × edge_capacity` accepted events that are not counted yet.
    ///
    /// Choosing it: events are small, and a few hundred per edge let the
    /// stages work in large batches under load; a small one makes backpressure
    /// reach the HTTP clients sooner.
    pub edge_capacity: usize,
    /// Distinct keys the count stage holds; an event bringing one more is
    /// dead-lettered (counted in [`Counts::over_key_limit`]). The state's
    /// memory is about `max_keys × (max_key_bytes + 64)` bytes.
    pub max_keys: usize,
    /// The longest key accepted, in bytes; a longer one is refused with `422`.
    pub max_key_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            capacity: 64,
            edge_capacity: 256,
            max_keys: 10_000,
            max_key_bytes: 128,
        }
    }
}

/// Holds the pipeline: while held, the events that reach the hold stage wait
/// there (asynchronously: no thread is blocked) and everything behind them
/// stays where it is, so the ingress fills and `POST /events` answers `503`.
/// For tests and demonstrations of backpressure; [`release`](Self::release)
/// lets everything through, for good.
///
/// Cloning gives another handle on the same hold.
///
/// # Examples
///
/// ```
/// use weir_examples::axum_service::Hold;
///
/// let hold = Hold::new();
/// assert!(hold.is_held());
/// hold.clone().release();
/// assert!(!hold.is_held());
/// ```
#[derive(Debug, Clone)]
pub struct Hold {
    released: Arc<watch::Sender<bool>>,
}

impl Default for Hold {
    fn default() -> Self {
        Self::new()
    }
}

impl Hold {
    /// A hold, holding.
    pub fn new() -> Self {
        Hold {
            released: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Lets every waiting and later event through.
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    /// Whether it still holds.
    pub fn is_held(&self) -> bool {
        !*self.released.borrow()
    }

    /// Resolves once released.
    async fn passed(mut released: watch::Receiver<bool>) {
        // An error means every sender is gone: nobody can release it any more,
        // and holding for ever would only hang the shutdown. Let it through.
        let _ = released.wait_for(|released| *released).await;
    }
}

/// Counts the letters of events over the key limit (the element is dropped:
/// only the count is kept, so the dead letters use no memory).
struct OverKeyLimit(Arc<Counts>);

impl DeadLetterSink<Event> for OverKeyLimit {
    fn offer(&self, _letter: DeadLetter<Event>) -> Result<(), (DeadLetter<Event>, String)> {
        self.0.over_key_limit.fetch_add(1, Ordering::Release);
        Ok(())
    }
}

/// The pipeline, ready to run: its [`Ingress`], and the [`Counts`] its last
/// stage publishes into.
#[derive(Debug)]
pub struct Built {
    /// Where the HTTP handlers send the events.
    pub ingress: Ingress<Event>,
    /// The pipeline (run it on the service's [`Runtime`]).
    pub runnable: Runnable<()>,
    /// What it counted.
    pub counts: Arc<Counts>,
}

/// Builds the pipeline: `ingress` (capacity `limits.capacity`) → `hold` (only
/// with a [`Hold`]) → `count`, a `key_by(key).scan` keeping a running count per
/// key (at most `limits.max_keys` keys; an event with one more is
/// dead-lettered) → `publish`, a sink writing each key's count into the
/// shared [`Counts`].
///
/// Every accepted event ends in exactly one of: counted
/// ([`Counts::total`]), dead-lettered over the key limit
/// ([`Counts::over_key_limit`]), or abandoned by a shutdown whose deadline
/// passed (the report's `abandoned`).
pub fn build(limits: Limits, hold: Option<&Hold>) -> Built {
    let (ingress, flow) = Pipeline::ingress::<Event>(limits.capacity);
    let mut flow = flow.name("ingress");
    if let Some(hold) = hold {
        let released = hold.released.subscribe();
        flow = flow
            .map_async(1, move |event| {
                let released = released.clone();
                async move {
                    Hold::passed(released).await;
                    event
                }
            })
            .name("hold");
    }
    let counts = Arc::new(Counts::default());
    let published = Arc::clone(&counts);
    let runnable = flow
        .supervise(rejections_to(OverKeyLimit(Arc::clone(&counts))))
        .key_by(|event: &Event| event.key.clone())
        .max_keys(limits.max_keys, OnFull::Fail)
        .scan(0_u64, |count, event| {
            *count += 1;
            (event.key, *count)
        })
        .name("count")
        .for_each(move |(key, count)| published.publish(key, count))
        .name("publish")
        .named(PIPELINE)
        .default_capacity(limits.edge_capacity);
    Built {
        ingress,
        runnable,
        counts,
    }
}
