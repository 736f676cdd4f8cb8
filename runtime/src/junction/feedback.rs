//! [`Feedback`]: the one edge a cycle may go through, with a bounded buffer that
//! never backpressures, and the rule that lets a cycle complete.

mod watch;

use std::time::{Duration, Instant};

use weir_supervisor::dead_letter::{DeadLetter, DeadLetterSink};
use weir_supervisor::{ErrorClass, Failure};

use self::watch::CycleWatch;
use super::{DropSink, Junction, Ports, Routing};

/// What a bounded buffer on an edge does with an element that does not fit: a
/// [`Feedback`] edge's buffer, and the explicit `buffer(n, overflow)` stage of the
/// operator catalogue (`weir_operators::ops::FlowControlExt::buffer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Upstream waits until there is room: nothing is dropped. The ordinary
    /// behaviour of every edge; for a `buffer` stage it adds `n` elements of slack.
    /// A feedback edge cannot wait (a full cycle would deadlock), so it rejects
    /// this when the graph is built.
    Backpressure,
    /// The oldest element waiting in the buffer is dropped (counted) to make room
    /// for the new one: the newest elements survive (Akka's
    /// `buffer(n, OverflowStrategy.dropHead)`).
    DropOldest,
    /// The new element is dropped (counted): the oldest elements survive (Akka's
    /// `dropNew`).
    DropNewest,
    /// The stage fails with a `ResourceExhausted` error naming it and the limit.
    /// Nothing is dropped silently and nothing is dropped on purpose: the default.
    #[default]
    Fail,
}

/// A feedback edge: the only way to close a cycle in a [`Graph`](crate::Graph).
///
/// Added with [`Graph::feedback`](crate::Graph::feedback), it runs as a junction
/// with one input and one output between the end of the cycle and its head (a
/// merge that also takes the elements entering the cycle from outside).
///
/// **Never backpressures.** A cycle of bounded edges that all wait for room
/// deadlocks once it is full: the head waits for the step, the step for the tail,
/// the tail for the head. A feedback edge takes everything its upstream sends
/// (it grants credit for every element it takes) and keeps at most `capacity`
/// elements waiting for the head; what does not fit follows the [`Overflow`]
/// policy: dropped and counted on its port (`PortCounts::dropped`), and
/// dead-lettered with [`dead_letters`](Self::dead_letters), or the pipeline fails.
/// Downstream it sends within credit, like every stage.
///
/// Order: elements leave in the order they arrived (minus what was dropped).
///
/// **Completion.** A cycle never ends by itself: the head waits for the feedback
/// input to end, which waits for the head. The feedback edge's output therefore
/// ends when
///
/// 1. its own input ended (the cycle was cut upstream of it), after its buffer
///    is sent, or
/// 2. every stage that feeds the cycle from outside has stopped and the cycle is
///    empty: no element in any mailbox, queue, operator state or outbox of a
///    stage on the cycle, on any edge into one, or in this buffer.
///
/// The stages on the cycle are those both upstream and downstream of the
/// feedback edge, found from the graph's edges when the edge first checks. The
/// check reads monotone counters of each of them (elements sent on each edge and
/// received from it; each stage's received count and the received count at the
/// end of its last pass that left it holding nothing) twice, about a
/// millisecond apart: when both reads are equal and show nothing anywhere, that
/// state held at one instant between them, and nothing can change it since no
/// element is left to move and none can enter. The edge checks only when it is
/// idle, at most every millisecond after elements passed through it, backing off
/// to every 20 ms while nothing moves. So no element is ever abandoned at
/// completion.
///
/// Operators on a cycle must report what they hold with
/// [`Operator::held`](crate::operator::Operator::held) (every built-in does): an
/// operator that holds elements without reporting them, or that creates elements
/// without input (on a timer), breaks the rule. An operator that holds elements
/// until its input ends (`chunks`' partial chunk) keeps the cycle from ever being
/// empty, so the cycle does not complete: do not put one on a cycle.
///
/// # Examples
///
/// See [`Graph::feedback`](crate::Graph::feedback).
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct Feedback<T> {
    capacity: usize,
    overflow: Overflow,
    dead_letters: Option<DropSink<T>>,
    pub(crate) name: Option<String>,
    watch: Option<CycleWatch>,
    /// The counters read at the last check, if it found the cycle empty.
    last: Option<Vec<u64>>,
    /// When the next check may run, and the interval after it.
    next_check: Option<Instant>,
    interval: Duration,
}

