//! [`MemoryDlq`]: a bounded, thread-safe, in-memory dead-letter queue.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{DeadLetter, DlqFull, InvalidCapacity, LetterCharge};

/// A bounded in-memory dead-letter queue, shared by cloning the handle.
///
/// Every clone refers to the same queue, so the runtime can hand one to each stage
/// and the user can keep one to inspect or [`drain`](Self::drain) it. The queue keeps
/// letters in the order they were pushed.
///
/// # Full is a policy decision
///
/// [`push`](Self::push) never drops a letter: when the queue holds `capacity`
/// letters it hands the letter back in a [`DlqFull`]. What happens next is for the
/// caller's policy to decide — keep the element and backpressure (ask upstream for
/// nothing until someone drains the queue), or fail the pipeline with the letter in
/// the report. Discarding it would break conservation
/// (`emitted = delivered + filtered + dead_lettered + in_flight`).
///
/// # Choosing a capacity
///
/// The capacity bounds the memory held by dead letters: `capacity` elements plus
/// their metadata. Size it for the number of failures you expect between two drains
/// (a poison rate of 0.1 % over a million elements is 1 000 letters); when letters
/// must survive a crash or may be many, use the file DLQ
/// ([`FileDlqWriter`](super::FileDlqWriter)) instead.
///
/// # Examples
///
/// ```
/// use weir_supervisor::dead_letter::{DeadLetter, MemoryDlq};
/// use weir_supervisor::{ErrorClass, Failure};
///
/// let dlq = MemoryDlq::new(100);
/// let for_stage = dlq.clone();
///
/// let failure = Failure::error(ErrorClass::Permanent, "negative amount");
/// for_stage.push(DeadLetter::new(-5_i64, "validate", "billing", &failure, 1, 12))
///     .expect("room for it");
///
/// assert_eq!(dlq.len(), 1);
/// assert_eq!(dlq.total_pushed(), 1);
/// let letters = dlq.drain();
/// assert_eq!(letters[0].element, -5);
/// assert!(dlq.is_empty());
/// ```
pub struct MemoryDlq<T> {
    shared: Arc<Mutex<State<T>>>,
    capacity: usize,
}

/// The queue behind every handle.
struct State<T> {
    letters: VecDeque<DeadLetter<T>>,
    pushed: u64,
    rejected: u64,
    /// The memory budget the letters are charged to, under one.
    charge: Option<Arc<dyn LetterCharge<T>>>,
}

impl<T> Drop for State<T> {
    fn drop(&mut self) {
        // The last handle is gone: its letters leave the budget.
        if let Some(c) = &self.charge {
            let bytes = self.letters.iter().map(|l| c.size_of(&l.element)).sum();
            c.release(bytes);
        }
    }
}

impl<T> MemoryDlq<T> {
    /// An empty queue that holds at most `capacity` letters.
    ///
    /// For a capacity read from configuration, use [`try_new`](Self::try_new), which
    /// returns an error instead of panicking.
    ///
    /// # Panics
    ///
    /// Panics if `capacity` is 0 (a documented precondition: a queue that can hold
    /// nothing would hand every letter back).
    pub fn new(capacity: usize) -> Self {
        match Self::try_new(capacity) {
            Ok(dlq) => dlq,
            Err(err) => panic!("MemoryDlq::new: {err}"),
        }
    }

    /// An empty queue that holds at most `capacity` letters, or an error if
    /// `capacity` is 0.
    ///
    /// # Errors
    ///
    /// [`InvalidCapacity`] if `capacity` is 0: a queue that can hold nothing would
    /// hand every letter back.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::dead_letter::{InvalidCapacity, MemoryDlq};
    ///
    /// let dlq = MemoryDlq::<u64>::try_new(16)?;
    /// assert_eq!(dlq.capacity(), 16);
    /// assert_eq!(MemoryDlq::<u64>::try_new(0).unwrap_err(), InvalidCapacity);
    /// # Ok::<(), InvalidCapacity>(())
    /// ```
    pub fn try_new(capacity: usize) -> Result<Self, InvalidCapacity> {
        if capacity == 0 {
            return Err(InvalidCapacity);
        }
        Ok(MemoryDlq {
            shared: Arc::new(Mutex::new(State {
                // Grown on demand: a large bound costs nothing until letters arrive.
                letters: VecDeque::new(),
                pushed: 0,
                rejected: 0,
                charge: None,
            })),
            capacity,
        })
    }

