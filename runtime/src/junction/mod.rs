//! Junctions: stages with several inputs or several outputs (broadcast, partition,
//! balance, merge, concat, interleave, zip, mux and demux).
//!
//! A junction is an actor like any stage, with a bounded input queue per input port
//! and a buffer plus credit per output port. It runs a [`Junction`]: routing logic
//! that moves elements from input queues to output buffers through [`Ports`], and
//! never sees a message. The actor sends each output buffer downstream as far as that
//! branch's credit allows, and grants each input the places its queue freed.
//!
//! ```text
//!              ┌──────────── junction actor ────────────┐
//!  in[0] ────► │ queue ─┐                      ┌─► buffer │ ──► out[0]
//!  in[1] ────► │ queue ─┼──► Junction::route ──┼─► buffer │ ──► out[1]
//!              └────────┴──────────────────────┴──────────┘
//!                credit ◄── granted per input    credit per output ──►
//! ```
//!
//! The junctions weir ships are built with [`Graph`](crate::Graph)'s methods
//! (`broadcast`, `merge`, `zip`, `feedback`, …); implement [`Junction`] for routing
//! of your own.

pub(crate) mod actor;
mod fan_in;
mod fan_out;
mod feedback;
#[cfg(test)]
mod merge_tests;
mod mux;
pub(crate) mod pool;
mod queues;
pub(crate) mod when;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

pub use fan_in::{
    Concat, InputFailure, Interleave, Merge, MergePrioritized, Priority, Zip, ZipIn, ZipWith,
};
pub(crate) use fan_out::BalanceOf;
pub use fan_out::{
    Balance, BalanceStrategy, Branch, Broadcast, LagPolicy, Partition, PartitionFn, Predicate,
};
pub use feedback::{Feedback, Overflow};
pub(crate) use mux::MuxLink;
pub use mux::{Demux, Frame, Mux};
pub use queues::QueueCodec;

use weir_supervisor::Failure;

use crate::stage::link::{DownTx, UpLink};
use crate::stage::message::Up;
use crate::stage::shared::StageShared;

/// Routing logic with several inputs or outputs, run by a junction stage.
///
/// `route` is called whenever something changed: elements arrived, a branch granted
/// credit, an input ended, a branch cancelled, or a time asked for with
/// [`Ports::wake_at`] came. It moves what it can and returns; it must not block.
///
/// # Rules
///
/// - Every element taken with [`Ports::pop`] is pushed to an output, discarded with a
///   count ([`Ports::discard`], [`Ports::filter`]), or kept in the junction's state
///   and reported by [`held`](Self::held): that is what keeps conservation exact.
/// - Call user code that can panic on a reference ([`Ports::front`]) before taking
///   the element, or call [`Ports::commit`] after each element: a panic fails the
///   pipeline, and the elements taken since the last commit count as failed.
pub trait Junction: Send + 'static {
    /// Element type of the input ports.
    type In: Send + 'static;
    /// Element type of the output ports.
    type Out: Send + 'static;

    /// Short name of the junction kind ("broadcast", "merge", …), used in default
    /// stage names.
    fn kind(&self) -> &'static str;

    /// Checks the junction's arguments against its port counts, before the graph
    /// runs.
    ///
    /// # Errors
    ///
    /// What is wrong, in words; the graph reports it naming the stage.
    fn validate(&self, _inputs: usize, _outputs: usize) -> Result<(), String> {
        Ok(())
    }

    /// Moves elements from inputs to outputs.
    fn route(&mut self, ports: &mut Ports<'_, Self::In, Self::Out>) -> Routing;

    /// Input elements the junction holds in its own state (default 0).
    fn held(&self) -> usize {
        0
    }

    /// Whether a failure in the branch feeding one of its inputs only ends that
    /// input instead of failing the pipeline (see [`InputFailure`]). Default no.
    fn contains_input_failures(&self) -> bool {
        false
    }

    /// The junction's checkpointable state, if it keeps any (see
    /// [`Operator::checkpoint`](crate::operator::Operator::checkpoint)). Default
    /// `None`.
    fn checkpoint(&mut self) -> Option<&mut dyn crate::checkpoint::Checkpointable> {
        None
    }

    /// How to keep the elements waiting in the input queues in a checkpoint, for
    /// a junction that can hold elements before a barrier that it cannot route
    /// until elements after it arrive (a `zip`'s unmatched elements). With a
    /// codec, a barrier passes the junction once every input has delivered it and
    /// its outputs are sent, whatever its queues hold; the queues are part of its
    /// snapshot and a restore puts them back (see [`QueueCodec`]). Default
    /// `None`: a barrier waits for the queues to drain.
    fn queue_codec(&self) -> Option<QueueCodec<Self::In>> {
        None
    }

    /// Why a checkpointed pipeline cannot contain this junction, if it cannot.
    ///
    /// A checkpoint barrier arriving on one input holds that input until the
    /// barrier has arrived on every input, and the junction's state is snapshotted
    /// once every element before the barriers is routed. A junction that can wait
    /// for one particular input while another input holds elements (`zip`,
    /// `concat`, `interleave`) could then never route them; unless it keeps them in
    /// its checkpoint (a [`queue_codec`](Self::queue_codec), as
    /// [`ZipWith::checkpointed`] does), it says so here, and building a
    /// checkpointed pipeline with it is a
    /// [`BuildError::NotCheckpointable`](crate::BuildError::NotCheckpointable).
    /// Default: a custom junction is not known to align, so it says why.
    fn not_checkpointable(&self) -> Option<String> {
        Some(format!(
            "the junction `{}` does not say that it aligns checkpoint barriers (Junction::not_checkpointable)",
            self.kind()
        ))
    }
}

