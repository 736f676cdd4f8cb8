//! The admission gate of an [`Ingress`](super::Ingress): what makes "accepted"
//! and "counted when the source stops" agree.
//!
//! A sender takes its slot in the channel first (waiting for room, or an
//! [`IngressSink`](super::IngressSink)'s `poll_ready`), then passes the gate to
//! push its element: a push happens only inside a [`Pass`], and the element is
//! accepted only if the gate let it in. A stopping source (abort, failure)
//! [`close`](Gate::close)s the gate: from then on no sender is let in, and
//! `close` returns once every sender that was let in has pushed — a few
//! instructions, never an `await` — so the source's drain after it counts every
//! accepted element. A slot taken before the close and used after it is refused
//! (the sender is told, and keeps its element).
//!
//! One word holds both: bit 0 is "closed", the rest counts the senders inside.
//! A sender adds itself *then* looks at the bit, the source sets the bit *then*
//! looks at the count; both are read-modify-writes of the same word, so one of
//! them sees the other: a sender that saw the gate open is counted by the close.
//!
//! This file has no dependency but the `sync` module beside it (`super::sync`:
//! `std`'s types in weir-operators), so that the loom model in
//! `models/tests/ingress_admission.rs` compiles the same code against loom's
//! types and checks it under every interleaving of senders and the source.

use super::sync::{AtomicUsize, Ordering, yield_now};

const CLOSED: usize = 1;
const SENDER: usize = 2;

/// Shared by every [`Ingress`](super::Ingress) clone and the source.
#[derive(Debug)]
pub(crate) struct Gate {
    state: AtomicUsize,
}

impl Gate {
    /// An open gate, nobody inside.
    pub(crate) fn new() -> Gate {
        Gate {
            state: AtomicUsize::new(0),
        }
    }

    /// A sender about to push: `Some` while the gate is open. The push must
    /// happen before the [`Pass`] is dropped.
    pub(crate) fn enter(&self) -> Option<Pass<'_>> {
        let before = self.state.fetch_add(SENDER, Ordering::AcqRel);
        if before & CLOSED != 0 {
            self.state.fetch_sub(SENDER, Ordering::Release);
            return None;
        }
        Some(Pass { gate: self })
    }

    /// Lets nobody in any more, then waits until every sender let in before
    /// has pushed and left. After it returns, the channel holds every element
    /// that was accepted and not yet received, and no more will come.
    pub(crate) fn close(&self) {
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
        while self.state.load(Ordering::Acquire) & !CLOSED != 0 {
            yield_now();
        }
    }
}

/// A sender inside the gate; leaving (drop) publishes its push to
/// [`Gate::close`].
#[derive(Debug)]
pub(crate) struct Pass<'a> {
    gate: &'a Gate,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.state.fetch_sub(SENDER, Ordering::Release);
    }
}
