//! Mux and demux: many tagged sub-streams over one edge, split back by tag, each
//! sub-stream with its own credit.
//!
//! A [`Mux`] takes `N` inputs and sends their elements as [`Frame`]s on one output;
//! a [`Demux`] takes those frames and gives sub-stream `k` to its output `k`. The
//! two share a `MuxLink`: one credit counter per sub-stream. The mux sends an
//! element of sub-stream `k` only while `k` has credit; the demux returns the credit
//! as output `k`'s buffer is sent on. Because every element the demux can receive
//! already has room reserved in its output buffer, the demux always takes its whole
//! input queue at once: the shared edge never waits on one sub-stream, so a stalled
//! sub-stream holds at most its own credit and never blocks the others.
//!
//! ```text
//!  in[0] ─► ┌─────┐  Frame::Item { tag, item }  ┌───────┐ ─► out[0]
//!  in[1] ─► │ mux │ ─────── one edge ─────────► │ demux │ ─► out[1]
//!  in[2] ─► └─────┘  Frame::End { tag }         └───────┘ ─► out[2]
//!              ▲                                     │
//!              └──── MuxLink: credit per sub-stream ─┘
//! ```
//!
//! Built with [`Graph::mux`](crate::Graph::mux) and
//! [`Graph::demux`](crate::Graph::demux).

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use super::{Junction, Ports, Routing};

/// What travels on the edge between a [`Mux`] and its [`Demux`]: an element of one
/// sub-stream, or the end of one sub-stream.
///
/// Every frame is counted as one element on that edge: its counts are elements
/// plus one `End` per sub-stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<T> {
    /// Element `item` of sub-stream `tag`.
    Item {
        /// The sub-stream (the mux's input port, the demux's output port).
        tag: usize,
        /// The element.
        item: T,
    },
    /// Sub-stream `tag` has ended: no element of it follows.
    End {
        /// The sub-stream.
        tag: usize,
    },
}

/// The state a [`Mux`] and its [`Demux`] share: per sub-stream credit and
/// cancellation.
///
/// Credit of sub-stream `k` is `sub_capacity` minus the elements of `k` between
/// the mux's output buffer and the demux's output buffer `k` (both included): the
/// mux takes it when it routes an element, the demux returns it when the element
/// leaves its buffer (sent downstream, or dropped for a branch that cancelled).
#[derive(Debug)]
pub(crate) struct MuxLink {
    sub_capacity: usize,
    credit: Vec<AtomicUsize>,
    /// Set by the demux when output `k`'s branch cancelled: the mux cancels input `k`.
    cancelled: Vec<AtomicBool>,
    /// Set by the mux when sub-stream `k` waits for credit; the demux wakes the mux
    /// when it returns `k`'s credit and finds this set.
    parked: Vec<AtomicBool>,
}

impl MuxLink {
    pub(crate) fn new(streams: usize, sub_capacity: usize) -> Arc<Self> {
        Arc::new(MuxLink {
            sub_capacity,
            credit: (0..streams)
                .map(|_| AtomicUsize::new(sub_capacity))
                .collect(),
            cancelled: (0..streams).map(|_| AtomicBool::new(false)).collect(),
            parked: (0..streams).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    /// Number of sub-streams.
    pub(crate) fn streams(&self) -> usize {
        self.credit.len()
    }

    /// Most elements of one sub-stream between the mux and the demux's output.
    pub(crate) fn sub_capacity(&self) -> usize {
        self.sub_capacity
    }

    /// Credit sub-stream `k` has now: `sub_capacity` minus its elements in transit.
    pub(crate) fn credit(&self, k: usize) -> usize {
        self.credit[k].load(SeqCst)
    }
}

/// Sends the elements of `N` inputs on one output as [`Frame`]s tagged with the
/// input's number, each input within its own sub-stream credit (see
/// [`Graph::mux`](crate::Graph::mux)).
///
/// Order: each sub-stream's order is kept; sub-streams interleave by arrival, the
/// output's room shared among the inputs that have elements and credit, in turn.
/// Backpressure: an input without sub-stream credit waits without holding back the
/// others. Completion: input `k` ending sends `Frame::End { tag: k }` after its last
/// element; the mux completes when every input has ended. A demux output that
/// cancels cancels the mux's matching input only (its queued elements are counted
/// as filtered). Built by [`Graph::mux`](crate::Graph::mux).
#[derive(Debug)]
pub struct Mux<T> {
    link: Arc<MuxLink>,
    end_sent: Vec<bool>,
    next: usize,
    _t: PhantomData<fn(T) -> T>,
}

impl<T: Send + 'static> Mux<T> {
    pub(crate) fn new(link: Arc<MuxLink>) -> Self {
        Mux {
            end_sent: vec![false; link.streams()],
            link,
            next: 0,
            _t: PhantomData,
        }
    }

    /// Moves what the sub-stream credits and the output's room allow; returns
    /// whether anything moved.
    fn move_round(&mut self, ports: &mut Ports<'_, T, Frame<T>>) -> bool {
        let n = ports.inputs();
        let waiting = (0..n)
            .filter(|&k| ports.queued(k) > 0 && self.link.credit(k) > 0)
            .count();
        let share = ports.room(0).div_ceil(waiting.max(1));
        let mut moved = false;
        for j in 0..n {
            let k = (self.next + j) % n;
            if self.end_sent[k] {
                continue;
            }
            let take = ports
                .queued(k)
                .min(self.link.credit(k))
                .min(share)
                .min(ports.room(0));
            if take > 0 {
                // Only the mux takes credit: what it read is still there.
                self.link.credit[k].fetch_sub(take, SeqCst);
                for _ in 0..take {
                    if let Some(item) = ports.pop(k) {
                        ports.push(0, Frame::Item { tag: k, item });
                    }
                }
                moved = true;
            }
            if ports.is_exhausted(k) && ports.room(0) > 0 {
                ports.push(0, Frame::End { tag: k });
                self.end_sent[k] = true;
                moved = true;
            }
        }
        self.next = (self.next + 1) % n;
        moved
    }
}

impl<T: Send + 'static> Junction for Mux<T> {
    type In = T;
    type Out = Frame<T>;

    fn kind(&self) -> &'static str {
        "mux"
    }