    /// Adds a letter at the back of the queue.
    ///
    /// # Errors
    ///
    /// When the queue already holds [`capacity`](Self::capacity) letters, returns
    /// [`DlqFull`] with the letter, so the caller can backpressure or fail — the
    /// letter is never dropped.
    pub fn push(&self, letter: DeadLetter<T>) -> Result<(), DlqFull<T>> {
        let mut state = self.lock();
        if state.letters.len() >= self.capacity {
            state.rejected += 1;
            return Err(DlqFull::new(letter, self.capacity));
        }
        if let Some(c) = &state.charge {
            c.charge(c.size_of(&letter.element));
        }
        state.letters.push_back(letter);
        state.pushed += 1;
        Ok(())
    }

    /// Takes every letter out of the queue, oldest first, making room for new ones
    /// (and, under a memory budget, releasing their bytes).
    pub fn drain(&self) -> Vec<DeadLetter<T>> {
        let mut state = self.lock();
        let letters: Vec<_> = state.letters.drain(..).collect();
        if let Some(c) = &state.charge {
            c.release(letters.iter().map(|l| c.size_of(&l.element)).sum());
        }
        letters
    }

    /// Charges the letters to a memory budget from now on (the first budget
    /// given wins; letters already held are charged too).
    pub(crate) fn set_charge(&self, charge: Arc<dyn LetterCharge<T>>) {
        let mut state = self.lock();
        if state.charge.is_none() {
            charge.charge(
                state
                    .letters
                    .iter()
                    .map(|l| charge.size_of(&l.element))
                    .sum(),
            );
            state.charge = Some(charge);
        }
    }

    /// The number of letters in the queue now.
    pub fn len(&self) -> usize {
        self.lock().letters.len()
    }

    /// Whether the queue holds no letter now.
    pub fn is_empty(&self) -> bool {
        self.lock().letters.is_empty()
    }

    /// Whether the queue is full now: the next [`push`](Self::push) would hand its
    /// letter back unless someone drains the queue first.
    pub fn is_full(&self) -> bool {
        self.lock().letters.len() >= self.capacity
    }

    /// The most letters the queue holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many letters were accepted by [`push`](Self::push) since the queue was
    /// created, drained ones included.
    pub fn total_pushed(&self) -> u64 {
        self.lock().pushed
    }

    /// How many pushes were refused because the queue was full.
    pub fn total_rejected(&self) -> u64 {
        self.lock().rejected
    }

    /// Copies of the letters in the queue, oldest first; the queue is unchanged.
    pub fn snapshot(&self) -> Vec<DeadLetter<T>>
    where
        T: Clone,
    {
        self.lock().letters.iter().cloned().collect()
    }

    /// Locks the queue. A panic while the lock was held (only possible in a user
    /// `Clone` during [`snapshot`](Self::snapshot)) cannot leave the queue half
    /// updated, so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Clone for MemoryDlq<T> {
    /// Another handle to the same queue.
    fn clone(&self) -> Self {
        MemoryDlq {
            shared: Arc::clone(&self.shared),
            capacity: self.capacity,
        }
    }
}