/// What [`Junction::route`] says after moving elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Routing {
    /// Call again when something changes.
    Continue,
    /// The junction is done: once every buffer is sent, every output ends and every
    /// input still open is cancelled.
    Finished,
}

pub(crate) struct InPort<T> {
    pub(crate) queue: VecDeque<T>,
    /// What arrived after the pending checkpoint barrier, held until it passes.
    pub(crate) behind: VecDeque<crate::stage::message::Down<T>>,
    /// Elements in `behind`.
    pub(crate) behind_len: usize,
    /// This input delivered the pending barrier.
    pub(crate) arrived: bool,
    pub(crate) ended: bool,
    /// Places freed in the queue, not yet granted upstream.
    pub(crate) owed: usize,
    /// Elements at the front of the queue that a restored checkpoint put there
    /// (see `queues`): upstream never spent credit on them, so taking them
    /// frees no place to grant.
    pub(crate) restored: usize,
    pub(crate) up: Option<UpLink>,
    pub(crate) received: u64,
}

impl<T> InPort<T> {
    /// `n` elements left the front of the queue: the places upstream sent them
    /// into are owed back, those of restored elements excepted.
    fn taken(&mut self, n: usize) {
        let restored = n.min(self.restored);
        self.restored -= restored;
        self.owed += n - restored;
    }
}

pub(crate) struct OutPort<T: Send + 'static> {
    pub(crate) buffer: VecDeque<T>,
    pub(crate) credit: usize,
    /// The downstream stage's input capacity: its credit when it holds nothing.
    pub(crate) capacity: usize,
    pub(crate) tx: Option<DownTx<T>>,
    /// False once the branch cancelled or its stage went away.
    pub(crate) open: bool,
    /// Last time the port sent a batch or had nothing waiting.
    pub(crate) last_flow: Instant,
    /// Elements routed to the port (published to the shared counters after each
    /// routing pass: one plain add per element, not an atomic one).
    pub(crate) pushed: u64,
    /// The junction ended this output alone ([`Ports::end_output`]): `End` goes
    /// downstream once the buffer is sent, and the port takes nothing more.
    pub(crate) ending: bool,
    /// The port's edge's charge to the runtime's memory budget, if there is one.
    pub(crate) charge: Option<crate::memory::OutCharge<T>>,
}

