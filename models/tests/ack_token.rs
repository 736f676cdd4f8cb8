//! A loom model of the JetStream acknowledgement protocol
//! (`nats/src/ack_core.rs`, the core of `weir_nats::AckToken`): holders on
//! different threads decide concurrently — commit, nak with a delay, term, or
//! drop undecided — and one of them clones its share for a third holder while
//! the others decide. Under every interleaving:
//!
//! - the message is resolved **exactly once** (never twice, never not at all);
//! - **never before** every holder decided (a holder that has not decided yet
//!   holds the resolution back);
//! - with the **strongest** decision any holder made (undecided drop > term >
//!   nak > ack) and the **longest** nak delay asked for.

use std::time::Duration;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize as Counter, Ordering::SeqCst};
use loom::thread;

/// What `ack_core.rs` is written against, as loom's types.
mod sync {
    pub(crate) use loom::sync::Mutex;
    pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
}

#[path = "../../nats/src/ack_core.rs"]
#[allow(dead_code)]
mod ack_core;

use ack_core::{ACK, Decision, NAK, Shared, TERM, UNDECIDED};

/// A message whose resolution is recorded: how many times, what, and how many
/// holders had decided when it happened.
struct Recorded {
    shared: Arc<Shared>,
    calls: Arc<Counter>,
    decision: Arc<loom::sync::Mutex<Option<Decision>>>,
    decided: Arc<Counter>,
}

impl Recorded {
    fn new(holders: usize) -> Recorded {
        let calls = Arc::new(Counter::new(0));
        let decision = Arc::new(loom::sync::Mutex::new(None));
        let decided = Arc::new(Counter::new(0));
        let (c, d, n) = (
            Arc::clone(&calls),
            Arc::clone(&decision),
            Arc::clone(&decided),
        );
        let shared = Arc::new(Shared::new(Box::new(move |got| {
            c.fetch_add(1, SeqCst);
            // Every holder counts itself before it decides: all must have.
            assert_eq!(
                n.load(SeqCst),
                holders,
                "resolved before every holder decided"
            );
            *d.lock().unwrap() = Some(got);
        })));
        Recorded {
            shared,
            calls,
            decision,
            decided,
        }
    }

    /// One holder deciding `verdict` with `delay_ms`.
    fn decide(&self, verdict: u8, delay_ms: u64) {
        self.decided.fetch_add(1, SeqCst);
        self.shared.decide(verdict, Duration::from_millis(delay_ms));
    }

    fn check(&self, expected: Decision) {
        assert_eq!(self.calls.load(SeqCst), 1, "resolved once");
        assert_eq!(*self.decision.lock().unwrap(), Some(expected));
    }

    fn handle(&self) -> Recorded {
        Recorded {
            shared: Arc::clone(&self.shared),
            calls: Arc::clone(&self.calls),
            decision: Arc::clone(&self.decision),
            decided: Arc::clone(&self.decided),
        }
    }
}

/// Explores every interleaving up to `PREEMPTIONS` forced thread switches
/// (loom's bound; CHESS found almost every concurrency bug within 2–3).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(PREEMPTIONS);
    builder.check(f);
}

const PREEMPTIONS: usize = 3;

/// Two holders on a thread each and the main one: every pair of verdicts.
#[test]
fn three_holders_resolve_once_with_the_strongest_verdict() {
    let verdicts = [(ACK, 0), (NAK, 5), (TERM, 0), (UNDECIDED, 0)];
    for (i, &(a, a_ms)) in verdicts.iter().enumerate() {
        // Symmetric in the two threads: each unordered pair once.
        for &(b, b_ms) in &verdicts[i..] {
            model(move || {
                let message = Recorded::new(3);
                message.shared.join();
                message.shared.join();
                let first = message.handle();
                let second = message.handle();
                let t1 = thread::spawn(move || first.decide(a, a_ms));
                let t2 = thread::spawn(move || second.decide(b, b_ms));
                message.decide(NAK, 2);
                t1.join().unwrap();
                t2.join().unwrap();
                let strongest = a.max(b).max(NAK);
                let expected = match strongest {
                    NAK => Decision::Nak(Some(Duration::from_millis(a_ms.max(b_ms).max(2)))),
                    TERM => Decision::Term,
                    _ => Decision::Unacked,
                };
                message.check(expected);
            });
        }
    }
}

/// A holder clones its share (a broadcast sending the element to a new branch)
/// while another holder decides on its own thread: the clone, made before its
/// maker decided, always holds the resolution back until it decides too.
#[test]
fn a_share_cloned_while_another_holder_decides_holds_the_resolution_back() {
    model(|| {
        let message = Recorded::new(3);
        message.shared.join();
        let other = message.handle();
        let t = thread::spawn(move || other.decide(ACK, 0));
        // The main holder makes a third share, hands it to a thread, then decides.
        message.shared.join();
        let third = message.handle();
        let t3 = thread::spawn(move || third.decide(ACK, 0));
        message.decide(ACK, 0);
        t.join().unwrap();
        t3.join().unwrap();
        message.check(Decision::Ack);
    });
}
