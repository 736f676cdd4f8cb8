//! The budget's counters: what sources, senders and releases share across
//! threads.
//!
//! One word holds the bytes charged and, in its top bit, "someone waits". A
//! source *reserves* room with a compare-and-swap on it, so sources on several
//! threads cannot each take the same room; a release subtracts from it. A
//! source that finds the budget exhausted registers its waker under the lock
//! and sets the bit with one read-modify-write, which also reads the bytes
//! charged at that moment; a release's subtraction returns the bit with the
//! bytes. Both are read-modify-writes of the same word, so one of them sees the
//! other: either the waiter sees the room the release made, or the release sees
//! the bit and wakes it — no wake-up is lost (without relying on sequentially
//! consistent loads and stores, which loom does not model).
//!
//! This file has no dependency but the `sync` module beside it (`super::sync`:
//! `std`'s types in weir-runtime), so that the loom model in
//! `models/tests/memory_budget.rs` compiles the same code against loom's types
//! and checks it under every interleaving.

use std::sync::PoisonError;
use std::task::Waker;

use super::sync::{AtomicU64, Mutex, Ordering};

/// The top bit of `used`: someone waits for room.
const WAITING: u64 = 1 << 63;

/// The shared counters of a memory budget.
#[derive(Debug)]
pub(crate) struct BudgetCore {
    pub(crate) limit: u64,
    /// Bytes charged, and [`WAITING`].
    used: AtomicU64,
    peak: AtomicU64,
    /// Times a source or sender found the budget exhausted and waited.
    waits: AtomicU64,
    wakers: Mutex<Vec<Waker>>,
}

impl BudgetCore {
    pub(crate) fn new(limit: u64) -> Self {
        BudgetCore {
            limit: limit.min(WAITING - 1),
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            wakers: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire) & !WAITING
    }

    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    pub(crate) fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Charges `bytes` whatever the budget holds (stages never wait).
    pub(crate) fn charge(&self, bytes: u64) {
        let now = (self.used.fetch_add(bytes, Ordering::AcqRel) & !WAITING) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// Releases `bytes`; wakes whoever waits once there is room.
    pub(crate) fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let before = self.used.fetch_sub(bytes, Ordering::AcqRel);
        debug_assert!(before & !WAITING >= bytes, "released more than was charged");
        if before & WAITING != 0 && (before & !WAITING) - bytes < self.limit {
            self.wake_all();
        }
    }

    fn wake_all(&self) {
        let wakers = {
            let mut w = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
            self.used.fetch_and(!WAITING, Ordering::AcqRel);
            std::mem::take(&mut *w)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Registers `waker` to be woken by the next release that leaves room;
    /// returns the bytes charged as of registering.
    fn register(&self, waker: &Waker) -> u64 {
        let mut w = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        if !w.iter().any(|x| x.will_wake(waker)) {
            w.push(waker.clone());
        }
        self.used.fetch_or(WAITING, Ordering::AcqRel) & !WAITING
    }

    /// How many elements a source may produce now, at most `want`, with their
    /// bytes (`element_bytes` each) reserved: 0 when the budget is exhausted
    /// (then `waker` is woken once bytes are released), else as many as fit (at
    /// least one; one alone, reserving nothing, while the size is unknown:
    /// `element_bytes` 0). The caller settles the reservation when it charges
    /// the elements it produced.
    pub(crate) fn admit(&self, want: usize, element_bytes: u64, waker: &Waker) -> (usize, u64) {
        let mut word = self.used.load(Ordering::Acquire);
        loop {
            let used = word & !WAITING;
            if used >= self.limit {
                // Registered with a read of the bytes at that moment: if a
                // release made room before it, this sees it; if after, the
                // release sees the bit and wakes us.
                if self.register(waker) >= self.limit {
                    self.waits.fetch_add(1, Ordering::Relaxed);
                    return (0, 0);
                }
                word = self.used.load(Ordering::Acquire);
                continue;
            }
            if element_bytes == 0 {
                return (want.min(1), 0);
            }
            let room = (self.limit - used) / element_bytes;
            let n = usize::try_from(room).unwrap_or(usize::MAX).clamp(1, want);
            let bytes = n as u64 * element_bytes;
            match self.reserve(word, bytes) {
                Ok(()) => return (n, bytes),
                Err(now) => word = now,
            }
        }
    }

    /// Adds `bytes` to `used` if it still holds `word` (the waiting bit kept);
    /// else the word it holds now.
    fn reserve(&self, word: u64, bytes: u64) -> Result<(), u64> {
        self.used
            .compare_exchange(word, word + bytes, Ordering::AcqRel, Ordering::Acquire)?;
        self.peak
            .fetch_max((word & !WAITING) + bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Charges `bytes` unless the budget is exhausted (a charge may take it
    /// past the limit by one element, as a source's may).
    pub(crate) fn try_charge(&self, bytes: u64) -> bool {
        let mut word = self.used.load(Ordering::Acquire);
        loop {
            let used = word & !WAITING;
            if used >= self.limit {
                return false;
            }
            match self.reserve(word, bytes) {
                Ok(()) => return true,
                Err(now) => word = now,
            }
        }
    }

    /// Registers `waker` to be woken when bytes are released; counts a wait.
    /// Returns whether there is room now (then the caller tries again at
    /// once: a release may have come before the registration).
    pub(crate) fn wait(&self, waker: &Waker) -> bool {
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.register(waker) < self.limit
    }
}
