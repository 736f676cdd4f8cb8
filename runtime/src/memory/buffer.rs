//! [`BufferCharge`]: the charge of a source's own buffer, filled from outside
//! the pipeline (an `Ingress` channel).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::task::{Context, Poll};

use super::{Budget, Sizer};

/// A source's buffer's share of the runtime's [memory budget](super): elements
/// accepted from outside the pipeline (by an `Ingress` handle, say) and not yet
/// taken in by the source. Given to the source's operator when the pipeline
/// starts under a budget ([`Operator::charge_buffer`]).
///
/// Whoever fills the buffer charges each element before it is accepted
/// ([`try_charge`](Self::try_charge), or [`poll_charge`](Self::poll_charge) to
/// wait for room): with the budget exhausted it is refused (backpressure to the
/// sender). When the source takes the element out into its output it hands
/// the charge over to its output edge ([`hand_over`](Self::hand_over)), with no
/// gap a sender could fill; an element dropped from the buffer is
/// [released](Self::release).
///
/// [`Operator::charge_buffer`]: crate::operator::Operator::charge_buffer
pub struct BufferCharge<T> {
    budget: Arc<Budget>,
    size: Sizer<T>,
    /// Bytes handed over to the output edge, not yet taken by the stage.
    handover: Arc<AtomicU64>,
}

impl<T> Clone for BufferCharge<T> {
    fn clone(&self) -> Self {
        BufferCharge {
            budget: Arc::clone(&self.budget),
            size: self.size.clone(),
            handover: Arc::clone(&self.handover),
        }
    }
}

impl<T> std::fmt::Debug for BufferCharge<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferCharge")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<T> BufferCharge<T> {
    pub(crate) fn new(budget: Arc<Budget>, size: Sizer<T>) -> Self {
        BufferCharge {
            budget,
            size,
            handover: Arc::default(),
        }
    }

    /// Elements of `bytes` left the buffer into the operator's output in this
    /// step: their charge becomes the output edge's (the stage takes it over
    /// after the step).
    pub fn hand_over(&self, bytes: u64) {
        self.handover.fetch_add(bytes, SeqCst);
    }

    /// What was handed over since the last call.
    pub(crate) fn take_handover(&self) -> u64 {
        self.handover.swap(0, SeqCst)
    }

    /// The bytes `element` is charged.
    pub fn size_of(&self, element: &T) -> u64 {
        self.size.size(element)
    }

    /// Charges `bytes` if the budget is not exhausted; false (nothing charged)
    /// if it is.
    pub fn try_charge(&self, bytes: u64) -> bool {
        self.budget.try_charge(bytes)
    }

    /// Charges `bytes` once the budget is not exhausted, registering `cx`'s
    /// waker to be woken when bytes are released meanwhile.
    pub fn poll_charge(&self, bytes: u64, cx: &mut Context<'_>) -> Poll<()> {
        if self.budget.try_charge(bytes) {
            return Poll::Ready(());
        }
        // Room as of registering (a release came first): try again at once.
        if self.budget.wait(cx.waker()) && self.budget.try_charge(bytes) {
            Poll::Ready(())
        } else if self.budget.used() < self.budget.limit() {
            // Taken by another sender meanwhile, or room now: poll again.
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Pending
        }
    }

    /// Charges `bytes` whatever the budget holds (for an element whose sender
    /// was told there is room, [`poll_room`](Self::poll_room)).
    pub fn charge(&self, bytes: u64) {
        self.budget.charge(bytes);
    }

    /// Ready once the budget is not exhausted (registering `cx`'s waker to be
    /// woken when bytes are released meanwhile). Charges nothing.
    pub fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.budget.used() < self.budget.limit() {
            return Poll::Ready(());
        }
        if self.budget.wait(cx.waker()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Releases `bytes` charged before (the element left the buffer).
    pub fn release(&self, bytes: u64) {
        self.budget.release(bytes);
    }
}

/// A stage's in-memory dead-letter queue is charged through the same share.
impl<T> weir_supervisor::dead_letter::LetterCharge<T> for BufferCharge<T> {
    fn size_of(&self, element: &T) -> u64 {
        self.size.size(element)
    }

    fn charge(&self, bytes: u64) {
        self.budget.charge(bytes);
    }

    fn release(&self, bytes: u64) {
        self.budget.release(bytes);
    }
}