/// What [`Junction::route`] sees: the input queues and the output buffers.
///
/// Output `room` is the branch's credit not yet used by the buffer: pushing no more
/// than the room keeps a branch's buffer empty once sent. A junction may buffer more
/// (a lag policy's buffer); the buffer is the junction's memory, so it must be
/// bounded by the junction.
///
/// # Panics
///
/// The methods taking an input index `i` or an output index `o` panic when it is
/// out of range, as slice indexing does: a junction's port counts are fixed when
/// the graph is built and checked by [`Junction::validate`], so an index past
/// [`inputs`](Self::inputs) or [`outputs`](Self::outputs) is a bug in the
/// junction, not a condition of its input. Routing that depends on the input (a
/// branch number a user function picks) checks the index first and calls
/// [`fail`](Self::fail).
pub struct Ports<'a, I, O: Send + 'static> {
    pub(crate) ins: &'a mut [InPort<I>],
    pub(crate) outs: &'a mut [OutPort<O>],
    pub(crate) shared: &'a StageShared,
    pub(crate) pipeline: &'a str,
    pub(crate) taken: u64,
    pub(crate) uncommitted: u64,
    pub(crate) filtered: u64,
    pub(crate) now: Instant,
    pub(crate) wake: Option<Instant>,
}

impl<I, O: Send + 'static> std::fmt::Debug for Ports<'_, I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports")
            .field("inputs", &self.ins.len())
            .field("outputs", &self.outs.len())
            .finish_non_exhaustive()
    }
}

impl<I, O: Send + 'static> Ports<'_, I, O> {
    /// Fails the junction's stage with `failure`, a typed error (for example
    /// [`ErrorClass::ResourceExhausted`](weir_supervisor::ErrorClass::ResourceExhausted)
    /// when a bound is reached under a `Fail` overflow policy), instead of a panic.
    ///
    /// It does not return: the junction actor catches the unwind, takes `failure`
    /// as it is (class, message and source kept, no panic hook runs) and fails the
    /// stage; the elements taken since the last [`commit`](Self::commit) count as
    /// failed, exactly as for a panic.
    pub fn fail(&mut self, failure: Failure) -> ! {
        std::panic::resume_unwind(Box::new(failure))
    }

    /// Number of input ports.
    pub fn inputs(&self) -> usize {
        self.ins.len()
    }

    /// Number of output ports.
    pub fn outputs(&self) -> usize {
        self.outs.len()
    }

    /// Elements waiting in input `i`'s queue.
    pub fn queued(&self, i: usize) -> usize {
        self.ins[i].queue.len()
    }

    /// The next element of input `i`, without taking it.
    pub fn front(&self, i: usize) -> Option<&I> {
        self.ins[i].queue.front()
    }

    /// Takes the next element of input `i`.
    pub fn pop(&mut self, i: usize) -> Option<I> {
        let port = &mut self.ins[i];
        let x = port.queue.pop_front()?;
        port.taken(1);
        self.taken += 1;
        self.uncommitted += 1;
        Some(x)
    }

    /// Whether input `i` delivered the pending checkpoint barrier (it is held).
    pub(crate) fn barrier_arrived(&self, i: usize) -> bool {
        self.ins[i].arrived
    }

    /// Whether input `i` has ended (no element will arrive) and its queue is empty.
    pub fn is_exhausted(&self, i: usize) -> bool {
        let port = &self.ins[i];
        port.ended && port.queue.is_empty()
    }

    /// Whether every input is exhausted.
    pub fn all_exhausted(&self) -> bool {
        (0..self.ins.len()).all(|i| self.is_exhausted(i))
    }

    /// Cancels input `i`: its upstream is told to send nothing more, and what is
    /// queued is discarded as filtered (a zip whose other input ended).
    pub fn cancel_input(&mut self, i: usize) {
        let port = &mut self.ins[i];
        if !port.ended {
            port.ended = true;
            if let Some(up) = &port.up {
                up.tx.send(Up::Cancel);
            }
        }
        let n = port.queue.len() as u64;
        port.queue.clear();
        port.restored = 0;
        self.taken += n;
        self.filtered += n;
    }

    /// Counts `n` elements taken with [`pop`](Self::pop) as dropped on purpose
    /// (reported as `filtered` on the junction).
    pub fn filter(&mut self, n: u64) {
        self.filtered += n;
    }

    /// Marks every element taken so far as handled: a panic after this point does
    /// not count them as failed.
    pub fn commit(&mut self) {
        self.uncommitted = 0;
    }

    /// How many more elements output `o` can send now: its credit not used by what
    /// is buffered. 0 once the branch cancelled.
    pub fn room(&self, o: usize) -> usize {
        let port = &self.outs[o];
        if port.open && !port.ending {
            port.credit.saturating_sub(port.buffer.len())
        } else {
            0
        }
    }

