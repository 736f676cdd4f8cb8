//! [`LetterCharge`]: a dead-letter queue's share of a memory budget.

/// A share of a memory budget for a dead-letter queue that holds its letters in
/// memory ([`MemoryDlq`](super::MemoryDlq)): weir's runtime gives one to a
/// stage's queue when the pipeline starts under a budget
/// ([`DeadLetterSink::charge_memory`](super::DeadLetterSink::charge_memory)).
/// The queue charges each letter's element when it takes it and releases it
/// when the letter is drained.
pub trait LetterCharge<T>: Send + Sync {
    /// The bytes `element` is charged.
    fn size_of(&self, element: &T) -> u64;
    /// Charges `bytes` (a queue never waits: it is bounded by its capacity).
    fn charge(&self, bytes: u64);
    /// Releases `bytes` charged before.
    fn release(&self, bytes: u64);
}