    fn not_checkpointable(&self) -> Option<String> {
        // Aligns as a merge does: an input that delivered the barrier is held, the
        // others' queues are routed as their sub-stream credit allows, and that
        // credit comes back as the demux's outputs drain, which never waits on a
        // barrier (the demux gets it only after the mux has passed it). The link's
        // credit is not state: it starts full on every run.
        None
    }

    fn validate(&self, inputs: usize, _outputs: usize) -> Result<(), String> {
        if inputs == 0 {
            return Err("a mux needs at least one input".into());
        }
        if self.link.sub_capacity == 0 {
            return Err("sub-stream capacity must be at least 1".into());
        }
        Ok(())
    }

    fn route(&mut self, ports: &mut Ports<'_, T, Frame<T>>) -> Routing {
        for k in 0..ports.inputs() {
            if !self.end_sent[k] && self.link.cancelled[k].load(SeqCst) {
                ports.cancel_input(k);
            }
        }
        loop {
            while self.move_round(ports) {}
            if ports.room(0) == 0 {
                // The demux's grant for the edge wakes the mux.
                break;
            }
            // A sub-stream that waits for credit while the edge has room asks the
            // demux for a wake, then looks again, in case the credit came back in
            // between: the demux returns credit, then reads `parked` (both SeqCst,
            // so one of the two sees the other).
            let mut came_back = false;
            for k in 0..ports.inputs() {
                if ports.queued(k) > 0 && self.link.credit(k) == 0 {
                    self.link.parked[k].store(true, SeqCst);
                    came_back |= self.link.credit(k) > 0;
                }
            }
            if !came_back {
                break;
            }
        }
        if self.end_sent.iter().all(|&e| e) {
            Routing::Finished
        } else {
            Routing::Continue
        }
    }
}

/// Gives the elements of sub-stream `k` of a [`Mux`]'s [`Frame`]s to output `k`
/// (see [`Graph::mux`](crate::Graph::mux)).
///
/// Order: each output sees its sub-stream in order. Backpressure: per sub-stream;
/// the demux never waits on one output, it takes every frame that arrives into its
/// output buffer, which has room for it (the sub-stream credit). Completion:
/// `Frame::End { tag: k }` ends output `k` once its buffer is sent, while the others
/// go on; the demux completes when its input has ended and every buffer is sent.
/// Output `k` cancelling cancels the mux's input `k` only; elements of `k` already on
/// the way are counted as dropped on port `k`. Built by
/// [`Graph::demux`](crate::Graph::demux).
#[derive(Debug)]
pub struct Demux<T> {
    link: Arc<MuxLink>,
    /// Per output: elements that left its buffer and whose credit went back.
    released: Vec<u64>,
    /// Per output: its `End` frame arrived.
    ended: Vec<bool>,
    /// Per output: the mux was told it cancelled.
    cancel_told: Vec<bool>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T: Send + 'static> Demux<T> {
    pub(crate) fn new(link: Arc<MuxLink>) -> Self {
        let n = link.streams();
        Demux {
            link,
            released: vec![0; n],
            ended: vec![false; n],
            cancel_told: vec![false; n],
            _t: PhantomData,
        }
    }
}

impl<T: Send + 'static> Junction for Demux<T> {
    type In = Frame<T>;
    type Out = T;

    fn kind(&self) -> &'static str {
        "demux"
    }

    fn not_checkpointable(&self) -> Option<String> {
        // One input: the barrier passes once every frame before it has left the
        // output buffers, and goes on every open output.
        None
    }

    fn validate(&self, _inputs: usize, outputs: usize) -> Result<(), String> {
        if outputs != self.link.streams() {
            return Err(format!(
                "the mux has {} sub-streams, but the demux has {outputs} outputs",
                self.link.streams()
            ));
        }
        Ok(())
    }

    fn route(&mut self, ports: &mut Ports<'_, Frame<T>, T>) -> Routing {
        // Everything queued goes to the buffers: each element has room reserved
        // there by its sub-stream's credit.
        while let Some(frame) = ports.pop(0) {
            match frame {
                Frame::Item { tag, item } => ports.push(tag, item),
                Frame::End { tag } => {
                    ports.end_output(tag);
                    self.ended[tag] = true;
                }
            }
        }
        let mut wake = false;
        for k in 0..ports.outputs() {
            // Sent on, or dropped for a cancelled branch: out of the buffer either way.
            let left = ports.routed(k) - ports.buffered(k) as u64;
            if left > self.released[k] {
                let n = (left - self.released[k]) as usize;
                self.link.credit[k].fetch_add(n, SeqCst);
                self.released[k] = left;
                // Then, and only then, look whether the mux waits for it.
                wake |= self.link.parked[k].swap(false, SeqCst);
            }
            if !ports.is_open(k) && !self.ended[k] && !self.cancel_told[k] {
                self.cancel_told[k] = true;
                self.link.cancelled[k].store(true, SeqCst);
                wake = true;
            }
        }
        if wake {
            ports.wake_upstream(0);
        }
        if ports.is_exhausted(0) {
            Routing::Finished
        } else {
            Routing::Continue
        }
    }
}
