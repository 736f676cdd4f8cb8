//! The two junctions of [`Graph::when`](crate::Graph::when): [`WhenSplit`] sends the
//! elements that match a predicate through a sub-pipeline and the others around
//! it, recording each decision in order; [`WhenJoin`] follows the decisions to put
//! every element back in its place.
//!
//! ```text
//!               ┌──► sub-pipeline (1:1) ──┐
//!  in ──► split ┤                         ├──► join ──► out
//!               └──────── bypass ─────────┘
//!           └──── decisions: [sub, bypass, bypass, sub, …] ────┘
//! ```
//!
//! The decisions queue holds one flag per element between the split and the join,
//! so it is bounded by the capacities on the two paths.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Junction, Ports, Routing};

/// The decisions in flight: `true` for an element sent through the sub-pipeline.
pub(crate) type Decisions = Arc<Mutex<VecDeque<bool>>>;

/// Output of [`WhenSplit`] into the sub-pipeline.
pub(crate) const SUB: usize = 0;
/// Output of [`WhenSplit`] around it.
pub(crate) const BYPASS: usize = 1;

/// Routes each element by the predicate, in order: an element waits (and the ones
/// after it) until its path has room.
pub(crate) struct WhenSplit<T> {
    predicate: Box<dyn Fn(&T) -> bool + Send>,
    decisions: Decisions,
    /// The path of the element at the front, when it had to wait for room (so the
    /// predicate runs once per element).
    waiting: Option<usize>,
    local: Vec<bool>,
}

impl<T> WhenSplit<T> {
    pub(crate) fn new(predicate: Box<dyn Fn(&T) -> bool + Send>, decisions: Decisions) -> Self {
        WhenSplit {
            predicate,
            decisions,
            waiting: None,
            local: Vec::new(),
        }
    }

    fn publish(&mut self) {
        if !self.local.is_empty() {
            let mut queue = self
                .decisions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            queue.extend(self.local.drain(..));
        }
    }
}

impl<T: Send + 'static> Junction for WhenSplit<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "when-split"
    }

    fn not_checkpointable(&self) -> Option<String> {
        // Every decision before a barrier names an element before the barrier on
        // its path, so the join never waits on a held input.
        None
    }

    fn route(&mut self, ports: &mut Ports<'_, T, T>) -> Routing {
        while ports.queued(0) > 0 {
            let path = match self.waiting.take() {
                Some(path) => path,
                None => {
                    // Cannot fail: the loop runs only while input 0 has queued elements.
                    let front = ports.front(0).expect("counted above");
                    // A panic here fails the pipeline before the element is taken.
                    if (self.predicate)(front) { SUB } else { BYPASS }
                }
            };
            if ports.room(path) == 0 && ports.is_open(path) {
                self.waiting = Some(path);
                break;
            }
            // Cannot fail: the loop runs only while input 0 has queued elements.
            let x = ports.pop(0).expect("counted above");
            self.local.push(path == SUB);
            // A closed path (its downstream cancelled) still takes the element: the
            // port counts it as dropped.
            ports.push(path, x);
        }
        // Before this pass's elements are sent.
        self.publish();
        if ports.is_exhausted(0) {
            Routing::Finished
        } else {
            Routing::Continue
        }
    }
}

/// Puts the elements of both paths back in input order by the recorded decisions.
pub(crate) struct WhenJoin<T> {
    decisions: Decisions,
    local: VecDeque<bool>,
    _t: std::marker::PhantomData<fn(T) -> T>,
}

impl<T> WhenJoin<T> {
    pub(crate) fn new(decisions: Decisions) -> Self {
        WhenJoin {
            decisions,
            local: VecDeque::new(),
            _t: std::marker::PhantomData,
        }
    }
}

impl<T: Send + 'static> Junction for WhenJoin<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "when-join"
    }

    fn not_checkpointable(&self) -> Option<String> {
        // Every decision before a barrier names an element before the barrier on
        // its path, so the join never waits on a held input.
        None
    }

    fn route(&mut self, ports: &mut Ports<'_, T, T>) -> Routing {
        {
            let mut queue = self
                .decisions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.local.extend(queue.drain(..));
        }
        while ports.room(0) > 0 {
            let Some(&sub) = self.local.front() else {
                break;
            };
            let input = if sub { SUB } else { BYPASS };
            // Runs from one path move in bulk.
            let run = self.local.iter().take_while(|&&d| d == sub).count();
            let moved = ports.forward(input, 0, run.min(ports.room(0)));
            if moved == 0 {
                if ports.is_exhausted(input) {
                    // The path ended without the element (its stage stopped early):
                    // nothing will come for this decision.
                    self.local.pop_front();
                    continue;
                }
                break;
            }
            self.local.drain(..moved);
        }
        if ports.all_exhausted() {
            Routing::Finished
        } else {
            Routing::Continue
        }
    }
}