// Not derived: the element need not be `Debug`, and the letters are not printed.
impl<T> fmt::Debug for MemoryDlq<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryDlq")
            .field("len", &state.letters.len())
            .field("capacity", &self.capacity)
            .field("total_pushed", &state.pushed)
            .field("total_rejected", &state.rejected)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;
    use crate::{ErrorClass, Failure};

    fn letter(n: u64) -> DeadLetter<u64> {
        let failure = Failure::error(ErrorClass::Permanent, format!("bad {n}"));
        DeadLetter::new(n, "stage", "pipeline", &failure, 1, n)
    }

    #[test]
    fn full_queue_hands_the_letter_back() {
        let dlq = MemoryDlq::new(2);
        dlq.push(letter(0)).unwrap();
        dlq.push(letter(1)).unwrap();
        assert!(dlq.is_full());
        let full = dlq.push(letter(2)).unwrap_err();
        assert_eq!(full.letter().element, 2);
        let back = full.into_letter();
        assert_eq!((back.element, back.error.as_str()), (2, "bad 2"));
        assert_eq!(
            (dlq.len(), dlq.total_pushed(), dlq.total_rejected()),
            (2, 2, 1)
        );

        // Draining makes room again; the counter keeps counting.
        let drained: Vec<u64> = dlq.drain().into_iter().map(|l| l.element).collect();
        assert_eq!(drained, [0, 1]);
        dlq.push(letter(2)).unwrap();
        assert_eq!((dlq.len(), dlq.total_pushed()), (1, 3));
    }

    #[test]
    fn snapshot_copies_without_removing() {
        let dlq = MemoryDlq::new(4);
        dlq.push(letter(7)).unwrap();
        let snap = dlq.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].element, 7);
        assert_eq!(dlq.len(), 1);
    }

    #[test]
    fn zero_capacity_is_an_error() {
        let err = MemoryDlq::<u8>::try_new(0).unwrap_err();
        assert_eq!(err, InvalidCapacity);
        assert!(err.to_string().contains("capacity of at least 1"), "{err}");
        assert_eq!(MemoryDlq::<u8>::try_new(1).unwrap().capacity(), 1);
    }

    #[test]
    #[should_panic(expected = "capacity of at least 1")]
    fn zero_capacity_panics_in_new_as_documented() {
        let _ = MemoryDlq::<u8>::new(0);
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn assert_send_sync<S: Send + Sync>() {}
        assert_send_sync::<MemoryDlq<String>>();
        assert_send_sync::<DlqFull<String>>();
    }

    #[test]
    fn concurrent_pushes_are_all_accounted_for() {
        const THREADS: u64 = 8;
        const PER_THREAD: u64 = 500;
        const CAPACITY: usize = 3_000;
        let dlq = MemoryDlq::new(CAPACITY);
        let handed_back: Vec<Vec<u64>> = thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let dlq = dlq.clone();
                    s.spawn(move || {
                        let mut back = Vec::new();
                        for i in 0..PER_THREAD {
                            if let Err(full) = dlq.push(letter(t * PER_THREAD + i)) {
                                back.push(full.into_letter().element);
                            }
                        }
                        back
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });

        let total = THREADS * PER_THREAD;
        let back: Vec<u64> = handed_back.into_iter().flatten().collect();
        // Exactly the capacity got in; everything else came back.
        assert_eq!(dlq.len(), CAPACITY);
        assert_eq!(back.len() as u64, total - CAPACITY as u64);
        assert_eq!(dlq.total_pushed(), CAPACITY as u64);
        assert_eq!(dlq.total_rejected(), back.len() as u64);

        // Conservation: every element is in the queue or was handed back, once.
        let mut all: Vec<u64> = dlq.drain().into_iter().map(|l| l.element).collect();
        all.extend(back);
        all.sort_unstable();
        assert_eq!(all, (0..total).collect::<Vec<_>>());

        // Per thread, the queue keeps push order.
        let dlq = MemoryDlq::new(usize::MAX);
        thread::scope(|s| {
            for t in 0..THREADS {
                let dlq = dlq.clone();
                s.spawn(move || {
                    for i in 0..PER_THREAD {
                        dlq.push(letter(t * PER_THREAD + i)).unwrap();
                    }
                });
            }
        });
        let letters = dlq.drain();
        assert_eq!(letters.len() as u64, total);
        for t in 0..THREADS {
            let mine: Vec<u64> = letters
                .iter()
                .map(|l| l.element)
                .filter(|e| e / PER_THREAD == t)
                .collect();
            assert_eq!(
                mine,
                (t * PER_THREAD..(t + 1) * PER_THREAD).collect::<Vec<_>>()
            );
        }
    }
}
