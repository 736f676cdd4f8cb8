//! The charge of one edge: the sizes of the elements its sender produced and its
//! receiver has not yet taken out of its input queue, in order.
//!
//! The sender charges an element when it enters its outbox (or a junction's
//! output buffer): [`OutCharge::sync`] after each pass sizes what is new. The
//! receiver releases the oldest `n` when it frees `n` places in its queue — the
//! credit it grants back ([`EdgeLog::release_front`]). Both ends see the same log
//! through the sender's counters, so the sizes released are the sizes charged,
//! whatever type conversions the receiving port makes.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Budget, HeldBytes, Sizer};

/// The sizes charged on one edge, oldest first, as runs of equal sizes (one
/// entry for a batch of fixed-size elements).
pub(crate) struct EdgeLog {
    budget: Arc<Budget>,
    pipeline: String,
    stage: String,
    port: Option<usize>,
    runs: Mutex<Runs>,
    bytes: AtomicU64,
}

/// `(size, count)` runs, oldest first, and how many elements they hold.
#[derive(Default)]
struct Runs {
    runs: VecDeque<(u64, u64)>,
    elements: u64,
}

impl Runs {
    fn push(&mut self, size: u64, count: u64) {
        if count == 0 {
            return;
        }
        self.elements += count;
        match self.runs.back_mut() {
            Some((s, c)) if *s == size => *c += count,
            _ => self.runs.push_back((size, count)),
        }
    }

    /// Takes `n` elements from the front (oldest) or the back: their bytes.
    fn take(&mut self, mut n: u64, front: bool) -> u64 {
        let mut bytes = 0;
        while n > 0 {
            let run = if front {
                self.runs.front_mut()
            } else {
                self.runs.back_mut()
            };
            let Some((size, count)) = run else { break };
            let k = n.min(*count);
            bytes += k * *size;
            *count -= k;
            n -= k;
            self.elements -= k;
            if *count == 0 {
                if front {
                    self.runs.pop_front();
                } else {
                    self.runs.pop_back();
                }
            }
        }
        bytes
    }
}

impl std::fmt::Debug for EdgeLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeLog")
            .field("stage", &self.stage)
            .field("port", &self.port)
            .field("bytes", &self.bytes.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl EdgeLog {
    pub(crate) fn new(
        budget: &Arc<Budget>,
        pipeline: &str,
        stage: &str,
        port: Option<usize>,
    ) -> Arc<Self> {
        let log = Arc::new(EdgeLog {
            budget: Arc::clone(budget),
            pipeline: pipeline.to_owned(),
            stage: stage.to_owned(),
            port,
            runs: Mutex::new(Runs::default()),
            bytes: AtomicU64::new(0),
        });
        budget.register(Arc::clone(&log) as Arc<dyn super::Holder>);
        log
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, Runs> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Charges `sizes`, of which `reserved` bytes were reserved already.
    fn charge(&self, sizes: impl Iterator<Item = u64>, reserved: u64) {
        let mut total = 0;
        {
            let mut runs = self.runs();
            for s in sizes {
                runs.push(s, 1);
                total += s;
            }
        }
        self.settle(total, reserved);
    }

    /// Charges `count` elements of `size` bytes each, of which `reserved`
    /// bytes were reserved already.
    fn charge_uniform(&self, size: u64, count: u64, reserved: u64) {
        self.runs().push(size, count);
        self.settle(size * count, reserved);
    }

    fn settle(&self, total: u64, reserved: u64) {
        self.bytes.fetch_add(total, Relaxed);
        if total >= reserved {
            self.budget.charge(total - reserved);
        } else {
            self.budget.release(reserved - total);
        }
    }

    fn release(&self, bytes: u64) {
        self.bytes.fetch_sub(bytes, Relaxed);
        self.budget.release(bytes);
    }

    /// The receiver took the oldest `n` elements out of its queue.
    pub(crate) fn release_front(&self, n: usize) {
        if n == 0 {
            return;
        }
        let bytes = self.runs().take(n as u64, true);
        self.release(bytes);
    }

    /// The sender dropped the newest `n` elements before sending them.
    pub(crate) fn release_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        let bytes = self.runs().take(n as u64, false);
        self.release(bytes);
    }

    /// Nothing on the edge will be taken any more (its receiver stopped).
    pub(crate) fn release_all(&self) {
        let bytes = self.runs().take(u64::MAX, true);
        self.release(bytes);
    }
}

impl super::Holder for EdgeLog {
    fn held(&self) -> HeldBytes {
        let elements = self.runs().elements;
        HeldBytes {
            pipeline: self.pipeline.clone(),
            stage: self.stage.clone(),
            port: self.port,
            buffer: None,
            elements,
            bytes: self.bytes.load(Relaxed),
        }
    }
}

impl Drop for EdgeLog {
    fn drop(&mut self) {
        // Whatever is still charged when both ends are gone was dropped with them.
        let bytes = *self.bytes.get_mut();
        self.budget.release(bytes);
    }
}

/// The sender's side of an edge's charge: which of its outbox's elements are
/// charged already.
pub(crate) struct OutCharge<T> {
    log: Arc<EdgeLog>,
    size: Sizer<T>,
    /// Elements at the front of the outbox that are charged (the rest are new).
    charged: usize,
    /// The size of the last element charged: what the next is expected to be
    /// (0 before the first).
    last: u64,
    /// Bytes a source reserved for elements it has not produced yet.
    reserved: u64,
}

impl<T> std::fmt::Debug for OutCharge<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutCharge")
            .field("charged", &self.charged)
            .finish_non_exhaustive()
    }
}

