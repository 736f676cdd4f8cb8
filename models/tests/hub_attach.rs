//! A loom model of broadcast-hub subscribers attaching and leaving while the
//! hub's sink publishes (`operators/src/hub/state.rs`, the engine every
//! `BroadcastHub`, `Subscriber` and `BroadcastHubSink` shares under one lock).
//! The sink publishes elements `0, 1, 2` on its thread (as
//! `BroadcastHubSink::publish` does: `ready`, then `publish`, under the lock);
//! subscribers on their own threads subscribe (`add`), receive (`pop`) and
//! leave (`remove`) meanwhile. Under every interleaving:
//!
//! - a subscriber is offered **exactly** the elements published while it was
//!   attached, in publication order, each with its index among them;
//! - it loses none silently: `offered = received + dropped + buffered`, and
//!   what it received and what its buffer held are those offered, in order,
//!   minus its counted drops;
//! - the hub counts each publication once: `delivered + unclaimed` is the
//!   number published, and an element no subscriber took is `unclaimed`;
//! - under a memory budget, each copy a buffer takes is charged once and
//!   released once (read, evicted, dropped by a detach or with its
//!   subscriber): the charge never goes below zero and is zero once every
//!   subscriber has left.

use std::sync::atomic::{AtomicI64, Ordering::SeqCst};

use loom::sync::Arc;
use loom::thread;

use weir_operators::hub::{HubEnd, NoSubscriber, SubscriberStats};
use weir_runtime::junction::LagPolicy;

/// What `state.rs` is written against, as loom's types.
mod sync {
    pub(crate) use loom::sync::{Mutex, MutexGuard};
    pub(crate) use std::sync::PoisonError;
}

#[path = "../../operators/src/hub/state.rs"]
#[allow(dead_code)]
mod state;

use state::{Charge, Shared};

/// A budget's share that counts elements (each one byte) and checks that
/// nothing is released that was not charged.
#[derive(Default)]
struct Counted(AtomicI64);

impl Charge<u64> for Counted {
    fn size_of(&self, _: &u64) -> u64 {
        1
    }
    fn charge(&self, bytes: u64) {
        self.0.fetch_add(bytes as i64, SeqCst);
    }
    fn release(&self, bytes: u64) {
        let before = self.0.fetch_sub(bytes as i64, SeqCst);
        assert!(before >= bytes as i64, "released more than was charged");
    }
}

type Hub = Arc<Shared<u64>>;

const PUBLISHED: u64 = 3;

/// The sink: publishes `0..PUBLISHED`, waiting (yielding) while a `Block`
/// subscriber is full. Returns how many were taken by at least one subscriber.
fn sink(hub: &Hub) -> thread::JoinHandle<u64> {
    let hub = Arc::clone(hub);
    thread::spawn(move || {
        let (mut copies, mut wake) = (Vec::new(), Vec::new());
        let mut taken = 0;
        let mut x = 0;
        while x < PUBLISHED {
            let mut st = hub.lock();
            let now = tokio::time::Instant::now();
            if !st.ready(now) {
                drop(st);
                thread::yield_now();
                continue;
            }
            taken += u64::from(st.publish(x, now, &mut copies, &mut wake));
            x += 1;
        }
        taken
    })
}

/// A subscriber: attaches, receives up to `reads` elements, leaves. Checks
/// what it saw against the publications while it was attached.
fn subscriber(
    hub: &Hub,
    capacity: usize,
    policy: LagPolicy,
    reads: usize,
) -> thread::JoinHandle<SubscriberStats> {
    let hub = Arc::clone(hub);
    thread::spawn(move || {
        let (id, first) = {
            let mut st = hub.lock();
            // Published before it attached: the first it may be offered.
            let first = st.delivered + st.unclaimed;
            (st.add(capacity, policy), first)
        };
        let mut seen = Vec::new();
        for _ in 0..reads {
            let mut st = hub.lock();
            seen.extend(st.slot(id).unwrap().pop(tokio::time::Instant::now()));
        }
        let (slot, last) = {
            let mut st = hub.lock();
            let last = st.delivered + st.unclaimed;
            (st.remove(id).unwrap(), last)
        };
        let stats = slot.stats();
        assert_eq!(
            stats.offered,
            last - first,
            "offered what was published while attached"
        );
        assert_eq!(
            stats.offered,
            stats.received + stats.dropped + stats.buffered as u64,
            "offered = received + dropped + buffered"
        );
        assert_eq!(stats.received, seen.len() as u64);
        let all: Vec<(u64, u64)> = seen.into_iter().chain(slot.queue).collect();
        assert!(all.is_sorted(), "out of order: {all:?}");
        for (index, x) in all {
            assert_eq!(x, first + index, "element {x} offered as its {index}th");
        }
        stats
    })
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

fn check(subscribers: impl Fn(&Hub) -> Vec<thread::JoinHandle<SubscriberStats>>) {
    let hub: Hub = Arc::new(Shared::new(NoSubscriber::Drop));
    let charged = std::sync::Arc::new(Counted::default());
    hub.lock()
        .set_charge(std::sync::Arc::clone(&charged) as std::sync::Arc<dyn Charge<u64>>);
    let publishing = sink(&hub);
    let subs = subscribers(&hub);
    let taken = publishing.join().unwrap();
    for s in subs {
        s.join().unwrap();
    }
    let st = hub.lock();
    assert_eq!(st.delivered, taken);
    assert_eq!(
        st.delivered + st.unclaimed,
        PUBLISHED,
        "each publication counted once"
    );
    assert_eq!(st.end, None::<HubEnd>);
    assert_eq!(st.subscribers(), 0);
    assert_eq!(
        charged.0.load(SeqCst),
        0,
        "every buffer left: nothing charged"
    );
}

/// A `Block` subscriber that reads as it goes and one with a one-element
/// buffer that drops the newest, both coming and going while the sink
/// publishes.
#[test]
fn a_subscriber_sees_exactly_what_is_published_while_it_is_attached() {
    model(|| {
        check(|hub| {
            vec![
                subscriber(hub, 1, LagPolicy::Block, 2),
                subscriber(hub, 1, LagPolicy::DropNewest { buffer: 0 }, 0),
            ]
        });
    });
}

/// A subscriber that drops the oldest when full, leaving with its buffer.
#[test]
fn a_lagging_subscriber_counts_every_drop() {
    model(|| {
        check(|hub| vec![subscriber(hub, 1, LagPolicy::DropOldest { buffer: 0 }, 1)]);
    });
}
