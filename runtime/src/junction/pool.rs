//! The two junctions around the replicas of a pool built by
//! [`Graph::pool_map`](crate::Graph::pool_map): [`Dispatch`] numbers each element
//! and sends it to a replica with room; [`Collect`] merges the replicas' results
//! back, in input order or as they come.
//!
//! ```text
//!                    ┌─► replica 0 ─┐
//!  in ──► dispatch ──┼─► replica 1 ─┼──► collect ──► out
//!     (seq, x)       └─► replica 2 ─┘   (min seq first)
//!           └──── assigned[r]: last seq sent to replica r ────┘
//! ```
//!
//! # How the ordered collect knows it may emit
//!
//! Each replica keeps its input order, so the sequence numbers arriving from one
//! replica increase. The smallest front `m` over all replica queues is the next
//! element in order unless a replica with an empty queue still holds an element
//! with a smaller number. [`Dispatch`] publishes, per replica, one past the last
//! number it assigned there (`assigned[r]`), before sending anything numbered after
//! it; `Collect` remembers one past the last number it took from each replica
//! (`taken[r]`). A replica with an empty queue can hold a smaller number only if
//! `assigned[r] > taken[r]`: then the collect waits for it. The reading is safe
//! without locks: `m` reached the collect through actor messages, and everything
//! the dispatch stored before sending `m` happened before; a number assigned later
//! is larger than `m`.
//!
//! An element a replica drops (dead-lettered, skipped) leaves `assigned[r] >
//! taken[r]` until that replica emits a later element or ends, so the elements
//! after it wait that long: under load that is soon (the other replicas fill up and
//! the dispatch sends to the idle one); at the end of the stream it is the end.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::atomic::{AtomicU64, AtomicUsize};

use super::{Balance, BalanceStrategy, Junction, Ports, Routing};

/// One past the last sequence number sent to each replica (0: none yet).
pub(crate) type Assigned = Arc<[AtomicU64]>;

/// How many replicas of a resizable pool take new elements: replicas `0..active`.
/// Set by the pool's size handle, read by the dispatch at the start of each pass.
pub(crate) type Active = Arc<AtomicUsize>;

/// Picks which active replica gets the next run of elements: a
/// [`Balance`] over the replicas `0..active` only. A retired replica
/// (index `>= active`) gets nothing new and drains what it has.
pub(crate) struct Spreader {
    balance: Balance,
    active: Option<Active>,
}

impl Spreader {
    pub(crate) fn new(strategy: BalanceStrategy, active: Option<Active>) -> Self {
        Spreader {
            balance: Balance::new(strategy),
            active,
        }
    }

    /// The replicas taking elements in this pass (at least 1).
    fn active<I, O: Send + 'static>(&self, ports: &Ports<'_, I, O>) -> usize {
        let n = ports.outputs();
        self.active
            .as_ref()
            .map_or(n, |a| a.load(Acquire).clamp(1, n.max(1)))
    }

    /// An active replica with room, and how many elements to send it in one go
    /// ([`Balance::pick`]).
    fn pick<I, O: Send + 'static>(&mut self, ports: &Ports<'_, I, O>) -> Option<(usize, usize)> {
        let n = self.active(ports);
        self.balance.pick(ports, n)
    }
}

/// Numbers each element and sends it to a replica that has room.
pub(crate) struct Dispatch<T> {
    spreader: Spreader,
    seq: u64,
    assigned: Assigned,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Dispatch<T> {
    pub(crate) fn new(
        strategy: BalanceStrategy,
        assigned: Assigned,
        active: Option<Active>,
    ) -> Self {
        Dispatch {
            spreader: Spreader::new(strategy, active),
            seq: 0,
            assigned,
            _t: PhantomData,
        }
    }
}

/// Sends each element to an active replica with room: the balance of a resizable
/// [`Graph::pool`](crate::Graph::pool).
pub(crate) struct Spread<T> {
    spreader: Spreader,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Spread<T> {
    pub(crate) fn new(strategy: BalanceStrategy, active: Active) -> Self {
        Spread {
            spreader: Spreader::new(strategy, Some(active)),
            _t: PhantomData,
        }
    }
}

impl<T: Send + 'static> Junction for Spread<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "balance"
    }

    fn not_checkpointable(&self) -> Option<String> {
        // Dispatch has one input; the collector takes any replica's results, and
        // the results before a barrier are all in (ordered: contiguous) when it passes.
        None
    }

    fn validate(&self, _inputs: usize, outputs: usize) -> Result<(), String> {
        if outputs == 0 {
            return Err("a pool needs at least one replica".into());
        }
        Ok(())
    }

    fn route(&mut self, ports: &mut Ports<'_, T, T>) -> Routing {
        let spreader = &mut self.spreader;
        super::fan_out::spread(ports, |ports| spreader.pick(ports))
    }
}