    /// Whether output `o`'s branch still takes elements.
    pub fn is_open(&self, o: usize) -> bool {
        self.outs[o].open
    }

    /// Elements buffered for output `o`, not sent yet.
    pub fn buffered(&self, o: usize) -> usize {
        self.outs[o].buffer.len()
    }

    /// Elements routed to output `o` so far (sent, buffered or dropped): the
    /// position, in the port's stream, of the next element routed to it.
    pub fn routed(&self, o: usize) -> u64 {
        self.outs[o].pushed
    }

    /// Credit output `o`'s branch has granted and not used yet.
    pub fn credit(&self, o: usize) -> usize {
        self.outs[o].credit
    }

    /// Input capacity of output `o`'s branch: its credit when it has caught up.
    pub fn capacity(&self, o: usize) -> usize {
        self.outs[o].capacity
    }

    /// Time since output `o` last sent, or last had nothing waiting.
    pub fn lagging_for(&self, o: usize) -> Duration {
        self.now.saturating_duration_since(self.outs[o].last_flow)
    }

    /// The time `route` was called.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Asks for `route` to be called again at `at` (the earliest asked for wins).
    pub fn wake_at(&mut self, at: Instant) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    /// Appends `x` to output `o`'s buffer. On a cancelled (or ended) branch the
    /// element is counted as dropped instead.
    pub fn push(&mut self, o: usize, x: O) {
        let port = &mut self.outs[o];
        port.pushed += 1;
        if port.open && !port.ending {
            port.buffer.push_back(x);
        } else {
            self.shared.out_ports[o].dropped.fetch_add(1, Relaxed);
        }
    }

    /// Counts `x`, meant for output `o`, as dropped there (a lag policy's drop),
    /// and gives it back (to dead-letter it, say).
    pub fn discard(&mut self, o: usize, x: O) -> O {
        self.outs[o].pushed += 1;
        self.shared.out_ports[o].dropped.fetch_add(1, Relaxed);
        x
    }

    /// Ends output `o` alone (a demux's sub-stream): what is buffered is still sent,
    /// then `End` goes downstream; the other outputs go on. Elements pushed to it
    /// after this are counted as dropped.
    pub(crate) fn end_output(&mut self, o: usize) {
        self.outs[o].ending = true;
    }

    /// Sends an empty grant to input `i`'s upstream stage, which makes it run its
    /// routing again: how a junction tells the one before it that something it
    /// waits for, other than credit on the edge, has changed (a demux returning a
    /// mux's sub-stream credit). A full upstream mailbox drops the wake, which is
    /// harmless: the messages filling it run the routing as well.
    pub(crate) fn wake_upstream(&self, i: usize) {
        if let Some(up) = &self.ins[i].up {
            up.tx.send(Up::Demand(0));
        }
    }

    /// Removes the oldest element buffered for output `o`, counted as dropped.
    pub fn drop_oldest(&mut self, o: usize) -> Option<O> {
        let x = self.outs[o].buffer.pop_front()?;
        self.shared.out_ports[o].dropped.fetch_add(1, Relaxed);
        Some(x)
    }

    /// Removes what waits for output `o` beyond its credit, counted as dropped, and
    /// counts one detachment of its branch. Elements the branch has credit for stay
    /// and are sent.
    pub fn detach(&mut self, o: usize) -> Vec<O> {
        let port = &mut self.outs[o];
        let keep = port.credit.min(port.buffer.len());
        let dropped: Vec<O> = port.buffer.drain(keep..).collect();
        let counters = &self.shared.out_ports[o];
        counters.dropped.fetch_add(dropped.len() as u64, Relaxed);
        counters.detached.fetch_add(1, Relaxed);
        dropped
    }
}

impl<T: Send + 'static> Ports<'_, T, T> {
    /// Moves up to `n` elements from input `i` to output `o` in one go (a merge's
    /// or balance's bulk path). Does not check room: take `n` from
    /// [`room`](Self::room). Returns how many moved.
    pub fn forward(&mut self, i: usize, o: usize, n: usize) -> usize {
        let n = n.min(self.ins[i].queue.len());
        if n == 0 {
            return 0;
        }
        let (input, port) = (&mut self.ins[i], &mut self.outs[o]);
        input.taken(n);
        port.pushed += n as u64;
        if port.open {
            move_front(&mut input.queue, n, &mut port.buffer);
        } else {
            input.queue.drain(..n);
            self.shared.out_ports[o]
                .dropped
                .fetch_add(n as u64, Relaxed);
        }
        self.taken += n as u64;
        self.uncommitted += n as u64;
        n
    }
}

