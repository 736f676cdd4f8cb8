//! A loom model of the memory budget's counters
//! (`runtime/src/memory/core.rs`, shared by every source, `Ingress` sender and
//! release of a runtime with `memory_budget`). Under every interleaving:
//!
//! - **no lost wake-up**: a source told to wait (`admit` returned 0) while a
//!   release left room is woken by that release;
//! - **no room taken twice**: sources reserving concurrently never reserve more
//!   than the room there was (each reservation is a compare-and-swap);
//! - **every byte accounted**: after the charges and releases, `used` is what
//!   was charged minus what was released.

use std::task::{Wake, Waker};

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering::SeqCst};
use loom::thread;

/// What `core.rs` is written against, as loom's types.
mod sync {
    pub(crate) use loom::sync::Mutex;
    pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
}

#[path = "../../runtime/src/memory/core.rs"]
#[allow(dead_code)]
mod core;

use self::core::BudgetCore;

/// A waker that records that it was woken (a loom atomic, so the model sees
/// the wake as a synchronisation).
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.store(true, SeqCst);
    }
}

fn flag() -> (std::sync::Arc<Flag>, Waker) {
    let flag = std::sync::Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(std::sync::Arc::clone(&flag));
    (flag, waker)
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// A full budget; a source asks for room while a stage releases an element.
/// If the source was told to wait, the release (which left room) woke it.
#[test]
fn a_source_told_to_wait_is_woken_by_the_release_that_makes_room() {
    model(|| {
        let budget = Arc::new(BudgetCore::new(100));
        budget.charge(100);
        let releaser = {
            let budget = Arc::clone(&budget);
            thread::spawn(move || budget.release(40))
        };
        let (woken, waker) = flag();
        let (n, reserved) = budget.admit(4, 10, &waker);
        releaser.join().unwrap();
        if n == 0 {
            assert!(woken.0.load(SeqCst), "told to wait, room made, never woken");
        } else {
            assert!(n <= 4 && reserved == n as u64 * 10);
        }
        assert_eq!(budget.used(), 60 + reserved);
    });
}

/// Two sources reserve concurrently from 40 bytes of room, 10 bytes an
/// element, up to 3 each: together never more than the room.
#[test]
fn concurrent_reservations_never_take_the_same_room() {
    model(|| {
        let budget = Arc::new(BudgetCore::new(100));
        budget.charge(60);
        let other = {
            let budget = Arc::clone(&budget);
            thread::spawn(move || budget.admit(3, 10, Waker::noop()).1)
        };
        let mine = budget.admit(3, 10, Waker::noop()).1;
        let theirs = other.join().unwrap();
        assert!(mine + theirs <= 40, "{mine} + {theirs} reserved from 40");
        assert_eq!(budget.used(), 60 + mine + theirs);
    });
}

/// An `Ingress` sender waits for room (`try_charge`, then `wait`, then
/// `try_charge` again if there was room as of registering, as
/// `BufferCharge::poll_charge` does) while a release makes room: it gets the
/// room, or it is woken.
#[test]
fn a_sender_waiting_for_room_is_not_forgotten() {
    model(|| {
        let budget = Arc::new(BudgetCore::new(50));
        budget.charge(50);
        let releaser = {
            let budget = Arc::clone(&budget);
            thread::spawn(move || budget.release(50))
        };
        let (woken, waker) = flag();
        let charged = budget.try_charge(20) || (budget.wait(&waker) && budget.try_charge(20));
        releaser.join().unwrap();
        assert!(charged || woken.0.load(SeqCst), "neither charged nor woken");
        assert_eq!(budget.used(), if charged { 20 } else { 0 });
    });
}