impl<T> OutCharge<T> {
    pub(crate) fn new(log: Arc<EdgeLog>, size: Sizer<T>) -> Self {
        OutCharge {
            log,
            size,
            charged: 0,
            last: 0,
            reserved: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn log(&self) -> &Arc<EdgeLog> {
        &self.log
    }

    /// Bytes already charged (a source's buffer, handed over) for elements the
    /// next [`sync`](Self::sync) will find in the outbox.
    pub(crate) fn add_reserved(&mut self, bytes: u64) {
        self.reserved += bytes;
    }

    /// For a source: how many elements it may produce now, at most `want`
    /// (see [`Budget::admit`]); their bytes stay reserved until the next
    /// [`sync`](Self::sync).
    pub(crate) fn admit(&mut self, want: usize, waker: &std::task::Waker) -> usize {
        let (n, bytes) = self.log.budget.admit(want, self.last, waker);
        self.reserved += bytes;
        n
    }

    /// Brings the charge in line with an outbox of `len` elements whose elements
    /// from index `charged` on are `tail`: charges the new ones at its back, or
    /// releases what was dropped from it.
    fn sync_with<'a>(&mut self, len: usize, tail: impl Iterator<Item = &'a T>)
    where
        T: 'a,
    {
        let reserved = std::mem::take(&mut self.reserved);
        if len > self.charged {
            match &self.size {
                Sizer::Inline(size) => {
                    // Every element the same size: one run, no per-element call.
                    self.log
                        .charge_uniform(*size, (len - self.charged) as u64, reserved);
                    self.last = (*size).max(1);
                }
                Sizer::Fn(size) => {
                    let mut last = self.last;
                    self.log.charge(
                        tail.map(|x| {
                            last = size(x);
                            last
                        }),
                        reserved,
                    );
                    self.last = last.max(1);
                }
            }
        } else {
            self.log.budget.release(reserved);
            if len < self.charged {
                self.log.release_back(self.charged - len);
            }
        }
        self.charged = len;
    }

    /// [`sync_with`](Self::sync_with) for a `Vec` outbox.
    pub(crate) fn sync(&mut self, outbox: &[T]) {
        let from = self.charged.min(outbox.len());
        self.sync_with(outbox.len(), outbox[from..].iter());
    }

    /// [`sync_with`](Self::sync_with) for a `VecDeque` buffer.
    pub(crate) fn sync_deque(&mut self, buffer: &VecDeque<T>) {
        let from = self.charged.min(buffer.len());
        self.sync_with(buffer.len(), buffer.range(from..));
    }

    /// `n` elements left the front of the outbox, sent: they stay charged until
    /// the receiver takes them.
    pub(crate) fn sent(&mut self, n: usize) {
        self.charged = self.charged.saturating_sub(n);
    }

    /// The sender stopped: what it never sent is released.
    pub(crate) fn abandon(&mut self) {
        self.log.release_back(std::mem::take(&mut self.charged));
        self.log.budget.release(std::mem::take(&mut self.reserved));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Holder, MemoryBudget};
    use std::task::Waker;

    fn budget(limit: u64) -> Arc<Budget> {
        MemoryBudget::new(limit).start()
    }

    /// Charges a `Vec<u8>` its length (the test's own sizer, over the default).
    fn charge_of(b: &Arc<Budget>) -> OutCharge<Vec<u8>> {
        let log = EdgeLog::new(b, "p", "s", None);
        let mut sizers = crate::memory::Sizers::default();
        sizers.insert::<Vec<u8>>(Arc::new(|v: &Vec<u8>| v.len() as u64));
        OutCharge::new(log, b.sizer_for::<Vec<u8>>(&sizers))
    }

    #[test]
    fn an_element_is_charged_from_the_outbox_until_the_receiver_takes_it() {
        let b = budget(1 << 20);
        let mut c = charge_of(&b);
        let mut outbox = vec![vec![0u8; 100], vec![0u8; 50]];
        c.sync(&outbox);
        assert_eq!(b.used(), 150);
        // Sent: still charged (in the mailbox), the outbox is empty.
        outbox.clear();
        c.sent(2);
        c.sync(&outbox);
        assert_eq!(b.used(), 150);
        outbox.push(vec![0u8; 10]);
        c.sync(&outbox);
        assert_eq!(b.used(), 160);
        c.log().release_front(1);
        assert_eq!(b.used(), 60, "the oldest first");
        assert_eq!(c.log().held().elements, 2);
        c.abandon();
        assert_eq!(b.used(), 50, "the unsent one is released");
        c.log().release_all();
        assert_eq!(b.used(), 0);
        assert!(b.peak() >= 160);
    }

    #[test]
    fn the_default_sizer_counts_the_vec_and_its_heap() {
        let b = budget(1 << 20);
        let size = b.sizer_for::<Vec<u8>>(&Default::default());
        assert_eq!(
            size.size(&vec![0u8; 100]),
            100 + size_of::<Vec<u8>>() as u64
        );
        let numbered = b.sizer_for::<(u64, Vec<u8>)>(&Default::default());
        assert_eq!(
            numbered.size(&(7, vec![0u8; 100])),
            100 + size_of::<(u64, Vec<u8>)>() as u64,
            "an ordered pool's numbered elements: from the element's sizer"
        );
        struct Opaque(#[allow(dead_code)] [u8; 40]);
        let size = b.sizer_for::<Opaque>(&Default::default());
        assert_eq!(size.size(&Opaque([0; 40])), 40, "no sizer: the inline size");
        assert!(matches!(size, Sizer::Inline(40)), "and no call per element");
    }

    #[test]
    fn dropping_an_edge_releases_what_it_still_held() {
        let b = budget(1 << 20);
        {
            let mut c = charge_of(&b);
            c.sync(&[vec![1u8; 7]]);
            assert_eq!(b.used(), 7);
        }
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_source_is_admitted_what_fits_and_waits_when_nothing_does() {
        let b = budget(1000);
        let waker = Waker::noop();
        assert_eq!(b.admit(64, 0, waker), (1, 0), "size unknown: one");
        assert_eq!(b.admit(64, 100, waker), (10, 1000), "reserved");
        assert_eq!(b.admit(64, 100, waker), (0, 0), "the room is taken");
        assert_eq!(b.usage().source_waits, 1);
        b.release(1000);
        assert_eq!(b.admit(4, 100, waker), (4, 400));
        b.release(400);
        b.charge(950);
        assert_eq!(
            b.admit(64, 100, waker),
            (1, 100),
            "at least one while under"
        );
    }

    #[test]
    fn a_reservation_is_settled_by_what_the_source_produced() {
        let b = budget(1000);
        let mut c = charge_of(&b);
        assert_eq!(c.admit(8, Waker::noop()), 1, "first: one, size unknown");
        c.sync(&[vec![0u8; 100]]);
        assert_eq!(b.used(), 100);
        assert_eq!(c.admit(8, Waker::noop()), 8, "reserves 8 x 100");
        assert_eq!(b.used(), 900);
        // It produced two of 150: the reservation becomes their 300.
        c.sync(&[vec![0u8; 100], vec![0u8; 150], vec![0u8; 150]]);
        assert_eq!(b.used(), 400);
        c.sent(3);
        assert_eq!(c.admit(8, Waker::noop()), 4, "600 left, 150 each");
        c.abandon();
        assert_eq!(b.used(), 400, "the reservation is returned");
    }

    #[test]
    fn a_release_wakes_the_waiting_sources() {
        use std::sync::atomic::AtomicBool;
        use std::task::Wake;
        struct Flag(AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Relaxed);
            }
        }
        let b = budget(100);
        b.charge(100);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        assert_eq!(b.admit(1, 10, &waker), (0, 0));
        assert!(!flag.0.load(Relaxed));
        b.release(10);
        assert!(flag.0.load(Relaxed));
    }
}