impl<T: Clone + Send + 'static> Ports<'_, T, T> {
    /// Copies the first `n` elements of input 0 to every output and takes them (a
    /// broadcast's bulk path). Outputs marked in `discard` (missing entries: not
    /// marked) get no copy: the `n` elements are counted as dropped there, as on a
    /// cancelled branch. Does not check room.
    pub(crate) fn copy_to_all(&mut self, n: usize, discard: &[bool]) -> usize {
        let n = n.min(self.ins[0].queue.len());
        if n == 0 {
            return 0;
        }
        let last = self.outs.len() - 1;
        let input = &mut self.ins[0];
        for (o, port) in self.outs.iter_mut().enumerate() {
            if o == last {
                break;
            }
            if port.open && !discard.get(o).copied().unwrap_or(false) {
                // Cloned first, counted after: a panicking `clone` leaves the
                // counts matching what the buffers hold.
                let copies: Vec<T> = input.queue.iter().take(n).cloned().collect();
                port.buffer.extend(copies);
            } else {
                self.shared.out_ports[o]
                    .dropped
                    .fetch_add(n as u64, Relaxed);
            }
            port.pushed += n as u64;
        }
        let port = &mut self.outs[last];
        let open = port.open && !discard.get(last).copied().unwrap_or(false);
        if open {
            move_front(&mut input.queue, n, &mut port.buffer);
        } else {
            input.queue.drain(..n);
            self.shared.out_ports[last]
                .dropped
                .fetch_add(n as u64, Relaxed);
        }
        port.pushed += n as u64;
        input.taken(n);
        self.taken += n as u64;
        n
    }
}

/// Runs shorter than this move element by element; longer ones in bulk.
const BULK_MOVE: usize = 64;

/// Moves the first `n` elements of `from` (at most its length) to the back of `to`,
/// in order, moving as few elements one by one as it can:
///
/// - the whole of `from` into an empty `to`: the allocation changes hands, nothing
///   moves;
/// - the whole of `from` after what `to` holds: one bulk copy ([`VecDeque::append`]);
/// - a long run out of a longer queue: the rest is split off (one bulk copy), and
///   the run is handed over or appended as above;
/// - a short run: element by element.
pub(crate) fn move_front<T>(from: &mut VecDeque<T>, n: usize, to: &mut VecDeque<T>) {
    let rest = from.len().saturating_sub(n);
    if rest > 0 {
        if n < BULK_MOVE {
            to.extend(from.drain(..n));
            return;
        }
        let tail = from.split_off(n);
        let mut run = std::mem::replace(from, tail);
        if to.is_empty() {
            std::mem::swap(to, &mut run);
        } else {
            to.append(&mut run);
        }
    } else if to.is_empty() {
        std::mem::swap(to, from);
    } else {
        to.append(from);
    }
}

/// Takes the first `count` elements of `buffer` (all of them at most) as batches of
/// at most `max` elements (at least 1), in order. Each element is copied at most
/// once: the batches are cut from the back of one `Vec`, whose allocation the
/// first batch keeps; of what is taken and what stays, the shorter part is the
/// one copied out of `buffer`; a whole contiguous buffer in one batch is handed
/// over without copying.
pub(crate) fn take_batches<T>(buffer: &mut VecDeque<T>, count: usize, max: usize) -> Vec<Vec<T>> {
    let count = count.min(buffer.len());
    let max = max.max(1);
    if count == 0 {
        return Vec::new();
    }
    let rest = buffer.len() - count;
    let mut all = if rest == 0 {
        Vec::from(std::mem::take(buffer))
    } else if rest <= count {
        // The shorter side is copied: here the rest, in bulk.
        let rest = buffer.split_off(count);
        Vec::from(std::mem::replace(buffer, rest))
    } else {
        buffer.drain(..count).collect()
    };
    let mut batches = Vec::with_capacity(count.div_ceil(max));
    while all.len() > max {
        let last = (all.len() - 1) / max * max;
        batches.push(all.split_off(last));
    }
    batches.push(all);
    batches.reverse();
    batches
}