/// Shortest time between two checks for completion (the timer's resolution).
const MIN_POLL: Duration = Duration::from_millis(1);
/// Longest time between two checks while nothing moves.
const MAX_POLL: Duration = Duration::from_millis(20);

impl<T> std::fmt::Debug for Feedback<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feedback")
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("dead_letters", &self.dead_letters.is_some())
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Feedback<T> {
    /// A feedback edge that keeps up to `capacity` elements waiting for the
    /// cycle's head, with [`Overflow::Fail`].
    ///
    /// Choosing the capacity: the elements that may circulate at once beyond what
    /// the cycle's edges hold. With a step that emits at most one element per
    /// input, no more elements circulate than have entered, so a capacity of the
    /// number of elements entering the cycle never overflows; a head that prefers
    /// the feedback input (`MergePrioritized` with `Priority::Strict`, input 0)
    /// lets new elements in only when no fed-back one waits, which keeps the
    /// buffer nearly empty. A step that emits several elements per input grows
    /// the circulating count: size for it, or choose a drop policy. 0 is rejected
    /// when the graph is built.
    pub fn buffer(capacity: usize) -> Self {
        Feedback {
            capacity,
            overflow: Overflow::Fail,
            dead_letters: None,
            name: None,
            watch: None,
            last: None,
            next_check: None,
            interval: MIN_POLL,
        }
    }

    /// Sets what happens to an element that does not fit (default
    /// [`Overflow::Fail`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Also sends every dropped element to `sink`, as a dead letter naming the
    /// feedback stage (class `ResourceExhausted`, `element_index`: the element's
    /// position in the edge's input). A letter the sink refuses is still counted
    /// as dropped.
    pub fn dead_letters(mut self, sink: impl DeadLetterSink<T>) -> Self {
        self.dead_letters = Some(std::sync::Arc::new(sink));
        self
    }

    /// Names the feedback stage (default `feedback#N`). Names appear in stats,
    /// reports and errors and must be unique.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Dead-letters `x`, the element at position `index` of the input.
    fn letter(&self, ports: &Ports<'_, T, T>, x: T, index: u64, why: &str) {
        if let Some(sink) = &self.dead_letters {
            let failure = Failure::error(
                ErrorClass::ResourceExhausted,
                format!("feedback buffer full ({} elements): {why}", self.capacity),
            );
            let letter = DeadLetter::new(
                x,
                ports.shared.name.clone(),
                ports.pipeline.to_owned(),
                &failure,
                0,
                index,
            );
            // Refused: the drop is counted on the port all the same.
            let _ = sink.offer(letter);
        }
    }

    /// Takes every queued element: into the output buffer while it fits, by the
    /// overflow policy after. Returns how many were taken.
    fn take_all(&mut self, ports: &mut Ports<'_, T, T>) -> usize {
        let queued = ports.queued(0);
        if queued == 0 {
            return 0;
        }
        let waiting = ports.buffered(0).saturating_sub(ports.credit(0));
        let fits = ports.room(0) + self.capacity.saturating_sub(waiting);
        ports.forward(0, 0, fits.min(queued));
        ports.commit();
        while ports.queued(0) > 0 {
            match self.overflow {
                Overflow::DropNewest => {
                    let index = ports.routed(0);
                    if let Some(x) = ports.pop(0) {
                        let x = ports.discard(0, x);
                        self.letter(ports, x, index, "the new element was dropped");
                    }
                }
                Overflow::DropOldest => {
                    let index = ports.routed(0) - ports.buffered(0) as u64;
                    if let Some(old) = ports.drop_oldest(0) {
                        self.letter(ports, old, index, "the oldest element was dropped");
                    }
                    if let Some(x) = ports.pop(0) {
                        ports.push(0, x);
                    }
                }
                // Rejected when the graph is built; failing is the safe reading.
                Overflow::Fail | Overflow::Backpressure => {
                    // Taken, not committed: the element counts as failed.
                    let _ = ports.pop(0);
                    let failure = Failure::error(
                        ErrorClass::ResourceExhausted,
                        format!(
                            "feedback buffer full: {} elements wait for the cycle's head and \
                             another arrived (overflow policy Fail); use a larger buffer, a \
                             head that prefers the feedback input, or a drop policy",
                            self.capacity
                        ),
                    );
                    // The junction actor turns this payload into the stage's failure
                    // (no panic hook runs).
                    std::panic::resume_unwind(Box::new(failure));
                }
            }
            ports.commit();
        }
        queued
    }

    /// Elements passed: the cycle is not empty; check again soon after it settles.
    fn activity(&mut self, now: Instant) {
        self.last = None;
        self.interval = MIN_POLL;
        let soon = now + MIN_POLL;
        if self.next_check.is_none_or(|at| at > soon) {
            self.next_check = Some(soon);
        }
    }

    /// Whether the cycle has completed (rule 2): checked when this edge is idle,
    /// no more often than the poll interval.
    fn cycle_done(&mut self, ports: &mut Ports<'_, T, T>) -> bool {
        let now = ports.now();
        if let Some(at) = self.next_check
            && now < at
        {
            ports.wake_at(at);
            return false;
        }
        let watch = self
            .watch
            .get_or_insert_with(|| CycleWatch::discover(ports.shared));
        match watch.collect(ports.shared) {
            // Equal to the last read, which also found the cycle empty: a
            // consistent, empty snapshot.
            Some(counts) if self.last.as_ref() == Some(&counts) => return true,
            Some(counts) => {
                self.last = Some(counts);
                self.interval = MIN_POLL;
            }
            None => {
                self.last = None;
                self.interval = (self.interval * 2).min(MAX_POLL);
            }
        }
        let at = now + self.interval;
        self.next_check = Some(at);
        ports.wake_at(at);
        false
    }
}

