//! The credit of one edge, as the actors at its two ends count it: the
//! sender's [`Credit`] (places it may still fill in the receiver's queue) and
//! the receiver's [`Owed`] (places freed in its queue, not yet granted back).
//!
//! ```text
//!   sender: Credit ── Down::Batch(n) ──► receiver: queue (capacity C) ──► operator
//!             ▲                                          │ taken out: Owed
//!             └──────────── Up::Demand(owed) ◄───────────┘ granted once
//! ```
//!
//! At every instant `credit + in the mailbox + queued + owed + granted in
//! flight = C`: a batch moves places from the credit to the mailbox, the
//! receiver's take from the queue to what it owes, a grant from what it owes
//! back to the credit. A supervised restart replaces the operator inside the
//! stage's actor and nothing else: the queue, the mailbox and both counts
//! stay; the element being retried goes back to the front of the queue and
//! takes its place back ([`Owed::put_back`]), so it is granted neither twice
//! nor never.
//!
//! Each count belongs to one actor, so this file holds no lock or atomic and
//! depends on nothing: the loom model in `models/tests/edge_credit.rs`
//! includes it and puts the two actors and a restart around it, over loom's
//! channels for the mailboxes.

/// The elements a stage may still send downstream: the receiver's free
/// places, as far as the sender knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Credit(usize);

impl Credit {
    /// An edge's initial credit: the receiver's input capacity.
    pub(crate) fn new(initial: usize) -> Self {
        Credit(initial)
    }

    pub(crate) fn get(self) -> usize {
        self.0
    }

    /// How many of the `outbox`'s elements the next batch may carry, at most
    /// `max_batch` (0: none may be sent now).
    pub(crate) fn batch(self, outbox: usize, max_batch: usize) -> usize {
        outbox.min(self.0).min(max_batch)
    }

    /// A batch of `n` (at most [`batch`](Self::batch)) entered the receiver's
    /// mailbox.
    pub(crate) fn spend(&mut self, n: usize) {
        self.0 -= n;
    }

    /// The receiver granted `n` places (`Up::Demand(n)`).
    pub(crate) fn grant(&mut self, n: usize) {
        self.0 += n;
    }

    /// For a stage feeding a fused member: the room left in the member's
    /// queue, which is what its grants would have said.
    pub(crate) fn set(&mut self, room: usize) {
        self.0 = room;
    }
}

/// Places a stage freed in its input queue and has not granted upstream yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Owed(usize);

impl Owed {
    pub(crate) fn get(self) -> usize {
        self.0
    }

    /// `n` elements left the queue (taken by the operator, or dead-lettered).
    pub(crate) fn freed(&mut self, n: usize) {
        self.0 += n;
    }

    /// `n` elements taken in this pass went back to the front of the queue
    /// (a retry): their places are not free any more.
    pub(crate) fn put_back(&mut self, n: usize) {
        self.0 = self.0.saturating_sub(n);
    }

    /// The grant to send upstream: everything owed, once (0: nothing to
    /// send).
    pub(crate) fn take(&mut self) -> usize {
        std::mem::take(&mut self.0)
    }
}