impl<T: Send + 'static> Junction for Dispatch<T> {
    type In = T;
    type Out = (u64, T);

    fn kind(&self) -> &'static str {
        "pool-dispatch"
    }

    fn not_checkpointable(&self) -> Option<String> {
        // Dispatch has one input; the collector takes any replica's results, and
        // the results before a barrier are all in (ordered: contiguous) when it passes.
        None
    }

    fn validate(&self, _inputs: usize, outputs: usize) -> Result<(), String> {
        if outputs == 0 {
            return Err("a pool needs at least one replica".into());
        }
        Ok(())
    }

    fn route(&mut self, ports: &mut Ports<'_, T, (u64, T)>) -> Routing {
        while ports.queued(0) > 0 {
            let Some((o, run)) = self.spreader.pick(ports) else {
                return Routing::Continue;
            };
            let run = run.min(ports.queued(0));
            for _ in 0..run {
                // Cannot fail: `run` is at most `ports.queued(0)`, and nothing else pops input 0.
                let x = ports.pop(0).expect("counted above");
                ports.push(o, (self.seq, x));
                self.seq += 1;
            }
            // Before the batch leaves (it is sent after this pass): the collect
            // must see it when anything numbered later reaches it.
            self.assigned[o].store(self.seq, Release);
        }
        if ports.is_exhausted(0) {
            Routing::Finished
        } else {
            Routing::Continue
        }
    }
}

/// Merges the replicas' numbered results: by number (`ordered`) or fairly as they
/// come, dropping the numbers.
pub(crate) struct Collect<U> {
    ordered: bool,
    assigned: Assigned,
    /// One past the last number taken from each replica.
    taken: Vec<u64>,
    next: usize,
    _u: PhantomData<fn(U) -> U>,
}

impl<U> Collect<U> {
    pub(crate) fn new(ordered: bool, assigned: Assigned) -> Self {
        let taken = vec![0; assigned.len()];
        Collect {
            ordered,
            assigned,
            taken,
            next: 0,
            _u: PhantomData,
        }
    }
}

impl<U: Send + 'static> Collect<U> {
    /// The input with the smallest front, if no replica with an empty queue may
    /// still hold a smaller number.
    fn next_in_order(&self, ports: &Ports<'_, (u64, U), U>) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for i in 0..ports.inputs() {
            if let Some(&(s, _)) = ports.front(i)
                && best.is_none_or(|(b, _)| s < b)
            {
                best = Some((s, i));
            }
        }
        let (m, i) = best?;
        // A replica whose input delivered the pending barrier has handed over every
        // result numbered before it; what it was assigned since is numbered after
        // every result still queued before the barrier, so it cannot hold a smaller
        // one — waiting on it would deadlock the alignment.
        let waiting = (0..ports.inputs()).any(|r| {
            r != i
                && ports.queued(r) == 0
                && !ports.is_exhausted(r)
                && !ports.barrier_arrived(r)
                && self.assigned[r].load(Acquire) > self.taken[r]
                && self.taken[r] <= m
        });
        (!waiting).then_some(i)
    }

    fn route_ordered(&mut self, ports: &mut Ports<'_, (u64, U), U>) {
        while ports.room(0) > 0 {
            let Some(i) = self.next_in_order(ports) else {
                return;
            };
            // Cannot fail: `next_in_order` returns only an input whose front it just read.
            let (s, u) = ports.pop(i).expect("a front was seen");
            self.taken[i] = s + 1;
            ports.push(0, u);
        }
    }

    fn route_unordered(&mut self, ports: &mut Ports<'_, (u64, U), U>) {
        let n = ports.inputs();
        let mut idle = 0;
        while idle < n && ports.room(0) > 0 {
            let i = self.next;
            self.next = (i + 1) % n;
            // A fair share of the room per turn keeps batches large and no replica
            // starved.
            let share = (ports.room(0) / n).max(1).min(ports.queued(i));
            if share == 0 {
                idle += 1;
                continue;
            }
            idle = 0;
            for _ in 0..share {
                // Cannot fail: `share` is at most `ports.queued(i)`.
                let (s, u) = ports.pop(i).expect("counted above");
                self.taken[i] = s + 1;
                ports.push(0, u);
            }
        }
    }
}

impl<U: Send + 'static> Junction for Collect<U> {
    type In = (u64, U);
    type Out = U;

    fn kind(&self) -> &'static str {
        "pool-collect"
    }

    fn not_checkpointable(&self) -> Option<String> {
        // Dispatch has one input; the collector takes any replica's results, and
        // the results before a barrier are all in (ordered: contiguous) when it passes.
        None
    }

    fn validate(&self, inputs: usize, _outputs: usize) -> Result<(), String> {
        if inputs != self.assigned.len() {
            return Err(format!(
                "the collect has {inputs} inputs for {} replicas",
                self.assigned.len()
            ));
        }
        Ok(())
    }

    fn route(&mut self, ports: &mut Ports<'_, (u64, U), U>) -> Routing {
        if self.ordered {
            self.route_ordered(ports);
        } else {
            self.route_unordered(ports);
        }
        if ports.all_exhausted() {
            Routing::Finished
        } else {
            Routing::Continue
        }
    }
}
