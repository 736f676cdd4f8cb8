//! A loom model of `Ingress` admission against a stopping source
//! (`operators/src/source/admission.rs`, the gate every `Ingress` send and
//! `IngressSink::start_send` passes to push, and `IngressSource::on_stop`
//! closes before it drains; `MergeHub` producers and `MergeHubSource` use it
//! alike). Senders on their own threads push elements while
//! the source receives some, then stops (abort or failure: `on_stop`). Under
//! every interleaving:
//!
//! - every element a sender was told was **accepted** is counted exactly once:
//!   received before the stop, or found by the drain after `close` (abandoned
//!   at the source) — none is pushed after the drain, unseen;
//! - every element a sender was told was **refused** never reached the channel.
//!
//! The channel itself is tokio's (loom-checked by tokio); here it is a locked
//! queue, and taking a slot in it is not modelled: the gate is what weir adds.
//! A graceful shutdown closes tokio's channel and receives until it reports
//! the end, which waits for every outstanding slot: tokio's protocol, not
//! modelled here. A shutdown that runs past its deadline ends in this abort.

use std::collections::VecDeque;

use loom::sync::{Arc, Mutex};
use loom::thread;

/// What `admission.rs` is written against, as loom's types.
mod sync {
    pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering};
    pub(crate) use loom::thread::yield_now;
}

#[path = "../../operators/src/source/admission.rs"]
mod admission;

use admission::Gate;

/// The ingress: the gate and the channel behind it.
struct Ingress {
    gate: Gate,
    channel: Mutex<VecDeque<u32>>,
}

impl Ingress {
    /// `Ingress::try_send` / `send` / `IngressSink::start_send` once its slot
    /// is taken: push inside the gate, or be refused.
    fn send(&self, x: u32) -> bool {
        let Some(_pass) = self.gate.enter() else {
            return false;
        };
        self.channel.lock().unwrap().push_back(x);
        true
    }

    /// `IngressSource::on_stop`: close, then count what is left.
    fn stop(&self) -> Vec<u32> {
        self.gate.close();
        self.channel.lock().unwrap().drain(..).collect()
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// A sender on its own thread: what it was told was accepted, and refused.
fn sender(ingress: &Arc<Ingress>, elements: Vec<u32>) -> thread::JoinHandle<(Vec<u32>, Vec<u32>)> {
    let ingress = Arc::clone(ingress);
    thread::spawn(move || {
        let (accepted, refused) = elements.into_iter().partition(|&x| ingress.send(x));
        (accepted, refused)
    })
}

/// Two senders against a source that receives one element, then stops.
#[test]
fn every_accepted_element_is_received_or_counted_at_the_stop() {
    model(|| {
        let ingress = Arc::new(Ingress {
            gate: Gate::new(),
            channel: Mutex::new(VecDeque::new()),
        });
        let a = sender(&ingress, vec![1, 2]);
        let b = sender(&ingress, vec![3]);
        let mut counted: Vec<u32> = ingress
            .channel
            .lock()
            .unwrap()
            .pop_front()
            .into_iter()
            .collect();
        counted.extend(ingress.stop());
        let (mut accepted, mut refused) = (Vec::new(), Vec::new());
        for t in [a, b] {
            let (yes, no) = t.join().unwrap();
            accepted.extend(yes);
            refused.extend(no);
        }
        assert!(
            ingress.channel.lock().unwrap().is_empty(),
            "an element was pushed after the stop's drain: accepted, never counted"
        );
        counted.sort_unstable();
        accepted.sort_unstable();
        assert_eq!(counted, accepted, "every accepted element counted once");
        for x in refused {
            assert!(!counted.contains(&x), "refused {x} reached the channel");
        }
    });
}

/// Once `close` has returned, no sender is let in (the abort's drain is final).
#[test]
fn after_the_close_every_send_is_refused() {
    model(|| {
        let ingress = Arc::new(Ingress {
            gate: Gate::new(),
            channel: Mutex::new(VecDeque::new()),
        });
        let a = sender(&ingress, vec![1]);
        let drained = ingress.stop();
        assert!(!ingress.send(2), "let in after the close");
        let (accepted, _) = a.join().unwrap();
        assert_eq!(drained, accepted);
    });
}
