//! The protocol behind [`AckToken`](crate::AckToken): every holder of a message
//! decides once; the last one to decide resolves the message, exactly once,
//! with the strongest decision any holder made (a veto — dropped undecided — over
//! term over nak over ack) and the longest nak delay asked for.
//!
//! This file has no dependency but the `sync` module beside it (`super::sync`:
//! `std`'s types in weir-nats), so that the loom model in
//! `models/tests/ack_token.rs` compiles the same code against loom's types and
//! checks it under every interleaving of the holders' threads.

use std::time::Duration;

use super::sync::{AtomicU8, AtomicU64, AtomicUsize, Mutex, Ordering};

/// A holder's verdict, ordered by strength (`fetch_max` keeps the strongest).
pub(crate) const ACK: u8 = 0;
pub(crate) const NAK: u8 = 1;
pub(crate) const TERM: u8 = 2;
pub(crate) const UNDECIDED: u8 = 3;

/// What the last holder's decision sends to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Ack,
    Nak(Option<Duration>),
    Term,
    /// Nothing: a holder was dropped undecided.
    Unacked,
}

/// Called once, by the last holder to decide.
pub(crate) type Resolve = Box<dyn FnOnce(Decision) + Send>;

/// The state every holder of one message shares.
pub(crate) struct Shared {
    resolve: Mutex<Option<Resolve>>,
    holders: AtomicUsize,
    verdict: AtomicU8,
    nak_delay_ms: AtomicU64,
}

impl Shared {
    /// One holder so far.
    pub(crate) fn new(resolve: Resolve) -> Shared {
        Shared {
            resolve: Mutex::new(Some(resolve)),
            holders: AtomicUsize::new(1),
            verdict: AtomicU8::new(ACK),
            nak_delay_ms: AtomicU64::new(0),
        }
    }

    /// A new holder, by a holder that has not decided yet (cloning its token).
    pub(crate) fn join(&self) {
        self.holders.fetch_add(1, Ordering::AcqRel);
    }

    /// One holder decides (once: its token makes sure). The verdict and delay
    /// are published before the count goes down (`AcqRel`), so the holder that
    /// takes it to zero sees every other holder's.
    pub(crate) fn decide(&self, verdict: u8, delay: Duration) {
        self.verdict.fetch_max(verdict, Ordering::AcqRel);
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.nak_delay_ms.fetch_max(ms, Ordering::AcqRel);
        if self.holders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.resolve();
        }
    }

    /// Whether a holder has already asked for something other than an ack.
    pub(crate) fn objected(&self) -> bool {
        self.verdict.load(Ordering::Acquire) > ACK
    }

    fn resolve(&self) {
        let resolve = self
            .resolve
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(resolve) = resolve else { return };
        let decision = match self.verdict.load(Ordering::Acquire) {
            ACK => Decision::Ack,
            NAK => {
                let ms = self.nak_delay_ms.load(Ordering::Acquire);
                Decision::Nak((ms > 0).then(|| Duration::from_millis(ms)))
            }
            TERM => Decision::Term,
            _ => Decision::Unacked,
        };
        resolve(decision);
    }
}