impl<T: Send + 'static> Junction for Feedback<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "feedback"
    }

    fn not_checkpointable(&self) -> Option<String> {
        Some("a feedback edge closes a cycle: elements circling in it belong to no barrier, so no checkpoint of a cycle is consistent".into())
    }

    fn validate(&self, inputs: usize, outputs: usize) -> Result<(), String> {
        if self.capacity == 0 {
            return Err(
                "a feedback buffer needs a capacity of at least 1 (it holds what \
                 the cycle's head cannot take yet)"
                    .into(),
            );
        }
        if (inputs, outputs) != (1, 1) {
            return Err(format!(
                "a feedback edge has one input and one output, not {inputs} and {outputs}"
            ));
        }
        if self.overflow == Overflow::Backpressure {
            return Err("a feedback edge cannot backpressure (a full cycle would \
                        deadlock): choose Overflow::DropOldest, DropNewest or Fail"
                .into());
        }
        Ok(())
    }

    fn route(&mut self, ports: &mut Ports<'_, T, T>) -> Routing {
        let taken = self.take_all(ports);
        if ports.is_exhausted(0) {
            // Rule 1: the cycle was cut upstream; the actor sends the buffer first.
            return Routing::Finished;
        }
        if taken > 0 {
            self.activity(ports.now());
        }
        if ports.buffered(0) > 0 {
            // The head's credit wakes the edge.
            return Routing::Continue;
        }
        if self.cycle_done(ports) {
            Routing::Finished
        } else {
            Routing::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_zero_and_wrong_port_counts_are_rejected() {
        let f = Feedback::<u8>::buffer(0);
        assert!(f.validate(1, 1).unwrap_err().contains("at least 1"));
        let f = Feedback::<u8>::buffer(3);
        assert!(f.validate(1, 1).is_ok());
        assert!(
            f.validate(2, 1)
                .unwrap_err()
                .contains("one input and one output")
        );
    }

    #[test]
    fn backpressure_is_rejected_because_a_cycle_cannot_wait() {
        let f = Feedback::<u8>::buffer(3).overflow(Overflow::Backpressure);
        assert!(
            f.validate(1, 1)
                .unwrap_err()
                .contains("cannot backpressure")
        );
    }

    #[test]
    fn the_default_overflow_fails_rather_than_drops() {
        assert_eq!(Overflow::default(), Overflow::Fail);
        let f = Feedback::<u8>::buffer(3)
            .overflow(Overflow::DropOldest)
            .name("loop");
        assert_eq!(f.overflow, Overflow::DropOldest);
        assert_eq!(f.name.as_deref(), Some("loop"));
    }
}