/// Where a junction's dropped elements go, if anywhere: shared by the branches.
pub(crate) type DropSink<T> = Arc<dyn weir_supervisor::dead_letter::DeadLetterSink<T>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue holding `range`, starting `wrap` places into its allocation so that
    /// it wraps around (the bulk paths must handle both halves).
    fn queue(range: std::ops::Range<u32>, wrap: usize) -> VecDeque<u32> {
        let mut q = VecDeque::with_capacity(range.len().max(wrap + 1));
        q.extend(std::iter::repeat_n(0, wrap));
        while q.pop_front().is_some() {}
        q.extend(range);
        q
    }

    #[test]
    fn the_test_queues_do_wrap_around() {
        let q = queue(0..100, 30);
        assert!(!q.as_slices().1.is_empty(), "in two parts");
        assert!(q.iter().copied().eq(0..100));
    }

    #[test]
    fn move_front_moves_the_run_in_order_on_every_path() {
        // Every path: whole queue (into empty / after elements), long and short
        // runs out of a longer queue, into an empty or a filled buffer, wrapped
        // or not.
        for len in [0_u32, 1, 5, 63, 64, 65, 200] {
            for n in [0, 1, 10, 63, 64, 100, 199, 200, 300] {
                for (held, wrap) in [(0_u32, 0), (0, 7), (3, 0), (70, 11)] {
                    let mut from = queue(1000..1000 + len, wrap as usize);
                    let mut to = queue(0..held, wrap as usize);
                    move_front(&mut from, n, &mut to);
                    let moved = n.min(len as usize) as u32;
                    let want_to: Vec<u32> = (0..held).chain(1000..1000 + moved).collect();
                    let want_from: Vec<u32> = (1000 + moved..1000 + len).collect();
                    let case = format!("len {len} n {n} held {held} wrap {wrap}");
                    assert_eq!(Vec::from(to), want_to, "{case}");
                    assert_eq!(Vec::from(from), want_from, "{case}");
                }
            }
        }
    }

    #[test]
    fn take_batches_cuts_the_front_in_order_on_every_path() {
        for len in [0_u32, 1, 5, 63, 64, 65, 200, 1000] {
            for count in [0, 1, 10, 64, 100, 200, 999, 1000, 2000] {
                for max in [0, 1, 7, 64, 100, 1024] {
                    for wrap in [0, 13] {
                        let mut buffer = queue(0..len, wrap);
                        let batches = take_batches(&mut buffer, count, max);
                        let taken = count.min(len as usize) as u32;
                        let case = format!("len {len} count {count} max {max} wrap {wrap}");
                        assert!(
                            batches
                                .iter()
                                .all(|b| !b.is_empty() && b.len() <= max.max(1)),
                            "{case}"
                        );
                        // All full but the last.
                        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
                        if let Some((_, full)) = sizes.split_last() {
                            assert!(full.iter().all(|&s| s == max.max(1)), "{case}");
                        }
                        let flat: Vec<u32> = batches.into_iter().flatten().collect();
                        assert_eq!(flat, (0..taken).collect::<Vec<_>>(), "{case}");
                        assert_eq!(
                            Vec::from(buffer),
                            (taken..len).collect::<Vec<_>>(),
                            "{case}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn take_batches_hands_a_whole_buffer_over_without_copying() {
        let mut buffer: VecDeque<u32> = (0..100).collect();
        let ptr = buffer.as_slices().0.as_ptr();
        let batches = take_batches(&mut buffer, 100, 1024);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].as_ptr(), ptr, "the allocation changed hands");
        assert!(buffer.is_empty());
    }

    #[test]
    fn move_front_hands_a_whole_queue_to_an_empty_buffer_without_copying() {
        let mut from: VecDeque<u32> = (0..100).collect();
        let ptr = from.as_slices().0.as_ptr();
        let mut to = VecDeque::new();
        move_front(&mut from, 100, &mut to);
        assert_eq!(
            to.as_slices().0.as_ptr(),
            ptr,
            "the allocation changed hands"
        );
        assert!(from.is_empty());
    }
}
